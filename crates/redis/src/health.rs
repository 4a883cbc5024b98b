//! `HealthCheck` for Redis: a `PING` within the command timeout.

use async_trait::async_trait;
use imgate_domain::ports::HealthCheck;

use crate::connection::Redis;
use crate::{ConnectError, RedisConfig};

/// Reports Redis usable when it answers `PING` in time; named `redis`.
#[derive(Clone)]
pub struct RedisHealthCheck {
    redis: Redis,
}

impl RedisHealthCheck {
    /// A check of the Redis of `config`; fails only on an invalid URL, and reports Redis not
    /// usable until it answers.
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        Ok(Self {
            redis: Redis::connect(config)?,
        })
    }

    pub(crate) fn from_connection(redis: Redis) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl HealthCheck for RedisHealthCheck {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> Result<(), String> {
        let answer: String = self
            .redis
            .query(&redis::cmd("PING"))
            .await
            .map_err(|err| err.to_string())?;
        if answer == "PONG" {
            Ok(())
        } else {
            Err(format!("unexpected answer to PING: {answer}"))
        }
    }
}
