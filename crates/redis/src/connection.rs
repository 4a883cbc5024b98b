//! One command connection shared by an adapter, with a timeout on every call.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisError, ScriptInvocation};

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
}

/// A multiplexed connection that reconnects by itself (`ConnectionManager`), plus the client
/// for opening dedicated connections such as pub/sub.
#[derive(Clone)]
pub(crate) struct Redis {
    client: Client,
    conn: ConnectionManager,
    timeout: Duration,
}

impl Redis {
    /// Connects, failing if Redis does not answer within the command timeout.
    pub(crate) async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        let client = Client::open(config.url.as_str()).map_err(ConnectError::InvalidUrl)?;
        let timeout = config.command_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnection is retried in the background on the next command anyway; a short
            // series keeps a call from waiting far beyond its own timeout.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config),
        )
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
        .map_err(ConnectError::Unreachable)?;
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
        // Clones share the one multiplexed connection; the clone is only a handle.
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
            .map_err(CallError::from)
    }

    /// Runs a Lua script (by hash, loading it on first use).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, CallError> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, script.invoke_async(&mut conn))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
            .map_err(CallError::from)
    }
}

/// A TTL as whole milliseconds for `PX`/`PEXPIRE`, at least 1 (Redis refuses 0).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}
