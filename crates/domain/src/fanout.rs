//! The bookkeeping of local subscribers per user, shared by every `EventPublisher` adapter:
//! an in-process publisher is just this, a backplane adapter feeds it from the wire.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::mpsc;

use crate::event::UserEvent;
use crate::ids::UserId;
use crate::ports::EventSubscription;

struct Subscriber {
    id: u64,
    events: mpsc::Sender<Arc<UserEvent>>,
    lagged: Arc<AtomicBool>,
}

/// Room messages remembered per user to drop repeats.
const RECENT_MESSAGES: usize = 64;

/// One user's local subscribers, and the room messages they were handed last.
#[derive(Default)]
struct Feed {
    subscribers: Vec<Subscriber>,
    /// Digests of [`crate::model::Message::revision`], oldest first. A publish that timed out may still
    /// have gone through, and its retry then repeats it; a takeover of the upstream by
    /// another node may repeat the last messages too. A scan of a few dozen integers is
    /// cheaper than a set, and empty until the first message.
    recent: VecDeque<u64>,
}

impl Feed {
    /// Whether the message of `digest` is new to this user's connections; remembers it.
    fn first_time(&mut self, digest: u64) -> bool {
        if self.recent.contains(&digest) {
            return false;
        }
        if self.recent.len() == RECENT_MESSAGES {
            self.recent.pop_front();
        }
        self.recent.push_back(digest);
        true
    }
}

type Registry = Mutex<HashMap<UserId, Feed>>;

/// Local subscribers per user, each with a bounded buffer.
///
/// The lock is a `std` mutex: it is held only to copy or edit a short list, never across an
/// `.await`, so a blocking lock is cheaper than an async one.
pub struct LocalFanout {
    registry: Arc<Registry>,
    capacity: usize,
    next_id: AtomicU64,
    hasher: RandomState,
}

/// Removes its subscriber from the registry when the subscription is dropped.
struct Registration {
    registry: Weak<Registry>,
    user: UserId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            let mut map = registry.lock().unwrap_or_else(PoisonError::into_inner);
            remove_subscriber(&mut map, &self.user, self.id);
        }
    }
}

fn remove_subscriber(map: &mut HashMap<UserId, Feed>, user: &UserId, id: u64) {
    if let Some(feed) = map.get_mut(user) {
        feed.subscribers.retain(|s| s.id != id);
        if feed.subscribers.is_empty() {
            map.remove(user);
        }
    }
}

impl LocalFanout {
    /// A registry whose subscribers buffer at most `capacity` events each.
    pub fn new(capacity: usize) -> Self {
        Self {
            registry: Arc::default(),
            capacity: capacity.max(1),
            next_id: AtomicU64::new(1),
            hasher: RandomState::new(),
        }
    }

    /// Registers a new local subscriber of `user`'s events.
    pub fn subscribe(&self, user: &UserId) -> EventSubscription {
        let (tx, rx) = mpsc::channel(self.capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(user.clone())
            .or_default()
            .subscribers
            .push(Subscriber {
                id,
                events: tx,
                lagged: lagged.clone(),
            });
        let registration = Registration {
            registry: Arc::downgrade(&self.registry),
            user: user.clone(),
            id,
        };
        EventSubscription::new(rx, lagged, Box::new(registration))
    }

    /// Hands `event` to every local subscriber of `user` without waiting; returns how many
    /// have it. A room message these subscribers were handed already (same id, same edit) is
    /// not handed again, so that each connection gets it once.
    ///
    /// A subscriber whose buffer is full is cut off: a connection that stops reading must not
    /// hold memory without bound nor delay the user's other connections.
    pub fn deliver(&self, user: &UserId, event: Arc<UserEvent>) -> usize {
        let mut map = self.lock();
        let Some(feed) = map.get_mut(user) else {
            return 0;
        };
        if let UserEvent::RoomMessage { message } = &*event {
            if !feed.first_time(self.hasher.hash_one(message.revision())) {
                return feed.subscribers.len();
            }
        }
        let mut delivered = 0;
        feed.subscribers.retain(
            |subscriber| match subscriber.events.try_send(event.clone()) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    subscriber.lagged.store(true, Ordering::Release);
                    tracing::warn!(user = %user, "dropping a subscriber that does not keep up");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
        if feed.subscribers.is_empty() {
            map.remove(user);
        }
        delivered
    }

    /// How many local subscribers `user` has.
    pub fn subscriber_count(&self, user: &UserId) -> usize {
        self.lock()
            .get(user)
            .map_or(0, |feed| feed.subscribers.len())
    }

    /// How many users have at least one local subscriber.
    pub fn user_count(&self) -> usize {
        self.lock().len()
    }

    /// Ends every feed, for shutdown.
    pub fn close_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Feed>> {
        // A panic while holding this lock leaves the map consistent (every edit is one call),
        // so a poisoned lock is still safe to use.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId};

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn typing(n: usize) -> Arc<UserEvent> {
        Arc::new(UserEvent::Typing {
            room_id: RoomId::parse("r").unwrap(),
            username: format!("u{n}"),
            typing: true,
        })
    }

    #[tokio::test]
    async fn a_full_subscriber_is_cut_off_and_the_others_keep_receiving() {
        let fanout = LocalFanout::new(2);
        let mut slow = fanout.subscribe(&user("a"));
        let mut fast = fanout.subscribe(&user("a"));
        for n in 0..2 {
            assert_eq!(fanout.deliver(&user("a"), typing(n)), 2);
            assert_eq!(fast.next().await.as_deref(), Some(&*typing(n)));
        }
        assert_eq!(fanout.deliver(&user("a"), typing(2)), 1);
        assert_eq!(fast.next().await.as_deref(), Some(&*typing(2)));
        // The slow one still gets what it had buffered, then its feed ends.
        assert_eq!(slow.next().await.as_deref(), Some(&*typing(0)));
        assert_eq!(slow.next().await.as_deref(), Some(&*typing(1)));
        assert_eq!(slow.next().await, None);
        assert!(slow.lagged());
        assert!(!fast.lagged());
    }

    #[tokio::test]
    async fn dropping_a_subscription_unregisters_it() {
        let fanout = LocalFanout::new(4);
        let first = fanout.subscribe(&user("a"));
        let _second = fanout.subscribe(&user("a"));
        assert_eq!(fanout.subscriber_count(&user("a")), 2);
        drop(first);
        assert_eq!(fanout.subscriber_count(&user("a")), 1);
        assert_eq!(fanout.user_count(), 1);
        let deleted = Arc::new(UserEvent::MessageDeleted {
            room_id: RoomId::parse("r").unwrap(),
            message_id: MessageId::parse("m").unwrap(),
        });
        assert_eq!(fanout.deliver(&user("b"), deleted), 0);
    }
}
