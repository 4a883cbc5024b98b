//! Open DDP connections, their stream subscriptions, and event fan-out.
//!
//! Lock order: the store lock may be held while taking the hub lock, never the other way
//! round, so the hub never calls into the store.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

/// What a connection task is asked to write.
#[derive(Debug)]
pub enum Outbound {
    /// One DDP frame, already serialised (shared by every receiver of the same event).
    Frame(Arc<str>),
    /// Close the socket with this code and reason.
    Close(u16, String),
}

/// One open or closed DDP connection, for tests that count upstream connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Sim-wide connection number, in opening order.
    pub connection_id: u64,
    /// The user id the socket logged in as, if it did.
    pub user_id: Option<String>,
    /// The username it logged in as, if it did.
    pub username: Option<String>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// When the socket was accepted.
    pub opened_at: DateTime<Utc>,
    /// When it closed; `None` while open.
    pub closed_at: Option<DateTime<Utc>>,
}

/// A stream event ready for delivery.
#[derive(Debug)]
pub struct Event {
    /// Full collection name, e.g. `stream-notify-user`.
    pub stream: &'static str,
    /// The event name subscribers asked for, e.g. `<uid>/rooms-changed`.
    pub event_name: String,
    /// The `args` array (EJSON dates), serialised once and shared by every receiver.
    pub args: Arc<str>,
    /// When set, only sockets logged in as one of these users receive it (`__my_messages__`).
    pub audience: Option<Arc<HashSet<String>>>,
}

struct ConnEntry {
    user_id: Option<String>,
    token_hash: Option<String>,
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Notify>,
    /// sub id -> index key.
    subs: HashMap<String, String>,
    log_index: usize,
}

#[derive(Default)]
struct HubInner {
    conns: HashMap<u64, ConnEntry>,
    /// `stream\0eventName` -> connection -> number of subs of that connection on it.
    index: HashMap<String, HashMap<u64, u32>>,
    by_user: HashMap<String, HashSet<u64>>,
    log: Vec<ConnectionRecord>,
}

/// The registry of DDP connections.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
    next_id: AtomicU64,
}

/// The index key of one stream event name.
pub fn key(stream: &str, event_name: &str) -> String {
    let mut k = String::with_capacity(stream.len() + event_name.len() + 1);
    k.push_str(stream);
    k.push('\0');
    k.push_str(event_name);
    k
}

