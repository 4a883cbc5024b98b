//! Messages: user, system and ephemeral messages, edits, deletes and history.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{Store, STREAM_NOTIFY_ROOM, STREAM_ROOM_MESSAGES, STREAM_USER};
use crate::error::ApiError;
use crate::ids::random_id;
use crate::model::{Dates, Message, Room, RoomType, User, UserRef};

impl Store {
    /// Refuses a text longer than `Message_MaxAllowedSize`, sent or edited.
    fn check_message_size(&self, text: &str) -> Result<(), ApiError> {
        let max = self.setting_i64("Message_MaxAllowedSize", 5000) as usize;
        if text.chars().count() > max {
            return Err(ApiError::meteor(
                "error-message-size-exceeded",
                "Message size exceeds Message_MaxAllowedSize",
            ));
        }
        Ok(())
    }

    /// Stores a system message and fans it out.
    pub(super) fn system_message(&mut self, rid: &str, t: &str, msg: &str, by: UserRef) {
        let now = self.now();
        let m = Message {
            id: random_id(),
            rid: rid.into(),
            msg: msg.into(),
            ts: now,
            updated_at: now,
            u: by,
            t: Some(t.into()),
            tmid: None,
            mentions: Vec::new(),
            edited: None,
            extra: Map::new(),
            private: false,
        };
        self.store_message(m);
    }

    /// Whether `uid` may post in the room.
    pub fn can_post(&self, uid: &str, room: &Room) -> Result<(), ApiError> {
        if !self.can_access(uid, room) {
            return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
        }
        if room.read_only && !self.has_permission(uid, "post-readonly", Some(&room.id)) {
            return Err(ApiError::meteor("error-action-not-allowed", "Not allowed"));
        }
        Ok(())
    }

