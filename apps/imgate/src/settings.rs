//! The one typed configuration: the built-in defaults, then `config/default.toml` and
//! `config/{IMGATE_ENV}.toml` when present, then `IMGATE__SECTION__KEY` environment variables. Key names are part of the product contract.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use imgate_http::client_addr::TrustedProxies;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `config/default.toml` as built into the binary, so it runs with its defaults from anywhere.
const EMBEDDED_DEFAULTS: &str = include_str!("../../../config/default.toml");

/// Everything the gateway reads at start-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub server: ServerSettings,
    /// Host identity.
    pub auth: AuthSettings,
    /// The chat provider.
    pub provider: ProviderSettings,
    /// Where provider sessions are cached.
    pub cache: CacheSettings,
    /// How events reach connections.
    pub push: BackendChoice,
    /// Redis, when `cache.kind` or `push.kind` is `redis`.
    pub redis: imgate_redis::RedisConfig,
    /// Realtime mode.
    pub realtime: RealtimeSettings,
    /// The SignalR hub (backend mode).
    #[serde(default)]
    pub hub: imgate_signalr::HubConfig,
    /// Logging.
    pub log: LogSettings,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// Path prefix every route is served under, e.g. `/chat`; empty for none.
    pub base_path: String,
    /// Browser origins allowed to call the API and the hub.
    pub cors_origins: Vec<String>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
    /// Largest JSON request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest uploaded file, in bytes.
    pub max_upload_bytes: u64,
    /// End-user REST requests per second allowed per user on this node (0: no limit).
    pub user_rate_limit_per_s: u32,
    /// Requests a user may burst above that rate.
    pub user_rate_limit_burst: u32,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout_s: u64,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
}

/// `[auth]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 shared secret.
    pub jwt_secret: Option<SecretString>,
    /// RS256 or ES256 public key file (PEM).
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Clock leeway in seconds.
    pub leeway_s: u64,
    /// The claim holding the user id.
    pub user_claim: String,
    /// The claim marking the host back end.
    pub admin_claim: String,
    /// The value `admin_claim` must contain.
    pub admin_value: String,
    /// The host back end's API key.
    pub api_key: Option<SecretString>,
}

/// `[provider]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    /// `rocketchat` or `matrix`.
    pub kind: String,
    /// The provider's URL; unset starts the bundled Rocket.Chat-compatible server (demo, only
    /// with `rocketchat`).
    pub url: Option<String>,
    /// The provider's realtime URL; derived from `url` when unset.
    pub realtime_url: Option<String>,
    /// The admin agent's provider account.
    pub admin_user: String,
    /// Its password.
    pub admin_password: Option<SecretString>,
    /// The password mirrored users get when the host sends none.
    pub default_password: Option<SecretString>,
    /// How long a user's provider session is cached.
    pub token_ttl_s: u64,
    /// Budget for one provider call.
    pub timeout_ms: u64,
    /// How long one provider call may queue behind the provider's rate limiter.
    pub rate_limit_wait_ms: u64,
    /// `report` (log and show on `/readyz` what the provider's rate limiter does to users) or
    /// `configure` (also grant the bypass to `mirrored_user_role` at start-up).
    pub rate_limit_policy: String,
    /// The provider role mirrored users are created with (besides `user`), which the rate
    /// limit policy checks and configures.
    pub mirrored_user_role: String,
    /// Domain of made-up e-mail addresses for users the host sent none for.
    pub email_domain: String,
    /// Matrix only: put in front of every localpart and room alias the gateway makes, so
    /// several gateways can share one homeserver.
    #[serde(default)]
    pub namespace: String,
}

/// `[cache]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// `memory` or `redis`.
    pub kind: String,
    /// With `redis`: how long a node keeps the sessions it uses in its own memory too, so they
    /// keep working while Redis is down; 0 keeps none.
    pub local_ttl_s: u64,
}

/// A section that only chooses an implementation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendChoice {
    /// `memory` or `redis`.
    pub kind: String,
}

