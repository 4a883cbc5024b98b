//! Upstream lifecycle: one provider realtime connection per online user. The first live
//! connection of a user opens it, the last one leaving starts a grace period after which it
//! closes; deleting or logging out the user closes it at once. Across nodes, a lease decides
//! which node holds it; the others stand by and take over when the holder dies. Events go to
//! the publisher, and
//! after a reconnect what arrived meanwhile is fetched from history and delivered first, each
//! message once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::{SubscriptionChange, UserEvent};
use crate::ids::UserId;
use crate::model::{HistoryQuery, Message};
use crate::ports::{
    EventPublisher, EventSubscription, ImProvider, Lease, LeaseToken, RealtimeSignal,
};
use crate::services::{SessionService, UserSessions};

/// How far before the last event seen the gap fill starts, for clock differences between the
/// provider's nodes; duplicates this brings are dropped.
const GAP_MARGIN: Duration = Duration::from_secs(2);
/// Added to a lease's remaining time before a standby tries for it, so it finds it expired.
const STANDBY_SLACK: Duration = Duration::from_millis(20);
/// How often undelivered events are tried again while no new event comes.
const REDELIVER_EVERY: Duration = Duration::from_secs(1);
/// Messages remembered per user to drop duplicates between history and live events.
const REMEMBERED: usize = 2048;
/// Messages fetched per room when filling a gap.
const GAP_PAGE: u16 = 100;

struct Online {
    connections: usize,
    // Cancelling ends the user's task, which closes the upstream and releases the lease.
    cancel: CancellationToken,
    task: JoinHandle<()>,
    closing: Option<JoinHandle<()>>,
}

/// How a node takes part in "one upstream per user across all nodes".
#[derive(Clone)]
pub struct Ownership {
    /// Where leases live (in-process for one node, Redis for many).
    pub lease: Arc<dyn Lease>,
    /// This node's id, unique among the nodes sharing `lease`.
    pub node: String,
    /// How long a lease lives without renewal; a crashed node's users move on after this.
    pub ttl: Duration,
}

/// Opens and closes users' upstream connections as their live connections come and go.
pub struct UpstreamService {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    publisher: Arc<dyn EventPublisher>,
    ownership: Ownership,
    grace: Duration,
    online: Mutex<HashMap<UserId, Online>>,
}

