//! `Lease`: which node owns a user's upstream connection, so that across all nodes each online
//! user has exactly one.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// The lease store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The backing store cannot be reached.
    #[error("the lease store is unavailable: {0}")]
    Unavailable(String),
}

/// Proof of holding a lease: who holds it and a fencing number that grows with every new
/// holder, so a late message from an old holder can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken {
    /// The holder's id (a node id).
    pub holder: String,
    /// Larger for every later acquisition of the same user's lease.
    pub fence: u64,
}

/// Time-limited exclusive ownership of a user's upstream.
///
/// Contract (checked by `imgate_testkit::lease::run_all`):
/// - `acquire` of a free lease returns a token; while it is held (not released, not expired),
///   every other holder's `acquire` returns `None`; of N concurrent acquirers exactly one wins.
/// - `acquire` by the current holder returns its token again (idempotent, same fence).
/// - A lease not renewed within its `ttl` expires; the next acquirer gets a larger fence.
/// - `renew` with the current token extends it and returns `true`; with a stale token (expired
///   and taken by another, or released) it returns `false` and changes nothing.
/// - `release` with the current token frees it; with a stale token it changes nothing.
/// - `expires_in` of a held lease is how long it has left (at most its `ttl`); of a free one,
///   `None`.
/// - `holder` of a held lease is its holder's id; of a free (released, expired) one, `None`.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Takes the lease on `user` for `ttl` unless someone else holds it.
    async fn acquire(
        &self,
        user: &UserId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, LeaseError>;
    /// Extends a held lease by `ttl` from now; `false` when it is no longer held.
    async fn renew(
        &self,
        user: &UserId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, LeaseError>;
    /// Gives a held lease up.
    async fn release(&self, user: &UserId, token: &LeaseToken) -> Result<(), LeaseError>;
    /// How long the lease on `user` has left, whoever holds it; `None` when it is free. A
    /// standby uses it to try again the moment a dead holder's lease runs out.
    async fn expires_in(&self, user: &UserId) -> Result<Option<Duration>, LeaseError>;
    /// Who holds the lease on `user`; `None` when it is free. Lets any node send a user's
    /// connections to the node that holds the user's upstream.
    async fn holder(&self, user: &UserId) -> Result<Option<String>, LeaseError>;
}
