//! imgate's Matrix adapter: [`MatrixProvider`] implements the domain's `ImProvider` over the
//! Matrix client-server API and Synapse's admin API (reqwest); realtime is one long-poll
//! `/sync` loop per online user.
//!
//! Everything Matrix-shaped (`!room:server`, `$event`, `mxc://`, `errcode`s) stays in this
//! crate; the domain sees host user ids, which map to localparts by the rule in [`naming`].
//! Not here: caching, retries after re-login, the admin agent (domain services).

mod accounts;
mod client;
mod events;
mod files;
mod messages;
pub mod naming;
mod realtime;
mod rooms;
mod telemetry;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{
    DeploymentCheck, DeploymentReport, Finding, FindingStatus, ProviderDeployment, ProviderError,
};
use reqwest::Method;
use serde::Deserialize;

use crate::client::Client;

/// How to reach a Matrix homeserver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// The homeserver's base URL, e.g. `https://matrix.example.com`.
    pub url: String,
    /// Put in front of every localpart and room alias the gateway makes, so several gateways
    /// can share one homeserver; empty by default.
    #[serde(default)]
    pub namespace: String,
    /// Budget for one call, connection included (a `/sync` long poll gets `sync_wait` more).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Budget for opening a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// How long one `/sync` long poll waits for news before it returns empty.
    #[serde(default = "default_sync_wait")]
    pub sync_wait: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_sync_wait() -> Duration {
    Duration::from_secs(30)
}

impl MatrixConfig {
    /// A configuration for `url` with default timeouts and no namespace.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            namespace: String::new(),
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            sync_wait: default_sync_wait(),
        }
    }
}

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `url` is not an http(s) URL.
    #[error("not an http(s) URL: {0}")]
    BadUrl(String),
    /// The namespace has characters a localpart cannot hold.
    #[error("namespace: only a-z, 0-9, '.', '_' and '-' are allowed")]
    BadNamespace,
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// `ImProvider` for a Matrix homeserver (Synapse: user mirroring uses its admin API).
///
/// Clones share the HTTP pool and the admin session; each `/sync` loop owns one.
#[derive(Clone)]
pub struct MatrixProvider {
    client: Client,
    namespace: String,
    timeout: Duration,
    sync_wait: Duration,
    // The admin agent's session: Matrix has no "add member" call, so the adapter joins invited
    // users itself with short-lived tokens only the admin API hands out.
    admin: Arc<RwLock<Option<ProviderSession>>>,
}

impl MatrixProvider {
    /// An adapter for the homeserver in `config`; makes no call yet.
    pub fn new(config: &MatrixConfig) -> Result<Self, SetupError> {
        let url =
            url::Url::parse(&config.url).map_err(|_| SetupError::BadUrl(config.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SetupError::BadUrl(config.url.clone()));
        }
        if !naming::valid_namespace(&config.namespace) {
            return Err(SetupError::BadNamespace);
        }
        Ok(Self {
            client: Client::new(url, config.connect_timeout, config.timeout)
                .map_err(SetupError::Client)?,
            namespace: config.namespace.clone(),
            timeout: config.timeout,
            sync_wait: config.sync_wait,
            admin: Arc::new(RwLock::new(None)),
        })
    }

    fn admin_session(&self) -> Result<ProviderSession, ProviderError> {
        self.admin
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| ProviderError::Unavailable("the admin agent is not logged in".into()))
    }
}

#[async_trait]
impl imgate_domain::ports::HealthCheck for MatrixProvider {
    fn name(&self) -> &'static str {
        "provider"
    }

    async fn check(&self) -> Result<(), String> {
        let url = self.client.url("_matrix/client/versions", &[]);
        self.client
            .call(Method::GET, url, None, None)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl ProviderDeployment for MatrixProvider {
    async fn check_deployment(
        &self,
        admin: &ProviderSession,
        _check: &DeploymentCheck,
    ) -> Result<DeploymentReport, ProviderError> {
        // Mirroring users needs Synapse's admin API, which only server admins may call.
        let url = self.client.url("_synapse/admin/v1/server_version", &[]);
        let finding = match self.client.call(Method::GET, url, Some(admin), None).await {
            Ok(_) => Finding {
                name: "admin_api".into(),
                status: FindingStatus::Ok,
                message: "the admin account may use Synapse's admin API".into(),
            },
            Err(ProviderError::Unavailable(reason)) => return Err(ProviderError::Unavailable(reason)),
            Err(err) => Finding {
                name: "admin_api".into(),
                status: FindingStatus::Warning,
                message: format!(
                    "the admin account cannot use Synapse's admin API ({err}); make it a server admin (users.admin = true) so users can be mirrored"
                ),
            },
        };
        Ok(DeploymentReport {
            findings: vec![finding],
            changes: Vec::new(),
        })
    }
}
