//! `Presence` on Redis: `{prefix}:{<user>}:presence` is a hash of node id to that node's count
//! of the user's hub connections, and `{prefix}:node:<id>:alive` exists, with a TTL its node
//! renews, while the node lives. A count is only counted while its node's key exists, so a
//! killed node stops counting once the TTL has passed. A killed node's entries stay in the
//! hashes, ignored: deleting them on a reader's word could delete what the node wrote on
//! coming back, and node ids are never reused, so they are never read as alive again.
//!
//! `set` never waits: it records the user's latest count, and one writer task sends the
//! changes, a pipeline at a time, retrying while Redis does not answer. When the node's key
//! turns out to have been gone (Redis restarted or was unreachable past the TTL), the writer
//! sends every count again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::ports::{Presence, PresenceError};
use imgate_domain::sync::lock;
use imgate_domain::UserId;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::connection::{millis, CallError, Redis};
use crate::keys::Keys;
use crate::{ConnectError, RedisConfig};

/// How long the writer waits before sending again after Redis did not answer.
const RETRY: Duration = Duration::from_millis(250);

/// The users' connection counts of one node, kept in Redis for every node to read.
pub struct RedisPresence {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

struct Shared {
    redis: Redis,
    keys: Keys,
    node: String,
    liveness: Duration,
    state: Mutex<Counts>,
    changed: Notify,
}

#[derive(Default)]
struct Counts {
    /// Every user with connections here, for sending everything again.
    all: HashMap<UserId, usize>,
    /// Counts not yet in Redis, the latest per user (0: remove the node's entry).
    unsent: HashMap<UserId, usize>,
}

impl RedisPresence {
    /// The presence of node `node` in the Redis of `config`. A node that stops renewing its
    /// key stops counting after `liveness`. Fails only on an invalid URL.
    pub async fn connect(
        config: &RedisConfig,
        node: &str,
        liveness: Duration,
    ) -> Result<Self, ConnectError> {
        let shared = Arc::new(Shared {
            redis: Redis::connect(config)?,
            keys: Keys::new(&config.prefix),
            node: node.to_owned(),
            liveness,
            state: Mutex::default(),
            changed: Notify::new(),
        });
        let tasks = [
            tokio::spawn(shared.clone().write()),
            tokio::spawn(shared.clone().stay_alive()),
        ];
        Ok(Self { shared, tasks })
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        // A node that stops on purpose stops counting at once, not after the TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move {
                let key = shared.keys.node_alive(&shared.node);
                let _: Result<i64, _> = shared.redis.query(redis::cmd("DEL").arg(key)).await;
            });
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        lock(&self.state)
    }

    /// Sends what changed, in the order it changed, until the node is dropped.
    async fn write(self: Arc<Self>) {
        loop {
            let unsent = std::mem::take(&mut self.lock().unsent);
            if unsent.is_empty() {
                self.changed.notified().await;
                continue;
            }
            // The node's key first: a reader that sees these counts finds their node alive,
            // even before the first renewal.
            let mut pipe = redis::pipe();
            pipe.add_command(self.renewal());
            for (user, count) in &unsent {
                let key = self.keys.presence(user);
                if *count == 0 {
                    pipe.hdel(key, &self.node).ignore();
                } else {
                    pipe.hset(key, &self.node, *count).ignore();
                }
            }
            match self.redis.pipeline::<(Option<String>,)>(&pipe).await {
                Ok((before,)) => self.renewed(before),
                Err(error) => {
                    tracing::debug!(error = %error, "presence not written yet; retrying");
                    // Put back what no later `set` has replaced.
                    {
                        let mut state = self.lock();
                        for (user, count) in unsent {
                            state.unsent.entry(user).or_insert(count);
                        }
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Renews the node's key, answering what it held before.
    fn renewal(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.node_alive(&self.node))
            .arg(1)
            .arg("PX")
            .arg(millis(self.liveness))
            .arg("GET");
        cmd
    }

    /// After a renewal: a key that was gone (first start, Redis restarted or unreachable past
    /// the TTL) means Redis may have lost the counts, so every count goes again.
    fn renewed(&self, before: Option<String>) {
        if before.is_none() {
            {
                let state = &mut *self.lock();
                for (user, count) in &state.all {
                    state.unsent.entry(user.clone()).or_insert(*count);
                }
            }
            self.changed.notify_one();
        }
    }

    /// Renews the node's key every third of the liveness time.
    async fn stay_alive(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.liveness / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match self.redis.query(&self.renewal()).await {
                Ok(before) => self.renewed(before),
                Err(error) => tracing::debug!(error = %error, "presence liveness not renewed"),
            }
        }
    }
}

fn unavailable(err: CallError) -> PresenceError {
    PresenceError::Unavailable(err.to_string())
}

#[async_trait]
impl Presence for RedisPresence {
    fn set(&self, user: &UserId, connections: usize) {
        let mut state = self.shared.lock();
        if connections == 0 {
            state.all.remove(user);
        } else {
            state.all.insert(user.clone(), connections);
        }
        state.unsent.insert(user.clone(), connections);
        drop(state);
        self.shared.changed.notify_one();
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn connections(&self, user: &UserId) -> Result<usize, PresenceError> {
        let shared = &self.shared;
        let key = shared.keys.presence(user);
        let counts: Vec<(String, usize)> = shared
            .redis
            .query(redis::cmd("HGETALL").arg(&key))
            .await
            .map_err(unavailable)?;
        if counts.is_empty() {
            return Ok(0);
        }
        let mut alive = redis::pipe();
        for (node, _) in &counts {
            alive.exists(shared.keys.node_alive(node));
        }
        let alive: Vec<bool> = shared.redis.pipeline(&alive).await.map_err(unavailable)?;
        Ok(counts
            .into_iter()
            .zip(alive)
            .filter_map(|((_, count), alive)| alive.then_some(count))
            .sum())
    }
}
