//! One user's upstream realtime connection over DDP (wire reference §5): log in by resume
//! token, subscribe the user's streams, translate frames into domain events, answer and send
//! pings, and reconnect with capped, jittered backoff until the stream is dropped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{ProviderSession, Room, RoomKind};
use imgate_domain::ports::{ProviderError, RealtimeSignal, SessionSource};
use imgate_domain::{MessageId, RoomId, UserEvent, UserId};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ddp::Ddp;
use crate::mapping::{self, text};
use crate::rest::Rest;

/// Timing of the upstream connection.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming {
    /// Ping the server after this long without a frame from it.
    pub ping_after: Duration,
    /// Give the connection up after this long without a frame.
    pub dead_after: Duration,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for UpstreamTiming {
    fn default() -> Self {
        Self {
            ping_after: Duration::from_secs(20),
            dead_after: Duration::from_secs(45),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Signals buffered per user between the socket and the domain.
const SIGNAL_BUFFER: usize = 1024;

/// Why one DDP session ended.
enum Ended {
    /// The domain dropped the stream: stop for good.
    Dropped,
    /// The connection broke: reconnect.
    Lost(String),
    /// The user cannot be logged in any more: end the stream.
    Fatal(ProviderError),
}

pub(crate) struct Upstream {
    pub rest: Rest,
    pub url: String,
    pub call_timeout: Duration,
    pub timing: UpstreamTiming,
    pub user: UserId,
    pub sessions: Arc<dyn SessionSource>,
    pub room_kinds: moka::sync::Cache<RoomId, RoomKind>,
}

impl Upstream {
    /// Starts the connection task; the returned receiver is the stream of signals.
    pub(crate) fn spawn(self) -> mpsc::Receiver<RealtimeSignal> {
        let (tx, rx) = mpsc::channel(SIGNAL_BUFFER);
        tokio::spawn(self.run(tx));
        rx
    }

    async fn run(self, tx: mpsc::Sender<RealtimeSignal>) {
        let mut backoff = self.timing.backoff_min;
        loop {
            let started = Instant::now();
            metrics::gauge!("imgate_upstream_connections", "provider" => "rocketchat")
                .increment(1.0);
            let ended = self.session(&tx).await;
            metrics::gauge!("imgate_upstream_connections", "provider" => "rocketchat")
                .decrement(1.0);
            match ended {
                Ended::Dropped => return,
                Ended::Fatal(error) => {
                    tracing::warn!(user = %self.user, error = %error, "upstream gives up: the user cannot log in");
                    return;
                }
                Ended::Lost(reason) => {
                    metrics::counter!("imgate_upstream_reconnects_total", "provider" => "rocketchat").increment(1);
                    tracing::info!(user = %self.user, reason = %reason, "upstream lost, reconnecting");
                }
            }
            // A connection that lived a while was healthy: start the backoff over.
            if started.elapsed() > self.timing.dead_after {
                backoff = self.timing.backoff_min;
            }
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(self.timing.backoff_max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
            }
        }
    }

    async fn login(&self, ddp: &mut Ddp) -> Result<ProviderSession, Ended> {
        let session = self
            .sessions
            .current()
            .await
            .map_err(classify_session_error)?;
        match ddp.login(session.token.expose()).await {
            Ok(_) => Ok(session),
            Err(ProviderError::SessionExpired) => {
                let fresh = self
                    .sessions
                    .renew(&session)
                    .await
                    .map_err(classify_session_error)?;
                ddp.login(fresh.token.expose())
                    .await
                    .map_err(|err| match err {
                        ProviderError::SessionExpired => Ended::Fatal(err),
                        other => Ended::Lost(other.to_string()),
                    })?;
                Ok(fresh)
            }
            Err(err) => Err(Ended::Lost(err.to_string())),
        }
    }

    /// One DDP session, from connect to loss.
    async fn session(&self, tx: &mpsc::Sender<RealtimeSignal>) -> Ended {
        // Boxed, like `start` below: the task keeps the size of its largest state for as
        // long as it lives, and connecting is a brief state of a long-lived task.
        let mut ddp = match Box::pin(Ddp::open(&self.url, self.call_timeout)).await {
            Ok(ddp) => ddp,
            Err(err) => return Ended::Lost(err.to_string()),
        };
        let ended = self.serve(&mut ddp, tx).await;
        ddp.close().await;
        ended
    }

    async fn serve(&self, ddp: &mut Ddp, tx: &mpsc::Sender<RealtimeSignal>) -> Ended {
        // Boxed so that the idle task is only as large as the loop below: the login and the
        // REST calls of the start are most of an upstream's future, and their answers would
        // otherwise stay in it for as long as the user is online.
        let mut state = match Box::pin(self.start(ddp)).await {
            Ok(state) => state,
            Err(ended) => return ended,
        };
        let mut last_frame = Instant::now();
        let mut pinged = false;
        loop {
            let wait = if pinged {
                self.timing.dead_after
            } else {
                self.timing.ping_after
            };
            let received = tokio::select! {
                received = ddp.recv(wait.saturating_sub(last_frame.elapsed())) => received,
                _ = tx.closed() => return Ended::Dropped,
            };
            let frame = match received {
                Err(err) => return Ended::Lost(err.to_string()),
                Ok(None) if pinged || last_frame.elapsed() >= self.timing.dead_after => {
                    return Ended::Lost("the server went silent".into())
                }
                Ok(None) => {
                    pinged = true;
                    if let Err(err) = ddp.send(json!({"msg": "ping", "id": "keepalive"})).await {
                        return Ended::Lost(err.to_string());
                    }
                    continue;
                }
                Ok(Some(frame)) => frame,
            };
            last_frame = Instant::now();
            pinged = false;
            let (signals, replies) = state.handle(frame, &self.room_kinds);
            for reply in replies {
                if let Err(err) = ddp.send(reply).await {
                    return Ended::Lost(err.to_string());
                }
            }
            for signal in signals {
                if tx.send(signal).await.is_err() {
                    return Ended::Dropped;
                }
            }
        }
    }

    /// Logs in and subscribes to the user's streams and rooms.
    async fn start(&self, ddp: &mut Ddp) -> Result<State, Ended> {
        let session = self.login(ddp).await?;
        let (me, subscriptions) = tokio::try_join!(
            self.rest.get("me", Some(&session), &[]),
            self.rest.get("subscriptions.get", Some(&session), &[]),
        )
        .map_err(|err| Ended::Lost(err.to_string()))?;
        let (state, frames) = State::start(
            text(&me, "username").unwrap_or_default(),
            session.user_id.as_str(),
            &subscriptions,
        );
        for frame in frames {
            ddp.send(frame)
                .await
                .map_err(|err| Ended::Lost(err.to_string()))?;
        }
        Ok(state)
    }
}

fn classify_session_error(err: ProviderError) -> Ended {
    match err {
        ProviderError::InvalidCredentials
        | ProviderError::Forbidden(_)
        | ProviderError::NotFound(_) => Ended::Fatal(err),
        other => Ended::Lost(other.to_string()),
    }
}

/// Up to a quarter more or less, so that many users do not reconnect in step.
fn jitter(base: Duration) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    );
    let spread = base.as_millis() as u64 / 2;
    let offset = if spread == 0 { 0 } else { nanos % spread };
    base - base / 4 + Duration::from_millis(offset)
}

/// What one DDP session knows.
pub(crate) struct State {
    username: String,
    rooms: HashSet<String>,
    // The newest room document per room (from `rooms-changed`), to give subscription events
    // their last message.
    room_docs: HashMap<String, Value>,
    next_sub: u64,
    pending: HashSet<String>,
    room_subs: HashMap<String, Vec<String>>,
    buffered: Vec<RealtimeSignal>,
    connected: bool,
}

impl State {
    fn new(username: &str) -> Self {
        Self {
            username: username.to_owned(),
            rooms: HashSet::new(),
            room_docs: HashMap::new(),
            next_sub: 0,
            pending: HashSet::new(),
            room_subs: HashMap::new(),
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

    fn sub(&mut self, stream: &str, event: String, initial: bool) -> Value {
        self.next_sub += 1;
        let id = format!("s{}", self.next_sub);
        if initial {
            self.pending.insert(id.clone());
        }
        json!({"msg": "sub", "id": id, "name": stream, "params": [event, {"useCollection": false, "args": []}]})
    }

    fn join_room(&mut self, rid: &str, initial: bool) -> Vec<Value> {
        if !self.rooms.insert(rid.to_owned()) {
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
        let ids = frames
            .iter()
            .filter_map(|f| text(f, "id").map(str::to_owned))
            .collect();
        self.room_subs.insert(rid.to_owned(), ids);
        frames
    }

    fn leave_room(&mut self, rid: &str) -> Vec<Value> {
        self.rooms.remove(rid);
        self.room_docs.remove(rid);
        self.room_subs
            .remove(rid)
            .unwrap_or_default()
            .into_iter()
            .map(|id| json!({"msg": "unsub", "id": id}))
            .collect()
    }

    /// Signals for the domain and frames to send back. Takes the frame, so the room document
    /// of a `rooms-changed` (one per message for every member) is kept without a deep copy.
    pub(crate) fn handle(
        &mut self,
        mut frame: Value,
        kinds: &moka::sync::Cache<RoomId, RoomKind>,
    ) -> (Vec<RealtimeSignal>, Vec<Value>) {
        let mut replies = Vec::new();
        let mut events = Vec::new();
        let mut room_doc = false;
        let frame_ref = &frame;
        match text(frame_ref, "msg") {
            Some("ready") => {
                for id in frame_ref
                    .get("subs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    self.pending.remove(id);
                }
            }
            Some("nosub") => {
                if let Some(id) = text(frame_ref, "id") {
                    if self.pending.remove(id) {
                        let error = frame_ref.get("error").cloned().unwrap_or_default();
                        tracing::warn!(sub = id, error = %error, "upstream subscription refused");
                    }
                }
            }
            Some("changed") => {
                let fields = frame_ref.get("fields").unwrap_or(&Value::Null);
                let event = text(fields, "eventName").unwrap_or_default();
                let args = fields
                    .get("args")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                match (text(frame_ref, "collection"), event) {
                    (Some("stream-room-messages"), "__my_messages__") => {
                        events.extend(message_event(args))
                    }
                    (Some("stream-notify-user"), e) if e.ends_with("/subscriptions-changed") => {
                        if let Some((event, reply)) = self.subscription_event(args, kinds) {
                            events.push(event);
                            replies.extend(reply);
                        }
                    }
                    (Some("stream-notify-user"), e) if e.ends_with("/rooms-changed") => {
                        room_doc = true
                    }
                    (Some("stream-notify-room"), e) => events.extend(self.room_event(e, args)),
                    _ => ignored(),
                }
            }
            Some("error") => tracing::warn!(frame = %frame_ref, "upstream protocol error"),
            _ => {}
        }
        if room_doc {
            let room = frame.pointer_mut("/fields/args/1").map(Value::take);
            if let Some(room) = room.filter(Value::is_object) {
                if let Some(rid) = text(&room, "_id").map(str::to_owned) {
                    self.room_docs.insert(rid, room);
                }
            }
        }
        let mut signals: Vec<RealtimeSignal> =
            events.into_iter().map(RealtimeSignal::Event).collect();
        if !self.connected {
            // Hold events until every initial subscription answered, so `Connected` comes first.
            self.buffered.append(&mut signals);
            if self.pending.is_empty() {
                self.connected = true;
                signals = std::iter::once(RealtimeSignal::Connected)
                    .chain(self.buffered.drain(..))
                    .collect();
            }
        }
        (signals, replies)
    }

    fn subscription_event(
        &mut self,
        args: &[Value],
        kinds: &moka::sync::Cache<RoomId, RoomKind>,
    ) -> Option<(UserEvent, Vec<Value>)> {
        let method = match args.first().and_then(Value::as_str)? {
            "inserted" => SubscriptionChange::Inserted,
            "updated" => SubscriptionChange::Updated,
            "removed" => SubscriptionChange::Removed,
            _ => return ignored_none(),
        };
        let subscription = args.get(1)?;
        let rid = text(subscription, "rid")?.to_owned();
        let room = match mapping::subscribed_room(subscription, self.room_docs.get(&rid)) {
            Some(room) => room,
            None => {
                // `removed` carries only ids; the kind comes from what we saw before.
                let id = RoomId::parse(rid.as_str()).ok()?;
                Room {
                    kind: kinds.get(&id).unwrap_or(RoomKind::Group),
                    id,
                    name: text(subscription, "name").unwrap_or_default().to_owned(),
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
            SubscriptionChange::Inserted => self.join_room(&rid, false),
            SubscriptionChange::Removed => self.leave_room(&rid),
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

    fn room_event(&self, event: &str, args: &[Value]) -> Option<UserEvent> {
        let (rid, kind) = event.split_once('/')?;
        let room_id = RoomId::parse(rid).ok()?;
        match kind {
            "deleteMessage" => Some(UserEvent::MessageDeleted {
                room_id,
                message_id: MessageId::parse(text(args.first()?, "_id")?).ok()?,
            }),
            "user-activity" => {
                let username = args.first()?.as_str()?;
                if username == self.username {
                    return None;
                }
                let typing = args
                    .get(1)
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == "user-typing"));
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

fn message_event(args: &[Value]) -> Option<UserEvent> {
    let doc = args.first()?;
    if text(doc, "t") == Some("rm") {
        return Some(UserEvent::MessageDeleted {
            room_id: RoomId::parse(text(doc, "rid")?).ok()?,
            message_id: MessageId::parse(text(doc, "_id")?).ok()?,
        });
    }
    match mapping::message(doc) {
        Ok(message) => Some(UserEvent::RoomMessage {
            message: Box::new(message),
        }),
        Err(err) => {
            tracing::warn!(error = %err, "unreadable upstream message");
            ignored_none()
        }
    }
}

fn ignored() {
    metrics::counter!("imgate_upstream_frames_ignored_total", "provider" => "rocketchat")
        .increment(1);
}

fn ignored_none<T>() -> Option<T> {
    ignored();
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::new("alice")
    }

    fn changed(collection: &str, event: &str, args: Value) -> Value {
        json!({"msg": "changed", "collection": collection, "id": "id", "fields": {"eventName": event, "args": args}})
    }

    #[test]
    fn connected_comes_before_events_that_beat_the_last_ready() {
        let kinds = moka::sync::Cache::new(10);
        let mut st = state();
        let _ = st.sub("stream-room-messages", "__my_messages__".into(), true);
        let msg = json!({"_id": "m1", "rid": "r1", "msg": "hi", "ts": {"$date": 1}, "u": {"_id": "u", "username": "bob"}});
        let (signals, _) = st.handle(
            changed("stream-room-messages", "__my_messages__", json!([msg])),
            &kinds,
        );
        assert!(signals.is_empty());
        let (signals, _) = st.handle(json!({"msg": "ready", "subs": ["s1"]}), &kinds);
        assert_eq!(signals.len(), 2);
        assert_eq!(signals[0], RealtimeSignal::Connected);
        assert!(
            matches!(&signals[1], RealtimeSignal::Event(UserEvent::RoomMessage { message }) if message.text == "hi")
        );
    }

    #[test]
    fn frames_translate_into_domain_events() {
        let kinds = moka::sync::Cache::new(10);
        let mut st = state();
        st.connected = true;
        let (signals, replies) = st.handle(
            changed(
                "stream-notify-user",
                "u1/subscriptions-changed",
                json!(["inserted", {"rid": "r2", "t": "p", "name": "team", "unread": 3}]),
            ),
            &kinds,
        );
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
        let (signals, replies) = st.handle(
            changed(
                "stream-notify-user",
                "u1/subscriptions-changed",
                json!(["removed", {"_id": "s", "rid": "r2"}]),
            ),
            &kinds,
        );
        assert_eq!(replies.len(), 2, "its streams are unsubscribed");
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::SubscriptionChanged { method: SubscriptionChange::Removed, room }) if room.kind == RoomKind::Group)
        );

        let (signals, _) = st.handle(
            changed(
                "stream-notify-room",
                "r1/deleteMessage",
                json!([{"_id": "m9"}]),
            ),
            &kinds,
        );
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::MessageDeleted { message_id, .. }) if message_id.as_str() == "m9")
        );
        let (signals, _) = st.handle(
            changed(
                "stream-notify-room",
                "r1/user-activity",
                json!(["bob", ["user-typing"], {}]),
            ),
            &kinds,
        );
        assert!(
            matches!(&signals[0], RealtimeSignal::Event(UserEvent::Typing { username, typing: true, .. }) if username == "bob")
        );
        let (signals, _) = st.handle(
            changed(
                "stream-notify-room",
                "r1/user-activity",
                json!(["alice", ["user-typing"], {}]),
            ),
            &kinds,
        );
        assert!(signals.is_empty(), "one's own typing is not echoed");
        let (signals, _) = st.handle(changed("stream-unknown", "x", json!([])), &kinds);
        assert!(signals.is_empty());
        let (signals, _) = st.handle(json!({"msg": "added", "collection": "users"}), &kinds);
        assert!(signals.is_empty());
    }
}
