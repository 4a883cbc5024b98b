//! One command connection shared by an adapter, with a timeout on every call.
//!
//! The connection is made lazily: an adapter is created whether or not Redis answers, so the
//! gateway starts while Redis is down, and its calls fail with the port's `Unavailable` until
//! Redis answers. Once a `ConnectionManager` exists, it reconnects by itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use imgate_domain::sync::lock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, Pipeline, RedisError, ScriptInvocation};

use crate::{ConnectError, RedisConfig};

/// A Redis call that did not succeed; the adapters turn it into their port's `Unavailable`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// No connection to Redis could be made yet.
    #[error("redis is not reachable: {0}")]
    NotConnected(String),
}

/// A multiplexed connection that reconnects by itself (`ConnectionManager`), made on first
/// use, plus the client for opening dedicated connections such as pub/sub.
#[derive(Clone)]
pub(crate) struct Redis {
    client: Client,
    conn: Arc<LazyManager>,
    timeout: Duration,
}

impl Redis {
    /// Prepares the connection and starts making it in the background; fails only on an
    /// invalid URL, never because Redis does not answer.
    pub(crate) fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        let client = Client::open(config.url.as_str()).map_err(ConnectError::InvalidUrl)?;
        let timeout = config.command_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection is retried in the background on the next command anyway; a short
            // series keeps a call from waiting far beyond its own timeout.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = Arc::new(LazyManager {
            client: client.clone(),
            config: manager_config,
            timeout,
            state: Mutex::new(State::Absent),
        });
        // Started now rather than on the first call, so that with Redis up the first calls
        // only wait for an attempt already under way.
        drop(conn.manager_or_attempt());
        Ok(Self {
            client,
            conn,
            timeout,
        })
    }

    /// The client, for dedicated connections.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The per-call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, CallError> {
        // The wait for a connection counts against the same budget as the command.
        tokio::time::timeout(self.timeout, async {
            let mut conn = self.conn.manager().await?;
            cmd.query_async(&mut conn).await.map_err(CallError::from)
        })
        .await
        .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// Sends a pipeline of commands in one write and reads all their answers.
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
    ) -> Result<T, CallError> {
        tokio::time::timeout(self.timeout, async {
            let mut conn = self.conn.manager().await?;
            pipe.query_async(&mut conn).await.map_err(CallError::from)
        })
        .await
        .map_err(|_| CallError::Timeout(self.timeout))?
    }

    /// Runs a Lua script (by hash, loading it on first use).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        tokio::time::timeout(self.timeout, async {
            let mut conn = self.conn.manager().await?;
            script
                .invoke_async(&mut conn)
                .await
                .map_err(CallError::from)
        })
        .await
        .map_err(|_| CallError::Timeout(self.timeout))?
    }
}

/// The outcome of one attempt to create the manager, shared by every caller waiting for it.
type Attempt = Shared<BoxFuture<'static, Result<ConnectionManager, String>>>;

/// Creates the `ConnectionManager` when first needed, and again after a failed attempt.
///
/// At most one attempt runs at a time: callers arriving meanwhile wait for its outcome
/// (within their own timeout) instead of starting another, so a burst of requests while
/// Redis is down makes one connection attempt, not one each.
struct LazyManager {
    client: Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
    state: Mutex<State>,
}

enum State {
    /// No manager, and no attempt running: the next call starts one.
    Absent,
    /// An attempt is running; it stores its outcome here when it ends.
    Connecting(Attempt),
    /// Connected once; from now on the manager reconnects by itself.
    Ready(ConnectionManager),
}

impl LazyManager {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The manager, once an attempt (this call's or a running one) has made it.
    async fn manager(self: &Arc<Self>) -> Result<ConnectionManager, CallError> {
        match self.manager_or_attempt() {
            Ok(manager) => Ok(manager),
            Err(attempt) => attempt.await.map_err(CallError::NotConnected),
        }
    }

    /// The manager if there is one; otherwise the running attempt, started if need be.
    fn manager_or_attempt(self: &Arc<Self>) -> Result<ConnectionManager, Attempt> {
        let mut state = self.state();
        match &*state {
            State::Ready(manager) => Ok(manager.clone()),
            State::Connecting(attempt) => Err(attempt.clone()),
            State::Absent => {
                let attempt = self.start_attempt();
                *state = State::Connecting(attempt.clone());
                Err(attempt)
            }
        }
    }

    /// Spawns one attempt, so it ends and records its outcome even if every caller gave up.
    fn start_attempt(self: &Arc<Self>) -> Attempt {
        // Weak: a pending attempt must not keep a dropped adapter's connection alive.
        let owner = Arc::downgrade(self);
        let client = self.client.clone();
        let config = self.config.clone();
        let timeout = self.timeout;
        let task = tokio::spawn(async move {
            let outcome = match tokio::time::timeout(
                timeout,
                ConnectionManager::new_with_config(client, config),
            )
            .await
            {
                Ok(Ok(manager)) => Ok(manager),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            if let Some(owner) = owner.upgrade() {
                // The caller that spawned us set `Connecting` under this lock before we could
                // take it, so this never overwrites a newer attempt.
                *owner.state() = match &outcome {
                    Ok(manager) => State::Ready(manager.clone()),
                    Err(_) => State::Absent,
                };
            }
            outcome
        });
        async move {
            task.await
                .unwrap_or_else(|err| Err(format!("the connection attempt failed: {err}")))
        }
        .boxed()
        .shared()
    }
}

/// A TTL as whole milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis refuses 0).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
