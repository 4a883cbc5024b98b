//! `ProviderMessages`: history, send, edit, delete, typing.

use async_trait::async_trait;
use imgate_domain::model::{HistoryPage, HistoryQuery, Message, NewMessage, ProviderSession};
use imgate_domain::ports::{ProviderError, ProviderMessages};
use imgate_domain::{MessageId, RoomId};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::documents::read;
use crate::mapping::{self, bad, iso};
use crate::rooms::family;
use crate::RocketChatProvider;

/// Meteor's id alphabet (reference: ids are 17 characters of it).
const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";

/// The Rocket.Chat message id for a client's idempotency key: the same sender, room and key
/// always give the same id, and different senders never collide.
pub(crate) fn message_id_for(session: &ProviderSession, room: &RoomId, client_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(session.user_id.as_str())
        .chain_update([0])
        .chain_update(room.as_str())
        .chain_update([0])
        .chain_update(client_id)
        .finalize();
    digest
        .iter()
        .take(17)
        .map(|b| char::from(ID_ALPHABET[usize::from(*b) % ID_ALPHABET.len()]))
        .collect()
}

fn message_not_found(message: &MessageId) -> ProviderError {
    ProviderError::NotFound(format!("no message {message}"))
}

impl RocketChatProvider {
    async fn existing_message(
        &self,
        session: &ProviderSession,
        id: &str,
    ) -> Result<Option<Message>, ProviderError> {
        match self
            .rest
            .get(
                "chat.getMessage",
                Some(session),
                &[("msgId", id.to_owned())],
            )
            .await
        {
            Ok(answer) => answer
                .get("message")
                .map(|doc| mapping::message(&read(doc)))
                .transpose(),
            Err(ProviderError::NotFound(_) | ProviderError::Invalid { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl ProviderMessages for RocketChatProvider {
    async fn history(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ProviderError> {
        let kind = self.kind_of(session, room).await?;
        let endpoint = match family(kind) {
            "channels" => "channels.history",
            "groups" => "groups.history",
            _ => "im.history",
        };
        let limit = usize::from(query.limit.clamp(1, 100));
        // One more than asked tells whether older messages exist.
        let mut params = vec![
            ("roomId", room.to_string()),
            ("count", (limit + 1).to_string()),
        ];
        if let Some(before) = query.before {
            params.push(("latest", iso(before)));
        }
        if let Some(after) = query.after {
            params.push(("oldest", iso(after)));
        }
        let answer = self.rest.get(endpoint, Some(session), &params).await?;
        let docs = answer
            .get("messages")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a message list"))?;
        let mut messages = docs
            .iter()
            .map(|doc| mapping::message(&read(doc)))
            .collect::<Result<Vec<_>, _>>()?;
        messages.sort_by_key(|m| std::cmp::Reverse(m.created_at));
        Ok(HistoryPage::newest(messages, limit))
    }

    async fn send_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        new: &NewMessage,
    ) -> Result<Message, ProviderError> {
        let id = new
            .client_message_id
            .as_deref()
            .map(|client_id| message_id_for(session, room, client_id));
        if let Some(id) = &id {
            // A retry of a send that reached the server: answer with what it stored.
            if let Some(existing) = self.existing_message(session, id).await? {
                return Ok(existing);
            }
        }
        let mut message = json!({"rid": room.as_str(), "msg": new.text});
        if let Some(thread) = &new.thread_id {
            message["tmid"] = json!(thread.as_str());
        }
        if let Some(id) = &id {
            message["_id"] = json!(id);
        }
        let sent = self
            .rest
            .post(
                "chat.sendMessage",
                Some(session),
                &json!({ "message": message }),
                &[],
            )
            .await;
        match sent {
            Ok(answer) => mapping::message(&read(
                answer
                    .get("message")
                    .ok_or_else(|| bad("the sent message"))?,
            )),
            // Refused by the limiter before it did anything: nothing to look for.
            Err(err @ ProviderError::RateLimited { .. }) => Err(err),
            // Two retries raced: the other one stored it.
            Err(err) => match &id {
                Some(id) => self.existing_message(session, id).await?.ok_or(err),
                None => Err(err),
            },
        }
    }

    async fn edit_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
        text: &str,
    ) -> Result<Message, ProviderError> {
        let body = json!({"roomId": room.as_str(), "msgId": message.as_str(), "text": text});
        let answer = self
            .rest
            .post("chat.update", Some(session), &body, &[])
            .await
            .map_err(|err| match err {
                ProviderError::NotFound(_) | ProviderError::Invalid { .. } => {
                    message_not_found(message)
                }
                other => other,
            })?;
        mapping::message(&read(
            answer
                .get("message")
                .ok_or_else(|| bad("the edited message"))?,
        ))
    }

    async fn delete_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
    ) -> Result<(), ProviderError> {
        let body = json!({"roomId": room.as_str(), "msgId": message.as_str()});
        self.rest
            .post("chat.delete", Some(session), &body, &[])
            .await
            .map(drop)
            .map_err(|err| match err {
                ProviderError::NotFound(_) | ProviderError::Invalid { .. } => {
                    message_not_found(message)
                }
                other => other,
            })
    }

    async fn set_typing(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        typing: bool,
    ) -> Result<(), ProviderError> {
        self.notify_typing(session, room, typing).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::{AuthToken, ProviderUserId};

    fn session(user: &str) -> ProviderSession {
        ProviderSession {
            user_id: ProviderUserId::parse(user).unwrap(),
            token: AuthToken::new("t"),
            issued_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn client_ids_map_to_stable_meteor_ids_per_sender_and_room() {
        let room = RoomId::parse("GENERAL").unwrap();
        let a = message_id_for(&session("u1"), &room, "42");
        assert_eq!(a.len(), 17);
        assert!(a.bytes().all(|b| ID_ALPHABET.contains(&b)));
        assert_eq!(a, message_id_for(&session("u1"), &room, "42"));
        assert_ne!(a, message_id_for(&session("u2"), &room, "42"));
        assert_ne!(
            a,
            message_id_for(&session("u1"), &RoomId::parse("other").unwrap(), "42")
        );
    }
}
