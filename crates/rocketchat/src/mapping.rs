//! Rocket.Chat documents (reference §6) into domain types. Upstream words (`rid`, `msg`, `_id`)
//! end here.
//!
//! The functions take the typed documents of [`crate::documents`], whether they were read from
//! a DDP frame's text or out of a REST answer, so both paths map alike.

use chrono::{DateTime, Utc};
use imgate_domain::model::{FileRef, Message, Room, RoomKind, Sender};
use imgate_domain::ports::ProviderError;
use imgate_domain::{FileId, MessageId, RoomId, UserId};
use serde_json::Value;

use crate::documents::{FileDoc, MessageDoc, RoomDoc, SubscriptionDoc, Text};
use crate::naming;

/// An ISO date as Rocket.Chat's REST parameters take it.
pub(crate) fn iso(date: DateTime<Utc>) -> String {
    date.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A string field of a REST answer.
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

fn file(message: &MessageDoc) -> Option<FileRef> {
    let file: &FileDoc = match &message.file.0 {
        Some(file) => file,
        None => message.files.iter().next()?.0.as_ref()?,
    };
    let id = file.id.get()?;
    let name = file.name.get().unwrap_or("file");
    Some(FileRef {
        id: FileId::parse(id).ok()?,
        name: name.to_owned(),
        size: file.size.0.unwrap_or(0),
        mime: file
            .mime
            .get()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        url: file_url(id, name),
    })
}

/// A message document.
pub(crate) fn message(doc: &MessageDoc) -> Result<Message, ProviderError> {
    let id = doc.id.get().ok_or_else(|| bad("a message id"))?;
    let rid = doc.rid.get().ok_or_else(|| bad("a message room"))?;
    let author = doc.u.0.as_ref().ok_or_else(|| bad("a message author"))?;
    let username = author.username.get().unwrap_or_default();
    let sender_id = host_user(username)
        .or_else(|| author.id.get().and_then(|id| UserId::parse(id).ok()))
        .ok_or_else(|| bad("a message author id"))?;
    Ok(Message {
        id: MessageId::parse(id).map_err(|_| bad("a valid message id"))?,
        room_id: RoomId::parse(rid).map_err(|_| bad("a valid room id"))?,
        sender: Sender {
            username: sender_id.to_string(),
            name: author.name.get().unwrap_or(username).to_owned(),
            id: sender_id,
        },
        text: doc.msg.get().unwrap_or_default().to_owned(),
        created_at: doc.ts.0.ok_or_else(|| bad("a message date"))?,
        edited_at: doc.edited_at.0,
        thread_id: doc.tmid.get().and_then(|id| MessageId::parse(id).ok()),
        system: doc.t.get().map(system_kind),
        file: file(doc),
    })
}

/// A room from its room document, as seen by a member with nothing unread.
pub(crate) fn room(doc: &RoomDoc) -> Result<Room, ProviderError> {
    let id = doc
        .id
        .get()
        .or_else(|| doc.rid.get())
        .ok_or_else(|| bad("a room id"))?;
    let kind = doc
        .t
        .get()
        .and_then(room_kind)
        .ok_or_else(|| bad("a known room type"))?;
    Ok(Room {
        id: RoomId::parse(id).map_err(|_| bad("a valid room id"))?,
        kind,
        name: room_name(doc, kind),
        members: None,
        unread: 0,
        last_message: doc
            .last_message
            .0
            .as_ref()
            .and_then(|m| message(m).ok())
            .map(Box::new),
        updated_at: doc.updated_at.0.or(doc.ts.0).unwrap_or_else(Utc::now),
    })
}

fn room_name(doc: &RoomDoc, kind: RoomKind) -> String {
    if kind == RoomKind::Direct && doc.usernames.0.is_some() {
        return doc
            .usernames
            .iter()
            .filter_map(Text::get)
            .filter_map(host_user)
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
            .join(", ");
    }
    doc.fname
        .get()
        .or_else(|| doc.name.get())
        .unwrap_or_default()
        .to_owned()
}

/// A room as one user sees it: their subscription, plus the room document when known.
pub(crate) fn subscribed_room(
    subscription: &SubscriptionDoc,
    room_doc: Option<&RoomDoc>,
) -> Option<Room> {
    let described = match room_doc {
        Some(doc) => Some(room(doc).ok()?),
        None => None,
    };
    as_subscribed(subscription, described)
}

/// A room as one user sees it: their subscription over `described`, the room as its document
/// describes it to every member (`None` when no document is known).
pub(crate) fn as_subscribed(
    subscription: &SubscriptionDoc,
    described: Option<Room>,
) -> Option<Room> {
    let kind = subscription.t.get().and_then(room_kind)?;
    let rid = subscription.rid.get()?;
    let mut room = match described {
        Some(room) => room,
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
    room.unread = subscription.unread.0.unwrap_or(0);
    room.name = match kind {
        // A subscription names a direct room after the other members, as this user sees it.
        RoomKind::Direct => subscription
            .name
            .get()
            .map(|names| {
                names
                    .split(", ")
                    .filter_map(host_user)
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or(room.name),
        _ => subscription
            .fname
            .get()
            .or_else(|| subscription.name.get())
            .map(str::to_owned)
            .unwrap_or(room.name),
    };
    if let Some(updated) = subscription.updated_at.0 {
        room.updated_at = room.updated_at.max(updated);
    }
    Some(room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::read;
    use serde_json::json;

    /// Maps `value` as a REST answer (a `Value`) and as DDP frame text; both must agree.
    fn message_of(value: &Value) -> Result<Message, ProviderError> {
        let rest = message(&read(value));
        let text = value.to_string();
        let ddp: crate::documents::Lenient<MessageDoc> = serde_json::from_str(&text).unwrap();
        let ddp = message(&ddp.0.unwrap_or_default());
        assert_eq!(format!("{rest:?}"), format!("{ddp:?}"), "{text}");
        rest
    }

    #[test]
    fn messages_map_in_both_date_dialects() {
        let rest = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": "2024-05-01T10:00:00.000Z",
            "u": {"_id": "u1", "username": "alice_5Fb", "name": "Alice"}, "_updatedAt": "2024-05-01T10:00:00.000Z"});
        let ddp = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": {"$date": 1714557600000_i64},
            "u": {"_id": "u1", "username": "alice_5Fb", "name": "Alice"}});
        let a = message_of(&rest).unwrap();
        assert_eq!(a, message_of(&ddp).unwrap());
        assert_eq!(a.sender.id.as_str(), "alice_b");
        assert_eq!(a.created_at.timestamp_millis(), 1714557600000);
        assert_eq!(a.system, None);
        let bare = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": 1714557600000_i64,
            "u": {"_id": "u1", "username": "alice_5Fb", "name": "Alice"}});
        assert_eq!(message_of(&bare).unwrap(), a);
    }

    #[test]
    fn system_and_file_messages_map() {
        let joined = json!({"_id": "m", "rid": "r", "msg": "bob", "t": "uj", "ts": "2024-05-01T10:00:00.000Z", "u": {"_id": "u", "username": "bob"}});
        assert_eq!(
            message_of(&joined).unwrap().system.as_deref(),
            Some("joined")
        );
        let file = json!({"_id": "m", "rid": "r", "msg": "", "ts": "2024-05-01T10:00:00.000Z", "u": {"_id": "u", "username": "bob"},
            "file": {"_id": "f1", "name": "a b.png", "type": "image/png", "size": 42}});
        let f = message_of(&file).unwrap().file.unwrap();
        assert_eq!(
            (f.id.as_str(), f.size, f.url.as_str()),
            ("f1", 42, "/api/v1/files/f1/a%20b.png")
        );
        let files = json!({"_id": "m", "rid": "r", "msg": "", "ts": "2024-05-01T10:00:00.000Z", "u": {"_id": "u", "username": "bob"},
            "files": [{"_id": "f2", "name": "notes.txt"}]});
        let f = message_of(&files).unwrap().file.unwrap();
        assert_eq!(
            (f.id.as_str(), f.mime.as_str(), f.url.as_str()),
            (
                "f2",
                "application/octet-stream",
                "/api/v1/files/f2/notes.txt"
            )
        );
    }

    #[test]
    fn garbage_messages_are_bad_responses() {
        for garbage in [json!({"msg": "x"}), json!([1, 2]), json!("m1"), json!(null)] {
            assert!(
                matches!(message_of(&garbage), Err(ProviderError::BadResponse(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn direct_rooms_are_named_after_their_members_as_host_users() {
        let doc = json!({"_id": "d1", "t": "d", "usernames": ["alice_5Fb", "bob", 7], "fname": "ignored",
            "_updatedAt": {"$date": 1714557600000_i64},
            "lastMessage": {"_id": "m1", "rid": "d1", "msg": "hi", "ts": {"$date": 1714557600000_i64}, "u": {"_id": "u", "username": "bob"}}});
        let room = room(&read(&doc)).unwrap();
        assert_eq!(
            (room.kind, room.name.as_str(), room.unread),
            (RoomKind::Direct, "alice_b, bob", 0)
        );
        assert_eq!(room.last_message.unwrap().text, "hi");
        assert_eq!(room.updated_at.timestamp_millis(), 1714557600000);
        let sub = json!({"rid": "d1", "t": "d", "name": "alice_5Fb", "unread": 2});
        let seen = subscribed_room(&read(&sub), Some(&read(&doc))).unwrap();
        assert_eq!((seen.name.as_str(), seen.unread), ("alice_b", 2));
        let channel = json!({"_id": "c1", "t": "c", "name": "general", "fname": "General"});
        assert_eq!(room_of(&channel).name, "General");
        assert!(matches!(
            super::room(&read(&json!({"_id": "l1", "t": "l"}))),
            Err(ProviderError::BadResponse(_))
        ));
    }

    fn room_of(value: &Value) -> Room {
        room(&read(value)).unwrap()
    }

    #[test]
    fn a_subscription_without_a_room_document_still_maps() {
        let sub = json!({"rid": "r2", "t": "p", "fname": "Team", "name": "team", "unread": 3,
            "_updatedAt": "2024-05-01T10:00:00.000Z"});
        let room = subscribed_room(&read(&sub), None).unwrap();
        assert_eq!(
            (room.kind, room.name.as_str(), room.unread),
            (RoomKind::Group, "Team", 3)
        );
        assert!(subscribed_room(&read(&json!({"rid": "r2", "t": "x"})), None).is_none());
    }
}
