//! `TokenCache` on Redis, with `get_or_login` single-flight across nodes.
//!
//! Within a node, concurrent callers for one user share one in-process future, so a node asks
//! Redis once however many requests arrive. Across nodes, a lock key (`SET NX PX`) elects the
//! node that logs in; the others poll the session and the lock with short sleeps until the
//! holder stores the session (and drops the lock in the same script), the holder records a
//! failure for them, or the lock expires because its holder died, whereupon one of them takes
//! over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::{BoxFuture, FutureExt, Shared};
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{CacheError, LoginError, LoginFuture, ProviderError, TokenCache};
use imgate_domain::sync::lock;
use imgate_domain::{AuthToken, UserId};
use redis::Script;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::connection::{millis, CallError, Redis};
use crate::health::RedisHealthCheck;
use crate::keys::Keys;
use crate::{ConnectError, RedisConfig};

/// Deletes the session if its token is still `ARGV[1]`. An unreadable entry is deleted too:
/// the caller is throwing its session away, and nobody can use an unreadable one.
static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local ok, session = pcall(cjson.decode, value)
if not ok or type(session) ~= 'table' then
  redis.call('DEL', KEYS[1])
  return -1
end
if session['token'] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
",
    )
});

/// Stores the login's session and drops the lock if it is still this attempt's, in one step,
/// so a waiter never sees neither lock nor session after a successful login.
static STORE_AND_UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// Records a failed attempt for the waiters on other nodes, then drops the lock if it is
/// still this attempt's.
static FAIL_AND_UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
",
    )
});

/// Extends the lock while this attempt still holds it; 1 if it did.
static EXTEND_LOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

/// Timing of the cross-node login lock.
#[derive(Debug, Clone)]
pub struct SingleFlight {
    /// How long the lock outlives a node that died mid-login; a live holder keeps extending it.
    pub lock_ttl: Duration,
    /// How long a caller waits for another node's login before giving up with `Unavailable`.
    pub wait_limit: Duration,
    /// How long a failed login stays readable for the waiters on other nodes.
    pub failure_ttl: Duration,
}

impl Default for SingleFlight {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::from_secs(10),
            wait_limit: Duration::from_secs(30),
            failure_ttl: Duration::from_secs(5),
        }
    }
}

/// First and longest pause between two polls of a waiter.
const FIRST_POLL: Duration = Duration::from_millis(10);
const LONGEST_POLL: Duration = Duration::from_millis(100);

type Flight = Shared<BoxFuture<'static, Result<ProviderSession, LoginError>>>;

/// Removes flight `id` of `user` from the map when its task ends.
struct LeaveFlights {
    inner: Arc<Inner>,
    user: UserId,
    id: u64,
}

impl Drop for LeaveFlights {
    fn drop(&mut self) {
        let mut flights = self.inner.flights();
        if flights
            .get(&self.user)
            .is_some_and(|(id, _)| *id == self.id)
        {
            flights.remove(&self.user);
        }
    }
}

/// Provider sessions in Redis, shared by every node.
#[derive(Clone)]
pub struct RedisTokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    keys: Keys,
    timing: SingleFlight,
    /// The login flight per user on this node, with its id; callers arriving while one runs
    /// join it.
    flights: Mutex<HashMap<UserId, (u64, Flight)>>,
    next_flight: AtomicU64,
}

impl RedisTokenCache {
    /// Sessions in the Redis of `config`, with the default [`SingleFlight`] timing; fails only
    /// on an invalid URL, and while Redis does not answer every call fails with `Unavailable`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        Self::connect_with(config, SingleFlight::default()).await
    }

    /// Like [`connect`](Self::connect), with the given lock timing.
    pub async fn connect_with(
        config: &RedisConfig,
        timing: SingleFlight,
    ) -> Result<Self, ConnectError> {
        Ok(Self {
            inner: Arc::new(Inner {
                redis: Redis::connect(config)?,
                keys: Keys::new(&config.prefix),
                timing,
                flights: Mutex::default(),
                next_flight: AtomicU64::new(0),
            }),
        })
    }

    /// A health check sharing this cache's connection.
    pub fn health_check(&self) -> RedisHealthCheck {
        RedisHealthCheck::from_connection(self.inner.redis.clone())
    }
}

