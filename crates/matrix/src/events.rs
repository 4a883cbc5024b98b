//! Matrix events into domain types. Event words (`m.room.message`, `origin_server_ts`,
//! `m.relates_to`) end here.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use imgate_domain::model::{FileRef, Message, Room, RoomKind, Sender};
use imgate_domain::ports::ProviderError;
use imgate_domain::{FileId, MessageId, RoomId, UserId};
use serde_json::Value;

use crate::naming;

/// The key in a room's creation content that records which kind of room the gateway made.
pub(crate) const KIND_KEY: &str = "im.imgate.kind";

/// Display names by Matrix user id, as the rooms' member events tell them.
pub(crate) type Names = BTreeMap<String, String>;

pub(crate) fn bad(what: &str) -> ProviderError {
    ProviderError::BadResponse(format!("the answer lacks {what}"))
}

pub(crate) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// An event's `origin_server_ts`.
pub(crate) fn timestamp(event: &Value) -> Option<DateTime<Utc>> {
    event
        .get("origin_server_ts")
        .and_then(Value::as_i64)
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
}

/// The host user behind a Matrix user id; accounts the gateway did not make (the admin,
/// bridges) keep their Matrix id as id.
pub(crate) fn host_user(namespace: &str, matrix_id: &str) -> Option<UserId> {
    naming::localpart_of(matrix_id)
        .and_then(|localpart| naming::user_for(namespace, localpart))
        .or_else(|| UserId::parse(matrix_id).ok())
}

/// The kind name stored in the creation content.
pub(crate) fn kind_name(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::Channel => "channel",
        RoomKind::Group => "group",
        RoomKind::Direct => "direct",
    }
}

/// A file's id: its room and the event that posted it, so a download can be checked against
/// what the caller may see (Matrix serves media to any signed-in user).
pub(crate) fn file_id(room: &str, event: &str) -> Option<FileId> {
    FileId::parse(format!("{room}~{event}")).ok()
}

/// Room and event of a file id.
pub(crate) fn split_file_id(file: &FileId) -> Option<(&str, &str)> {
    file.as_str()
        .rsplit_once('~')
        .filter(|(room, event)| room.starts_with('!') && event.starts_with('$'))
}

