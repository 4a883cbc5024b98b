//! `PasswordStore` on Redis: `{prefix}:{user}:password` holds the password as a plain string,
//! with no TTL, so every node logs the user in with what the host set.
//!
//! It is stored in clear, not hashed: the gateway itself sends it to the provider when it logs
//! the user in, so it must get it back. Whoever can read these keys can log in as these users;
//! `docs/redis.md` says how Redis must be protected.

use async_trait::async_trait;
use imgate_domain::ports::{PasswordStore, PasswordStoreError};
use imgate_domain::{Password, UserId};

use crate::connection::{CallError, Redis};
use crate::keys::Keys;
use crate::{ConnectError, RedisConfig};

/// Host-chosen passwords shared by every node through Redis.
#[derive(Clone)]
pub struct RedisPasswordStore {
    redis: Redis,
    keys: Keys,
}

impl RedisPasswordStore {
    /// Passwords in the Redis of `config`; fails only on an invalid URL, and while Redis does
    /// not answer every call fails with `Unavailable`.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            redis: Redis::connect(config)?,
            keys: Keys::new(&config.prefix),
        })
    }
}

fn unavailable(err: CallError) -> PasswordStoreError {
    PasswordStoreError::Unavailable(err.to_string())
}

#[async_trait]
impl PasswordStore for RedisPasswordStore {
    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn get(&self, user: &UserId) -> Result<Option<Password>, PasswordStoreError> {
        let stored: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(self.keys.password(user)))
            .await
            .map_err(unavailable)?;
        Ok(stored.map(Password::new))
    }

    #[tracing::instrument(skip(self, password), fields(user = %user))]
    async fn set(&self, user: &UserId, password: &Password) -> Result<(), PasswordStoreError> {
        self.redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.keys.password(user))
                    .arg(password.expose()),
            )
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn remove(&self, user: &UserId) -> Result<(), PasswordStoreError> {
        self.redis
            .query::<i64>(redis::cmd("DEL").arg(self.keys.password(user)))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