fn unavailable(err: CallError) -> CacheError {
    CacheError::Unavailable(err.to_string())
}

fn decode(raw: &str) -> Result<ProviderSession, CacheError> {
    serde_json::from_str(raw).map_err(|err| CacheError::Corrupt(err.to_string()))
}

impl Inner {
    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, (u64, Flight)>> {
        lock(&self.flights)
    }

    /// The whole cross-node protocol for one caller per node: return the cached session,
    /// wait for another node's login, or take the lock and log in.
    async fn session_or_login(
        &self,
        user: &UserId,
        ttl: Duration,
        login: LoginFuture,
    ) -> Result<ProviderSession, LoginError> {
        let session_key = self.keys.session(user);
        let lock_key = self.keys.login_lock(user);
        let deadline = Instant::now() + self.timing.wait_limit;
        // Each attempt has its own id, so a holder only ever unlocks its own lock and a waiter
        // can tell the failure of the attempt it waited for from an older one.
        let attempt = uuid::Uuid::new_v4().simple().to_string();
        let mut waited_for: Option<String> = None;
        let mut login = Some(login);
        let mut pause = FIRST_POLL;
        loop {
            // One atomic read of both keys: a holder stores the session and drops the lock in
            // one script, so "no lock and no session" means there is no login to wait for.
            let (session, lock): (Option<String>, Option<String>) = self
                .redis
                .query(redis::cmd("MGET").arg(&session_key).arg(&lock_key))
                .await
                .map_err(unavailable)?;
            if let Some(raw) = session {
                match decode(&raw) {
                    Ok(session) => return Ok(session),
                    // Log in again: the fresh session overwrites what nobody can read.
                    Err(err) => {
                        tracing::warn!(user = %user, error = %err, "unreadable cached session")
                    }
                }
            }
            match lock {
                Some(holder) => waited_for = Some(holder),
                None => {
                    if let Some(other) = &waited_for {
                        if let Some(err) = self.failure_of(user, other).await? {
                            return Err(LoginError::Provider(err));
                        }
                    }
                    let taken: Option<String> = self
                        .redis
                        .query(
                            redis::cmd("SET")
                                .arg(&lock_key)
                                .arg(&attempt)
                                .arg("NX")
                                .arg("PX")
                                .arg(millis(self.timing.lock_ttl)),
                        )
                        .await
                        .map_err(unavailable)?;
                    if taken.is_some() {
                        let login = login
                            .take()
                            .expect("the lock is taken at most once: taking it returns");
                        return self.login_holding_lock(user, ttl, &attempt, login).await;
                    }
                    // Another node took it between our read and our SET: wait for it.
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Err(LoginError::Cache(CacheError::Unavailable(format!(
                    "gave up waiting {:?} for another node's login",
                    self.timing.wait_limit
                ))));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_POLL);
        }
    }

    /// The failure recorded by attempt `attempt`, if that attempt failed.
    async fn failure_of(
        &self,
        user: &UserId,
        attempt: &str,
    ) -> Result<Option<ProviderError>, CacheError> {
        let raw: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(self.keys.login_failure(user)))
            .await
            .map_err(unavailable)?;
        let Some(raw) = raw else { return Ok(None) };
        let record: FailureRecord =
            serde_json::from_str(&raw).map_err(|err| CacheError::Corrupt(err.to_string()))?;
        Ok((record.attempt == attempt).then(|| record.error.into()))
    }

