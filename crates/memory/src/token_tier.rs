//! `TokenCache` with a node-local tier in front of a shared one, so a node keeps serving the
//! users whose sessions it knows while the shared cache (Redis) is down.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{CacheError, LoginError, LoginFuture, TokenCache};
use imgate_domain::{AuthToken, UserId};

use crate::MemoryTokenCache;

/// Sessions this node read or made lately, in front of the cache all nodes share.
///
/// A session is kept here for at most `local_ttl` (and never longer than the shared copy
/// lives): another node's logout or renewal reaches this node within that time, and a stale
/// token meanwhile is refused by the provider and renewed, as any expired session is. Changes
/// go to both tiers, and a shared tier that cannot be written fails the call; reads of
/// sessions this node holds never need the shared tier.
pub struct TieredTokenCache {
    local: MemoryTokenCache,
    shared: Arc<dyn TokenCache>,
    local_ttl: Duration,
}

impl TieredTokenCache {
    /// A local tier of at most `max_users` sessions, each kept `local_ttl`, before `shared`.
    pub fn new(shared: Arc<dyn TokenCache>, max_users: u64, local_ttl: Duration) -> Self {
        Self {
            local: MemoryTokenCache::new(max_users),
            shared,
            local_ttl,
        }
    }
}

#[async_trait]
impl TokenCache for TieredTokenCache {
    async fn get(&self, user: &UserId) -> Result<Option<ProviderSession>, CacheError> {
        if let Some(session) = self.local.get(user).await? {
            return Ok(Some(session));
        }
        let session = self.shared.get(user).await?;
        if let Some(session) = &session {
            self.local
                .put(user, session.clone(), self.local_ttl)
                .await?;
        }
        Ok(session)
    }

    async fn put(
        &self,
        user: &UserId,
        session: ProviderSession,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.local
            .put(user, session.clone(), ttl.min(self.local_ttl))
            .await?;
        self.shared.put(user, session, ttl).await
    }

    async fn remove(&self, user: &UserId) -> Result<(), CacheError> {
        self.local.remove(user).await?;
        self.shared.remove(user).await
    }

    async fn invalidate(&self, user: &UserId, stale: &AuthToken) -> Result<(), CacheError> {
        self.local.invalidate(user, stale).await?;
        self.shared.invalidate(user, stale).await
    }

    async fn get_or_login(
        &self,
        user: &UserId,
        ttl: Duration,
        login: LoginFuture,
    ) -> Result<ProviderSession, LoginError> {
        if let Some(session) = self.local.get(user).await? {
            return Ok(session);
        }
        let session = self.shared.get_or_login(user, ttl, login).await?;
        self.local
            .put(user, session.clone(), ttl.min(self.local_ttl))
            .await?;
        Ok(session)
    }
}
