//! The session service and the admin agent against a scripted provider.

use std::sync::Arc;
use std::time::Duration;

use imgate_domain::ports::{ImProvider, ProviderError, ProviderRooms, TokenCache};
use imgate_domain::services::{
    AdminAgent, AdminError, PasswordPolicy, SessionError, SessionService,
};
use imgate_domain::Password;
use imgate_memory::MemoryTokenCache;
use imgate_testkit::scripted_provider::ScriptedProvider;
use imgate_testkit::{user, within};

fn service(provider: &Arc<ScriptedProvider>, cache: Arc<dyn TokenCache>) -> SessionService {
    SessionService::new(
        provider.clone() as Arc<dyn ImProvider>,
        cache,
        PasswordPolicy::new(Password::new("pw")),
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
