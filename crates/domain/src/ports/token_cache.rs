//! `TokenCache`: users' provider sessions, so the gateway logs a user in once rather than per request.

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Future;

use crate::ids::{AuthToken, UserId};
use crate::model::ProviderSession;
use crate::ports::ProviderError;

/// A provider login that has not started yet; the cache polls it only if it decides to log in.
pub type LoginFuture = Pin<Box<dyn Future<Output = Result<ProviderSession, ProviderError>> + Send>>;

/// The cache itself failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    /// The backing store cannot be reached.
    #[error("the token cache is unavailable: {0}")]
    Unavailable(String),
    /// The backing store holds something we cannot read.
    #[error("the token cache holds an unreadable entry: {0}")]
    Corrupt(String),
}

/// Why `get_or_login` gave no session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The login failed; every caller that waited for it gets this same error.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// Provider sessions per host user, with a time to live.
///
/// Contract (checked by `imgate_testkit::token_cache::run_all`):
/// - `get` after `put` returns that session until `ttl` has passed, then `None`.
/// - `put` replaces an existing session; `remove` of an absent user is `Ok(())`.
/// - `invalidate` removes the session only while it is still the one given, so a request
///   holding a stale token cannot throw away the fresh one another request just made.
/// - `get_or_login` returns the cached session, or polls `login` and caches its result
///   for `ttl`; while one login for a user is running, every other caller for that user
///   waits for it instead of logging in again (exactly one provider login for N concurrent
///   callers), and a failed login is returned to all of them and not cached.
#[async_trait]
pub trait TokenCache: Send + Sync {
    /// The user's cached session, if any.
    async fn get(&self, user: &UserId) -> Result<Option<ProviderSession>, CacheError>;
    /// Stores a session for `ttl`.
    async fn put(
        &self,
        user: &UserId,
        session: ProviderSession,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Drops the user's session.
    async fn remove(&self, user: &UserId) -> Result<(), CacheError>;
    /// Drops the user's session if its token is still `stale`.
    async fn invalidate(&self, user: &UserId, stale: &AuthToken) -> Result<(), CacheError>;
    /// The cached session, or the result of one login shared by all concurrent callers.
    async fn get_or_login(
        &self,
        user: &UserId,
        ttl: Duration,
        login: LoginFuture,
    ) -> Result<ProviderSession, LoginError>;
}
