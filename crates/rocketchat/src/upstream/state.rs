//! What one DDP session of a user knows (the rooms, their stream subscriptions, the newest
//! shared room documents) and how its frames become domain events and the replies they need.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{Room, RoomKind};
use imgate_domain::ports::RealtimeSignal;
use imgate_domain::{MessageId, RoomId, UserEvent};
use serde::de::IgnoredAny;
use serde_json::{json, Value};

use crate::ddp::Envelope;
use crate::decoded_frames::{DecodedFrames, DecodedKind};
use crate::documents::{Args, IdDoc, Lenient, List, MessageDoc, RoomDoc, SubscriptionDoc, Text};
use crate::mapping::{self, text};
use crate::telemetry;
/// What one DDP session knows. Held for as long as the user is online, so it keeps ids and
/// shared room documents, never frames.
pub(crate) struct State {
    username: String,
    /// The rooms the session knows of, by id: their stream subscriptions once joined, and the
    /// newest room document (from `rooms-changed`, shared with the room's other members on this
    /// node) to give subscription events their last message.
    rooms: HashMap<Box<str>, KnownRoom>,
    next_sub: u64,
    /// Opening subscriptions not yet answered, by number (`s<n>` on the wire).
    pending: HashSet<u64>,
    buffered: Vec<RealtimeSignal>,
    connected: bool,
}

#[derive(Default)]
struct KnownRoom {
    /// The numbers of the room's `deleteMessage` and `user-activity` subscriptions, once the
    /// session subscribed them.
    streams: Option<[u64; 2]>,
    /// The room as its newest document describes it to every member.
    described: Option<Arc<Room>>,
}

/// The wire id of subscription number `n`.
fn sub_id(n: u64) -> String {
    format!("s{n}")
}

fn sub_number(id: &str) -> Option<u64> {
    id.strip_prefix('s')?.parse().ok()
}

impl State {
    fn new(username: &str) -> Self {
        Self {
            username: username.to_owned(),
            rooms: HashMap::new(),
            next_sub: 0,
            pending: HashSet::new(),
            buffered: Vec::new(),
            connected: false,
        }
    }