impl UpstreamService {
    /// A service closing idle upstreams `grace` after their last connection left, and holding
    /// a user's upstream only while this node owns the user's lease.
    pub fn new(
        provider: Arc<dyn ImProvider>,
        sessions: Arc<SessionService>,
        publisher: Arc<dyn EventPublisher>,
        ownership: Ownership,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            sessions,
            publisher,
            ownership,
            grace,
            online: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Online>> {
        // Every edit of the map is a single call, so a poisoned lock still holds a consistent map.
        self.online.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more live connection of `user`; the first starts competing for the user's upstream.
    pub fn connected(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let entry = online.entry(user.clone()).or_insert_with(|| {
            let cancel = CancellationToken::new();
            Online {
                connections: 0,
                task: self.spawn_owner(user, cancel.clone()),
                cancel,
                closing: None,
            }
        });
        entry.connections += 1;
        if let Some(closing) = entry.closing.take() {
            closing.abort();
        }
        // A task that ended (the user could not log in) gets another chance.
        if entry.task.is_finished() {
            entry.cancel = CancellationToken::new();
            entry.task = self.spawn_owner(user, entry.cancel.clone());
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// One fewer live connection of `user`; after the last, the upstream closes once `grace`
    /// has passed without a new one.
    pub fn disconnected(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let Some(entry) = online.get_mut(user) else {
            return;
        };
        entry.connections = entry.connections.saturating_sub(1);
        if entry.connections == 0 && entry.closing.is_none() {
            let this = Arc::clone(self);
            let user = user.clone();
            entry.closing = Some(tokio::spawn(async move {
                tokio::time::sleep(this.grace).await;
                this.close_if_idle(&user);
            }));
        }
    }

    fn close_if_idle(&self, user: &UserId) {
        let mut online = self.lock();
        if online.get(user).is_some_and(|e| e.connections == 0) {
            if let Some(entry) = online.remove(user) {
                entry.cancel.cancel();
                tracing::info!(user = %user, "upstream closed after the grace period");
            }
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// Closes the user's upstream now: the user was deleted or logged out.
    pub fn close(&self, user: &UserId) {
        let mut online = self.lock();
        if let Some(entry) = online.remove(user) {
            entry.cancel.cancel();
            if let Some(closing) = entry.closing {
                closing.abort();
            }
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// Closes a deleted user's upstream and ends their live connections on every node.
    pub async fn account_deleted(&self, user: &UserId) {
        self.close(user);
        if let Err(error) = self
            .publisher
            .publish(user, &UserEvent::AccountDeleted)
            .await
        {
            // Their connections then end when their token expires or they next call.
            tracing::warn!(user = %user, error = %error, "could not tell a deleted user's connections");
        }
    }

    /// How many users have live connections on this node.
    pub fn online_users(&self) -> usize {
        self.lock().len()
    }

    /// Closes every upstream and releases every lease, waiting at most `deadline`.
    pub async fn shutdown(&self, deadline: Duration) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut online = self.lock();
            online
                .drain()
                .map(|(_, entry)| {
                    entry.cancel.cancel();
                    if let Some(closing) = entry.closing {
                        closing.abort();
                    }
                    entry.task
                })
                .collect()
        };
        let _ = tokio::time::timeout(deadline, futures::future::join_all(tasks)).await;
    }

    fn spawn_owner(&self, user: &UserId, cancel: CancellationToken) -> JoinHandle<()> {
        let owner = Owner {
            ownership: self.ownership.clone(),
            user: user.clone(),
            pump: Pump {
                provider: self.provider.clone(),
                sessions: self.sessions.clone(),
                publisher: self.publisher.clone(),
                user: user.clone(),
                seen: Seen::default(),
                last_event: None,
                undelivered_since: None,
            },
        };
        tokio::spawn(owner.run(cancel))
    }
}

/// Competes for a user's lease and holds the upstream while it owns it.
struct Owner {
    ownership: Ownership,
    user: UserId,
    pump: Pump,
}

/// Why holding the upstream stopped.
enum Held {
    /// The node no longer wants it (no connections, shutdown, user deleted).
    Cancelled,
    /// Another node has the lease now, or the lease store failed.
    Lost,
    /// The upstream ended by itself: the user cannot be logged in.
    Ended,
}

impl Owner {
    async fn run(mut self, cancel: CancellationToken) {
        let Ownership { lease, node, ttl } = self.ownership.clone();
        // While another node holds the upstream, its deliveries as this node sees them.
        let mut watch: Option<EventSubscription> = None;
        loop {
            let acquired = tokio::select! {
                _ = cancel.cancelled() => return,
                acquired = lease.acquire(&self.user, &node, ttl) => acquired,
            };
            match acquired {
                Ok(Some(token)) => {
                    watch = None;
                    tracing::debug!(user = %self.user, fence = token.fence, "holding the upstream");
                    metrics::gauge!("imgate_upstreams_held").increment(1.0);
                    let held = self.hold(&*lease, &token, ttl, &cancel).await;
                    metrics::gauge!("imgate_upstreams_held").decrement(1.0);
                    if !matches!(held, Held::Lost) {
                        if let Err(error) = lease.release(&self.user, &token).await {
                            tracing::warn!(user = %self.user, error = %error, "could not release the lease");
                        }
                    }
                    match held {
                        Held::Cancelled | Held::Ended => return,
                        Held::Lost => {
                            tracing::info!(user = %self.user, "upstream lease lost, standing by")
                        }
                    }
                }
                // Another node holds it; its events reach this node's connections through the
                // publisher. Watch them go by, so that if that node dies, the takeover fills
                // exactly what it did not deliver; and try again in case it does.
                Ok(None) => {
                    if watch.is_none() {
                        self.pump.watch_from_now();
                        watch = self.pump.publisher.subscribe(&self.user).await.ok();
                    }
                }
                Err(error) => {
                    tracing::warn!(user = %self.user, error = %error, "lease store failed")
                }
            }
            let pause = tokio::time::sleep(self.standby_pause(&*lease, ttl).await);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = &mut pause => break,
                    event = next_watched(&mut watch) => match event {
                        Some(event) => self.pump.observe(&event),
                        None => watch = None,
                    },
                }
            }
        }
    }

    /// How long to wait before trying for the lease again: until the holder's lease runs out
    /// (a dead holder's users move on at once), at most half a lease.
    async fn standby_pause(&self, lease: &dyn Lease, ttl: Duration) -> Duration {
        match lease.expires_in(&self.user).await {
            Ok(Some(left)) => (left + STANDBY_SLACK).min(ttl / 2),
            Ok(None) | Err(_) => ttl / 2,
        }
    }

    /// Runs the upstream while renewing the lease; stops at once when the lease is lost.
    async fn hold(
        &mut self,
        lease: &dyn Lease,
        token: &LeaseToken,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Held {
        let renew = async {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match lease.renew(&self.user, token, ttl).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(error) => {
                        tracing::warn!(user = %self.user, error = %error, "cannot renew the lease");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => Held::Cancelled,
            _ = renew => Held::Lost,
            _ = self.pump.run() => Held::Ended,
        }
    }
}

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
    fn digest(&self, message: &Message) -> u64 {
        self.hasher.hash_one(message.revision())
    }

    /// Forgets `message`, so it counts as new again (it was never delivered after all).
    fn forget(&mut self, message: &Message) {
        let key = self.digest(message);
        if self.keys.remove(&key) {
            self.order.retain(|k| *k != key);
        }
    }

    /// Whether `message` is new; remembers it.
    fn first_time(&mut self, message: &Message) -> bool {
        let key = self.digest(message);
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

/// Moves one user's upstream signals to the publisher.
struct Pump {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    publisher: Arc<dyn EventPublisher>,
    user: UserId,
    seen: Seen,
    last_event: Option<DateTime<Utc>>,
    /// The time of the oldest event the publisher refused, while any wait for redelivery.
    undelivered_since: Option<DateTime<Utc>>,
}

/// The next event of `watch`; pending forever when there is none.
async fn next_watched(watch: &mut Option<EventSubscription>) -> Option<Arc<UserEvent>> {
    match watch {
        Some(subscription) => subscription.next().await,
        None => std::future::pending().await,
    }
}

impl Pump {
    /// Starts counting from now what another node delivers, unless already counting: a
    /// takeover fills the gap from here.
    fn watch_from_now(&mut self) {
        self.last_event.get_or_insert_with(Utc::now);
    }

    /// Notes a message another node delivered, as if this one had.
    fn observe(&mut self, event: &UserEvent) {
        if let UserEvent::RoomMessage { message } = event {
            self.note(message);
        }
    }

    /// Whether `message` is new to this user's upstream; remembers it and its time.
    fn note(&mut self, message: &Message) -> bool {
        if !self.seen.first_time(message) {
            return false;
        }
        let at = message.edited_at.unwrap_or(message.created_at);
        self.last_event = Some(self.last_event.map_or(at, |last| last.max(at)));
        true
    }

    async fn run(&mut self) {
        let source: Arc<dyn crate::ports::SessionSource> =
            Arc::new(UserSessions::new(self.user.clone(), self.sessions.clone()));
        loop {
            let mut stream = match self
                .provider
                .connect_realtime(&self.user, source.clone())
                .await
            {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(user = %self.user, error = %error, "cannot open the upstream");
                    return;
                }
            };
            // The upstream lives as long as the cached session: when that expires it is closed
            // and opened again with a fresh login, the gap in between filled like any reconnect.
            let expires = tokio::time::sleep(self.sessions.ttl());
            tokio::pin!(expires);
            loop {
                let signal = tokio::select! {
                    signal = stream.next() => signal,
                    _ = &mut expires => break,
                    _ = tokio::time::sleep(REDELIVER_EVERY), if self.undelivered_since.is_some() => {
                        self.redeliver().await;
                        continue;
                    }
                };
                if matches!(signal, Some(RealtimeSignal::Event(_))) {
                    // What the publisher could not take goes out first, in order.
                    self.redeliver().await;
                }
                match signal {
                    Some(RealtimeSignal::Connected) => match self.last_event {
                        // The first connection: what came before is history the client reads itself.
                        None => self.last_event = Some(Utc::now()),
                        Some(since) => self.fill_gap(since).await,
                    },
                    Some(RealtimeSignal::Event(event)) => self.deliver(event).await,
                    None => {
                        tracing::info!(user = %self.user, "upstream ended");
                        return;
                    }
                }
            }
            tracing::info!(user = %self.user, "session expired, renewing the upstream");
        }
    }

    async fn deliver(&mut self, event: UserEvent) {
        if let UserEvent::RoomMessage { message } = &event {
            if !self.note(message) {
                return;
            }
        }
        if let Err(error) = self.publisher.publish(&self.user, &event).await {
            // History has every message: deliver from there once the publisher takes events
            // again. Other events cannot be replayed; the rooms' state is sent afresh instead.
            let at = match &event {
                UserEvent::RoomMessage { message } => {
                    self.seen.forget(message);
                    message.edited_at.unwrap_or(message.created_at)
                }
                _ => self.last_event.unwrap_or_else(Utc::now),
            };
            match self.undelivered_since {
                None => {
                    tracing::warn!(user = %self.user, error = %error, "could not publish an event; delivering it from history when the publisher is back");
                    self.undelivered_since = Some(at);
                }
                Some(since) => self.undelivered_since = Some(since.min(at)),
            }
        }
    }

    /// Delivers from history what the publisher refused earlier.
    async fn redeliver(&mut self) {
        if let Some(since) = self.undelivered_since.take() {
            self.fill_gap(since).await;
            if self.undelivered_since.is_none() {
                tracing::info!(user = %self.user, "the publisher is back; undelivered events sent");
            }
        }
    }

    /// Delivers what arrived in the user's rooms since `since`, oldest first, before any live
    /// event that follows the reconnect.
    async fn fill_gap(&mut self, since: DateTime<Utc>) {
        let from = since - chrono::Duration::from_std(GAP_MARGIN).unwrap_or_default();
        let sessions = &self.sessions;
        let provider = &self.provider;
        let rooms = match sessions
            .run(&self.user, |s| async move { provider.list_rooms(&s).await })
            .await
        {
            Ok(rooms) => rooms,
            Err(error) => {
                tracing::warn!(user = %self.user, error = %error, "gap fill: cannot list rooms");
                return;
            }
        };
        let mut missed: Vec<Message> = Vec::new();
        for room in rooms.iter().filter(|room| room.updated_at >= from) {
            let query = HistoryQuery {
                before: None,
                after: Some(from),
                limit: GAP_PAGE,
            };
            let (room_id, query) = (&room.id, &query);
            match sessions
                .run(&self.user, |s| async move {
                    provider.history(&s, room_id, query).await
                })
                .await
            {
                // Pages come newest first; oldest first keeps messages of the same
                // millisecond in order through the stable sort below.
                Ok(page) => missed.extend(page.messages.into_iter().rev()),
                Err(error) => {
                    tracing::warn!(user = %self.user, room = %room.id, error = %error, "gap fill: cannot read history")
                }
            }
        }
        missed.sort_by_key(|m| m.edited_at.unwrap_or(m.created_at));
        let found = missed.len();
        for message in missed {
            self.deliver(UserEvent::RoomMessage {
                message: Box::new(message),
            })
            .await;
        }
        // Unread counts may have moved while we were away.
        for room in rooms.into_iter().filter(|room| room.updated_at >= from) {
            let event = UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Updated,
                room: Box::new(room),
            };
            self.deliver(event).await;
        }
        tracing::info!(user = %self.user, messages = found, "upstream reconnected, gap filled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId};
    use crate::model::Sender;

    fn message(id: &str, edited_s: Option<i64>) -> Message {
        Message {
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
        }
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
    fn a_forgotten_message_is_new_again() {
        let mut seen = Seen::default();
        assert!(seen.first_time(&message("m1", None)));
        assert!(seen.first_time(&message("m2", None)));
        seen.forget(&message("m1", None));
        assert!(seen.first_time(&message("m1", None)));
        assert!(!seen.first_time(&message("m2", None)));
        assert_eq!((seen.keys.len(), seen.order.len()), (2, 2));
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
