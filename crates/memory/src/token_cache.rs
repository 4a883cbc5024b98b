//! `TokenCache` in process memory.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{CacheError, LoginError, LoginFuture, TokenCache};
use imgate_domain::{AuthToken, UserId};
use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;

#[derive(Clone)]
struct Entry {
    session: ProviderSession,
    ttl: Duration,
}

/// Each entry lives for the TTL it was stored with.
struct PerEntryTtl;

impl Expiry<UserId, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &UserId, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &UserId,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Provider sessions in a moka cache; `get_or_login` relies on moka's coalescing of concurrent
/// initialisations of one key, so N callers for a user share one login.
#[derive(Clone)]
pub struct MemoryTokenCache {
    cache: Cache<UserId, Entry>,
}

impl MemoryTokenCache {
    /// A cache holding at most `max_users` sessions; the least used go first beyond that.
    pub fn new(max_users: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_users)
                .expire_after(PerEntryTtl)
                .build(),
        }
    }
}

impl Default for MemoryTokenCache {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

#[async_trait]
impl TokenCache for MemoryTokenCache {
    async fn get(&self, user: &UserId) -> Result<Option<ProviderSession>, CacheError> {
        Ok(self.cache.get(user).await.map(|entry| entry.session))
    }

    async fn put(
        &self,
        user: &UserId,
        session: ProviderSession,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.cache
            .insert(user.clone(), Entry { session, ttl })
            .await;
        Ok(())
    }

    async fn remove(&self, user: &UserId) -> Result<(), CacheError> {
        self.cache.invalidate(user).await;
        Ok(())
    }

    async fn invalidate(&self, user: &UserId, stale: &AuthToken) -> Result<(), CacheError> {
        let stale = stale.clone();
        self.cache
            .entry(user.clone())
            .and_compute_with(|current| {
                let op = match current {
                    Some(entry) if entry.value().session.token == stale => Op::Remove,
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        Ok(())
    }

    async fn get_or_login(
        &self,
        user: &UserId,
        ttl: Duration,
        login: LoginFuture,
    ) -> Result<ProviderSession, LoginError> {
        let entry = self
            .cache
            .try_get_with(user.clone(), async move {
                login.await.map(|session| Entry { session, ttl })
            })
            .await
            .map_err(|err| LoginError::Provider((*err).clone()))?;
        Ok(entry.session)
    }
}
