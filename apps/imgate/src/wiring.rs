//! Settings → adapters → ports → services → HTTP server. Nothing here decides anything a
//! user could observe beyond which adapter serves which port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{middleware, App, HttpServer};
use anyhow::Context;
use imgate_domain::model::UserProfile;
use imgate_domain::ports::{
    Backplane, DeploymentCheck, HealthCheck, ImProvider, Lease, PasswordStore, Presence, TokenCache,
};
use imgate_domain::services::{
    AdminAgent, ChatService, HostRealtime, Ownership, PasswordPolicy, SessionService,
    UpstreamService, UserService,
};
use imgate_domain::{Password, UserId};
use imgate_http::auth::{AuthSettings, Authenticator, JwtKey};
use imgate_http::client_addr::TrustedProxies;
use imgate_http::ops::Readiness;
use imgate_http::ApiState;
use imgate_matrix::{MatrixConfig, MatrixProvider};
use imgate_memory::{
    MemoryBackplane, MemoryLease, MemoryPasswordStore, MemoryPresence, MemoryTokenCache,
    TieredTokenCache,
};
use imgate_redis::{
    RedisBackplane, RedisHealthCheck, RedisLease, RedisPasswordStore, RedisPresence,
    RedisTokenCache,
};
use imgate_rocketchat::{RocketChatConfig, RocketChatProvider, UpstreamTiming};
use imgate_signalr::{DeclaredTargets, DomainBackend, Hub, HubLifetimeManager};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rocketchat_sim::{Sim, SimConfig};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use crate::demo;
use crate::settings::Settings;

/// A running gateway.
pub struct Gateway {
    /// Where the HTTP server listens.
    pub addr: SocketAddr,
    /// The provider's URL (the embedded server's, in demo mode).
    pub provider_url: String,
    /// Whether the gateway runs in demo mode.
    pub demo: bool,
    server: ServerHandle,
    serving: JoinHandle<std::io::Result<()>>,
    hub: Option<Arc<Hub>>,
    upstreams: Arc<UpstreamService>,
    admin: Arc<AdminAgent>,
    admin_retry: JoinHandle<()>,
    embedded: Option<Sim>,
}

impl Gateway {
    /// Stops accepting, closes hub connections with `allowReconnect` (their clients go to
    /// another node), closes upstreams and releases their leases, finishes in-flight
    /// requests, logs the admin agent out, stops the embedded provider.
    pub async fn stop(self) {
        // Open hub connections would hold up a graceful stop: close them while it runs.
        let stopping = self.server.stop(true);
        if let Some(hub) = &self.hub {
            hub.shutdown(HUB_SHUTDOWN).await;
        }
        // No connection here needs its upstream any more: release the leases now, so another
        // node takes the users over while in-flight requests finish.
        self.upstreams.shutdown(UPSTREAM_SHUTDOWN).await;
        stopping.await;
        let _ = self.serving.await;
        self.admin_retry.abort();
        self.admin.shutdown().await;
        if let Some(sim) = self.embedded {
            sim.stop().await;
        }
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }
}

/// How long shutdown waits for hub clients to take their close message.
const HUB_SHUTDOWN: Duration = Duration::from_secs(10);
/// How long shutdown waits for upstreams to close and their leases to be released.
const UPSTREAM_SHUTDOWN: Duration = Duration::from_secs(5);

/// This process's id among the nodes sharing leases: its hub route (when set), host name
/// (when set) and a random part.
fn node_id(route: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "imgate".into());
    let unique = format!("{host}-{}", Alphanumeric.sample_string(&mut rand::rng(), 8));
    imgate_signalr::node_id(route, &unique)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler cannot fail on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    // One recorder per process; a second gateway in the same process (tests) shares it.
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fixed buckets rather than the exporter's default summaries: a histogram takes the
            // same memory however long the gateway runs (summaries' sketches widen with every
            // new extreme), and histograms from several nodes can be summed.
            let handle = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS_S)
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            keep_drained(handle.clone());
            Ok(handle)
        })
        .clone()
        .map_err(|err| anyhow::anyhow!("installing the metrics recorder: {err}"))
}

/// Upper bounds, in seconds, of the latency histograms' buckets.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets, scraped or not.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Name of the thread that runs the recorder's upkeep.
const METRICS_UPKEEP_THREAD: &str = "metrics-upkeep";

