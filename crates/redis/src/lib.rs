//! imgate's shared adapters on Redis, for running many gateway nodes side by side:
//!
//! - [`RedisTokenCache`]: users' provider sessions as JSON with a TTL, and `get_or_login`
//!   single-flight across nodes (a lock key per user, waiters poll until the holder stores
//!   its result).
//! - [`RedisBackplane`]: hub messages between nodes over pub/sub, a channel per user and one
//!   to every node, in the backplane's versioned wire format; pipelined writes, and one
//!   subscriber connection that renews every subscription after a reconnect.
//! - [`RedisLease`]: which node owns a user's upstream, with fencing numbers.
//! - [`RedisPasswordStore`]: the provider passwords the host set for its users, in clear
//!   (the gateway logs in with them), with no TTL.
//! - [`RedisHealthCheck`]: `PING` for `/readyz`.
//!
//! It is not a general Redis client: every key and channel it touches starts with
//! [`RedisConfig::prefix`] and is listed in `docs/redis.md`. Redis failures become each port's
//! `Unavailable` error and never a panic.

mod backplane;
mod connection;
mod health;
mod keys;
mod lease;
mod password_store;
mod presence;
mod telemetry;
mod token_cache;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use backplane::RedisBackplane;
pub use health::RedisHealthCheck;
pub use lease::RedisLease;
pub use password_store::RedisPasswordStore;
pub use presence::RedisPresence;
pub use token_cache::{RedisTokenCache, SingleFlight};

/// Where Redis is and how this deployment's keys are named.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; may carry a password, so it is never logged.
    pub url: String,
    /// Start of every key and channel (followed by `:`), so deployments can share one Redis.
    pub prefix: String,
    /// Longest wait for any one Redis command or connection attempt.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
}

fn default_command_timeout_ms() -> u64 {
    2_000
}

impl RedisConfig {
    /// A config with the default command timeout.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            command_timeout_ms: default_command_timeout_ms(),
        }
    }

    fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms.max(1))
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password; only say whether it has credentials at all.
        f.debug_struct("RedisConfig")
            .field(
                "url",
                &if self.url.contains('@') {
                    "<with credentials>"
                } else {
                    self.url.as_str()
                },
            )
            .field("prefix", &self.prefix)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .finish()
    }
}

/// An adapter could not be set up; returned by the adapters' `connect`.
///
/// Redis not answering is not one of these: the adapters start anyway and their calls fail
/// with the port's `Unavailable` until Redis answers.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `url` is not a Redis URL.
    #[error("redis.url is not a valid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
}
