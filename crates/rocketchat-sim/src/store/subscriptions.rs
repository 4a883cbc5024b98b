//! Subscriptions: a user's link to a room, created and dropped with membership, read state.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Store, STREAM_NOTIFY_ROOM, STREAM_USER};
use crate::error::ApiError;
use crate::ids::random_id;
use crate::model::{Dates, RoomType, Subscription, UserRef};

impl Store {
    pub fn subscription(&self, uid: &str, rid: &str) -> Option<&Subscription> {
        self.subs.get(&(uid.to_string(), rid.to_string()))
    }

    pub(super) fn insert_subscription(
        &mut self,
        rid: &str,
        uid: &str,
        open: bool,
        roles: Vec<String>,
    ) {
        let now = self.now();
        let Some(user) = self.users.get(uid) else {
            return;
        };
        let u = UserRef {
            id: user.id.clone(),
            username: user.username.clone(),
            name: Some(user.name.clone()),
        };
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        room.members.insert(uid.to_string());
        room.updated_at = now;
        let (name, fname) = match room.t {
            RoomType::Direct => self.dm_names(rid, uid),
            _ => {
                let room = &self.rooms[rid];
                (
                    room.name.clone().unwrap_or_default(),
                    room.fname.clone().unwrap_or_default(),
                )
            }
        };
        let t = self.rooms[rid].t;
        let sub = Subscription {
            id: random_id(),
            rid: rid.into(),
            u,
            name,
            fname,
            t,
            ts: now,
            ls: Some(now),
            lr: None,
            open,
            alert: false,
            unread: 0,
            user_mentions: 0,
            group_mentions: 0,
            roles,
            updated_at: now,
        };
        self.subs.insert((uid.into(), rid.into()), sub);
        self.user_rooms
            .entry(uid.into())
            .or_default()
            .insert(rid.into());
        self.emit_sub(uid, rid, "inserted");
        self.emit_room_to(uid, rid, "inserted");
        self.emit_room_to_members(rid, Some(uid));
    }

    pub(super) fn drop_subscription(&mut self, rid: &str, uid: &str) {
        let now = self.now();
        let Some(sub) = self.subs.remove(&(uid.to_string(), rid.to_string())) else {
            return;
        };
        if let Some(set) = self.user_rooms.get_mut(uid) {
            set.remove(rid);
        }
        if let Some(room) = self.rooms.get_mut(rid) {
            room.members.remove(uid);
            room.updated_at = now;
        }
        self.removed_subs.push((uid.into(), sub.id.clone(), now));
        self.removed_rooms.push((uid.into(), rid.into(), now));
        let ev = format!("{uid}/subscriptions-changed");
        if self.hub.wants(STREAM_USER, &ev) {
            let mut removed = json!({"_id": sub.id, "u": {"_id": sub.u.id, "username": sub.u.username}, "rid": rid, "t": sub.t.letter()});
            if let Some(n) = &sub.u.name {
                removed["u"]["name"] = json!(n);
            }
            self.push(STREAM_USER, ev, json!(["removed", removed]), None);
        }
        let ev = format!("{uid}/rooms-changed");
        if self.hub.wants(STREAM_USER, &ev) {
            if let Some(room) = self.room_json(rid, Dates::Ejson) {
                self.push(STREAM_USER, ev, json!(["removed", room]), None);
            }
        }
        self.emit_room_to_members(rid, None);
    }

    /// `subscriptions.get`.
    pub fn subs_since(
        &self,
        uid: &str,
        since: Option<DateTime<Utc>>,
        dates: Dates,
    ) -> (Vec<Value>, Vec<Value>) {
        let update = self
            .rooms_of(uid)
            .iter()
            .filter_map(|rid| self.subscription(uid, rid))
            .filter(|s| since.is_none_or(|at| s.updated_at > at))
            .map(|s| s.to_json(dates))
            .collect();
        let remove = match since {
            Some(at) => self
                .removed_subs
                .iter()
                .filter(|(u, _, when)| u == uid && *when > at)
                .map(|(_, id, when)| json!({"_id": id, "_deletedAt": crate::model::date(*when, dates)}))
                .collect(),
            None => Vec::new(),
        };
        (update, remove)
    }

    /// `subscriptions.read`: clears unread, updates `ls`.
    pub fn mark_read(&mut self, uid: &str, rid: &str) -> Result<(), ApiError> {
        let now = self.now();
        let sub = self
            .subs
            .get_mut(&(uid.to_string(), rid.to_string()))
            .ok_or_else(|| {
                ApiError::meteor("error-invalid-subscription", "Invalid subscription")
            })?;
        sub.unread = 0;
        sub.alert = false;
        sub.user_mentions = 0;
        sub.group_mentions = 0;
        sub.ls = Some(now);
        sub.updated_at = now;
        self.emit_sub(uid, rid, "updated");
        let ev = format!("{rid}/messagesRead");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(
                STREAM_NOTIFY_ROOM,
                ev,
                json!([{"until": {"$date": now.timestamp_millis()}}]),
                None,
            );
        }
        Ok(())
    }

    /// `subscriptions.unread`: marks the room unread from a message on (or just alerts).
    pub fn mark_unread(
        &mut self,
        uid: &str,
        rid: Option<&str>,
        first_unread: Option<&str>,
    ) -> Result<(), ApiError> {
        let (rid, since) = match (rid, first_unread) {
            (_, Some(mid)) => {
                let m = self.messages.get(mid).ok_or_else(|| {
                    ApiError::meteor("error-no-message-for-unread", "Unread failed")
                })?;
                (m.rid.clone(), Some(m.ts))
            }
            (Some(rid), None) => (rid.to_string(), None),
            (None, None) => {
                return Err(ApiError::meteor(
                    "error-invalid-params",
                    "Invalid parameters",
                ))
            }
        };
        let unread = match since {
            Some(ts) => self
                .room_msgs
                .get(&rid)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| self.messages.get(i))
                        .filter(|m| m.ts >= ts && m.u.id != uid && m.t.is_none())
                        .count() as u64
                })
                .unwrap_or(0),
            None => 0,
        };
        let now = self.now();
        let sub = self
            .subs
            .get_mut(&(uid.to_string(), rid.clone()))
            .ok_or_else(|| {
                ApiError::meteor("error-invalid-subscription", "Invalid subscription")
            })?;
        sub.alert = true;
        sub.unread = unread.max(sub.unread);
        if let Some(ts) = since {
            sub.ls = Some(ts - chrono::Duration::milliseconds(1));
        }
        sub.updated_at = now;
        self.emit_sub(uid, &rid, "updated");
        Ok(())
    }
}