/// Runs the recorder's upkeep every few seconds. `install_recorder` leaves that to its caller:
/// without it every histogram sample (one per HTTP request) is kept until `/metrics` is
/// scraped, so a gateway nobody scrapes grows without bound.
fn keep_drained(handle: PrometheusHandle) {
    // A thread rather than a task: the recorder is process-wide and outlives any runtime
    // (tests start a runtime per gateway), so its upkeep must too.
    let spawned = std::thread::Builder::new()
        .name(METRICS_UPKEEP_THREAD.into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "cannot start the metrics upkeep; histograms are drained only when /metrics is scraped");
    }
}

fn auth_settings(settings: &Settings) -> anyhow::Result<AuthSettings> {
    let auth = &settings.auth;
    let key = match (&auth.jwt_secret, &auth.jwt_public_key_file) {
        (Some(secret), _) => JwtKey::Hs256(secret.expose_secret().as_bytes().to_vec()),
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("auth.jwt_public_key_file: reading {}", path.display()))?;
            if is_rsa_public_key(&pem) {
                JwtKey::Rs256(pem)
            } else {
                JwtKey::Es256(pem)
            }
        }
        (None, None) => JwtKey::Hs256(demo::DEMO_JWT_SECRET.as_bytes().to_vec()),
    };
    let api_key = match &auth.api_key {
        Some(key) => Some(key.expose_secret().to_owned()),
        None if settings.demo_auth() => Some(demo::DEMO_API_KEY.to_owned()),
        None => None,
    };
    Ok(AuthSettings {
        key,
        issuer: auth.issuer.clone(),
        audience: auth.audience.clone(),
        leeway: Duration::from_secs(auth.leeway_s),
        user_claim: auth.user_claim.clone(),
        admin_claim: auth.admin_claim.clone(),
        admin_value: auth.admin_value.clone(),
        api_key,
    })
}

/// A PEM public key is RSA when it parses as one; otherwise we try it as EC.
fn is_rsa_public_key(pem: &[u8]) -> bool {
    Authenticator::new(AuthSettings {
        key: JwtKey::Rs256(pem.to_vec()),
        issuer: None,
        audience: None,
        leeway: Duration::ZERO,
        user_claim: "sub".into(),
        admin_claim: "roles".into(),
        admin_value: String::new(),
        api_key: None,
    })
    .is_ok()
}

struct ProviderParts {
    url: String,
    admin_user: String,
    admin_password: Password,
    default_password: Password,
    embedded: Option<Sim>,
}

