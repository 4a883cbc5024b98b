//! Upstream lifecycle: one provider realtime connection per online user. The hub says when a
//! user's first connection on this node arrives and when the last one leaves; the last starts
//! a grace period after which the upstream closes; deleting or logging out the user closes it
//! at once. Across nodes, a lease decides which node holds it; the others stand by and take
//! over when the holder dies. Events go to [`EventDelivery`], and after a reconnect what
//! arrived meanwhile is fetched from history and delivered first, each message once.
//!
//! Repeats are dropped here and only here: every room message a node hands its connections,
//! from its own upstream or from the node holding it, passes the user's [`Watch`].
//!
//! Three state machines, one module each: this one is the registry of the users online on
//! this node and their grace period; `ownership` competes for the user's lease, holds the
//! upstream while it owns it and stands by otherwise; `pump` moves the upstream's signals
//! to [`EventDelivery`] and fills gaps from history; `watch` remembers what was delivered.

mod ownership;
mod pump;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::event::UserEvent;
use crate::ids::UserId;
use crate::ports::{EventDelivery, ImProvider, Lease, MessageStamp, Reach};
use crate::services::SessionService;
use crate::sync::lock;

use ownership::Owner;
use pump::Pump;
use watch::{lock_watch, Watch};

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