/// Where the gateway serves a file.
fn file_url(id: &str, name: &str) -> String {
    format!(
        "/api/v1/files/{}/{}",
        percent_encode(id),
        percent_encode(name)
    )
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The event an edit replaces, when `event` is one.
pub(crate) fn edit_target(event: &Value) -> Option<&str> {
    let relation = event.get("content")?.get("m.relates_to")?;
    (text(relation, "rel_type")? == "m.replace")
        .then(|| text(relation, "event_id"))
        .flatten()
}

fn redacted(event: &Value) -> bool {
    event
        .get("unsigned")
        .and_then(|u| u.get("redacted_because"))
        .is_some()
        || event
            .get("content")
            .and_then(Value::as_object)
            .is_none_or(|c| c.is_empty())
}

/// Learns display names from member events among `events`.
pub(crate) fn learn_names(events: &[Value], names: &mut Names) {
    for event in events {
        if text(event, "type") != Some("m.room.member") {
            continue;
        }
        if let (Some(user), Some(name)) = (
            text(event, "state_key"),
            event.get("content").and_then(|c| text(c, "displayname")),
        ) {
            names.insert(user.to_owned(), name.to_owned());
        }
    }
}

/// A message event as the contract's `Message`; `None` for anything else (state, edits,
/// redacted messages).
pub(crate) fn message(
    namespace: &str,
    room: &RoomId,
    event: &Value,
    names: &Names,
) -> Option<Message> {
    if text(event, "type") != Some("m.room.message")
        || redacted(event)
        || edit_target(event).is_some()
    {
        return None;
    }
    let content = event.get("content")?;
    let sender_id = text(event, "sender")?;
    let event_id = text(event, "event_id")?;
    // Synapse bundles the newest edit with the original.
    let edit = event
        .get("unsigned")
        .and_then(|u| u.get("m.relations"))
        .and_then(|r| r.get("m.replace"));
    let (body, edited_at) = match edit.and_then(|e| e.get("content")?.get("m.new_content")) {
        Some(new) => (
            text(new, "body").unwrap_or_default(),
            edit.and_then(timestamp),
        ),
        None => (text(content, "body").unwrap_or_default(), None),
    };
    let relation = content.get("m.relates_to");
    let thread_id = relation
        .filter(|r| text(r, "rel_type") == Some("m.thread"))
        .and_then(|r| text(r, "event_id"))
        .and_then(|id| MessageId::parse(id).ok());
    let file = (text(content, "msgtype") == Some("m.file")
        || text(content, "msgtype") == Some("m.image"))
    .then(|| {
        let name = text(content, "filename").unwrap_or(body);
        let info = content.get("info");
        let id = file_id(room.as_str(), event_id)?;
        Some(FileRef {
            url: file_url(id.as_str(), name),
            id,
            name: name.to_owned(),
            size: info
                .and_then(|i| i.get("size"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
            mime: info
                .and_then(|i| text(i, "mimetype"))
                .unwrap_or("application/octet-stream")
                .to_owned(),
        })
    })
    .flatten();
    // A file's body is its caption when it differs from the file name.
    let text_of = match &file {
        Some(file) if file.name == body => String::new(),
        _ => body.to_owned(),
    };
    let localpart = naming::localpart_of(sender_id).unwrap_or(sender_id);
    Some(Message {
        id: MessageId::parse(event_id).ok()?,
        room_id: room.clone(),
        sender: Sender {
            id: host_user(namespace, sender_id)?,
            username: localpart.to_owned(),
            name: names
                .get(sender_id)
                .cloned()
                .unwrap_or_else(|| localpart.to_owned()),
        },
        text: text_of,
        created_at: timestamp(event)?,
        edited_at,
        thread_id,
        system: None,
        file,
    })
}

/// The message `original` as the edit `edit` left it. Works from the original's id, sender and
/// date alone, so an edit still reads when the original has since been deleted.
pub(crate) fn edited(
    namespace: &str,
    room: &RoomId,
    original: &Value,
    edit: &Value,
    names: &Names,
) -> Option<Message> {
    let mut merged = original.clone();
    let body = edit.get("content")?.get("m.new_content")?.clone();
    if redacted(&merged) {
        merged["content"] = body.clone();
    }
    merged["unsigned"] = serde_json::json!({"m.relations": {"m.replace": edit}});
    merged["type"] = Value::from("m.room.message");
    message(namespace, room, &merged, names)
}

/// A room's current state, folded from its state events.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomState {
    kind: Option<RoomKind>,
    name: Option<String>,
    public: bool,
    created: Option<DateTime<Utc>>,
    /// Joined members and their display names.
    pub(crate) joined: Names,
}

impl RoomState {
    /// Applies state events in order (later ones win).
    pub(crate) fn apply(&mut self, events: &[Value]) {
        for event in events {
            let Some(content) = event.get("content") else {
                continue;
            };
            match text(event, "type") {
                Some("m.room.create") => {
                    self.created = timestamp(event);
                    self.kind = match text(content, KIND_KEY) {
                        Some("channel") => Some(RoomKind::Channel),
                        Some("group") => Some(RoomKind::Group),
                        Some("direct") => Some(RoomKind::Direct),
                        _ => self.kind,
                    };
                }
                Some("m.room.name") => {
                    self.name = text(content, "name").map(str::to_owned);
                }
                Some("m.room.join_rules") => {
                    self.public = text(content, "join_rule") == Some("public");
                }
                Some("m.room.member") => {
                    let Some(user) = text(event, "state_key") else {
                        continue;
                    };
                    if text(content, "membership") == Some("join") {
                        let name = text(content, "displayname").unwrap_or(user);
                        self.joined.insert(user.to_owned(), name.to_owned());
                    } else {
                        self.joined.remove(user);
                    }
                }
                _ => {}
            }
        }
    }

    /// The room as `me` sees it.
    pub(crate) fn room(
        &self,
        namespace: &str,
        id: RoomId,
        me: &str,
        unread: u64,
        last_message: Option<Message>,
    ) -> Room {
        let kind = self.kind.unwrap_or(if self.public {
            RoomKind::Channel
        } else {
            RoomKind::Group
        });
        let name = match (&self.name, kind) {
            (Some(name), RoomKind::Channel | RoomKind::Group) => name.clone(),
            _ => self
                .joined
                .iter()
                .filter(|(user, _)| user.as_str() != me)
                .map(|(_, name)| name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        };
        let updated_at = last_message
            .as_ref()
            .map(|m| m.created_at)
            .or(self.created)
            .unwrap_or_else(Utc::now);
        Room {
            id,
            kind,
            name,
            members: Some(
                self.joined
                    .keys()
                    .filter_map(|user| host_user(namespace, user))
                    .collect(),
            ),
            unread,
            last_message: last_message.map(Box::new),
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn room() -> RoomId {
        RoomId::parse("!r:hs").unwrap()
    }

    #[test]
    fn an_edited_message_shows_its_newest_text() {
        let event = json!({
            "type": "m.room.message", "event_id": "$1", "sender": "@ann:hs",
            "origin_server_ts": 1000, "content": {"msgtype": "m.text", "body": "first"},
            "unsigned": {"m.relations": {"m.replace": {
                "event_id": "$2", "origin_server_ts": 2000,
                "content": {"body": "* first!", "m.new_content": {"body": "first!"}}}}}
        });
        let names = Names::from([("@ann:hs".to_owned(), "Ann".to_owned())]);
        let message = message("", &room(), &event, &names).unwrap();
        assert_eq!(message.text, "first!");
        assert_eq!(message.sender.id.as_str(), "ann");
        assert_eq!(message.sender.name, "Ann");
        assert_eq!(message.edited_at.unwrap().timestamp_millis(), 2000);
    }

    #[test]
    fn edits_redactions_and_state_are_not_messages() {
        let edit = json!({"type": "m.room.message", "event_id": "$2", "sender": "@a:hs",
            "origin_server_ts": 1, "content": {"body": "* x",
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"}}});
        let redacted = json!({"type": "m.room.message", "event_id": "$3", "sender": "@a:hs",
            "origin_server_ts": 1, "content": {}, "unsigned": {"redacted_because": {}}});
        let state = json!({"type": "m.room.name", "event_id": "$4", "sender": "@a:hs",
            "origin_server_ts": 1, "content": {"name": "x"}, "state_key": ""});
        for event in [edit, redacted, state] {
            assert_eq!(message("", &room(), &event, &Names::new()), None, "{event}");
        }
    }

    #[test]
    fn a_file_message_carries_its_caption_and_a_gateway_url() {
        let event = json!({"type": "m.room.message", "event_id": "$f", "sender": "@a:hs",
            "origin_server_ts": 1, "content": {"msgtype": "m.file", "body": "the plan",
            "filename": "plan a.txt", "url": "mxc://hs/m", "info": {"size": 14, "mimetype": "text/plain"}}});
        let message = message("", &room(), &event, &Names::new()).unwrap();
        let file = message.file.unwrap();
        assert_eq!(message.text, "the plan");
        assert_eq!((file.size, file.mime.as_str()), (14, "text/plain"));
        assert_eq!(file.url, "/api/v1/files/%21r%3Ahs%7E%24f/plan%20a.txt");
        assert_eq!(split_file_id(&file.id), Some(("!r:hs", "$f")));
    }
}
