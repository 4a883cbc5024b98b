//! Mirroring host users into the provider, as the admin agent.

use std::sync::Arc;

use crate::ids::{Password, UserId};
use crate::model::{Upserted, User, UserProfile};
use crate::ports::{CacheError, ImProvider, PasswordStoreError, ProviderError};
use crate::services::session::store_outage;
use crate::services::{AdminAgent, AdminError, SessionError, SessionService, UpstreamService};

/// Why a user operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The admin agent cannot log in: the gateway's provider admin credentials are wrong.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The provider failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The token cache, or the password store beside it, failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl From<PasswordStoreError> for UserError {
    fn from(err: PasswordStoreError) -> Self {
        Self::Cache(store_outage(err))
    }
}

impl From<SessionError> for UserError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Provider(err) => Self::Provider(err),
            SessionError::Cache(err) => Self::Cache(err),
        }
    }
}

/// Creates, reads and deletes the provider accounts of host users.
pub struct UserService {
    provider: Arc<dyn ImProvider>,
    admin: Arc<AdminAgent>,
    sessions: Arc<SessionService>,
    upstreams: Arc<UpstreamService>,
}

impl UserService {
    /// A service acting through `admin`, dropping sessions from `sessions` and closing
    /// upstreams in `upstreams` for deleted users.
    pub fn new(
        provider: Arc<dyn ImProvider>,
        admin: Arc<AdminAgent>,
        sessions: Arc<SessionService>,
        upstreams: Arc<UpstreamService>,
    ) -> Self {
        Self {
            provider,
            admin,
            sessions,
            upstreams,
        }
    }

    /// Creates the user's provider account, or brings it in line with `profile`.
    #[tracing::instrument(skip(self, profile, password), fields(user = %user))]
    pub async fn upsert(
        &self,
        user: &UserId,
        profile: &UserProfile,
        password: Option<Password>,
    ) -> Result<(User, Upserted), UserError> {
        let passwords = self.sessions.passwords();
        let to_set = passwords.password_to_set(password.as_ref());
        let result = self
            .admin
            .run(|admin| {
                let provider = self.provider.clone();
                let to_set = to_set.clone();
                async move { provider.upsert_user(&admin, user, profile, &to_set).await }
            })
            .await?;
        // After the provider took it, so a password the provider refused is never stored. If
        // storing fails, the host gets 503 and retries the idempotent upsert.
        passwords.remember(user, password.as_ref()).await?;
        // A changed password makes the cached session's origin stale; the next call logs in anew.
        self.sessions.forget(user).await?;
        Ok(result)
    }

    /// Reads a mirrored user.
    pub async fn get(&self, user: &UserId) -> Result<User, UserError> {
        Ok(self
            .admin
            .run(|admin| {
                let provider = self.provider.clone();
                async move { provider.get_user(&admin, user).await }
            })
            .await?)
    }

    /// Deletes the user's provider account, forgets their session and closes their upstream.
    #[tracing::instrument(skip(self), fields(user = %user))]
    pub async fn delete(&self, user: &UserId) -> Result<(), UserError> {
        self.admin
            .run(|admin| {
                let provider = self.provider.clone();
                async move { provider.delete_user(&admin, user).await }
            })
            .await?;
        self.upstreams.account_deleted(user);
        self.sessions.passwords().forget(user).await?;
        self.sessions.forget(user).await?;
        Ok(())
    }
}
