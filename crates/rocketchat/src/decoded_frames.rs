//! What the node's upstream connections decode once and share.
//!
//! A message posted in a room with N online members reaches the node as N byte-identical
//! `__my_messages__` frames, one per member's DDP connection, and as N `rooms-changed` frames
//! carrying the same room document (Rocket.Chat serialises a stream event once and writes
//! those bytes to every subscriber). [`DecodedFrames`] keys the decoded result by the event's
//! `args` text, so the first connection to read a frame decodes it and the others reuse the
//! result. Per-user frames (`subscriptions-changed`, room events) are decoded by each
//! connection and only counted here.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use imgate_domain::model::Room;
use imgate_domain::UserEvent;

use crate::telemetry;

/// Entries kept per cache. The members of a room read the same frame within moments of each
/// other (the server writes it to their sockets together), so an entry only has to outlive
/// that spread, plus the lag of a connection that is behind. The last 1 024 distinct frames
/// cover that at any plausible node-wide rate (at 100 messages a second, ten seconds) while
/// keeping memory small; a frame read after its entry left is decoded again, nothing worse.
pub(crate) const CAPACITY: usize = 1024;

/// Most `args` text kept per cache, so a burst of long messages cannot hold more than this
/// (1 024 frames of typical size, about 1 KiB each, stay well within it).
const MAX_KEY_BYTES: usize = 4 * 1024 * 1024;

/// What a document was decoded as, the `kind` label of `imgate_upstream_frames_decoded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodedKind {
    /// A `__my_messages__` message document.
    Message,
    /// A `rooms-changed` room document.
    Room,
    /// A `subscriptions-changed` subscription document.
    Subscription,
    /// Room events: `deleteMessage`, `user-activity`.
    Other,
}

impl DecodedKind {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            DecodedKind::Message => "message",
            DecodedKind::Room => "room",
            DecodedKind::Subscription => "subscription",
            DecodedKind::Other => "other",
        }
    }
}

/// How many upstream documents a provider decoded, by kind; the same counts as the metric
/// `imgate_upstream_frames_decoded_total{provider="rocketchat",kind}`, for this provider alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramesDecoded {
    /// Message documents (`__my_messages__`), decoded once per node however many members read
    /// them.
    pub message: u64,
    /// Room documents (`rooms-changed`), likewise shared by the room's members.
    pub room: u64,
    /// Subscription documents (`subscriptions-changed`), one per user and change.
    pub subscription: u64,
    /// Room events (`deleteMessage`, `user-activity`), one per member.
    pub other: u64,
}

/// The node-wide cache of decoded stream events, shared by every user's upstream task.
///
/// Each lookup takes one short lock to find or add the entry; the decoding itself runs outside
/// it, once per entry: connections asking for an entry being decoded wait for that result, a
/// matter of microseconds, and cheaper than decoding the frame again.
pub(crate) struct DecodedFrames {
    /// `__my_messages__` args → the event (`None`: unreadable, ignored).
    messages: Fifo<Option<UserEvent>>,
    /// `rooms-changed` args → the room as its document describes it (`None`: unreadable).
    rooms: Fifo<Option<Arc<Room>>>,
    decoded: [AtomicU64; 4],
}

impl Default for DecodedFrames {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl DecodedFrames {
    /// A cache of the last `capacity` distinct frames of each kind.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            messages: Fifo::new(capacity),
            rooms: Fifo::new(capacity),
            decoded: Default::default(),
        }
    }

    /// The event of the `__my_messages__` frame with these `args`, decoding them with `decode`
    /// unless an equal `args` text was decoded already.
    pub(crate) fn message(
        &self,
        args: &str,
        decode: impl FnOnce(&str) -> Option<UserEvent>,
    ) -> Option<UserEvent> {
        let cell = self.messages.cell(args);
        cell.get_or_init(|| {
            self.count(DecodedKind::Message);
            decode(args)
        })
        .clone()
    }

    /// The room document of the `rooms-changed` frame with these `args`, shared with every
    /// other connection that reads an equal `args` text.
    pub(crate) fn room(
        &self,
        args: &str,
        decode: impl FnOnce(&str) -> Option<Room>,
    ) -> Option<Arc<Room>> {
        let cell = self.rooms.cell(args);
        cell.get_or_init(|| {
            self.count(DecodedKind::Room);
            decode(args).map(Arc::new)
        })
        .clone()
    }

    /// Counts one decoded document.
    pub(crate) fn count(&self, kind: DecodedKind) {
        let slot = match kind {
            DecodedKind::Message => 0,
            DecodedKind::Room => 1,
            DecodedKind::Subscription => 2,
            DecodedKind::Other => 3,
        };
        self.decoded[slot].fetch_add(1, Ordering::Relaxed);
        telemetry::document_decoded(kind);
    }

    /// The documents decoded so far.
    pub(crate) fn decoded(&self) -> FramesDecoded {
        let [message, room, subscription, other] =
            self.decoded.each_ref().map(|n| n.load(Ordering::Relaxed));
        FramesDecoded {
            message,
            room,
            subscription,
            other,
        }
    }
}

