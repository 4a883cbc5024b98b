//! Rocket.Chat documents (reference §6) into domain types. Upstream words (`rid`, `msg`, `_id`)
//! end here.

use chrono::{DateTime, TimeZone, Utc};
use imgate_domain::model::{FileRef, Message, Room, RoomKind, Sender};
use imgate_domain::ports::ProviderError;
use imgate_domain::{FileId, MessageId, RoomId, UserId};
use serde_json::Value;

use crate::naming;

/// A date in either dialect: an ISO string (REST) or `{"$date": ms}` (DDP).
pub(crate) fn date(value: Option<&Value>) -> Option<DateTime<Utc>> {
    match value? {
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|d| d.with_timezone(&Utc)),
        Value::Object(map) => map
            .get("$date")
            .and_then(Value::as_i64)
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        Value::Number(ms) => ms
            .as_i64()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
        _ => None,
    }
}

/// An ISO date as Rocket.Chat's REST parameters take it.
pub(crate) fn iso(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

pub(crate) fn bad(what: &str) -> ProviderError {
    ProviderError::BadResponse(format!("the answer lacks {what}"))
}

/// The host user behind a Rocket.Chat username; accounts not made by the gateway (the admin,
/// bots) keep their username as id.
pub(crate) fn host_user(username: &str) -> Option<UserId> {
    naming::user_for(username).or_else(|| UserId::parse(username).ok())
}

pub(crate) fn room_kind(t: &str) -> Option<RoomKind> {
    match t {
        "c" => Some(RoomKind::Channel),
        "p" => Some(RoomKind::Group),
        "d" => Some(RoomKind::Direct),
        _ => None,
    }
}

fn system_kind(t: &str) -> String {
    match t {
        "uj" => "joined",
        "ul" => "left",
        "au" => "added",
        "ru" => "removed",
        "r" => "renamed",
        "rm" => "deleted",
        "room_changed_topic" => "topic_changed",
        other => other,
    }
    .to_owned()
}

/// Where the gateway serves a file.
pub(crate) fn file_url(id: &str, name: &str) -> String {
    format!("/api/v1/files/{id}/{}", percent_encode(name))
}

fn percent_encode(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn file(message: &Value) -> Option<FileRef> {
    let file = message
        .get("file")
        .or_else(|| message.get("files").and_then(|files| files.get(0)))?;
    let id = text(file, "_id")?;
    let name = text(file, "name").unwrap_or("file");
    Some(FileRef {
        id: FileId::parse(id).ok()?,
        name: name.to_owned(),
        size: file.get("size").and_then(Value::as_u64).unwrap_or(0),
        mime: text(file, "type")
            .unwrap_or("application/octet-stream")
            .to_owned(),
        url: file_url(id, name),
    })
}

/// A message document.
pub(crate) fn message(value: &Value) -> Result<Message, ProviderError> {
    let id = text(value, "_id").ok_or_else(|| bad("a message id"))?;
    let rid = text(value, "rid").ok_or_else(|| bad("a message room"))?;
    let author = value.get("u").ok_or_else(|| bad("a message author"))?;
    let username = text(author, "username").unwrap_or_default();
    let sender_id = host_user(username)
        .or_else(|| text(author, "_id").and_then(|id| UserId::parse(id).ok()))
        .ok_or_else(|| bad("a message author id"))?;
    Ok(Message {
        id: MessageId::parse(id).map_err(|_| bad("a valid message id"))?,
        room_id: RoomId::parse(rid).map_err(|_| bad("a valid room id"))?,
        sender: Sender {
            username: sender_id.to_string(),
            name: text(author, "name").unwrap_or(username).to_owned(),
            id: sender_id,
        },
        text: text(value, "msg").unwrap_or_default().to_owned(),
        created_at: date(value.get("ts")).ok_or_else(|| bad("a message date"))?,
        edited_at: date(value.get("editedAt")),
        thread_id: text(value, "tmid").and_then(|id| MessageId::parse(id).ok()),
        system: text(value, "t").map(system_kind),
        file: file(value),
    })
}

/// A room from its room document, as seen by a member with nothing unread.
pub(crate) fn room(value: &Value) -> Result<Room, ProviderError> {
    let id = text(value, "_id")
        .or_else(|| text(value, "rid"))
        .ok_or_else(|| bad("a room id"))?;
    let kind = text(value, "t")
        .and_then(room_kind)
        .ok_or_else(|| bad("a known room type"))?;
    Ok(Room {
        id: RoomId::parse(id).map_err(|_| bad("a valid room id"))?,
        kind,
        name: room_name(value, kind),
        members: None,
        unread: 0,
        last_message: value
            .get("lastMessage")
            .and_then(|m| message(m).ok())
            .map(Box::new),
        updated_at: date(value.get("_updatedAt"))
            .or_else(|| date(value.get("ts")))
            .unwrap_or_else(Utc::now),
    })
}

fn room_name(value: &Value, kind: RoomKind) -> String {
    if kind == RoomKind::Direct {
        if let Some(usernames) = value.get("usernames").and_then(Value::as_array) {
            return usernames
                .iter()
                .filter_map(Value::as_str)
                .filter_map(host_user)
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    text(value, "fname")
        .or_else(|| text(value, "name"))
        .unwrap_or_default()
        .to_owned()
}

/// A room as one user sees it: their subscription, plus the room document when known.
pub(crate) fn subscribed_room(subscription: &Value, room_doc: Option<&Value>) -> Option<Room> {
    let kind = text(subscription, "t").and_then(room_kind)?;
    let rid = text(subscription, "rid")?;
    let mut room = match room_doc {
        Some(doc) => room(doc).ok()?,
        None => Room {
            id: RoomId::parse(rid).ok()?,
            kind,
            name: String::new(),
            members: None,
            unread: 0,
            last_message: None,
            updated_at: Utc::now(),
        },
    };
    room.unread = subscription
        .get("unread")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    room.name = match kind {
        // A subscription names a direct room after the other members, as this user sees it.
        RoomKind::Direct => text(subscription, "name")
            .map(|names| {
                names
                    .split(", ")
                    .filter_map(host_user)
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or(room.name),
        _ => text(subscription, "fname")
            .or_else(|| text(subscription, "name"))
            .map(str::to_owned)
            .unwrap_or(room.name),
    };
    if let Some(updated) = date(subscription.get("_updatedAt")) {
        room.updated_at = room.updated_at.max(updated);
    }
    Some(room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_map_in_both_date_dialects() {
        let rest = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": "2024-05-01T10:00:00.000Z",
            "u": {"_id": "u1", "username": "alice_5Fb", "name": "Alice"}, "_updatedAt": "2024-05-01T10:00:00.000Z"});
        let ddp = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": {"$date": 1714557600000_i64},
            "u": {"_id": "u1", "username": "alice_5Fb", "name": "Alice"}});
        let a = message(&rest).unwrap();
        assert_eq!(a, message(&ddp).unwrap());
        assert_eq!(a.sender.id.as_str(), "alice_b");
        assert_eq!(a.created_at.timestamp_millis(), 1714557600000);
        assert_eq!(a.system, None);
    }

    #[test]
    fn system_and_file_messages_map() {
        let joined = json!({"_id": "m", "rid": "r", "msg": "bob", "t": "uj", "ts": "2024-05-01T10:00:00.000Z", "u": {"_id": "u", "username": "bob"}});
        assert_eq!(message(&joined).unwrap().system.as_deref(), Some("joined"));
        let file = json!({"_id": "m", "rid": "r", "msg": "", "ts": "2024-05-01T10:00:00.000Z", "u": {"_id": "u", "username": "bob"},
            "file": {"_id": "f1", "name": "a b.png", "type": "image/png", "size": 42}});
        let f = message(&file).unwrap().file.unwrap();
        assert_eq!(
            (f.id.as_str(), f.size, f.url.as_str()),
            ("f1", 42, "/api/v1/files/f1/a%20b.png")
        );
    }

    #[test]
    fn garbage_messages_are_bad_responses() {
        assert!(matches!(
            message(&json!({"msg": "x"})),
            Err(ProviderError::BadResponse(_))
        ));
        assert!(matches!(
            message(&json!([1, 2])),
            Err(ProviderError::BadResponse(_))
        ));
    }
}