    /// The state of a fresh session and the `sub` frames it starts with: the user's own
    /// streams, and the room streams of every room in the `subscriptions.get` answer.
    pub(crate) fn start(username: &str, uid: &str, subscriptions: &Value) -> (Self, Vec<Value>) {
        let mut state = Self::new(username);
        let mut frames = vec![
            state.sub(
                "stream-notify-user",
                format!("{uid}/subscriptions-changed"),
                true,
            ),
            state.sub("stream-notify-user", format!("{uid}/rooms-changed"), true),
            state.sub("stream-room-messages", "__my_messages__".into(), true),
        ];
        for sub in subscriptions
            .get("update")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(rid) = text(sub, "rid") {
                frames.extend(state.join_room(rid, true));
            }
        }
        (state, frames)
    }

    /// A `sub` frame and its number.
    fn sub(&mut self, stream: &str, event: String, initial: bool) -> Value {
        self.next_sub += 1;
        if initial {
            self.pending.insert(self.next_sub);
        }
        json!({"msg": "sub", "id": sub_id(self.next_sub), "name": stream, "params": [event, {"useCollection": false, "args": []}]})
    }

    fn join_room(&mut self, rid: &str, initial: bool) -> Vec<Value> {
        if self
            .rooms
            .get(rid)
            .is_some_and(|room| room.streams.is_some())
        {
            return Vec::new();
        }
        let frames = vec![
            self.sub(
                "stream-notify-room",
                format!("{rid}/deleteMessage"),
                initial,
            ),
            self.sub(
                "stream-notify-room",
                format!("{rid}/user-activity"),
                initial,
            ),
        ];
        let streams = [self.next_sub - 1, self.next_sub];
        self.rooms.entry(rid.into()).or_default().streams = Some(streams);
        frames
    }

    fn leave_room(&mut self, rid: &str) -> Vec<Value> {
        self.rooms
            .remove(rid)
            .and_then(|room| room.streams)
            .into_iter()
            .flatten()
            .map(|n| json!({"msg": "unsub", "id": sub_id(n)}))
            .collect()
    }

    /// Keeps the newest room document, shared with the room's other members on this node.
    fn describe(&mut self, room: Arc<Room>) {
        if let Some(known) = self.rooms.get_mut(room.id.as_str()) {
            known.described = Some(room);
            return;
        }
        let key = room.id.as_str().into();
        let known = KnownRoom {
            streams: None,
            described: Some(room),
        };
        self.rooms.insert(key, known);
    }

    /// Signals for the domain and frames to send back. Message and room documents come from
    /// `frames`, the node's shared decodings; the rest is decoded here.
    pub(crate) fn handle(
        &mut self,
        frame: &Envelope<'_>,
        frames: &DecodedFrames,
        kinds: &moka::sync::Cache<RoomId, RoomKind>,
    ) -> (Vec<RealtimeSignal>, Vec<Value>) {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        match frame.msg.get() {
            Some("ready") => {
                for id in frame.subs.iter().filter_map(Text::get) {
                    if let Some(n) = sub_number(id) {
                        self.pending.remove(&n);
                    }
                }
            }
            Some("nosub") => {
                if let Some(id) = frame.id_text() {
                    if sub_number(&id).is_some_and(|n| self.pending.remove(&n)) {
                        let error = frame.error.map(|e| e.get()).unwrap_or("null");
                        tracing::warn!(sub = %id, error, "upstream subscription refused");
                    }
                }
            }
            Some("changed") => {
                let fields = frame.fields.0.as_ref();
                let event = fields.and_then(|f| f.event_name.get()).unwrap_or_default();
                // Absent args read as none at all.
                let args = fields.and_then(|f| f.args).map_or("[]", |args| args.get());
                match (frame.collection.get(), event) {
                    (Some("stream-room-messages"), "__my_messages__") => {
                        match frames.message(args, message_event) {
                            Some(event) => events.push(event),
                            None => telemetry::frame_ignored(),
                        }
                    }
                    (Some("stream-notify-user"), e) if e.ends_with("/subscriptions-changed") => {
                        frames.count(DecodedKind::Subscription);
                        if let Some((event, reply)) = self.subscription_event(args, kinds) {
                            events.push(event);
                            replies.extend(reply);
                        }
                    }
                    (Some("stream-notify-user"), e) if e.ends_with("/rooms-changed") => {
                        if let Some(room) = frames.room(args, described_room) {
                            self.describe(room);
                        }
                    }
                    (Some("stream-notify-room"), e) => {
                        events.extend(self.room_event(e, args, frames))
                    }
                    _ => telemetry::frame_ignored(),
                }
            }
            Some("error") => {
                let reason = frame.reason.get().unwrap_or_default();
                tracing::warn!(reason, "upstream protocol error");
            }
            _ => {}
        }
        let mut signals: Vec<RealtimeSignal> =
            events.into_iter().map(RealtimeSignal::Event).collect();
        if !self.connected {
            // Hold events until every initial subscription answered, so `Connected` comes first.
            self.buffered.append(&mut signals);
            if self.pending.is_empty() {
                self.connected = true;
                signals = std::iter::once(RealtimeSignal::Connected)
                    .chain(std::mem::take(&mut self.buffered))
                    .collect();
                // The opening subscriptions are all answered and the buffer is drained; neither
                // is needed again, so their capacity goes back for the rest of the session.
                self.pending = HashSet::new();
            }
        }
        (signals, replies)
    }

    fn subscription_event(
        &mut self,
        args: &str,
        kinds: &moka::sync::Cache<RoomId, RoomKind>,
    ) -> Option<(UserEvent, Vec<Value>)> {
        let Args(method, subscription) =
            serde_json::from_str::<Args<Text, Lenient<SubscriptionDoc>>>(args).ok()?;
        let method = match method.get()? {
            "inserted" => SubscriptionChange::Inserted,
            "updated" => SubscriptionChange::Updated,
            "removed" => SubscriptionChange::Removed,
            _ => return ignored_none(),
        };
        let subscription = subscription.0?;
        let rid = subscription.rid.get()?;
        let described = self
            .rooms
            .get(rid)
            .and_then(|room| room.described.as_deref())
            .cloned();
        let room = match mapping::as_subscribed(&subscription, described) {
            Some(room) => room,
            None => {
                // `removed` carries only ids; the kind comes from what we saw before.
                let id = RoomId::parse(rid).ok()?;
                Room {
                    kind: kinds.get(&id).unwrap_or(RoomKind::Group),
                    id,
                    name: subscription.name.get().unwrap_or_default().to_owned(),
                    members: None,
                    unread: 0,
                    last_message: None,
                    updated_at: chrono::Utc::now(),
                }
            }
        };
        // Every message updates every member's subscription; writing the cache only when the
        // kind is new spares a concurrent-cache insert per member and message.
        if kinds.get(&room.id) != Some(room.kind) {
            kinds.insert(room.id.clone(), room.kind);
        }
        let replies = match method {
            SubscriptionChange::Inserted => self.join_room(rid, false),
            SubscriptionChange::Removed => self.leave_room(rid),
            SubscriptionChange::Updated => Vec::new(),
        };
        Some((
            UserEvent::SubscriptionChanged {
                method,
                room: Box::new(room),
            },
            replies,
        ))
    }

    fn room_event(&self, event: &str, args: &str, frames: &DecodedFrames) -> Option<UserEvent> {
        let (rid, kind) = event.split_once('/')?;
        let room_id = RoomId::parse(rid).ok()?;
        match kind {
            "deleteMessage" => {
                frames.count(DecodedKind::Other);
                let Args(deleted, IgnoredAny) =
                    serde_json::from_str::<Args<Lenient<IdDoc>>>(args).ok()?;
                Some(UserEvent::MessageDeleted {
                    room_id,
                    message_id: MessageId::parse(deleted.0?.id.get()?).ok()?,
                })
            }
            "user-activity" => {
                frames.count(DecodedKind::Other);
                let Args(username, activities) =
                    serde_json::from_str::<Args<Text, List<Text>>>(args).ok()?;
                let username = username.get()?;
                if username == self.username {
                    return None;
                }
                let typing = activities
                    .iter()
                    .any(|activity| activity.get() == Some("user-typing"));
                Some(UserEvent::Typing {
                    room_id,
                    username: mapping::host_user(username)?.to_string(),
                    typing,
                })
            }
            _ => ignored_none(),
        }
    }
}