/// `[realtime]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSettings {
    /// `backend`, `frontend` or `both`.
    pub mode: String,
    /// How long a user's upstream connection stays open after their last hub connection left.
    pub grace_s: u64,
    /// Ping the provider's realtime server after this many seconds without a frame.
    pub upstream_ping_s: u64,
    /// Reconnect when the provider's realtime server said nothing for this many seconds.
    pub upstream_timeout_s: u64,
    /// How long a node's claim on a user's upstream lives without renewal: after a node dies,
    /// another takes its users over within this time.
    pub lease_ttl_s: u64,
}

/// `[log]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `imgate=debug,info`.
    pub level: String,
}

/// The environment variable that sets `key` (`provider.url` → `IMGATE__PROVIDER__URL`).
pub fn env_var(key: &str) -> String {
    format!("IMGATE__{}", key.replace('.', "__").to_ascii_uppercase())
}

/// One configuration problem, naming the key and its environment variable.
fn problem(key: &str, message: impl std::fmt::Display) -> String {
    format!(
        "{key}: {message} (set {} or `{key}` in config/)",
        env_var(key)
    )
}

impl Settings {
    /// Reads the layered configuration from `dir` (normally `config/`) and the environment.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let env = std::env::var("IMGATE_ENV").unwrap_or_else(|_| "local".into());
        let builder = Self::defaults()
            .add_source(config::File::from(dir.join("default.toml")).required(false))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("IMGATE")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("server.cors_origins")
                    .with_list_parse_key("server.trusted_proxies"),
            );
        Self::build(builder)
            .with_context(|| format!("reading configuration from {}", dir.display()))
    }

    /// The built-in defaults with `overrides` (`("server.bind", "127.0.0.1:0")`, …) on top;
    /// neither files nor the environment are read. For tests and embedding.
    pub fn with_overrides(overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut builder = Self::defaults();
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, *value)
                .with_context(|| format!("overriding {key}"))?;
        }
        Self::build(builder)
    }

    fn defaults() -> config::ConfigBuilder<config::builder::DefaultState> {
        config::Config::builder().add_source(config::File::from_str(
            EMBEDDED_DEFAULTS,
            config::FileFormat::Toml,
        ))
    }

    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
    ) -> anyhow::Result<Self> {
        builder
            .build()?
            .try_deserialize::<Settings>()
            .map_err(|err| anyhow::anyhow!("{err}"))
    }

    /// Whether the gateway runs its bundled provider: no `provider.url`.
    pub fn embedded_provider(&self) -> bool {
        self.provider.url.is_none()
    }

    /// Whether the admin agent may change the provider's settings at start-up
    /// (`provider.rate_limit_policy = "configure"`).
    pub fn configure_provider(&self) -> bool {
        self.provider.rate_limit_policy == "configure"
    }

    /// Whether any port is served by Redis.
    pub fn uses_redis(&self) -> bool {
        self.cache.kind == "redis" || self.push.kind == "redis"
    }

    /// Whether the SignalR hub is served (`realtime.mode` is `backend` or `both`).
    pub fn backend_mode(&self) -> bool {
        matches!(self.realtime.mode.as_str(), "backend" | "both")
    }

    /// Whether `POST /api/v1/session` hands provider credentials to browsers.
    pub fn frontend_mode(&self) -> bool {
        matches!(self.realtime.mode.as_str(), "frontend" | "both")
    }

    /// Whether the gateway runs without host key material (demo mode, embedded provider only).
    pub fn demo_auth(&self) -> bool {
        self.auth.jwt_secret.is_none() && self.auth.jwt_public_key_file.is_none()
    }

    /// Every problem at once, each naming its key.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.server.bind.parse::<SocketAddr>().is_err() {
            problems.push(problem("server.bind", "not an address like 127.0.0.1:8080"));
        }
        let base = &self.server.base_path;
        if !base.is_empty()
            && (!base.starts_with('/') || base.ends_with('/') || base.contains("//"))
        {
            problems.push(problem(
                "server.base_path",
                "must be empty or like /chat (leading slash, no trailing slash)",
            ));
        }
        if let Err(err) = TrustedProxies::parse(&self.server.trusted_proxies) {
            problems.push(problem("server.trusted_proxies", err));
        }
        if self.server.max_upload_bytes == 0 {
            problems.push(problem("server.max_upload_bytes", "must be at least 1"));
        }
        if self.server.max_body_bytes < 1024 {
            problems.push(problem("server.max_body_bytes", "must be at least 1024"));
        }
        match (&self.auth.jwt_secret, &self.auth.jwt_public_key_file) {
            (Some(_), Some(_)) => problems.push(problem(
                "auth.jwt_secret",
                "set either auth.jwt_secret or auth.jwt_public_key_file, not both",
            )),
            (Some(secret), None) if secret.expose_secret().len() < 32 => {
                problems.push(problem("auth.jwt_secret", "must be at least 32 bytes"))
            }
            (None, Some(path)) if !path.is_file() => problems.push(problem(
                "auth.jwt_public_key_file",
                format_args!("no such file: {}", path.display()),
            )),
            (None, None) if !self.embedded_provider() => problems.push(problem(
                "auth.jwt_secret",
                "a JWT key is required (auth.jwt_secret or auth.jwt_public_key_file) when provider.url is set; only the embedded demo runs without one",
            )),
            _ => {}
        }
        if self.auth.user_claim.trim().is_empty() {
            problems.push(problem("auth.user_claim", "must not be empty"));
        }
        if self
            .auth
            .api_key
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < 16)
        {
            problems.push(problem("auth.api_key", "must be at least 16 characters"));
        }
        match self.provider.kind.as_str() {
            "rocketchat" => {}
            "matrix" if self.provider.url.is_none() => problems.push(problem(
                "provider.url",
                "required with provider.kind = \"matrix\"; only Rocket.Chat has a bundled server",
            )),
            "matrix" => {}
            other => problems.push(problem(
                "provider.kind",
                format_args!("unknown provider {other:?}; known: rocketchat, matrix"),
            )),
        }
        if !imgate_matrix::naming::valid_namespace(&self.provider.namespace) {
            problems.push(problem(
                "provider.namespace",
                "only a-z, 0-9, '.', '_' and '-' are allowed",
            ));
        }
        if let Some(url) = &self.provider.url {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url::Url::parse(url).is_err()
            {
                problems.push(problem("provider.url", "not an http(s) URL"));
            }
            if self.provider.admin_password.is_none() {
                problems.push(problem(
                    "provider.admin_password",
                    "required when provider.url is set",
                ));
            }
            if self.provider.default_password.is_none() {
                problems.push(problem(
                    "provider.default_password",
                    "required when provider.url is set",
                ));
            }
        }
        if let Some(url) = &self.provider.realtime_url {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                problems.push(problem("provider.realtime_url", "not a ws(s) URL"));
            }
        }
        if self.provider.token_ttl_s < 60 {
            problems.push(problem("provider.token_ttl_s", "must be at least 60"));
        }
        if self.provider.timeout_ms < 100 {
            problems.push(problem("provider.timeout_ms", "must be at least 100"));
        }
        if !matches!(
            self.provider.rate_limit_policy.as_str(),
            "report" | "configure"
        ) {
            problems.push(problem(
                "provider.rate_limit_policy",
                "must be report or configure",
            ));
        }
        if self.provider.mirrored_user_role.trim().is_empty() {
            problems.push(problem("provider.mirrored_user_role", "must not be empty"));
        }
        for (key, kind) in [
            ("cache.kind", &self.cache.kind),
            ("push.kind", &self.push.kind),
        ] {
            if !matches!(kind.as_str(), "memory" | "redis") {
                problems.push(problem(
                    key,
                    format_args!("unknown kind {kind:?}; known: memory, redis"),
                ));
            }
        }
        if self.uses_redis() {
            if !(self.redis.url.starts_with("redis://") || self.redis.url.starts_with("rediss://"))
            {
                problems.push(problem("redis.url", "not a redis:// or rediss:// URL"));
            }
            if self.redis.prefix.is_empty() || self.redis.prefix.contains(['{', '}', ' ']) {
                problems.push(problem(
                    "redis.prefix",
                    "must be non-empty, without braces or spaces",
                ));
            }
        }
        if let Err(err) = imgate_signalr::DeclaredTargets::new(&self.hub) {
            // Tables of schemas have no environment variable: they are written in config/.
            problems.push(format!("{err} (a [hub.targets.<name>] table in config/)"));
        }
        if !self.hub.route_valid() {
            problems.push(problem(
                "hub.route",
                "must be at most 32 characters of a-z, 0-9 and '-'",
            ));
        }
        if self.realtime.upstream_ping_s == 0 {
            problems.push(problem("realtime.upstream_ping_s", "must be at least 1"));
        }
        if self.realtime.upstream_timeout_s <= self.realtime.upstream_ping_s {
            problems.push(problem(
                "realtime.upstream_timeout_s",
                "must be longer than realtime.upstream_ping_s",
            ));
        }
        if self.realtime.lease_ttl_s < 3 {
            problems.push(problem("realtime.lease_ttl_s", "must be at least 3"));
        }
        if !matches!(self.realtime.mode.as_str(), "backend" | "frontend" | "both") {
            problems.push(problem(
                "realtime.mode",
                "must be backend, frontend or both",
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push(problem("log.format", "must be text or json"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            problems.push(problem(
                "log.level",
                "not a log filter such as info or imgate=debug,info",
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_their_environment_variables() {
        assert_eq!(env_var("provider.url"), "IMGATE__PROVIDER__URL");
        assert_eq!(env_var("auth.jwt_secret"), "IMGATE__AUTH__JWT_SECRET");
    }

    fn problems(overrides: &[(&str, &str)]) -> Vec<String> {
        let settings = Settings::with_overrides(overrides).expect("settings load");
        settings.validate().err().unwrap_or_default()
    }

    #[test]
    fn matrix_needs_a_homeserver_and_a_localpart_safe_namespace() {
        let matrix = problems(&[("provider.kind", "matrix")]);
        assert!(
            matrix.iter().any(|p| p.contains("provider.url")),
            "{matrix:?}"
        );
        let namespace = problems(&[("provider.namespace", "Team A:")]);
        assert!(
            namespace.iter().any(|p| p.contains("provider.namespace")),
            "{namespace:?}"
        );
        let unknown = problems(&[("provider.kind", "slack")]);
        assert!(
            unknown
                .iter()
                .any(|p| p.contains("known: rocketchat, matrix")),
            "{unknown:?}"
        );
        assert_eq!(problems(&[]), Vec::<String>::new());
    }

    #[test]
    fn host_targets_keep_their_names_and_schemas_as_written() {
        let dir = std::env::temp_dir().join(format!("imgate-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("default.toml"),
            r#"
            [hub]
            strict_targets = true
            [hub.targets.orderShipped]
            description = "An order left the warehouse."
            arguments = [
              { type = "object", required = ["orderId"], additionalProperties = false,
                properties = { orderId = { type = "integer", minimum = 1 } } },
            ]
            "#,
        )
        .unwrap();
        let settings = Settings::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(settings.hub.strict_targets);
        let declared = &settings.hub.targets["orderShipped"];
        assert_eq!(declared.description, "An order left the warehouse.");
        assert_eq!(
            declared.arguments.as_ref().unwrap()[0]["properties"]["orderId"]["minimum"],
            1
        );
        assert_eq!(
            declared.arguments.as_ref().unwrap()[0]["additionalProperties"],
            false
        );
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn a_bad_host_target_is_a_problem_naming_its_key() {
        let problems = problems(&[("hub.targets.typing.description", "clash")]);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("hub.targets.typing: ")),
            "{problems:?}"
        );
    }
}
