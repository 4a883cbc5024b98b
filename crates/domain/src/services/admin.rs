//! The admin agent: one provider account that logs in at start-up, re-logs in when its session
//! is rejected, and logs out at shutdown; operations that need an admin run as it. Right after
//! each start-up login it checks the provider's deployment (and fixes it when so configured),
//! and it keeps the findings fresh for `/readyz`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::ids::Password;
use crate::model::ProviderSession;
use crate::ports::{DeploymentCheck, DeploymentReport, FindingStatus, ImProvider, ProviderError};

/// How long deployment findings are trusted before `/readyz` asks the provider again: an
/// operator who fixes a setting sees it within this, and a probe polling `/readyz` every
/// second costs the provider a few calls a minute, not a few a second.
const FINDINGS_TTL: Duration = Duration::from_secs(30);
/// How long a `/readyz` refresh of the findings may take before the last ones are shown.
const REFRESH_BUDGET: Duration = Duration::from_millis(1500);

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
    deployment: DeploymentCheck,
    // The last deployment report and when it was made; `None` until a check succeeded.
    findings: RwLock<Option<(Instant, DeploymentReport)>>,
    // One deployment check at a time: concurrent `/readyz` calls share the one running.
    checking: Mutex<()>,
}

impl AdminAgent {
    /// An agent for the provider account `username`; it logs in on `start` or first use. Its
    /// deployment check only reports, for mirrored users of role `user`, unless
    /// [`AdminAgent::with_deployment_check`] says otherwise.
    pub fn new(provider: Arc<dyn ImProvider>, username: String, password: Password) -> Self {
        Self {
            provider,
            username,
            password,
            session: RwLock::new(None),
            login_lock: Mutex::new(()),
            deployment: DeploymentCheck {
                fix: false,
                user_role: "user".into(),
            },
            findings: RwLock::new(None),
            checking: Mutex::new(()),
        }
    }

    /// What the start-up deployment check does: report only, or fix what it can.
    pub fn with_deployment_check(mut self, check: DeploymentCheck) -> Self {
        self.deployment = check;
        self
    }

    /// Logs in, then checks the provider's deployment as configured; called at start-up. A
    /// deployment check that cannot run is logged and retried by `/readyz`, never fatal.
    pub async fn start(&self) -> Result<(), AdminError> {
        self.login(None).await?;
        let check = self.deployment.clone();
        if let Err(error) = self.check_deployment(&check).await {
            tracing::warn!(error = %error, "cannot check the provider's settings yet; /readyz will try again");
        }
        Ok(())
    }

    /// Runs the provider's deployment check as the admin, logs each warning and change, and
    /// keeps the report for `/readyz` and the `imgate_provider_deployment_warning` gauge.
    pub async fn check_deployment(
        &self,
        check: &DeploymentCheck,
    ) -> Result<DeploymentReport, AdminError> {
        let _one_at_a_time = self.checking.lock().await;
        let report = self
            .run(|session| async move { self.provider.check_deployment(&session, check).await })
            .await?;
        for change in &report.changes {
            tracing::info!(change = %change, "changed a provider setting the gateway needs");
        }
        for finding in &report.findings {
            match finding.status {
                FindingStatus::Warning => {
                    tracing::warn!(check = %finding.name, "{}", finding.message)
                }
                FindingStatus::Ok => {
                    tracing::info!(check = %finding.name, "{}", finding.message)
                }
            }
        }
        self.keep(report.clone()).await;
        Ok(report)
    }

    /// The deployment warnings as (name, message), asking the provider again when the last
    /// answer is older than 30 s; never changes anything. The last known ones when the
    /// provider cannot be asked.
    pub async fn deployment_warnings(&self) -> Vec<(String, String)> {
        let stale = self
            .findings
            .read()
            .await
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= FINDINGS_TTL);
        if stale && self.is_logged_in().await {
            let _ = tokio::time::timeout(REFRESH_BUDGET, self.refresh()).await;
        }
        self.findings
            .read()
            .await
            .as_ref()
            .map(|(_, report)| {
                report
                    .warnings()
                    .map(|f| (f.name.clone(), f.message.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Checks again without fixing; logs only what changed since the last report.
    async fn refresh(&self) {
        let Ok(_one_at_a_time) = self.checking.try_lock() else {
            return; // another caller is refreshing; its answer will do
        };
        let check = DeploymentCheck {
            fix: false,
            ..self.deployment.clone()
        };
        let report = match self
            .run(|session| {
                let check = &check;
                async move { self.provider.check_deployment(&session, check).await }
            })
            .await
        {
            Ok(report) => report,
            Err(error) => {
                tracing::debug!(error = %error, "cannot check the provider's settings");
                return;
            }
        };
        let before: BTreeMap<String, String> = self
            .findings
            .read()
            .await
            .as_ref()
            .map(|(_, r)| {
                r.warnings()
                    .map(|f| (f.name.clone(), f.message.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for finding in &report.findings {
            match (finding.status, before.get(&finding.name)) {
                (FindingStatus::Warning, Some(old)) if *old == finding.message => {}
                (FindingStatus::Warning, _) => {
                    tracing::warn!(check = %finding.name, "{}", finding.message)
                }
                (FindingStatus::Ok, Some(_)) => {
                    tracing::info!(check = %finding.name, "{}", finding.message)
                }
                (FindingStatus::Ok, None) => {}
            }
        }
        self.keep(report).await;
    }

    async fn keep(&self, report: DeploymentReport) {
        for finding in &report.findings {
            let warning = f64::from(u8::from(finding.status == FindingStatus::Warning));
            metrics::gauge!("imgate_provider_deployment_warning", "check" => finding.name.clone())
                .set(warning);
        }
        *self.findings.write().await = Some((Instant::now(), report));
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

    async fn warnings(&self) -> Vec<(String, String)> {
        self.deployment_warnings().await
    }
}