/// The event of a `__my_messages__` frame's args: the message, or its deletion (`rm`).
fn message_event(args: &str) -> Option<UserEvent> {
    let doc = match serde_json::from_str::<Args<Lenient<MessageDoc>>>(args) {
        Ok(Args(doc, IgnoredAny)) => doc.0?,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable upstream message");
            return None;
        }
    };
    if doc.t.get() == Some("rm") {
        return Some(UserEvent::MessageDeleted {
            room_id: RoomId::parse(doc.rid.get()?).ok()?,
            message_id: MessageId::parse(doc.id.get()?).ok()?,
        });
    }
    match mapping::message(&doc) {
        Ok(message) => Some(UserEvent::RoomMessage {
            message: Box::new(message),
        }),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable upstream message");
            None
        }
    }
}

/// The room a `rooms-changed` frame's args describe, as every member sees it; `None` for a
/// room the user left (`removed`), whose document is not needed any more.
fn described_room(args: &str) -> Option<Room> {
    let Args(method, doc) = serde_json::from_str::<Args<Text, Lenient<RoomDoc>>>(args).ok()?;
    if method.get() == Some("removed") {
        return None;
    }
    mapping::room(&doc.0?).ok()
}

fn ignored_none<T>() -> Option<T> {
    telemetry::frame_ignored();
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddp::{inbound, Inbound};
    use crate::decoded_frames::FramesDecoded;

    /// A user's session state with the node-wide parts it is handed, fed frames as text.
    struct Session {
        state: State,
        kinds: moka::sync::Cache<RoomId, RoomKind>,
        frames: Arc<DecodedFrames>,
    }

    impl Session {
        fn new(username: &str, frames: &Arc<DecodedFrames>) -> Self {
            let mut state = State::new(username);
            state.connected = true;
            Self {
                state,
                kinds: moka::sync::Cache::new(10),
                frames: frames.clone(),
            }
        }

        fn feed(&mut self, frame: Value) -> (Vec<RealtimeSignal>, Vec<Value>) {
            let text = frame.to_string();
            match inbound(&text) {
                Inbound::Frame(envelope) => self.state.handle(&envelope, &self.frames, &self.kinds),
                other => panic!("{text} read as {other:?}"),
            }
        }
    }

    fn session() -> Session {
        Session::new("alice", &Arc::default())
    }

    fn changed(collection: &str, event: &str, args: Value) -> Value {
        json!({"msg": "changed", "collection": collection, "id": "id", "fields": {"eventName": event, "args": args}})
    }

    fn posted(id: &str, text: &str) -> Value {
        let msg = json!({"_id": id, "rid": "r1", "msg": text, "ts": {"$date": 1714557600000_i64},
            "u": {"_id": "u", "username": "bob"}});
        changed(
            "stream-room-messages",
            "__my_messages__",
            json!([msg, {"roomParticipant": true, "roomType": "c"}]),
        )
    }

    fn room_changed(uid: &str, method: &str, last_text: &str) -> Value {
        let room = json!({"_id": "r1", "t": "c", "name": "general", "fname": "General",
            "_updatedAt": {"$date": 1714557600000_i64},
            "lastMessage": {"_id": "m1", "rid": "r1", "msg": last_text, "ts": {"$date": 1714557600000_i64}, "u": {"_id": "u", "username": "bob"}}});
        changed(
            "stream-notify-user",
            &format!("{uid}/rooms-changed"),
            json!([method, room]),
        )
    }

    #[test]
    fn connected_comes_before_events_that_beat_the_last_ready() {
        let mut session = session();
        session.state.connected = false;
        let _ = session
            .state
            .sub("stream-room-messages", "__my_messages__".into(), true);
        let (signals, _) = session.feed(posted("m1", "hi"));
        assert!(signals.is_empty());
        let (signals, _) = session.feed(json!({"msg": "ready", "subs": ["s1"]}));
        assert_eq!(signals.len(), 2);
        assert_eq!(signals[0], RealtimeSignal::Connected);
        assert!(
            matches!(&signals[1], RealtimeSignal::Event(UserEvent::RoomMessage { message }) if message.text == "hi")
        );
        let (signals, _) = session.feed(json!({"msg": "ready", "subs": ["s1"]}));
        assert!(signals.is_empty(), "Connected is signalled once");
    }

    #[test]
    fn frames_translate_into_domain_events() {
        let mut st = session();
        let (signals, replies) = st.feed(changed(
            "stream-notify-user",
            "u1/subscriptions-changed",
            json!(["inserted", {"rid": "r2", "t": "p", "name": "team", "unread": 3}]),
        ));
        assert_eq!(replies.len(), 2, "the new room's streams are subscribed");
        match &signals[0] {
            RealtimeSignal::Event(UserEvent::SubscriptionChanged { method, room }) => {
                assert_eq!(
                    (*method, room.kind, room.unread, room.name.as_str()),
                    (SubscriptionChange::Inserted, RoomKind::Group, 3, "team")
                );
            }
            other => panic!("{other:?}"),
        }
        let (signals, replies) = st.feed(changed(
            "stream-notify-user",
            "u1/subscriptions-changed",
            json!(["removed", {"_id": "s", "rid": "r2"}]),
        ));
        assert_eq!(replies.len(), 2, "its streams are unsubscribed");
        assert_eq!(
            replies
                .iter()
                .map(|r| (r["msg"].clone(), r["id"].clone()))
                .collect::<Vec<_>>(),
            [(json!("unsub"), json!("s1")), (json!("unsub"), json!("s2"))]
        );
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::SubscriptionChanged { method: SubscriptionChange::Removed, room }) if room.kind == RoomKind::Group)
        );

        let (signals, _) = st.feed(changed(
            "stream-notify-room",
            "r1/deleteMessage",
            json!([{"_id": "m9"}]),
        ));
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::MessageDeleted { message_id, .. }) if message_id.as_str() == "m9")
        );
        let (signals, _) = st.feed(changed(
            "stream-notify-room",
            "r1/user-activity",
            json!(["bob", ["user-typing"], {}]),
        ));
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::Typing { username, typing: true, .. }) if username == "bob")
        );
        let (signals, _) = st.feed(changed(
            "stream-notify-room",
            "r1/user-activity",
            json!(["bob", [], {}]),
        ));
        assert!(matches!(
            &signals[0],
            RealtimeSignal::Event(UserEvent::Typing { typing: false, .. })
        ));
        let (signals, _) = st.feed(changed(
            "stream-notify-room",
            "r1/user-activity",
            json!(["alice", ["user-typing"], {}]),
        ));
        assert!(signals.is_empty(), "one's own typing is not echoed");
        let (signals, _) = st.feed(changed("stream-unknown", "x", json!([])));
        assert!(signals.is_empty());
        let (signals, _) = st.feed(json!({"msg": "added", "collection": "users"}));
        assert!(signals.is_empty());
        assert_eq!(
            st.frames.decoded(),
            FramesDecoded {
                subscription: 2,
                other: 4,
                ..FramesDecoded::default()
            }
        );
    }

    #[test]
    fn removed_messages_are_deletions_and_garbage_is_no_event() {
        let mut st = session();
        let rm = json!({"_id": "m1", "rid": "r1", "t": "rm", "msg": "", "ts": {"$date": 1}, "u": {"_id": "u", "username": "bob"}});
        let (signals, _) = st.feed(changed(
            "stream-room-messages",
            "__my_messages__",
            json!([rm]),
        ));
        assert_eq!(
            signals,
            [RealtimeSignal::Event(UserEvent::MessageDeleted {
                room_id: RoomId::parse("r1").unwrap(),
                message_id: MessageId::parse("m1").unwrap(),
            })]
        );
        for args in [
            json!([]),
            json!(["text"]),
            json!([{"_id": "m2"}]),
            json!({"_id": "m2"}),
            json!([{"_id": "m3", "rid": "r1", "msg": 5, "ts": {"$date": 1}}]),
        ] {
            let (signals, _) = st.feed(changed(
                "stream-room-messages",
                "__my_messages__",
                args.clone(),
            ));
            assert!(signals.is_empty(), "{args}");
        }
        let (signals, _) = st.feed(
            json!({"msg": "changed", "collection": "stream-room-messages",
            "fields": {"eventName": "__my_messages__"}}),
        );
        assert!(signals.is_empty());
    }

    #[test]
    fn a_message_shared_by_members_is_decoded_once_per_node() {
        let frames = Arc::default();
        let mut members: Vec<Session> = ["alice", "bob", "carol"]
            .into_iter()
            .map(|name| Session::new(name, &frames))
            .collect();
        let mut seen = Vec::new();
        for member in &mut members {
            let (signals, _) = member.feed(posted("m1", "hello \"all\""));
            seen.extend(signals);
        }
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s == &seen[0]));
        assert!(
            matches!(&seen[0], RealtimeSignal::Event(UserEvent::RoomMessage { message }) if message.text == "hello \"all\"")
        );
        assert_eq!(frames.decoded().message, 1);
        // Another message is another decode.
        let (signals, _) = members[0].feed(posted("m2", "again"));
        assert_eq!(signals.len(), 1);
        assert_eq!(frames.decoded().message, 2);
    }

    #[test]
    fn members_share_one_room_document_and_see_it_in_their_subscriptions() {
        let frames = Arc::default();
        let mut alice = Session::new("alice", &frames);
        let mut bob = Session::new("bob", &frames);
        // The same room document reaches every member, each on their own event name.
        alice.feed(room_changed("ua", "updated", "latest"));
        bob.feed(room_changed("ub", "updated", "latest"));
        assert_eq!(frames.decoded().room, 1);
        let a = alice.state.rooms["r1"].described.clone().unwrap();
        let b = bob.state.rooms["r1"].described.clone().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one copy per node, not per member");

        let (signals, replies) = alice.feed(changed(
            "stream-notify-user",
            "ua/subscriptions-changed",
            json!(["updated", {"rid": "r1", "t": "c", "name": "general", "unread": 4}]),
        ));
        assert!(replies.is_empty());
        match &signals[..] {
            [RealtimeSignal::Event(UserEvent::SubscriptionChanged { method, room })] => {
                assert_eq!(*method, SubscriptionChange::Updated);
                assert_eq!((room.name.as_str(), room.unread), ("general", 4));
                assert_eq!(
                    room.last_message.as_ref().map(|m| m.text.as_str()),
                    Some("latest")
                );
            }
            other => panic!("{other:?}"),
        }
        // A newer document replaces the older one; leaving the room forgets it.
        alice.feed(room_changed("ua", "updated", "newer"));
        assert_eq!(frames.decoded().room, 2);
        let newer = alice.state.rooms["r1"].described.clone().unwrap();
        assert_eq!(newer.last_message.as_ref().unwrap().text, "newer");
        alice.feed(changed(
            "stream-notify-user",
            "ua/subscriptions-changed",
            json!(["removed", {"_id": "s", "rid": "r1", "t": "c"}]),
        ));
        assert!(!alice.state.rooms.contains_key("r1"));
        alice.feed(room_changed("ua", "removed", "newer"));
        assert!(!alice.state.rooms.contains_key("r1"));
        assert!(bob.state.rooms.contains_key("r1"));
    }

    #[test]
    fn refused_and_unknown_subscriptions_are_tolerated() {
        let mut st = session();
        st.state.connected = false;
        let _ = st
            .state
            .sub("stream-room-messages", "__my_messages__".into(), true);
        let _ = st
            .state
            .sub("stream-notify-user", "u1/rooms-changed".into(), true);
        let (signals, _) = st.feed(json!({"msg": "ready", "subs": ["s1", "x", 7]}));
        assert!(signals.is_empty(), "s2 is still pending");
        let (signals, _) = st.feed(json!({"msg": "nosub", "id": "s2", "error": {"error": 404}}));
        assert_eq!(signals, [RealtimeSignal::Connected]);
    }
}
