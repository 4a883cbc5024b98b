//! What one node's connections of a user were handed, so that no room message reaches them
//! twice (live, from history, or from the node holding the upstream).

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use crate::ports::MessageStamp;
use crate::sync::lock;

/// Messages remembered per user to drop duplicates between history and live events.
const REMEMBERED: usize = 2048;

/// Messages already delivered, by a digest of id and edit time, oldest forgotten first.
///
/// Digests rather than ids and dates: a user who stays online keeps [`REMEMBERED`] of them,
/// and two copies of an id and a date took about 150 bytes where a digest takes about 25
/// (some 300 KiB against 50 KiB per online user). Two of a user's recent messages share a
/// digest with odds of about one in 10^16; the keys are random per process, so nobody can
/// aim for a collision.
#[derive(Default)]
struct Seen {
    hasher: RandomState,
    keys: HashSet<u64>,
    order: VecDeque<u64>,
}

impl Seen {
    fn digest(&self, stamp: &MessageStamp) -> u64 {
        self.hasher.hash_one(stamp.revision())
    }

    /// Whether `stamp`'s revision is new; remembers it.
    fn first_time(&mut self, stamp: &MessageStamp) -> bool {
        let key = self.digest(stamp);
        if !self.keys.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }
}

/// What one node's connections of a user were handed: the digests of the room messages and
/// the newest message time, where a gap fill starts.
#[derive(Default)]
pub(super) struct Watch {
    seen: Seen,
    pub(super) last_event: Option<DateTime<Utc>>,
}

impl Watch {
    /// Whether the revision of `stamp` is new here; remembers it and its time.
    pub(super) fn note(&mut self, stamp: &MessageStamp) -> bool {
        if !self.seen.first_time(stamp) {
            return false;
        }
        self.last_event = Some(self.last_event.map_or(stamp.at, |last| last.max(stamp.at)));
        true
    }
}

pub(super) fn lock_watch(watch: &Mutex<Watch>) -> MutexGuard<'_, Watch> {
    lock(watch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId, UserId};
    use crate::model::{Message, Sender};

    fn message(id: &str, edited_s: Option<i64>) -> MessageStamp {
        MessageStamp::of(&Message {
            id: MessageId::parse(id).unwrap(),
            room_id: RoomId::parse("room").unwrap(),
            sender: Sender {
                id: UserId::parse("bob").unwrap(),
                username: "bob".into(),
                name: "Bob".into(),
            },
            text: "hi".into(),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            edited_at: edited_s.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
            thread_id: None,
            system: None,
            file: None,
        })
    }

    #[test]
    fn a_message_is_new_once_and_each_edit_is_new_once() {
        let mut seen = Seen::default();
        assert!(seen.first_time(&message("m1", None)));
        assert!(!seen.first_time(&message("m1", None)));
        assert!(seen.first_time(&message("m1", Some(1_700_000_100))));
        assert!(!seen.first_time(&message("m1", Some(1_700_000_100))));
        assert!(seen.first_time(&message("m2", None)));
    }

    #[test]
    fn only_the_last_remembered_messages_are_kept() {
        let mut seen = Seen::default();
        for n in 0..=REMEMBERED {
            assert!(seen.first_time(&message(&format!("m{n}"), None)));
        }
        assert_eq!(
            (seen.keys.len(), seen.order.len()),
            (REMEMBERED, REMEMBERED)
        );
        assert!(
            seen.first_time(&message("m0", None)),
            "the oldest was forgotten"
        );
        assert!(!seen.first_time(&message(&format!("m{REMEMBERED}"), None)));
    }
}