/// Serialises a `changed` frame around already-serialised `args`.
///
/// Built by concatenation so a room document fanned out to hundreds of members is
/// serialised once, not once per member.
pub fn changed_frame(stream: &str, event_name: &str, args: &str) -> String {
    let event_name = Value::String(event_name.to_string()).to_string();
    let stream = Value::String(stream.to_string()).to_string();
    let mut frame = String::with_capacity(args.len() + event_name.len() + stream.len() + 64);
    frame.push_str(r#"{"msg":"changed","collection":"#);
    frame.push_str(&stream);
    frame.push_str(r#","id":"id","fields":{"eventName":"#);
    frame.push_str(&event_name);
    frame.push_str(r#","args":"#);
    frame.push_str(args);
    frame.push_str("}}");
    frame
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubInner> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new socket; returns its id.
    pub fn open(
        &self,
        tx: mpsc::Sender<Outbound>,
        kill: Arc<Notify>,
        peer: Option<SocketAddr>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut inner = self.lock();
        let log_index = inner.log.len();
        inner.log.push(ConnectionRecord {
            connection_id: id,
            user_id: None,
            username: None,
            peer,
            opened_at: Utc::now(),
            closed_at: None,
        });
        inner.conns.insert(
            id,
            ConnEntry {
                user_id: None,
                token_hash: None,
                tx,
                kill,
                subs: HashMap::new(),
                log_index,
            },
        );
        id
    }

    /// Records the login of a socket.
    pub fn set_user(&self, conn: u64, user_id: &str, username: &str, token_hash: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.conns.get_mut(&conn) else {
            return;
        };
        let previous = entry.user_id.replace(user_id.to_string());
        entry.token_hash = Some(token_hash.to_string());
        let log_index = entry.log_index;
        if let Some(prev) = previous {
            if let Some(set) = inner.by_user.get_mut(&prev) {
                set.remove(&conn);
            }
        }
        inner
            .by_user
            .entry(user_id.to_string())
            .or_default()
            .insert(conn);
        let rec = &mut inner.log[log_index];
        rec.user_id = Some(user_id.to_string());
        rec.username = Some(username.to_string());
    }

    /// Forgets the login of a socket (DDP `logout`), dropping its subscriptions.
    pub fn clear_user(&self, conn: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.conns.get_mut(&conn) else {
            return;
        };
        let user = entry.user_id.take();
        entry.token_hash = None;
        let subs: Vec<String> = entry.subs.drain().map(|(_, k)| k).collect();
        for k in subs {
            unindex(&mut inner.index, &k, conn);
        }
        if let Some(user) = user {
            if let Some(set) = inner.by_user.get_mut(&user) {
                set.remove(&conn);
            }
        }
    }

    /// Unregisters a socket and stamps its log record.
    pub fn close(&self, conn: u64) {
        let mut inner = self.lock();
        let Some(entry) = inner.conns.remove(&conn) else {
            return;
        };
        for k in entry.subs.values() {
            unindex(&mut inner.index, k, conn);
        }
        if let Some(user) = &entry.user_id {
            if let Some(set) = inner.by_user.get_mut(user) {
                set.remove(&conn);
                if set.is_empty() {
                    inner.by_user.remove(user);
                }
            }
        }
        inner.log[entry.log_index].closed_at = Some(Utc::now());
    }

    /// Adds a stream subscription of a socket.
    pub fn subscribe(&self, conn: u64, sub_id: &str, stream: &str, event_name: &str) {
        let k = key(stream, event_name);
        let mut inner = self.lock();
        let Some(entry) = inner.conns.get_mut(&conn) else {
            return;
        };
        if let Some(old) = entry.subs.insert(sub_id.to_string(), k.clone()) {
            unindex(&mut inner.index, &old, conn);
        }
        *inner.index.entry(k).or_default().entry(conn).or_insert(0) += 1;
    }

    /// Removes a stream subscription; returns whether it existed.
    pub fn unsubscribe(&self, conn: u64, sub_id: &str) -> bool {
        let mut inner = self.lock();
        let Some(entry) = inner.conns.get_mut(&conn) else {
            return false;
        };
        match entry.subs.remove(sub_id) {
            Some(k) => {
                unindex(&mut inner.index, &k, conn);
                true
            }
            None => false,
        }
    }

    /// Whether any socket listens to this stream event (lets the store skip rendering).
    pub fn wants(&self, stream: &str, event_name: &str) -> bool {
        self.lock().index.contains_key(&key(stream, event_name))
    }

    /// Keeps the event names some socket listens to, under one lock (fan-out to big rooms).
    pub fn filter_wanted(&self, stream: &str, names: Vec<String>) -> Vec<String> {
        let inner = self.lock();
        names
            .into_iter()
            .filter(|n| inner.index.contains_key(&key(stream, n)))
            .collect()
    }

    /// Delivers events to every subscribed socket; a socket whose queue is full is closed.
    pub fn deliver(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let inner = self.lock();
        for ev in events {
            let Some(conns) = inner.index.get(&key(ev.stream, &ev.event_name)) else {
                continue;
            };
            let frame: Arc<str> = changed_frame(ev.stream, &ev.event_name, &ev.args).into();
            for conn in conns.keys() {
                let Some(entry) = inner.conns.get(conn) else {
                    continue;
                };
                if let Some(aud) = &ev.audience {
                    match &entry.user_id {
                        Some(u) if aud.contains(u) => {}
                        _ => continue,
                    }
                }
                if entry.tx.try_send(Outbound::Frame(frame.clone())).is_err() {
                    // A consumer that cannot keep up is cut off rather than buffered forever.
                    tracing::warn!(connection_id = conn, "ddp socket queue full, closing");
                    entry.kill.notify_one();
                }
            }
        }
    }

    /// Drops every socket of a user without a close frame; returns how many.
    pub fn kill_user(&self, user_id: &str) -> usize {
        let inner = self.lock();
        let Some(conns) = inner.by_user.get(user_id) else {
            return 0;
        };
        for c in conns {
            if let Some(e) = inner.conns.get(c) {
                e.kill.notify_one();
            }
        }
        conns.len()
    }

    /// Closes sockets logged in with one of these token hashes (their token was removed).
    pub fn close_tokens(&self, hashes: &[String]) {
        let inner = self.lock();
        for e in inner.conns.values() {
            if e.token_hash.as_ref().is_some_and(|h| hashes.contains(h))
                && e.tx
                    .try_send(Outbound::Close(1000, "token removed".into()))
                    .is_err()
            {
                e.kill.notify_one();
            }
        }
    }

    /// Closes every socket.
    pub fn close_all(&self) {
        let inner = self.lock();
        for e in inner.conns.values() {
            e.kill.notify_one();
        }
    }

    /// Number of open, logged-in sockets of a user.
    pub fn open_count(&self, user_id: &str) -> usize {
        self.lock().by_user.get(user_id).map_or(0, HashSet::len)
    }

    /// Number of open sockets, logged in or not.
    pub fn open_total(&self) -> usize {
        self.lock().conns.len()
    }

    /// A copy of the connection log.
    pub fn log(&self) -> Vec<ConnectionRecord> {
        self.lock().log.clone()
    }
}

fn unindex(index: &mut HashMap<String, HashMap<u64, u32>>, k: &str, conn: u64) {
    if let Some(conns) = index.get_mut(k) {
        if let Some(n) = conns.get_mut(&conn) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&conn);
            }
        }
        if conns.is_empty() {
            index.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(name: &str) -> Event {
        Event {
            stream: "stream-room-messages",
            event_name: name.into(),
            args: Arc::from("[1]"),
            audience: None,
        }
    }

    #[tokio::test]
    async fn delivers_only_to_subscribers_and_unsub_stops_it() {
        let hub = Hub::default();
        let (tx, mut rx) = mpsc::channel(4);
        let c = hub.open(tx, Arc::new(Notify::new()), None);
        hub.subscribe(c, "s1", "stream-room-messages", "R1");
        assert!(hub.wants("stream-room-messages", "R1"));
        hub.deliver(vec![ev("R1"), ev("R2")]);
        assert!(matches!(rx.try_recv(), Ok(Outbound::Frame(f)) if f.contains("\"R1\"")));
        assert!(rx.try_recv().is_err());
        assert!(hub.unsubscribe(c, "s1"));
        assert!(!hub.wants("stream-room-messages", "R1"));
    }

    #[test]
    fn changed_frame_is_valid_json() {
        let frame = changed_frame(
            "stream-notify-user",
            "U1/rooms-changed",
            r#"["updated",{"a":"\""}]"#,
        );
        let parsed: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            parsed,
            json!({"msg": "changed", "collection": "stream-notify-user", "id": "id",
                   "fields": {"eventName": "U1/rooms-changed", "args": ["updated", {"a": "\""}]}})
        );
    }

    #[tokio::test]
    async fn counts_and_logs_per_user() {
        let hub = Hub::default();
        let (tx, _rx) = mpsc::channel(4);
        let c = hub.open(tx, Arc::new(Notify::new()), None);
        hub.set_user(c, "U1", "alice", "h");
        assert_eq!(hub.open_count("U1"), 1);
        hub.close(c);
        assert_eq!(hub.open_count("U1"), 0);
        let log = hub.log();
        assert_eq!(log[0].username.as_deref(), Some("alice"));
        assert!(log[0].closed_at.is_some());
    }
}
