//! The admin agent: one provider account that logs in at start-up, re-logs in when its session
//! is rejected, and logs out at shutdown; operations that need an admin run as it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, RwLock};

use crate::ids::Password;
use crate::model::ProviderSession;
use crate::ports::{ImProvider, ProviderError};

/// Why an admin operation could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The provider refused the admin credentials: a configuration problem.
    #[error("the provider refused the admin agent's credentials")]
    LoginRefused,
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
}

/// The provider admin account the gateway acts as for user mirroring.
pub struct AdminAgent {
    provider: Arc<dyn ImProvider>,
    username: String,
    password: Password,
    session: RwLock<Option<ProviderSession>>,
    // Serialises logins so that many requests meeting a rejected session log in once.
    login_lock: Mutex<()>,
}

impl AdminAgent {
    /// An agent for the provider account `username`; it logs in on `start` or first use.
    pub fn new(provider: Arc<dyn ImProvider>, username: String, password: Password) -> Self {
        Self {
            provider,
            username,
            password,
            session: RwLock::new(None),
            login_lock: Mutex::new(()),
        }
    }

    /// Logs in; called at start-up.
    pub async fn start(&self) -> Result<(), AdminError> {
        self.login(None).await.map(drop)
    }

    /// Keeps trying to log in, backing off up to 30 s between tries, until it works: for a
    /// provider that was down or misconfigured at start-up (`/readyz` says so meanwhile).
    pub fn keep_logging_in(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let agent = Arc::clone(self);
        tokio::spawn(async move {
            let mut delay = std::time::Duration::from_secs(1);
            loop {
                tokio::time::sleep(delay).await;
                match agent.start().await {
                    Ok(()) => {
                        tracing::info!("admin agent logged in");
                        return;
                    }
                    Err(error) => tracing::warn!(error = %error, "admin agent login failed again"),
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(30));
            }
        })
    }

    /// Whether the agent currently holds a session.
    pub async fn is_logged_in(&self) -> bool {
        self.session.read().await.is_some()
    }

    /// Runs `call` as the admin; when the provider rejects the session, logs in again and
    /// retries once.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, AdminError>
    where
        F: Fn(ProviderSession) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let session = self.current().await?;
        match call(session.clone()).await {
            Err(ProviderError::SessionExpired) => {
                tracing::info!("admin session rejected, logging in again");
                let fresh = self.login(Some(&session)).await?;
                Ok(call(fresh).await?)
            }
            other => Ok(other?),
        }
    }

    /// Logs out; called at shutdown. A failure is logged, not returned: shutdown goes on.
    pub async fn shutdown(&self) {
        let session = self.session.write().await.take();
        if let Some(session) = session {
            if let Err(error) = self.provider.logout(&session).await {
                tracing::warn!(error = %error, "admin agent logout failed");
            }
        }
    }

    async fn current(&self) -> Result<ProviderSession, AdminError> {
        if let Some(session) = self.session.read().await.clone() {
            return Ok(session);
        }
        self.login(None).await
    }

    /// Logs in unless another caller already replaced `stale` (or, with `None`, already logged in).
    async fn login(&self, stale: Option<&ProviderSession>) -> Result<ProviderSession, AdminError> {
        let _guard = self.login_lock.lock().await;
        if let Some(current) = self.session.read().await.clone() {
            if stale.is_none_or(|stale| stale.token != current.token) {
                return Ok(current);
            }
        }
        let session = match self
            .provider
            .login_admin(&self.username, &self.password)
            .await
        {
            Ok(session) => session,
            Err(ProviderError::InvalidCredentials) => {
                *self.session.write().await = None;
                return Err(AdminError::LoginRefused);
            }
            Err(err) => return Err(err.into()),
        };
        *self.session.write().await = Some(session.clone());
        Ok(session)
    }
}

#[async_trait::async_trait]
impl crate::ports::HealthCheck for AdminAgent {
    fn name(&self) -> &'static str {
        "admin_agent"
    }

    async fn check(&self) -> Result<(), String> {
        if self.is_logged_in().await {
            Ok(())
        } else {
            Err("the admin agent is not logged in".into())
        }
    }
}
