//! `Lease` on Redis: `{prefix}:{user}:lease` holds `holder:fence` with a `PX` TTL, the fence
//! comes from `INCR` on `{prefix}:{user}:lease-fence`. Every operation is one Lua script, so
//! check and change happen atomically.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::ports::{Lease, LeaseError, LeaseToken};
use imgate_domain::UserId;
use redis::Script;

use crate::connection::{millis, CallError, Redis};
use crate::keys::Keys;
use crate::{ConnectError, RedisConfig};

/// Takes a free lease with a fresh fence, or extends it for its current holder (same fence).
/// Returns the fence, or -1 when someone else holds it. A value that is not `holder:fence`
/// counts as held by someone else until it expires.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current then
  local holder, fence = string.match(current, '^(.*):(%d+)$')
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(fence)
  end
  return -1
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
return fence
",
    )
});

/// Extends the lease if it still holds exactly this token; 1 if it did.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
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

/// Deletes the lease if it still holds exactly this token.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Leases shared by every node through Redis.
#[derive(Clone)]
pub struct RedisLease {
    redis: Redis,
    keys: Keys,
}

impl RedisLease {
    /// Leases in the Redis of `config`; fails only on an invalid URL, and while Redis does not
    /// answer every call fails with `Unavailable`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            redis: Redis::connect(config)?,
            keys: Keys::new(&config.prefix),
        })
    }
}

fn stored(token: &LeaseToken) -> String {
    format!("{}:{}", token.holder, token.fence)
}

fn unavailable(err: CallError) -> LeaseError {
    LeaseError::Unavailable(err.to_string())
}

#[async_trait]
impl Lease for RedisLease {
    #[tracing::instrument(skip(self, ttl), fields(user = %user))]
    async fn acquire(
        &self,
        user: &UserId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, LeaseError> {
        let fence: i64 = self
            .redis
            .invoke(
                ACQUIRE
                    .key(self.keys.lease(user))
                    .key(self.keys.lease_fence(user))
                    .arg(holder)
                    .arg(millis(ttl)),
            )
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(fence).ok().map(|fence| LeaseToken {
            holder: holder.to_owned(),
            fence,
        }))
    }

    #[tracing::instrument(skip(self, token, ttl), fields(user = %user, fence = token.fence))]
    async fn renew(
        &self,
        user: &UserId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, LeaseError> {
        let renewed: i64 = self
            .redis
            .invoke(
                RENEW
                    .key(self.keys.lease(user))
                    .arg(stored(token))
                    .arg(millis(ttl)),
            )
            .await
            .map_err(unavailable)?;
        Ok(renewed == 1)
    }

    #[tracing::instrument(skip(self, token), fields(user = %user, fence = token.fence))]
    async fn release(&self, user: &UserId, token: &LeaseToken) -> Result<(), LeaseError> {
        let _: i64 = self
            .redis
            .invoke(RELEASE.key(self.keys.lease(user)).arg(stored(token)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn expires_in(&self, user: &UserId) -> Result<Option<Duration>, LeaseError> {
        // -2: no key, -1: no TTL (never written so by this adapter; treat as free).
        let left: i64 = self
            .redis
            .query(redis::cmd("PTTL").arg(self.keys.lease(user)))
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(left)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis))
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn holder(&self, user: &UserId) -> Result<Option<String>, LeaseError> {
        let stored: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(self.keys.lease(user)))
            .await
            .map_err(unavailable)?;
        // `holder:fence`; holder ids may hold colons themselves, the fence never does.
        Ok(stored.and_then(|value| value.rsplit_once(':').map(|(holder, _)| holder.to_owned())))
    }
}