    /// Runs the login while holding the lock (extending it so a slow login keeps it), then
    /// stores the session or records the failure.
    async fn login_holding_lock(
        &self,
        user: &UserId,
        ttl: Duration,
        attempt: &str,
        mut login: LoginFuture,
    ) -> Result<ProviderSession, LoginError> {
        let lock_key = self.keys.login_lock(user);
        // At least 1 ms: a zero period would make `interval` panic.
        let mut extend =
            tokio::time::interval((self.timing.lock_ttl / 3).max(Duration::from_millis(1)));
        extend.tick().await; // The first tick is immediate; the lock is fresh.
        let result = loop {
            tokio::select! {
                result = &mut login => break result,
                _ = extend.tick() => {
                    let extended = self
                        .redis
                        .invoke::<i64>(EXTEND_LOCK.key(&lock_key).arg(attempt).arg(millis(self.timing.lock_ttl)))
                        .await;
                    if let Err(err) = extended {
                        tracing::warn!(user = %user, error = %err, "could not extend the login lock");
                    }
                }
            }
        };
        match result {
            Ok(session) => {
                let stored = match serde_json::to_string(&session) {
                    Ok(json) => self
                        .redis
                        .invoke::<i64>(
                            STORE_AND_UNLOCK
                                .key(self.keys.session(user))
                                .key(&lock_key)
                                .arg(json)
                                .arg(millis(ttl))
                                .arg(attempt),
                        )
                        .await
                        .map_err(|err| err.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                // The login worked: hand the session out even if caching it failed. Waiters
                // on other nodes then find the lock expired and log in themselves.
                if let Err(err) = stored {
                    tracing::warn!(user = %user, error = %err, "could not cache a new session");
                }
                Ok(session)
            }
            Err(err) => {
                let record = FailureRecord {
                    attempt: attempt.to_owned(),
                    error: WireProviderError::from(&err),
                };
                let recorded = match serde_json::to_string(&record) {
                    Ok(json) => self
                        .redis
                        .invoke::<i64>(
                            FAIL_AND_UNLOCK
                                .key(self.keys.login_failure(user))
                                .key(&lock_key)
                                .arg(json)
                                .arg(millis(self.timing.failure_ttl))
                                .arg(attempt),
                        )
                        .await
                        .map_err(|err| err.to_string()),
                    Err(err) => Err(err.to_string()),
                };
                if let Err(error) = recorded {
                    tracing::warn!(user = %user, error = %error, "could not record a failed login");
                }
                Err(LoginError::Provider(err))
            }
        }
    }
}

#[async_trait]
impl TokenCache for RedisTokenCache {
    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn get(&self, user: &UserId) -> Result<Option<ProviderSession>, CacheError> {
        let raw: Option<String> = self
            .inner
            .redis
            .query(redis::cmd("GET").arg(self.inner.keys.session(user)))
            .await
            .map_err(unavailable)?;
        raw.as_deref().map(decode).transpose()
    }

    #[tracing::instrument(skip(self, session, ttl), fields(user = %user))]
    async fn put(
        &self,
        user: &UserId,
        session: ProviderSession,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let json =
            serde_json::to_string(&session).map_err(|err| CacheError::Corrupt(err.to_string()))?;
        self.inner
            .redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.inner.keys.session(user))
                    .arg(json)
                    .arg("PX")
                    .arg(millis(ttl)),
            )
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn remove(&self, user: &UserId) -> Result<(), CacheError> {
        self.inner
            .redis
            .query::<i64>(redis::cmd("DEL").arg(self.inner.keys.session(user)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self, stale), fields(user = %user))]
    async fn invalidate(&self, user: &UserId, stale: &AuthToken) -> Result<(), CacheError> {
        let outcome: i64 = self
            .inner
            .redis
            .invoke(
                INVALIDATE
                    .key(self.inner.keys.session(user))
                    .arg(stale.expose()),
            )
            .await
            .map_err(unavailable)?;
        if outcome < 0 {
            tracing::warn!(user = %user, "deleted an unreadable cached session");
        }
        Ok(())
    }

    #[tracing::instrument(skip(self, ttl, login), fields(user = %user))]
    async fn get_or_login(
        &self,
        user: &UserId,
        ttl: Duration,
        login: LoginFuture,
    ) -> Result<ProviderSession, LoginError> {
        let flight = {
            let mut flights = self.inner.flights();
            match flights.get(user) {
                Some((_, flight)) => flight.clone(),
                None => {
                    let id = self.inner.next_flight.fetch_add(1, Ordering::Relaxed);
                    let inner = self.inner.clone();
                    let owner = user.clone();
                    // A task, so the login runs to its end (and is stored, and the lock
                    // dropped) even if every caller that waits for it goes away. The task
                    // takes its flight out of the map when it ends, even by panic, so a
                    // later caller starts afresh instead of joining an old result.
                    let task = tokio::spawn(async move {
                        let _leave = LeaveFlights {
                            inner: inner.clone(),
                            user: owner.clone(),
                            id,
                        };
                        inner.session_or_login(&owner, ttl, login).await
                    });
                    let flight = async move {
                        task.await.unwrap_or_else(|err| {
                            Err(LoginError::Cache(CacheError::Unavailable(format!(
                                "the login task failed: {err}"
                            ))))
                        })
                    }
                    .boxed()
                    .shared();
                    flights.insert(user.clone(), (id, flight.clone()));
                    flight
                }
            }
        };
        flight.await
    }
}

/// A failed login as other nodes read it.
#[derive(Serialize, Deserialize)]
struct FailureRecord {
    attempt: String,
    error: WireProviderError,
}

/// `ProviderError` on the wire, so waiters on other nodes get the same error as local ones.
/// The domain type has no serde on purpose; this mirror keeps the format in this crate.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireProviderError {
    SessionExpired,
    InvalidCredentials,
    Forbidden { message: String },
    NotFound { message: String },
    Conflict { message: String },
    Invalid { field: String, message: String },
    RateLimited { retry_after_ms: u64 },
    Unavailable { message: String },
    BadResponse { message: String },
}

