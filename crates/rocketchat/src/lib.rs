//! imgate's Rocket.Chat adapter: [`RocketChatProvider`] implements the domain's `ImProvider`
//! over Rocket.Chat's REST v1 API (reqwest) and, for realtime, its DDP websocket
//! (tokio-tungstenite).
//!
//! Everything Rocket.Chat-shaped (`rid`, `msg`, `_id`, the 401 texts, EJSON dates) stays in
//! this crate; the domain sees host user ids, which map to Rocket.Chat usernames by the rule
//! in [`naming`]. Not here: caching, retries after re-login, the admin agent (domain services).
//!
//! Realtime runs one DDP connection per online user (`upstream`). Frames are decoded typed
//! from their text (`ddp`, `documents`), and what a room's members all receive alike (a
//! message, a room document) is decoded once per node and shared (`decoded_frames`); the counts
//! are in [`RocketChatProvider::frames_decoded`] and `imgate_upstream_frames_decoded_total`.

mod accounts;
mod ddp;
mod decoded_frames;
mod deployment;
mod documents;
mod files;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod mapping;
mod messages;
pub mod naming;
mod realtime;
mod rest;
mod rooms;
mod telemetry;
mod throttle;
mod upstream;

pub use decoded_frames::FramesDecoded;
pub use upstream::UpstreamTiming;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use imgate_domain::model::RoomKind;
use imgate_domain::ports::ProviderError;
use imgate_domain::{Password, RoomId};
use serde::Deserialize;
use serde_json::Value;

use crate::rest::Rest;

/// How to reach a Rocket.Chat server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RocketChatConfig {
    /// The server's base URL, e.g. `https://chat.example.com`.
    pub url: String,
    /// The DDP websocket URL; derived from `url` (`ws(s)://…/websocket`) when absent.
    #[serde(default)]
    pub realtime_url: Option<String>,
    /// Budget for one REST call, connection included.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Budget for opening a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Heartbeat and reconnect timing of upstream realtime connections.
    #[serde(skip, default)]
    pub upstream: UpstreamTiming,
    /// How long one call may queue behind Rocket.Chat's rate limiter (for its endpoint's window
    /// to reset) before it fails with `RateLimited`.
    #[serde(default = "default_rate_limit_wait")]
    pub rate_limit_wait: Duration,
    /// Domain of the e-mail address given to mirrored users the host sent none for.
    #[serde(default = "default_email_domain")]
    pub email_domain: String,
    /// The role mirrored users are created with besides `user` (which gives them the ordinary
    /// permissions); `user` alone by default.
    #[serde(default = "default_user_role")]
    pub user_role: String,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}

fn default_rate_limit_wait() -> Duration {
    Duration::from_secs(2)
}

fn default_email_domain() -> String {
    "users.imgate.invalid".into()
}

fn default_user_role() -> String {
    "user".into()
}

impl RocketChatConfig {
    /// A configuration for `url` with default timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            realtime_url: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            rate_limit_wait: default_rate_limit_wait(),
            upstream: UpstreamTiming::default(),
            email_domain: default_email_domain(),
            user_role: default_user_role(),
        }
    }

    fn websocket_url(&self) -> String {
        if let Some(url) = &self.realtime_url {
            return url.clone();
        }
        let base = self.url.trim_end_matches('/');
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        format!("{ws}/websocket")
    }
}

/// Why the adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `url` is not an http(s) URL.
    #[error("not an http(s) URL: {0}")]
    BadUrl(String),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The server's major version, which decides the upload endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerVersion {
    /// Major version, e.g. 7.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ServerVersion {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let major = parts.next()?.trim().parse().ok()?;
        let minor = parts
            .next()
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(0);
        Some(Self { major, minor })
    }

    /// `rooms.upload` is gone in 8.0; `rooms.media` exists from 6.0 on.
    fn uses_media_endpoints(self) -> bool {
        self.major >= 6
    }
}

/// `ImProvider` for Rocket.Chat.
pub struct RocketChatProvider {
    rest: Rest,
    realtime_url: String,
    ddp_timeout: Duration,
    upstream_timing: UpstreamTiming,
    email_domain: String,
    user_role: String,
    version: RwLock<Option<ServerVersion>>,
    // Room types never change, and history and membership calls are per type; remembering
    // them saves a `rooms.info` round trip per call.
    room_kinds: moka::sync::Cache<RoomId, RoomKind>,
    // What the upstream connections of all users decode once and share: a message reaches
    // every online member of its room as the same frame.
    frames: Arc<decoded_frames::DecodedFrames>,
    // The admin password, kept for Rocket.Chat's 2FA password fallback on `users.update`.
    admin_password: RwLock<Option<Password>>,
}

impl RocketChatProvider {
    /// An adapter for the server in `config`; makes no call yet.
    pub fn new(config: &RocketChatConfig) -> Result<Self, SetupError> {
        let parsed =
            url::Url::parse(&config.url).map_err(|_| SetupError::BadUrl(config.url.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(SetupError::BadUrl(config.url.clone()));
        }
        Ok(Self {
            rest: Rest::new(
                &config.url,
                config.connect_timeout,
                config.timeout,
                config.rate_limit_wait,
            )
            .map_err(SetupError::Client)?,
            realtime_url: config.websocket_url(),
            ddp_timeout: config.timeout,
            upstream_timing: config.upstream,
            email_domain: config.email_domain.clone(),
            user_role: config.user_role.clone(),
            version: RwLock::new(None),
            room_kinds: moka::sync::Cache::new(100_000),
            frames: Arc::default(),
            admin_password: RwLock::new(None),
        })
    }

    /// Reads `/api/info` and remembers the server version.
    pub async fn server_version(&self) -> Result<ServerVersion, ProviderError> {
        let info = self
            .rest
            .send(
                "info",
                self.rest.request(reqwest::Method::GET, "/api/info", None),
            )
            .await?;
        let version = info
            .get("version")
            .and_then(Value::as_str)
            .and_then(ServerVersion::parse)
            .ok_or_else(|| mapping::bad("a server version"))?;
        *self.version.write().unwrap_or_else(|e| e.into_inner()) = Some(version);
        Ok(version)
    }

    /// How many upstream documents this provider's realtime connections have decoded, by kind.
    /// A message posted in a room counts once however many of its members are online here.
    pub fn frames_decoded(&self) -> FramesDecoded {
        self.frames.decoded()
    }

    async fn known_version(&self) -> Result<ServerVersion, ProviderError> {
        let known = *self.version.read().unwrap_or_else(|e| e.into_inner());
        match known {
            Some(version) => Ok(version),
            None => self.server_version().await,
        }
    }
}

#[async_trait::async_trait]
impl imgate_domain::ports::HealthCheck for RocketChatProvider {
    fn name(&self) -> &'static str {
        "provider"
    }

    async fn check(&self) -> Result<(), String> {
        self.server_version()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}
