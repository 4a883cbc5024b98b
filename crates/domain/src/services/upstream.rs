//! Upstream lifecycle: one provider realtime connection per online user. The hub says when a
//! user's first connection on this node arrives and when the last one leaves; the last starts
//! a grace period after which the upstream closes; deleting or logging out the user closes it
//! at once. Across nodes, a lease decides which node holds it; the others stand by and take
//! over when the holder dies. Events go to [`EventDelivery`], and after a reconnect what
//! arrived meanwhile is fetched from history and delivered first, each message once.
//!
//! Repeats are dropped here and only here: every room message a node hands its connections,
//! from its own upstream or from the node holding it, passes the user's [`Seen`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::{SubscriptionChange, UserEvent};
use crate::ids::UserId;
use crate::model::{HistoryQuery, Message};
use crate::ports::{
    EventDelivery, ImProvider, Lease, LeaseToken, MessageStamp, Reach, RealtimeSignal,
};
use crate::services::{SessionService, UserSessions};
use crate::sync::lock;

/// How far before the last event seen the gap fill starts, for clock differences between the
/// provider's nodes; duplicates this brings are dropped.
const GAP_MARGIN: Duration = Duration::from_secs(2);
/// Added to a lease's remaining time before a standby tries for it, so it finds it expired.
const STANDBY_SLACK: Duration = Duration::from_millis(20);
/// A recovery from history that fails is tried again after this, then twice as long, …
const RECOVER_RETRY: Duration = Duration::from_millis(250);
/// … this many times in all (some 16 s).
const RECOVER_TRIES: u32 = 7;
/// How soon a failed lease renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);
/// Messages remembered per user to drop duplicates between history and live events.
const REMEMBERED: usize = 2048;
/// Messages fetched per room when filling a gap.
const GAP_PAGE: u16 = 100;

/// A user with connections on this node (or within the grace period after the last).
struct Online {
    // Cancelling ends the user's task, which closes the upstream and releases the lease.
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// The grace period's timer, after the last connection left.
    closing: Option<JoinHandle<()>>,
    /// What this node's connections of the user were handed, shared with the user's task.
    watch: Arc<Mutex<Watch>>,
    /// Wakes a standby task to recover from history what the backplane lost.
    recover: Arc<Notify>,
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
    delivery: Arc<dyn EventDelivery>,
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
        delivery: Arc<dyn EventDelivery>,
        ownership: Ownership,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            sessions,
            delivery,
            ownership,
            grace,
            online: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Online>> {
        lock(&self.online)
    }