impl From<&ProviderError> for WireProviderError {
    fn from(err: &ProviderError) -> Self {
        match err.clone() {
            ProviderError::SessionExpired => Self::SessionExpired,
            ProviderError::InvalidCredentials => Self::InvalidCredentials,
            ProviderError::Forbidden(message) => Self::Forbidden { message },
            ProviderError::NotFound(message) => Self::NotFound { message },
            ProviderError::Conflict(message) => Self::Conflict { message },
            ProviderError::Invalid { field, message } => Self::Invalid { field, message },
            ProviderError::RateLimited { retry_after } => Self::RateLimited {
                retry_after_ms: millis(retry_after),
            },
            ProviderError::Unavailable(message) => Self::Unavailable { message },
            ProviderError::BadResponse(message) => Self::BadResponse { message },
        }
    }
}

impl From<WireProviderError> for ProviderError {
    fn from(err: WireProviderError) -> Self {
        match err {
            WireProviderError::SessionExpired => Self::SessionExpired,
            WireProviderError::InvalidCredentials => Self::InvalidCredentials,
            WireProviderError::Forbidden { message } => Self::Forbidden(message),
            WireProviderError::NotFound { message } => Self::NotFound(message),
            WireProviderError::Conflict { message } => Self::Conflict(message),
            WireProviderError::Invalid { field, message } => Self::Invalid { field, message },
            WireProviderError::RateLimited { retry_after_ms } => Self::RateLimited {
                retry_after: Duration::from_millis(retry_after_ms),
            },
            WireProviderError::Unavailable { message } => Self::Unavailable(message),
            WireProviderError::BadResponse { message } => Self::BadResponse(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_survive_the_wire() {
        let errors = [
            ProviderError::SessionExpired,
            ProviderError::InvalidCredentials,
            ProviderError::Forbidden("f".into()),
            ProviderError::NotFound("n".into()),
            ProviderError::Conflict("c".into()),
            ProviderError::Invalid {
                field: "name".into(),
                message: "taken".into(),
            },
            ProviderError::RateLimited {
                retry_after: Duration::from_millis(1500),
            },
            ProviderError::Unavailable("down".into()),
            ProviderError::BadResponse("garbage".into()),
        ];
        for err in errors {
            let json = serde_json::to_string(&WireProviderError::from(&err)).unwrap();
            let back: WireProviderError = serde_json::from_str(&json).unwrap();
            assert_eq!(ProviderError::from(back), err, "{json}");
        }
    }
}
