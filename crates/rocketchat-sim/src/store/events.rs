//! Stream events: the stream names and the events queued in `pending` for delivery.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};

use super::Store;
use crate::hub::Event;
use crate::model::Dates;

pub const STREAM_USER: &str = "stream-notify-user";

pub const STREAM_ROOM_MESSAGES: &str = "stream-room-messages";

pub const STREAM_NOTIFY_ROOM: &str = "stream-notify-room";

impl Store {
    pub(super) fn push(
        &mut self,
        stream: &'static str,
        event_name: String,
        args: Value,
        audience: Option<Arc<HashSet<String>>>,
    ) {
        self.push_shared(stream, event_name, Arc::from(args.to_string()), audience);
    }

    fn push_shared(
        &mut self,
        stream: &'static str,
        event_name: String,
        args: Arc<str>,
        audience: Option<Arc<HashSet<String>>>,
    ) {
        self.pending.push(Event {
            stream,
            event_name,
            args,
            audience,
        });
    }

    pub(super) fn emit_sub(&mut self, uid: &str, rid: &str, kind: &str) {
        let ev = format!("{uid}/subscriptions-changed");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        if let Some(sub) = self.subscription(uid, rid) {
            let args = json!([kind, sub.to_json(Dates::Ejson)]);
            self.push(STREAM_USER, ev, args, None);
        }
    }

    pub(super) fn emit_room_to(&mut self, uid: &str, rid: &str, kind: &str) {
        let ev = format!("{uid}/rooms-changed");
        if !self.hub.wants(STREAM_USER, &ev) {
            return;
        }
        if let Some(room) = self.room_json(rid, Dates::Ejson) {
            self.push(STREAM_USER, ev, json!([kind, room]), None);
        }
    }

    /// `rooms-changed updated` to every member (except `skip`), rendering the room once.
    pub(super) fn emit_room_to_members(&mut self, rid: &str, skip: Option<&str>) {
        let Some(room) = self.rooms.get(rid) else {
            return;
        };
        let names: Vec<String> = room
            .members
            .iter()
            .filter(|m| Some(m.as_str()) != skip)
            .map(|m| format!("{m}/rooms-changed"))
            .collect();
        let targets = self.hub.filter_wanted(STREAM_USER, names);
        if targets.is_empty() {
            return;
        }
        let Some(room) = self.room_json(rid, Dates::Ejson) else {
            return;
        };
        let args: Arc<str> = Arc::from(json!(["updated", room]).to_string());
        for ev in targets {
            self.push_shared(STREAM_USER, ev, args.clone(), None);
        }
    }

    /// Sends `typing`/`user-activity` on `stream-notify-room`.
    pub fn user_activity(&mut self, rid: &str, username: &str, activities: Value, extra: Value) {
        let ev = format!("{rid}/user-activity");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(
                STREAM_NOTIFY_ROOM,
                ev,
                json!([username, activities.clone(), extra]),
                None,
            );
        }
        let typing = activities
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "user-typing"));
        let ev = format!("{rid}/typing");
        if self.hub.wants(STREAM_NOTIFY_ROOM, &ev) {
            self.push(STREAM_NOTIFY_ROOM, ev, json!([username, typing]), None);
        }
    }
}
