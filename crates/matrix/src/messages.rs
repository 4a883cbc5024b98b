//! `ProviderMessages`: `m.room.message` events; edits are `m.replace` relations, deletes are
//! redactions, history pages back through `/messages`.

use async_trait::async_trait;
use imgate_domain::model::{HistoryPage, HistoryQuery, Message, NewMessage, ProviderSession};
use imgate_domain::ports::{ProviderError, ProviderMessages};
use imgate_domain::{MessageId, RoomId};
use reqwest::Method;
use serde_json::{json, Value};

use crate::events::{self, bad, learn_names, text, Names};
use crate::rooms::{check_room, unseen};
use crate::MatrixProvider;

/// Events per `/messages` page while paging back.
const PAGE: &str = "100";
/// Pages read back at most for one history call, so a `before` far in the past stays bounded.
const MAX_PAGES: usize = 50;
/// Only messages, with their senders' member events.
const HISTORY_FILTER: &str = r#"{"types":["m.room.message"],"lazy_load_members":true}"#;

fn transaction_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl MatrixProvider {
    /// Posts `content` as an `m.room.message`; returns the new event's id.
    async fn post_event(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        content: &Value,
        transaction: Option<&str>,
    ) -> Result<String, ProviderError> {
        let id = check_room(room)?;
        // Matrix makes a retried transaction id idempotent for the same device, which is what
        // `client_message_id` promises.
        let transaction = transaction.map_or_else(transaction_id, |t| format!("c-{t}"));
        let url = self.client.url(
            "_matrix/client/v3/rooms",
            &[id, "send", "m.room.message", &transaction],
        );
        let answer = self
            .client
            .call(Method::PUT, url, Some(session), Some(content))
            .await
            .map_err(unseen)?;
        text(&answer, "event_id")
            .map(str::to_owned)
            .ok_or_else(|| bad("an event id"))
    }

    /// Posts `content` as a new message and returns it as it now reads.
    pub(crate) async fn post(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        content: &Value,
        transaction: Option<&str>,
    ) -> Result<Message, ProviderError> {
        let event = self.post_event(session, room, content, transaction).await?;
        self.read_message(session, room, &event).await
    }

    /// The raw event, or `NotFound`.
    pub(crate) async fn event(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        event: &str,
    ) -> Result<Value, ProviderError> {
        let id = check_room(room)?;
        let url = self
            .client
            .url("_matrix/client/v3/rooms", &[id, "event", event]);
        self.client
            .call(Method::GET, url, Some(session), None)
            .await
            .map_err(unseen)
    }

    /// A message by event id, with its sender's display name.
    async fn read_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        event: &str,
    ) -> Result<Message, ProviderError> {
        let raw = self.event(session, room, event).await?;
        let mut names = Names::new();
        if let Some(sender) = text(&raw, "sender") {
            let url = self.client.url("_matrix/client/v3/profile", &[sender]);
            if let Ok(profile) = self
                .client
                .call(Method::GET, url, Some(session), None)
                .await
            {
                if let Some(name) = text(&profile, "displayname") {
                    names.insert(sender.to_owned(), name.to_owned());
                }
            }
        }
        events::message(&self.namespace, room, &raw, &names)
            .ok_or_else(|| ProviderError::NotFound(format!("no message {event}")))
    }

    /// The caller's own message, or why it may not be changed.
    async fn own_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
    ) -> Result<Value, ProviderError> {
        let raw = self.event(session, room, message.as_str()).await?;
        if events::message(&self.namespace, room, &raw, &Names::new()).is_none() {
            return Err(ProviderError::NotFound(format!("no message {message}")));
        }
        if text(&raw, "sender") != Some(session.user_id.as_str()) {
            return Err(ProviderError::Forbidden(
                "only the sender may change a message".into(),
            ));
        }
        Ok(raw)
    }
}

#[async_trait]
impl ProviderMessages for MatrixProvider {
    async fn history(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ProviderError> {
        let id = check_room(room)?;
        let limit = usize::from(query.limit);
        let mut messages = Vec::new();
        let mut from: Option<String> = None;
        'pages: for _ in 0..MAX_PAGES {
            let mut url = self
                .client
                .url("_matrix/client/v3/rooms", &[id, "messages"]);
            {
                let mut pairs = url.query_pairs_mut();
                pairs
                    .append_pair("dir", "b")
                    .append_pair("limit", PAGE)
                    .append_pair("filter", HISTORY_FILTER);
                if let Some(from) = &from {
                    pairs.append_pair("from", from);
                }
            }
            let page = self
                .client
                .call(Method::GET, url, Some(session), None)
                .await
                .map_err(unseen)?;
            let chunk = page
                .get("chunk")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut names = Names::new();
            learn_names(
                page.get("state")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &mut names,
            );
            for event in &chunk {
                let Some(message) = events::message(&self.namespace, room, event, &names) else {
                    continue;
                };
                if query
                    .before
                    .is_some_and(|before| message.created_at >= before)
                {
                    continue;
                }
                if query.after.is_some_and(|after| message.created_at <= after) {
                    break 'pages;
                }
                messages.push(message);
                // One more than asked tells whether older messages exist.
                if messages.len() > limit {
                    break 'pages;
                }
            }
            match text(&page, "end") {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        Ok(HistoryPage::newest(messages, limit))
    }

    async fn send_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &NewMessage,
    ) -> Result<Message, ProviderError> {
        let mut content = json!({"msgtype": "m.text", "body": message.text});
        if let Some(thread) = &message.thread_id {
            content["m.relates_to"] = json!({
                "rel_type": "m.thread",
                "event_id": thread.as_str(),
                "is_falling_back": true,
                "m.in_reply_to": {"event_id": thread.as_str()},
            });
        }
        self.post(
            session,
            room,
            &content,
            message.client_message_id.as_deref(),
        )
        .await
    }

    async fn edit_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
        text: &str,
    ) -> Result<Message, ProviderError> {
        self.own_message(session, room, message).await?;
        let content = json!({
            "msgtype": "m.text",
            "body": format!("* {text}"),
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": message.as_str()},
        });
        self.post_event(session, room, &content, None).await?;
        self.read_message(session, room, message.as_str()).await
    }

    async fn delete_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
    ) -> Result<(), ProviderError> {
        self.own_message(session, room, message).await?;
        let id = check_room(room)?;
        let url = self.client.url(
            "_matrix/client/v3/rooms",
            &[id, "redact", message.as_str(), &transaction_id()],
        );
        self.client
            .call(Method::PUT, url, Some(session), Some(&json!({})))
            .await
            .map(drop)
    }

    async fn set_typing(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        typing: bool,
    ) -> Result<(), ProviderError> {
        let id = check_room(room)?;
        let url = self.client.url(
            "_matrix/client/v3/rooms",
            &[id, "typing", session.user_id.as_str()],
        );
        let body = json!({"typing": typing, "timeout": 30_000});
        self.client
            .call(Method::PUT, url, Some(session), Some(&body))
            .await
            .map_err(unseen)
            .map(drop)
    }
}
