//! A user's provider session: from the cache, or from one login shared by concurrent requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::{Password, UserId};
use crate::model::ProviderSession;
use crate::ports::{
    CacheError, ImProvider, LoginError, PasswordStore, PasswordStoreError, ProviderError,
    SessionSource, TokenCache,
};

/// Which password the gateway uses to log a mirrored user in to the provider: the one the host
/// set for that user, kept in a [`PasswordStore`] every node shares, or the configured default.
pub struct PasswordPolicy {
    default_password: Password,
    store: Arc<dyn PasswordStore>,
}

impl PasswordPolicy {
    /// Every mirrored user gets `default_password` unless the host set one of their own, which
    /// `store` keeps.
    pub fn new(default_password: Password, store: Arc<dyn PasswordStore>) -> Self {
        Self {
            default_password,
            store,
        }
    }

    /// The password to log `user` in with.
    pub async fn password_for(&self, user: &UserId) -> Result<Password, PasswordStoreError> {
        Ok(self
            .store
            .get(user)
            .await?
            .unwrap_or_else(|| self.default_password.clone()))
    }

    /// The password to give a user in the provider, given what the host sent.
    pub fn password_to_set(&self, requested: Option<&Password>) -> Password {
        requested
            .cloned()
            .unwrap_or_else(|| self.default_password.clone())
    }

    /// Remembers what the host sent once the provider has it: a password of the user's own,
    /// or none (back to the default).
    pub async fn remember(
        &self,
        user: &UserId,
        requested: Option<&Password>,
    ) -> Result<(), PasswordStoreError> {
        match requested {
            Some(password) => self.store.set(user, password).await,
            None => self.store.remove(user).await,
        }
    }

    /// Forgets a deleted user's password.
    pub async fn forget(&self, user: &UserId) -> Result<(), PasswordStoreError> {
        self.store.remove(user).await
    }
}

/// Why a user's call could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The provider failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The token cache, or the password store beside it, failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// A password store outage as the cache error callers already handle: both are the gateway's
/// own storage (one Redis when nodes share it), and either being down means the same to a
/// caller, 503 rather than a provider failure.
pub(crate) fn store_outage(err: PasswordStoreError) -> CacheError {
    match err {
        PasswordStoreError::Unavailable(detail) => {
            CacheError::Unavailable(format!("the password store is unavailable: {detail}"))
        }
    }
}

impl From<PasswordStoreError> for SessionError {
    fn from(err: PasswordStoreError) -> Self {
        Self::Cache(store_outage(err))
    }
}

impl From<LoginError> for SessionError {
    fn from(err: LoginError) -> Self {
        match err {
            LoginError::Cache(err) => Self::Cache(err),
            LoginError::Provider(err) => Self::Provider(err),
        }
    }
}

/// Users' provider sessions, logged in on demand and cached with a TTL.
pub struct SessionService {
    provider: Arc<dyn ImProvider>,
    cache: Arc<dyn TokenCache>,
    passwords: PasswordPolicy,
    ttl: Duration,
}

impl SessionService {
    /// A service that caches sessions in `cache` for `ttl`.
    pub fn new(
        provider: Arc<dyn ImProvider>,
        cache: Arc<dyn TokenCache>,
        passwords: PasswordPolicy,
        ttl: Duration,
    ) -> Self {
        Self {
            provider,
            cache,
            passwords,
            ttl,
        }
    }

    /// How long a cached session is trusted.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The user's session: cached, or from a login that concurrent callers share.
    #[tracing::instrument(skip(self), fields(user = %user))]
    pub async fn session(&self, user: &UserId) -> Result<ProviderSession, SessionError> {
        // Nearly every call finds a cached session; reading the password first would cost
        // every call a second round trip to the store for a login that rarely happens.
        match self.cache.get(user).await {
            Ok(Some(session)) => return Ok(session),
            // An unreadable entry is `get_or_login`'s to replace.
            Ok(None) | Err(CacheError::Corrupt(_)) => {}
            Err(err) => return Err(err.into()),
        }
        let password = self.passwords.password_for(user).await?;
        let provider = self.provider.clone();
        let login_user = user.clone();
        let login = Box::pin(async move { provider.login_user(&login_user, &password).await });
        Ok(self.cache.get_or_login(user, self.ttl, login).await?)
    }

    /// Runs `call` with the user's session; when the provider rejects the session, drops it,
    /// logs in again and retries once.
    pub async fn run<T, F, Fut>(&self, user: &UserId, call: F) -> Result<T, SessionError>
    where
        F: Fn(ProviderSession) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let session = self.session(user).await?;
        let token = session.token.clone();
        match call(session).await {
            Err(ProviderError::SessionExpired) => {
                tracing::info!(user = %user, "provider session rejected, logging in again");
                self.cache.invalidate(user, &token).await?;
                let session = self.session(user).await?;
                Ok(call(session).await?)
            }
            other => Ok(other?),
        }
    }

    /// Logs the user out of the provider and forgets the session.
    pub async fn logout(&self, user: &UserId) -> Result<(), SessionError> {
        if let Some(session) = self.cache.get(user).await? {
            self.cache.remove(user).await?;
            match self.provider.logout(&session).await {
                Ok(()) | Err(ProviderError::SessionExpired) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// A fresh session after `rejected` was refused: drops it (unless already replaced) and
    /// logs in once more, shared with any concurrent caller.
    pub async fn renew(
        &self,
        user: &UserId,
        rejected: &ProviderSession,
    ) -> Result<ProviderSession, SessionError> {
        self.cache.invalidate(user, &rejected.token).await?;
        self.session(user).await
    }

    /// Forgets the user's cached session without telling the provider.
    pub async fn forget(&self, user: &UserId) -> Result<(), SessionError> {
        Ok(self.cache.remove(user).await?)
    }

    /// The passwords in use.
    pub fn passwords(&self) -> &PasswordPolicy {
        &self.passwords
    }
}

/// One user's sessions, for an upstream connection that needs them while it lives.
pub struct UserSessions {
    user: UserId,
    sessions: Arc<SessionService>,
}

impl UserSessions {
    /// `user`'s sessions from `sessions`.
    pub fn new(user: UserId, sessions: Arc<SessionService>) -> Self {
        Self { user, sessions }
    }
}

fn as_provider_error(err: SessionError) -> ProviderError {
    match err {
        SessionError::Provider(err) => err,
        SessionError::Cache(err) => ProviderError::Unavailable(err.to_string()),
    }
}

#[async_trait::async_trait]
impl SessionSource for UserSessions {
    async fn current(&self) -> Result<ProviderSession, ProviderError> {
        self.sessions
            .session(&self.user)
            .await
            .map_err(as_provider_error)
    }

    async fn renew(&self, rejected: &ProviderSession) -> Result<ProviderSession, ProviderError> {
        self.sessions
            .renew(&self.user, rejected)
            .await
            .map_err(as_provider_error)
    }
}