    /// `user`'s first connection on this node arrived: compete for the user's upstream.
    pub fn online(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let entry = online.entry(user.clone()).or_insert_with(|| {
            let cancel = CancellationToken::new();
            let watch = Arc::default();
            let recover = Arc::default();
            Online {
                task: self.spawn_owner(user, cancel.clone(), &watch, &recover),
                cancel,
                closing: None,
                watch,
                recover,
            }
        });
        if let Some(closing) = entry.closing.take() {
            closing.abort();
        }
        // A task that ended (the user could not log in) gets another chance.
        if entry.task.is_finished() {
            entry.cancel = CancellationToken::new();
            entry.task = self.spawn_owner(user, entry.cancel.clone(), &entry.watch, &entry.recover);
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// `user`'s last connection on this node left: the upstream closes once `grace` has
    /// passed without a new one.
    pub fn offline(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let Some(entry) = online.get_mut(user) else {
            return;
        };
        if entry.closing.is_none() {
            let this = Arc::clone(self);
            let user = user.clone();
            entry.closing = Some(tokio::spawn(async move {
                tokio::time::sleep(this.grace).await;
                this.close_if_idle(&user);
            }));
        }
    }

    /// Whether the room message of `stamp`, delivered by the node holding `user`'s upstream,
    /// is new to this node's connections; remembers it, so a takeover or a recovery from
    /// history does not send it again. `false` for a user without connections here.
    pub fn observe(&self, user: &UserId, stamp: &MessageStamp) -> bool {
        let watch = match self.lock().get(user) {
            Some(entry) => entry.watch.clone(),
            None => return false,
        };
        let fresh = lock_watch(&watch).note(stamp);
        fresh
    }

    /// The backplane lost what the other nodes published for a while: every user whose
    /// upstream another node holds gets from history what this node's connections missed.
    pub fn backplane_resumed(&self) {
        for entry in self.lock().values() {
            // A permit, not a wake-up: the task may be busy asking for the lease right now.
            // A task holding the upstream takes it later, harmlessly: repeats are dropped.
            entry.recover.notify_one();
        }
    }

    fn close_if_idle(&self, user: &UserId) {
        let mut online = self.lock();
        if online.get(user).is_some_and(|e| e.closing.is_some()) {
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
    pub fn account_deleted(&self, user: &UserId) {
        self.close(user);
        self.delivery
            .deliver(user, &UserEvent::AccountDeleted, Reach::AllNodes);
    }

    /// The id of the node holding `user`'s upstream, if any does; `None` also when the lease
    /// store cannot say.
    pub async fn holder(&self, user: &UserId) -> Option<String> {
        match self.ownership.lease.holder(user).await {
            Ok(holder) => holder,
            Err(error) => {
                tracing::debug!(user = %user, error = %error, "cannot read the lease holder");
                None
            }
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

    fn spawn_owner(
        &self,
        user: &UserId,
        cancel: CancellationToken,
        watch: &Arc<Mutex<Watch>>,
        recover: &Arc<Notify>,
    ) -> JoinHandle<()> {
        let owner = Owner {
            ownership: self.ownership.clone(),
            user: user.clone(),
            recover: recover.clone(),
            pump: Pump {
                provider: self.provider.clone(),
                sessions: self.sessions.clone(),
                delivery: self.delivery.clone(),
                user: user.clone(),
                watch: watch.clone(),
            },
        };
        tokio::spawn(owner.run(cancel))
    }
}

/// Competes for a user's lease and holds the upstream while it owns it.
struct Owner {
    ownership: Ownership,
    user: UserId,
    recover: Arc<Notify>,
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
        loop {
            let acquired = tokio::select! {
                _ = cancel.cancelled() => return,
                acquired = lease.acquire(&self.user, &node, ttl) => acquired,
            };
            match acquired {
                Ok(Some(token)) => {
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
                            // A store that restarted empty forgot the lease rather than gave
                            // it to another node: ask again at once before standing by.
                            tracing::info!(user = %self.user, "upstream lease lost");
                            continue;
                        }
                    }
                }
                // Another node holds it; its events reach this node's connections through the
                // backplane, and the hub notes each message as it goes by (`observe`), so
                // that if that node dies, the takeover fills exactly what it did not deliver.
                // Try again in case it does.
                Ok(None) => self.pump.watch_from_now(),
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
                    _ = self.recover.notified() => self.recover(&cancel).await,
                }
            }
        }
    }

    /// Delivers to this node's connections, from history, what the holder sent while the
    /// backplane was down; tries again while the provider or the session store (likely just
    /// back itself) cannot answer.
    async fn recover(&self, cancel: &CancellationToken) {
        let Some(since) = self.pump.last_event() else {
            return;
        };
        // What the holder sends meanwhile is newer: it waits, so the connections get
        // everything in order.
        self.pump.delivery.hold(&self.user);
        let mut wait = RECOVER_RETRY;
        for _ in 0..RECOVER_TRIES {
            if self.pump.fill_gap(since, Reach::ThisNode).await {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            wait *= 2;
        }
        self.pump.delivery.release(&self.user);
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
            // The lease is ours until this, whatever the store says meanwhile: a store that
            // is down for a moment (Redis restarting) must not take the upstream away.
            let mut ours_until = tokio::time::Instant::now() + ttl;
            let mut wait = ttl / 3;
            loop {
                tokio::time::sleep(wait).await;
                match lease.renew(&self.user, token, ttl).await {
                    Ok(true) => {
                        ours_until = tokio::time::Instant::now() + ttl;
                        wait = ttl / 3;
                    }
                    Ok(false) => return,
                    Err(error) => {
                        wait = RENEW_RETRY.min(ttl / 3);
                        // Another node may take it once it has run out.
                        if tokio::time::Instant::now() + wait + STANDBY_SLACK >= ours_until {
                            tracing::warn!(user = %self.user, error = %error, "cannot renew the lease before it runs out");
                            return;
                        }
                        tracing::debug!(user = %self.user, error = %error, "cannot renew the lease; trying again");
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
struct Watch {
    seen: Seen,
    last_event: Option<DateTime<Utc>>,
}

impl Watch {
    /// Whether the revision of `stamp` is new here; remembers it and its time.
    fn note(&mut self, stamp: &MessageStamp) -> bool {
        if !self.seen.first_time(stamp) {
            return false;
        }
        self.last_event = Some(self.last_event.map_or(stamp.at, |last| last.max(stamp.at)));
        true
    }
}

fn lock_watch(watch: &Mutex<Watch>) -> MutexGuard<'_, Watch> {
    lock(watch)
}

/// Moves one user's upstream signals to the connections.
struct Pump {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    delivery: Arc<dyn EventDelivery>,
    user: UserId,
    watch: Arc<Mutex<Watch>>,
}

impl Pump {
    /// Starts counting from now what another node delivers, unless already counting: a
    /// takeover fills the gap from here.
    fn watch_from_now(&self) {
        lock_watch(&self.watch)
            .last_event
            .get_or_insert_with(Utc::now);
    }

    /// The newest message time delivered here, if any.
    fn last_event(&self) -> Option<DateTime<Utc>> {
        lock_watch(&self.watch).last_event
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
                };
                match signal {
                    Some(RealtimeSignal::Connected) => match self.last_event() {
                        // The first connection: what came before is history the client reads itself.
                        None => self.watch_from_now(),
                        Some(since) => {
                            // Not filled completely: the provider's own reconnect logic
                            // brings the next chance; what could be read went out.
                            self.fill_gap(since, Reach::AllNodes).await;
                        }
                    },
                    Some(RealtimeSignal::Event(event)) => self.deliver(event, Reach::AllNodes),
                    None => {
                        tracing::info!(user = %self.user, "upstream ended");
                        return;
                    }
                }
            }
            tracing::info!(user = %self.user, "session expired, renewing the upstream");
        }
    }

    fn deliver(&self, event: UserEvent, reach: Reach) {
        if let UserEvent::RoomMessage { message } = &event {
            if !lock_watch(&self.watch).note(&MessageStamp::of(message)) {
                return;
            }
        }
        self.delivery.deliver(&self.user, &event, reach);
    }

    /// Delivers within `reach` what arrived in the user's rooms since `since`, oldest first,
    /// before any live event that follows the reconnect. `false` when some of it could not
    /// be read; what could was delivered.
    async fn fill_gap(&self, since: DateTime<Utc>, reach: Reach) -> bool {
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
                return false;
            }
        };
        let mut complete = true;
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
                    complete = false;
                    tracing::warn!(user = %self.user, room = %room.id, error = %error, "gap fill: cannot read history")
                }
            }
        }
        missed.sort_by_key(|m| m.edited_at.unwrap_or(m.created_at));
        let found = missed.len();
        for message in missed {
            let event = UserEvent::RoomMessage {
                message: Box::new(message),
            };
            self.deliver(event, reach);
        }
        // Unread counts may have moved while we were away.
        for room in rooms.into_iter().filter(|room| room.updated_at >= from) {
            let event = UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Updated,
                room: Box::new(room),
            };
            self.deliver(event, reach);
        }
        tracing::info!(user = %self.user, messages = found, "gap filled from history");
        complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{MessageId, RoomId};
    use crate::model::Sender;

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