/// A bounded map from frame text to a once-computed value; the oldest entry leaves first.
struct Fifo<V> {
    capacity: usize,
    inner: Mutex<FifoInner<V>>,
}

struct FifoInner<V> {
    // The full text is the key, so only equal frames share a value; the hash only finds it.
    map: HashMap<Arc<str>, Arc<OnceLock<V>>>,
    order: VecDeque<Arc<str>>,
    key_bytes: usize,
}

impl<V> Fifo<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(FifoInner {
                map: HashMap::new(),
                order: VecDeque::new(),
                key_bytes: 0,
            }),
        }
    }

    /// The entry for `key`, added empty if there is none.
    fn cell(&self, key: &str) -> Arc<OnceLock<V>> {
        // Nothing panics while the lock is held, and the maps stay consistent if it did.
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cell) = inner.map.get(key) {
            return cell.clone();
        }
        let cell = Arc::new(OnceLock::new());
        let key: Arc<str> = Arc::from(key);
        inner.key_bytes += key.len();
        inner.map.insert(key.clone(), cell.clone());
        inner.order.push_back(key);
        while inner.order.len() > self.capacity
            || (inner.key_bytes > MAX_KEY_BYTES && inner.order.len() > 1)
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.key_bytes -= oldest.len();
            inner.map.remove(&oldest);
        }
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::model::RoomKind;
    use imgate_domain::{MessageId, RoomId};

    fn deleted(id: &str) -> Option<UserEvent> {
        Some(UserEvent::MessageDeleted {
            room_id: RoomId::parse("r").unwrap(),
            message_id: MessageId::parse(id).unwrap(),
        })
    }

    #[test]
    fn equal_frames_decode_once_and_only_equal_frames_hit() {
        let cache = DecodedFrames::new(8);
        let decode = |args: &str| deleted(args.trim().trim_matches(|c| c == '[' || c == ']'));
        for _ in 0..5 {
            assert_eq!(cache.message("[m1]", decode), deleted("m1"));
        }
        assert_eq!(cache.decoded().message, 1);
        // A frame that differs in one byte is another frame.
        assert_eq!(cache.message("[m2]", decode), deleted("m2"));
        assert_eq!(cache.message("[m1] ", decode), deleted("m1"));
        assert_eq!(cache.decoded().message, 3);
        let unreadable = |_: &str| None;
        assert_eq!(cache.message("[x]", unreadable), None);
        assert_eq!(cache.message("[x]", decode), None, "the outcome is kept");
        assert_eq!(cache.decoded().message, 4);
    }

    #[test]
    fn room_documents_are_shared_not_copied() {
        let cache = DecodedFrames::new(8);
        let decode = |_: &str| {
            Some(Room {
                id: RoomId::parse("r").unwrap(),
                kind: RoomKind::Channel,
                name: "general".into(),
                members: None,
                unread: 0,
                last_message: None,
                updated_at: chrono::Utc::now(),
            })
        };
        let a = cache.room(r#"["updated",{"_id":"r"}]"#, decode).unwrap();
        let b = cache.room(r#"["updated",{"_id":"r"}]"#, decode).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            cache.decoded(),
            FramesDecoded {
                room: 1,
                ..FramesDecoded::default()
            }
        );
    }

    #[test]
    fn the_oldest_entries_leave_first() {
        let cache = DecodedFrames::new(2);
        let decode = |args: &str| deleted(args);
        for args in ["a", "b", "c", "b", "c", "a"] {
            cache.message(args, decode);
        }
        // `a` left when `c` came, so it was decoded again; `b` and `c` were still there.
        assert_eq!(cache.decoded().message, 4);
    }

    #[test]
    fn concurrent_readers_of_one_frame_decode_it_once() {
        let cache = Arc::new(DecodedFrames::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    cache.message("m", |args| {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        deleted(args)
                    })
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), deleted("m"));
        }
        assert_eq!(cache.decoded().message, 1);
    }
}