    /// `chat.sendMessage` / `sendMessage`: validates, stores and fans out a user message.
    pub fn send_message(
        &mut self,
        uid: &str,
        rid: &str,
        text: &str,
        client_id: Option<String>,
        tmid: Option<String>,
        extra: Map<String, Value>,
    ) -> Result<String, ApiError> {
        self.check_message_size(text)?;
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| ApiError::meteor("error-invalid-room", "Invalid room"))?;
        if let Err(e) = self.can_post(uid, room) {
            self.ephemeral(
                uid,
                rid,
                "You don't have permission to send messages in this room",
            );
            return Err(e);
        }
        if let Some(id) = &client_id {
            if self.messages.contains_key(id) {
                return Err(ApiError::meteor(
                    "error-duplicate-message",
                    "Duplicate message",
                ));
            }
        }
        if let Some(tmid) = &tmid {
            if self.messages.get(tmid).is_none_or(|m| m.rid != rid) {
                return Err(ApiError::meteor(
                    "error-invalid-message",
                    "Invalid thread message",
                ));
            }
        }
        let author = self.user(uid)?.brief();
        let mentions = self.parse_mentions(text);
        let now = self.now();
        let m = Message {
            id: client_id.unwrap_or_else(random_id),
            rid: rid.into(),
            msg: text.into(),
            ts: now,
            updated_at: now,
            u: author,
            t: None,
            tmid,
            mentions,
            edited: None,
            extra,
            private: false,
        };
        let id = m.id.clone();
        self.store_message(m);
        Ok(id)
    }

    fn parse_mentions(&self, text: &str) -> Vec<UserRef> {
        let mut out: Vec<UserRef> = Vec::new();
        for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ':') {
            let Some(name) = word.strip_prefix('@') else {
                continue;
            };
            let name = name.trim_end_matches(['.', '!', '?']);
            if name == "all" || name == "here" {
                if !out.iter().any(|u| u.id == name) {
                    out.push(UserRef {
                        id: name.into(),
                        username: name.into(),
                        name: None,
                    });
                }
                continue;
            }
            if let Some(u) = self.user_by_username(name) {
                if !out.iter().any(|x| x.id == u.id) {
                    out.push(UserRef {
                        id: u.id.clone(),
                        username: u.username.clone(),
                        name: Some(u.name.clone()),
                    });
                }
            }
        }
        out
    }

    /// Pushes an ephemeral `rocket.cat` notice on `<uid>/message` (never stored).
    pub fn ephemeral(&mut self, uid: &str, rid: &str, text: &str) {
        let ev = format!("{uid}/message");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        let now = self.now();
        let cat = self
            .user_by_username("rocket.cat")
            .map(User::brief)
            .unwrap_or(UserRef {
                id: "rocket.cat".into(),
                username: "rocket.cat".into(),
                name: None,
            });
        let m = Message {
            id: random_id(),
            rid: rid.into(),
            msg: text.into(),
            ts: now,
            updated_at: now,
            u: cat,
            t: None,
            tmid: None,
            mentions: Vec::new(),
            edited: None,
            extra: Map::new(),
            private: true,
        };
        self.push(STREAM_USER, ev, json!([m.to_json(Dates::Ejson)]), None);
    }

    fn store_message(&mut self, m: Message) {
        let rid = m.rid.clone();
        let id = m.id.clone();
        let is_user_msg = m.t.is_none();
        let author = m.u.id.clone();
        let ts = m.ts;
        let mentioned: HashSet<String> = m.mentions.iter().map(|u| u.id.clone()).collect();
        let group_mention = mentioned.contains("all") || mentioned.contains("here");
        let Some(room) = self.rooms.get_mut(&rid) else {
            return;
        };
        room.msgs += 1;
        room.lm = Some(ts);
        room.last_message = Some(id.clone());
        room.updated_at = ts;
        let room_t = room.t;
        let room_name = room.name.clone();
        let members: Vec<String> = room.members.iter().cloned().collect();
        self.room_msgs
            .entry(rid.clone())
            .or_default()
            .push(id.clone());
        self.messages.insert(id.clone(), m);
        let msg_ejson = self.messages[&id].to_json(Dates::Ejson);

        if is_user_msg {
            let names: Vec<String> = members
                .iter()
                .map(|m| format!("{m}/subscriptions-changed"))
                .collect();
            let listening: HashSet<String> = self
                .hub
                .filter_wanted(STREAM_USER, names)
                .into_iter()
                .collect();
            for uid in &members {
                let key = (uid.clone(), rid.clone());
                let Some(sub) = self.subs.get_mut(&key) else {
                    continue;
                };
                if *uid == author {
                    sub.ls = Some(ts);
                    sub.lr = Some(ts);
                    sub.updated_at = ts;
                    continue;
                }
                sub.unread += 1;
                sub.alert = true;
                sub.open = true;
                if mentioned.contains(uid) {
                    sub.user_mentions += 1;
                }
                if group_mention {
                    sub.group_mentions += 1;
                }
                sub.updated_at = ts;
                let ev = format!("{uid}/subscriptions-changed");
                if listening.contains(&ev) {
                    let args = json!(["updated", sub.to_json(Dates::Ejson)]);
                    self.push(STREAM_USER, ev, args, None);
                }
            }
        }

        if self.hub.wants(STREAM_ROOM_MESSAGES, &rid) {
            self.push(
                STREAM_ROOM_MESSAGES,
                rid.clone(),
                json!([msg_ejson.clone()]),
                None,
            );
        }
        if self.hub.wants(STREAM_ROOM_MESSAGES, "__my_messages__") {
            let mut meta = json!({"roomParticipant": true, "roomType": room_t.letter()});
            if let Some(n) = &room_name {
                meta["roomName"] = json!(n);
            }
            let audience: HashSet<String> = members.iter().cloned().collect();
            self.push(
                STREAM_ROOM_MESSAGES,
                "__my_messages__".into(),
                json!([msg_ejson.clone(), meta]),
                Some(Arc::new(audience)),
            );
        }
        self.emit_room_to_members(&rid, None);

        if is_user_msg {
            let text = self.messages[&id].msg.clone();
            let sender = self.messages[&id].u.clone();
            let tmid = self.messages[&id].tmid.clone();
            for uid in &members {
                if *uid == author {
                    continue;
                }
                if room_t != RoomType::Direct && !mentioned.contains(uid) && !group_mention {
                    continue;
                }
                let ev = format!("{uid}/notification");
                if !self.hub.wants(STREAM_USER, &ev) {
                    continue;
                }
                let name = if room_t == RoomType::Direct {
                    sender.username.clone()
                } else {
                    room_name.clone().unwrap_or_default()
                };
                let title = if room_t == RoomType::Direct {
                    sender.username.clone()
                } else {
                    format!("#{name}")
                };
                let mut payload = json!({
                    "_id": id, "rid": rid, "sender": sender.to_json(), "type": room_t.letter(),
                    "name": name, "message": {"msg": text},
                });
                if let Some(t) = &tmid {
                    payload["tmid"] = json!(t);
                }
                let body = if room_t == RoomType::Direct {
                    text.clone()
                } else {
                    format!("{}: {}", sender.username, text)
                };
                self.push(
                    STREAM_USER,
                    ev,
                    json!([{"title": title, "text": body, "duration": 4, "payload": payload}]),
                    None,
                );
            }
        }
    }

    /// `chat.update`.
    pub fn update_message(
        &mut self,
        uid: &str,
        rid: &str,
        msg_id: &str,
        text: &str,
    ) -> Result<(), ApiError> {
        let m = self.messages.get(msg_id).ok_or_else(|| {
            ApiError::Failure(format!("No message found with the id of \"{msg_id}\"."))
        })?;
        if m.rid != rid {
            return Err(ApiError::Failure(
                "The room id provided does not match where the message is from.".into(),
            ));
        }
        if m.u.id != uid && !self.has_permission(uid, "edit-message", Some(rid)) {
            return Err(ApiError::meteor(
                "error-action-not-allowed",
                "Message editing not allowed",
            ));
        }
        self.check_message_size(text)?;
        let editor = self.user(uid)?.brief();
        let mentions = self.parse_mentions(text);
        let now = self.now();
        let m = self.messages.get_mut(msg_id).ok_or(ApiError::Internal)?;
        m.msg = text.into();
        m.mentions = mentions;
        m.updated_at = now;
        m.edited = Some((now, editor));
        let ejson = m.to_json(Dates::Ejson);
        if self.hub.wants(STREAM_ROOM_MESSAGES, rid) {
            self.push(
                STREAM_ROOM_MESSAGES,
                rid.into(),
                json!([ejson.clone()]),
                None,
            );
        }
        if self.hub.wants(STREAM_ROOM_MESSAGES, "__my_messages__") {
            if let Some(room) = self.rooms.get(rid) {
                let audience: HashSet<String> = room.members.iter().cloned().collect();
                let mut meta = json!({"roomParticipant": true, "roomType": room.t.letter()});
                if let Some(n) = &room.name {
                    meta["roomName"] = json!(n);
                }
                self.push(
                    STREAM_ROOM_MESSAGES,
                    "__my_messages__".into(),
                    json!([ejson, meta]),
                    Some(Arc::new(audience)),
                );
            }
        }
        if self.rooms.get(rid).and_then(|r| r.last_message.as_deref()) == Some(msg_id) {
            self.emit_room_to_members(rid, None);
        }
        Ok(())
    }

    /// `chat.delete`: returns the deleted message.
    pub fn delete_message(
        &mut self,
        uid: &str,
        rid: &str,
        msg_id: &str,
    ) -> Result<Message, ApiError> {
        let m = self.messages.get(msg_id).ok_or_else(|| {
            ApiError::Failure(format!("No message found with the id of \"{msg_id}\"."))
        })?;
        if m.rid != rid {
            return Err(ApiError::Failure(
                "The room id provided does not match where the message is from.".into(),
            ));
        }
        if m.u.id != uid && !self.has_permission(uid, "delete-message", Some(rid)) {
            return Err(ApiError::meteor("error-action-not-allowed", "Not allowed"));
        }
        let m = self.messages.remove(msg_id).ok_or(ApiError::Internal)?;
        if let Some(list) = self.room_msgs.get_mut(rid) {
            list.retain(|i| i != msg_id);
        }
        let now = self.now();
        let new_last = self.room_msgs.get(rid).and_then(|l| l.last().cloned());
        if let Some(room) = self.rooms.get_mut(rid) {
            room.msgs = room.msgs.saturating_sub(1);
            if room.last_message.as_deref() == Some(msg_id) {
                room.last_message = new_last;
                room.updated_at = now;
            }
        }
        let ev = format!("{rid}/deleteMessage");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(STREAM_NOTIFY_ROOM, ev, json!([{"_id": msg_id}]), None);
        }
        self.emit_room_to_members(rid, None);
        Ok(m)
    }

    /// Messages of a room, newest first, in `[oldest, latest]` as `history` reads them.
    pub fn history(
        &self,
        rid: &str,
        latest: Option<DateTime<Utc>>,
        oldest: Option<DateTime<Utc>>,
        inclusive: bool,
        offset: usize,
        count: Option<usize>,
    ) -> Vec<&Message> {
        let Some(ids) = self.room_msgs.get(rid) else {
            return Vec::new();
        };
        let iter = ids
            .iter()
            .rev()
            .filter_map(|i| self.messages.get(i))
            .filter(|m| {
                let before = match latest {
                    Some(l) if inclusive => m.ts <= l,
                    Some(l) => m.ts < l,
                    None => true,
                };
                let after = match oldest {
                    Some(o) if inclusive => m.ts >= o,
                    Some(o) => m.ts > o,
                    None => true,
                };
                before && after
            });
        let iter = iter.skip(offset);
        match count {
            Some(c) => iter.take(c).collect(),
            None => iter.collect(),
        }
    }

    /// Number of stored messages in a room.
    pub fn message_total(&self, rid: &str) -> usize {
        self.room_msgs.get(rid).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{store, user};
    use crate::store::GENERAL;

    #[test]
    fn unread_counts_for_others_and_read_clears() {
        let mut s = store();
        let a = user(&mut s, "alice");
        let b = user(&mut s, "bob");
        s.send_message(&a, GENERAL, "hi @bob", None, None, Map::new())
            .unwrap();
        let sub = s.subscription(&b, GENERAL).unwrap();
        assert_eq!((sub.unread, sub.alert, sub.user_mentions), (1, true, 1));
        assert_eq!(s.subscription(&a, GENERAL).unwrap().unread, 0);
        s.mark_read(&b, GENERAL).unwrap();
        assert_eq!(s.subscription(&b, GENERAL).unwrap().unread, 0);
    }
}
