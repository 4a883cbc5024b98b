//! The session service and the admin agent against a scripted provider.

use std::sync::Arc;
use std::time::Duration;

use imgate_domain::ports::{
    CacheError, DeploymentCheck, Finding, FindingStatus, HealthCheck, ImProvider, PasswordStore,
    PasswordStoreError, ProviderError, ProviderRooms, TokenCache,
};
use imgate_domain::services::{
    AdminAgent, AdminError, PasswordPolicy, SessionError, SessionService,
};
use imgate_domain::{Password, UserId};
use imgate_memory::{MemoryPasswordStore, MemoryTokenCache};
use imgate_testkit::scripted_provider::ScriptedProvider;
use imgate_testkit::{user, within};

fn service(provider: &Arc<ScriptedProvider>, cache: Arc<dyn TokenCache>) -> SessionService {
    SessionService::new(
        provider.clone() as Arc<dyn ImProvider>,
        cache,
        PasswordPolicy::new(
            Password::new("pw"),
            Arc::new(MemoryPasswordStore::default()),
        ),
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn many_requests_for_one_user_make_one_login() {
    let provider = ScriptedProvider::with_password("pw");
    let sessions = Arc::new(service(&provider, Arc::new(MemoryTokenCache::default())));
    let calls = (0..100).map(|_| {
        let sessions = sessions.clone();
        tokio::spawn(async move { sessions.session(&user("alice")).await })
    });
    for result in within("100 session lookups", futures::future::join_all(calls)).await {
        result.unwrap().unwrap();
    }
    assert_eq!(provider.logins(), 1);
}

#[tokio::test]
async fn a_rejected_session_is_renewed_once_transparently() {
    let provider = ScriptedProvider::with_password("pw");
    let sessions = service(&provider, Arc::new(MemoryTokenCache::default()));
    let rooms = |s| {
        let provider = provider.clone();
        async move { provider.list_rooms(&s).await }
    };
    sessions.run(&user("alice"), rooms).await.unwrap();
    provider.revoke_all();
    sessions.run(&user("alice"), rooms).await.unwrap();
    assert_eq!(provider.logins(), 2);
}

#[tokio::test]
async fn a_session_rejected_twice_is_reported_not_retried_forever() {
    let provider = ScriptedProvider::with_password("pw");
    let sessions = service(&provider, Arc::new(MemoryTokenCache::default()));
    let always_rejected = |_| async { Err::<(), _>(ProviderError::SessionExpired) };
    let result = sessions.run(&user("alice"), always_rejected).await;
    assert_eq!(
        result,
        Err(SessionError::Provider(ProviderError::SessionExpired))
    );
    assert_eq!(provider.logins(), 2);
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_invalid_credentials() {
    let provider = ScriptedProvider::with_password("other");
    let sessions = service(&provider, Arc::new(MemoryTokenCache::default()));
    assert_eq!(
        sessions.session(&user("alice")).await,
        Err(SessionError::Provider(ProviderError::InvalidCredentials))
    );
}

#[tokio::test]
async fn logout_ends_the_provider_session_and_forgets_it() {
    let provider = ScriptedProvider::with_password("pw");
    let cache = Arc::new(MemoryTokenCache::default());
    let sessions = service(&provider, cache.clone());
    sessions.session(&user("alice")).await.unwrap();
    sessions.logout(&user("alice")).await.unwrap();
    assert_eq!(provider.logouts(), 1);
    assert_eq!(cache.get(&user("alice")).await.unwrap(), None);
}

/// Two nodes: their own caches, one shared password store.
fn node(provider: &Arc<ScriptedProvider>, passwords: Arc<dyn PasswordStore>) -> SessionService {
    SessionService::new(
        provider.clone() as Arc<dyn ImProvider>,
        Arc::new(MemoryTokenCache::default()),
        PasswordPolicy::new(Password::new("default-pw"), passwords),
        Duration::from_secs(3600),
    )
}

#[tokio::test]
async fn a_password_the_host_set_on_one_node_logs_the_user_in_on_another() {
    let provider = ScriptedProvider::with_password("alice-own-pw");
    let store: Arc<dyn PasswordStore> = Arc::new(MemoryPasswordStore::default());
    let (a, b) = (node(&provider, store.clone()), node(&provider, store));
    let alice = user("alice");
    a.passwords()
        .remember(&alice, Some(&Password::new("alice-own-pw")))
        .await
        .unwrap();
    b.session(&alice).await.expect("node b logs in with it");
    a.passwords().remember(&alice, None).await.unwrap();
    assert_eq!(
        b.passwords().password_for(&alice).await.unwrap(),
        Password::new("default-pw"),
        "back to the default everywhere"
    );
}

/// A password store that cannot be reached.
struct Unreachable;

#[async_trait::async_trait]
impl PasswordStore for Unreachable {
    async fn get(&self, _: &UserId) -> Result<Option<Password>, PasswordStoreError> {
        Err(PasswordStoreError::Unavailable("down".into()))
    }
    async fn set(&self, _: &UserId, _: &Password) -> Result<(), PasswordStoreError> {
        Err(PasswordStoreError::Unavailable("down".into()))
    }
    async fn remove(&self, _: &UserId) -> Result<(), PasswordStoreError> {
        Err(PasswordStoreError::Unavailable("down".into()))
    }
}

#[tokio::test]
async fn a_password_store_outage_fails_a_login_like_a_cache_outage() {
    let provider = ScriptedProvider::with_password("default-pw");
    let cache = Arc::new(MemoryTokenCache::default());
    let sessions = SessionService::new(
        provider.clone() as Arc<dyn ImProvider>,
        cache.clone(),
        PasswordPolicy::new(Password::new("default-pw"), Arc::new(Unreachable)),
        Duration::from_secs(3600),
    );
    let result = sessions.session(&user("alice")).await;
    assert!(
        matches!(result, Err(SessionError::Cache(CacheError::Unavailable(_)))),
        "{result:?}"
    );
    assert_eq!(
        provider.logins(),
        0,
        "no login with a password it could not read"
    );
    // A cached session needs no password: calls go on while only the store is down.
    cache
        .put(
            &user("bob"),
            imgate_testkit::token_cache::session("bob-token"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(
        sessions.session(&user("bob")).await.unwrap().token.expose(),
        "bob-token"
    );
}

#[tokio::test]
async fn the_admin_agent_logs_in_renews_and_logs_out() {
    let provider = ScriptedProvider::with_password("pw");
    let agent = Arc::new(AdminAgent::new(
        provider.clone(),
        "admin".into(),
        Password::new("pw"),
    ));
    agent.start().await.unwrap();
    assert!(agent.is_logged_in().await);
    provider.revoke_all();
    let calls = (0..20).map(|_| {
        let agent = agent.clone();
        let provider = provider.clone();
        tokio::spawn(async move {
            agent
                .run(|s| {
                    let provider = provider.clone();
                    async move { provider.list_rooms(&s).await }
                })
                .await
        })
    });
    for result in within("admin calls", futures::future::join_all(calls)).await {
        result.unwrap().unwrap();
    }
    assert_eq!(
        provider.admin_logins(),
        2,
        "one start-up login, one renewal"
    );
    agent.shutdown().await;
    assert!(!agent.is_logged_in().await);
    assert_eq!(provider.logouts(), 1);
}

#[tokio::test]
async fn an_admin_agent_with_wrong_credentials_fails_to_start() {
    let provider = ScriptedProvider::with_password("pw");
    let agent = AdminAgent::new(provider, "admin".into(), Password::new("wrong"));
    assert_eq!(agent.start().await, Err(AdminError::LoginRefused));
}

fn rate_limiter_warning() -> Finding {
    Finding {
        name: "rate_limiter".into(),
        status: FindingStatus::Warning,
        message: "users share ten calls a minute".into(),
    }
}

#[tokio::test]
async fn the_admin_agent_reports_deployment_warnings_without_failing_readiness() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let provider = ScriptedProvider::with_password("pw");
    provider.set_findings(vec![rate_limiter_warning()]);
    let agent = AdminAgent::new(provider.clone(), "admin".into(), Password::new("pw"));
    agent.start().await.unwrap();
    assert_eq!(
        provider.deployment_checks(),
        [DeploymentCheck {
            fix: false,
            user_role: "user".into()
        }],
        "one report-only check right after the start-up login"
    );
    assert_eq!(
        agent.check().await,
        Ok(()),
        "a warning leaves the agent ready"
    );
    assert!(prometheus
        .render()
        .contains("imgate_provider_deployment_warning{check=\"rate_limiter\"} 1"));
    assert_eq!(
        agent.warnings().await,
        [(
            "rate_limiter".to_string(),
            "users share ten calls a minute".to_string()
        )]
    );
    assert_eq!(
        provider.deployment_checks().len(),
        1,
        "fresh findings are not asked for again"
    );
}

#[tokio::test]
async fn the_admin_agent_fixes_the_deployment_when_configured_to() {
    // The default current-thread runtime keeps every await on this thread, so the agent's
    // gauge lands in this recorder and not in another test's.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let prometheus = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let provider = ScriptedProvider::with_password("pw");
    provider.set_findings(vec![rate_limiter_warning()]);
    let agent = AdminAgent::new(provider.clone(), "admin".into(), Password::new("pw"))
        .with_deployment_check(DeploymentCheck {
            fix: true,
            user_role: "imgate-user".into(),
        });
    agent.start().await.unwrap();
    assert_eq!(
        provider.deployment_checks(),
        [DeploymentCheck {
            fix: true,
            user_role: "imgate-user".into()
        }]
    );
    assert!(agent.warnings().await.is_empty());
    assert!(
        prometheus
            .render()
            .contains("imgate_provider_deployment_warning{check=\"rate_limiter\"} 0"),
        "{}",
        prometheus.render()
    );
    let report = agent
        .check_deployment(&DeploymentCheck {
            fix: false,
            user_role: "imgate-user".into(),
        })
        .await
        .unwrap();
    assert!(report.changes.is_empty());
    assert_eq!(report.warnings().count(), 0, "the fix held");
}

#[tokio::test(start_paused = true)]
async fn deployment_findings_are_refreshed_after_thirty_seconds_without_fixing() {
    let provider = ScriptedProvider::with_password("pw");
    let agent = AdminAgent::new(provider.clone(), "admin".into(), Password::new("pw"))
        .with_deployment_check(DeploymentCheck {
            fix: true,
            user_role: "user".into(),
        });
    agent.start().await.unwrap();
    // Someone takes the setting back on the provider.
    provider.set_findings(vec![rate_limiter_warning()]);
    assert!(agent.warnings().await.is_empty(), "still the fresh answer");
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(agent.warnings().await.len(), 1);
    let checks = provider.deployment_checks();
    assert_eq!(checks.len(), 2);
    assert!(!checks[1].fix, "/readyz never changes the provider");
}