async fn provider_parts(settings: &Settings) -> anyhow::Result<ProviderParts> {
    let provider = &settings.provider;
    if let Some(url) = &provider.url {
        return Ok(ProviderParts {
            url: url.clone(),
            admin_user: provider.admin_user.clone(),
            admin_password: Password::new(
                provider
                    .admin_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
            default_password: Password::new(
                provider
                    .default_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default(),
            ),
            embedded: None,
        });
    }
    // The embedded server lives only as long as this process, so its admin password can be
    // fresh every time.
    let admin_password: String = {
        use rand::distr::{Alphanumeric, SampleString};
        Alphanumeric.sample_string(&mut rand::rng(), 24)
    };
    let sim = Sim::start(SimConfig {
        admin_username: provider.admin_user.clone(),
        admin_password: admin_password.clone(),
        ..SimConfig::default()
    })
    .await
    .context("starting the embedded Rocket.Chat-compatible server")?;
    let default_password = provider
        .default_password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_else(|| demo::DEMO_USER_PASSWORD.to_owned());
    Ok(ProviderParts {
        url: sim.http_url(),
        admin_user: provider.admin_user.clone(),
        admin_password: Password::new(admin_password),
        default_password: Password::new(default_password),
        embedded: Some(sim),
    })
}

/// The adapter `provider.kind` names, as the port and as the provider's readiness check.
async fn provider_adapter(
    settings: &Settings,
    url: &str,
) -> anyhow::Result<(Arc<dyn ImProvider>, Arc<dyn HealthCheck>)> {
    let timeout = Duration::from_millis(settings.provider.timeout_ms);
    if settings.provider.kind == "matrix" {
        let matrix = Arc::new(
            MatrixProvider::new(&MatrixConfig {
                timeout,
                namespace: settings.provider.namespace.clone(),
                ..MatrixConfig::new(url)
            })
            .context("provider.url")?,
        );
        return Ok((matrix.clone(), matrix));
    }
    let rocketchat = Arc::new(
        RocketChatProvider::new(&RocketChatConfig {
            realtime_url: settings.provider.realtime_url.clone(),
            timeout,
            rate_limit_wait: Duration::from_millis(settings.provider.rate_limit_wait_ms),
            upstream: UpstreamTiming {
                ping_after: Duration::from_secs(settings.realtime.upstream_ping_s),
                dead_after: Duration::from_secs(settings.realtime.upstream_timeout_s),
                ..UpstreamTiming::default()
            },
            email_domain: settings.provider.email_domain.clone(),
            user_role: settings.provider.mirrored_user_role.clone(),
            ..RocketChatConfig::new(url)
        })
        .context("provider.url")?,
    );
    // The server version picks the upload endpoints; a provider that is down now is read later.
    match rocketchat.server_version().await {
        Ok(version) => tracing::info!(
            major = version.major,
            minor = version.minor,
            "provider version"
        ),
        Err(error) => tracing::warn!(error = %error, "cannot read the provider version yet"),
    }
    Ok((rocketchat.clone(), rocketchat))
}

/// Starts the gateway described by `settings` (already validated).
pub async fn start(settings: Settings) -> anyhow::Result<Gateway> {
    let metrics = metrics_handle()?;
    let auth = Arc::new(
        Authenticator::new(auth_settings(&settings)?)
            .map_err(|err| anyhow::anyhow!("auth.jwt_public_key_file: {err}"))?,
    );
    let parts = provider_parts(&settings).await?;
    let (provider, provider_health) = provider_adapter(&settings, &parts.url).await?;
    let node = node_id(&settings.hub.route);
    let redis = redis_parts(&settings, &node).await?;
    let cache: Arc<dyn TokenCache> = match &redis.cache {
        Some(cache) => cache.clone(),
        None => Arc::new(MemoryTokenCache::default()),
    };
    let sessions = Arc::new(SessionService::new(
        provider.clone(),
        cache,
        PasswordPolicy::new(
            parts.default_password,
            match &redis.passwords {
                Some(passwords) => passwords.clone(),
                None => Arc::new(MemoryPasswordStore::default()),
            },
        ),
        Duration::from_secs(settings.provider.token_ttl_s),
    ));
    // The agent checks the provider's settings right after each start-up login, and changes
    // them only when the operator said so.
    let admin = Arc::new(
        AdminAgent::new(provider.clone(), parts.admin_user, parts.admin_password)
            .with_deployment_check(DeploymentCheck {
                fix: settings.configure_provider(),
                user_role: settings.provider.mirrored_user_role.clone(),
            }),
    );
    let backplane: Arc<dyn Backplane> = match &redis.backplane {
        Some(backplane) => backplane.clone(),
        None => Arc::new(MemoryBackplane::new()),
    };
    let presence: Arc<dyn Presence> = match &redis.presence {
        Some(presence) => presence.clone(),
        None => Arc::new(MemoryPresence::new()),
    };
    // The node's hub connections: where the upstreams send users' events, whether or not
    // this node serves the hub itself.
    let connections = HubLifetimeManager::new(backplane, presence.clone());
    let ownership = Ownership {
        lease: match &redis.lease {
            Some(lease) => lease.clone(),
            None => Arc::new(MemoryLease::default()),
        },
        node,
        ttl: Duration::from_secs(settings.realtime.lease_ttl_s),
    };
    let upstreams = UpstreamService::new(
        provider.clone(),
        sessions.clone(),
        connections.clone(),
        ownership,
        Duration::from_secs(settings.realtime.grace_s),
    );
    let users = Arc::new(UserService::new(
        provider.clone(),
        admin.clone(),
        sessions.clone(),
        upstreams.clone(),
    ));

    let admin_retry = match admin.start().await {
        Ok(()) => tokio::spawn(async {}),
        Err(error) if parts.embedded.is_some() => {
            return Err(anyhow::anyhow!(
                "the embedded provider refused the admin agent: {error}"
            ))
        }
        Err(error) => {
            tracing::error!(error = %error, "admin agent cannot log in; retrying in the background, /readyz reports it");
            admin.keep_logging_in()
        }
    };

    if parts.embedded.is_some() {
        seed_demo_users(&users).await?;
    }

    let chat = Arc::new(ChatService::new(
        provider.clone(),
        sessions.clone(),
        upstreams.clone(),
    ));
    if parts.embedded.is_some() {
        demo::seed_channel(&admin, &provider, &chat).await?;
    }
    let hub = settings.backend_mode().then(|| {
        let mut config = settings.hub.clone();
        config
            .cors_origins
            .extend(settings.server.cors_origins.iter().cloned());
        Hub::new(
            config,
            connections.clone(),
            Arc::new(DomainBackend::new(chat.clone(), upstreams.clone())),
        )
    });
    let state = ApiState {
        auth,
        readiness: Readiness::new(
            [provider_health, admin.clone()]
                .into_iter()
                .chain(redis.health)
                .collect(),
        ),
        metrics,
        max_body_bytes: settings.server.max_body_bytes,
        users,
        chat: Arc::new(ChatService::new(
            provider.clone(),
            sessions.clone(),
            upstreams.clone(),
        )),
        uploads: imgate_http::files::UploadLimits {
            max_file_bytes: settings.server.max_upload_bytes,
        },
        frontend_mode: settings.frontend_mode(),
        host: Arc::new(HostRealtime::new(
            connections.clone(),
            presence,
            &imgate_signalr::CHAT_TARGETS,
            Arc::new(DeclaredTargets::new(&settings.hub)?),
        )),
        max_push_bytes: settings.hub.max_push_bytes,
    };
    let base_path = settings.server.base_path.clone();
    // Demo mode only: its secret is public, so this endpoint hands out nothing new.
    let demo_tokens = settings.demo_auth().then(|| {
        let claim = settings.auth.user_claim.clone();
        imgate_web::demo_token(move |user: &str| {
            UserId::parse(user).ok()?;
            Some(demo::token(&claim, user, Duration::from_secs(86_400)))
        })
    });
    let trusted_proxies = actix_web::web::Data::new(
        TrustedProxies::parse(&settings.server.trusted_proxies)
            .map_err(|err| anyhow::anyhow!("server.trusted_proxies: {err}"))?,
    );
    let user_rate_limit = imgate_http::rate_limit::UserRateLimit::new(
        settings.server.user_rate_limit_per_s,
        settings.server.user_rate_limit_burst,
    )
    .map(actix_web::web::Data::new);
    let routes_hub = hub.clone();
    let mut server = HttpServer::new(move || {
        // The hub shares the REST scope: it reads the authenticator registered there.
        let mut scope =
            actix_web::web::scope(&base_path).configure(imgate_http::configure(state.clone()));
        scope = scope.configure(imgate_web::configure);
        if let Some(demo_tokens) = &demo_tokens {
            scope = scope.configure(demo_tokens.clone());
        }
        if let Some(hub) = &routes_hub {
            scope = scope.configure(imgate_signalr::configure(hub.clone()));
        }
        let mut app = App::new().app_data(trusted_proxies.clone());
        if let Some(limit) = &user_rate_limit {
            app = app.app_data(limit.clone());
        }
        app.wrap(middleware::from_fn(imgate_http::telemetry::observe))
            .service(scope)
            .default_service(actix_web::web::to(imgate_http::not_found))
    })
    .shutdown_timeout(settings.server.shutdown_timeout_s)
    .disable_signals();
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server
        .bind(&settings.server.bind)
        .with_context(|| format!("server.bind: cannot listen on {}", settings.server.bind))?;
    let addr = *server
        .addrs()
        .first()
        .context("server.bind: no address bound")?;
    let server = server.run();
    let handle = server.handle();
    let serving = tokio::spawn(server);
    Ok(Gateway {
        addr,
        provider_url: parts.url,
        demo: settings.demo_auth(),
        server: handle,
        serving,
        hub,
        upstreams,
        admin,
        admin_retry,
        embedded: parts.embedded,
    })
}

/// Sessions a node keeps in its own memory in front of Redis, at most: the users online on
/// one node, with room to spare.
const LOCAL_SESSIONS: u64 = 200_000;

/// The Redis adapters the settings ask for; `None` where memory serves.
struct RedisParts {
    cache: Option<Arc<dyn TokenCache>>,
    // Beside the sessions: a node that shares them must log users in with the same passwords.
    passwords: Option<Arc<dyn PasswordStore>>,
    backplane: Option<Arc<dyn Backplane>>,
    // Beside the backplane: nodes that share one count connections together.
    presence: Option<Arc<dyn Presence>>,
    // Several nodes share Redis for push; then they must share leases too.
    lease: Option<Arc<dyn Lease>>,
    health: Option<Arc<dyn HealthCheck>>,
}

async fn redis_parts(settings: &Settings, node: &str) -> anyhow::Result<RedisParts> {
    let config = &settings.redis;
    let mut parts = RedisParts {
        cache: None,
        passwords: None,
        backplane: None,
        presence: None,
        lease: None,
        health: None,
    };
    if !settings.uses_redis() {
        return Ok(parts);
    }
    // None of these waits for Redis: a Redis that does not answer yet fails calls with 503
    // and /readyz until it does, and only a bad URL stops the start.
    let mut health = None;
    if settings.cache.kind == "redis" {
        let cache = RedisTokenCache::connect(config)
            .await
            .context("redis.url: setting up the token cache")?;
        // The check pings the cache's own connection, so it reports what requests meet.
        health = Some(cache.health_check());
        parts.cache = Some(if settings.cache.local_ttl_s == 0 {
            Arc::new(cache)
        } else {
            Arc::new(TieredTokenCache::new(
                Arc::new(cache),
                LOCAL_SESSIONS,
                Duration::from_secs(settings.cache.local_ttl_s),
            ))
        });
        let passwords = RedisPasswordStore::connect(config)
            .await
            .context("redis.url: setting up the password store")?;
        parts.passwords = Some(Arc::new(passwords));
    }
    if settings.push.kind == "redis" {
        let backplane = RedisBackplane::connect(config, node)
            .await
            .context("redis.url: setting up the backplane")?;
        health.get_or_insert_with(|| backplane.health_check());
        parts.backplane = Some(Arc::new(backplane));
        // A killed node's connections stop counting when its upstreams' leases expire too.
        let presence = RedisPresence::connect(
            config,
            node,
            Duration::from_secs(settings.realtime.lease_ttl_s),
        )
        .await
        .context("redis.url: setting up presence")?;
        parts.presence = Some(Arc::new(presence));
        let lease = RedisLease::connect(config)
            .await
            .context("redis.url: setting up the lease store")?;
        parts.lease = Some(Arc::new(lease));
    }
    let health = match health {
        Some(health) => health,
        None => RedisHealthCheck::connect(config)
            .await
            .context("redis.url: setting up the health check")?,
    };
    if let Err(error) = health.check().await {
        // The error names no URL (it may hold a password), only what failed.
        tracing::warn!(error = %error, "Redis is not reachable yet; calls that need it fail with 503 until it answers");
    }
    parts.health = Some(Arc::new(health));
    Ok(parts)
}

async fn seed_demo_users(users: &UserService) -> anyhow::Result<()> {
    for (id, username, name) in demo::DEMO_USERS {
        let profile = UserProfile {
            username: (*username).to_owned(),
            name: (*name).to_owned(),
            email: None,
        };
        let user = UserId::parse(*id).expect("demo ids are valid");
        users
            .upsert(&user, &profile, None)
            .await
            .with_context(|| format!("creating demo user {id}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_is_drained_by_one_thread_of_its_own() {
        metrics_handle().expect("the recorder installs");
        metrics_handle().expect("a second gateway in the process shares it");
        let upkeep_threads = || {
            std::fs::read_dir("/proc/self/task")
                .expect("Linux lists a process's threads")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == METRICS_UPKEEP_THREAD)
                .count()
        };
        // A new thread names itself once it runs, a moment after the spawn returned.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while upkeep_threads() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(upkeep_threads(), 1);
    }

    #[test]
    fn request_durations_are_exported_as_a_histogram_with_fixed_buckets() {
        let handle = metrics_handle().expect("the recorder installs");
        let labels = [("method", "GET"), ("route", "/histogram-test")];
        metrics::histogram!("imgate_http_request_duration_seconds", &labels).record(0.003);
        let text = handle.render();
        let bucket = |le: &str| {
            format!(
                "imgate_http_request_duration_seconds_bucket{{method=\"GET\",route=\"/histogram-test\",le=\"{le}\"}} "
            )
        };
        let count = |le: &str| {
            let line = text
                .lines()
                .find(|line| line.starts_with(&bucket(le)))
                .unwrap_or_else(|| panic!("no bucket le={le} in:\n{text}"));
            line.rsplit(' ').next().unwrap().to_owned()
        };
        assert_eq!(count("0.0025"), "0");
        assert_eq!(count("0.005"), "1");
        assert_eq!(count("+Inf"), "1");
    }
}
