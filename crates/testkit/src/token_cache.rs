//! The `TokenCache` contract suite.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{LoginError, ProviderError, TokenCache};
use imgate_domain::{AuthToken, ProviderUserId};

use crate::{user, within};

const LONG: Duration = Duration::from_secs(300);

/// A session for tests whose token is `token`.
pub fn session(token: &str) -> ProviderSession {
    ProviderSession {
        user_id: ProviderUserId::parse("provider-id").expect("valid id"),
        token: AuthToken::new(token),
        issued_at: chrono::Utc::now(),
    }
}

/// Runs every clause of the `TokenCache` contract, each on a fresh cache from `make`.
pub async fn run_all<C, F, Fut>(make: F)
where
    C: TokenCache + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = C>,
{
    put_then_get_returns_the_session(&make().await).await;
    get_of_unknown_user_is_none(&make().await).await;
    entries_expire_after_their_ttl(&make().await).await;
    put_replaces_the_session(&make().await).await;
    remove_drops_and_remove_of_absent_user_is_ok(&make().await).await;
    invalidate_drops_only_the_stale_session(&make().await).await;
    get_or_login_returns_the_cached_session_without_login(&make().await).await;
    concurrent_get_or_login_logs_in_exactly_once(Arc::new(make().await)).await;
    a_failed_login_reaches_every_waiter_and_is_not_cached(Arc::new(make().await)).await;
}

async fn put_then_get_returns_the_session(cache: &dyn TokenCache) {
    let stored = session("t1");
    cache
        .put(&user("alice"), stored.clone(), LONG)
        .await
        .unwrap();
    assert_eq!(cache.get(&user("alice")).await.unwrap(), Some(stored));
    assert_eq!(cache.get(&user("bob")).await.unwrap(), None);
}

async fn get_of_unknown_user_is_none(cache: &dyn TokenCache) {
    assert_eq!(cache.get(&user("nobody")).await.unwrap(), None);
}

async fn entries_expire_after_their_ttl(cache: &dyn TokenCache) {
    let ttl = Duration::from_millis(1500);
    cache
        .put(&user("alice"), session("short"), ttl)
        .await
        .unwrap();
    cache
        .put(&user("bob"), session("long"), LONG)
        .await
        .unwrap();
    assert!(cache.get(&user("alice")).await.unwrap().is_some());
    tokio::time::sleep(ttl + Duration::from_millis(700)).await;
    assert_eq!(
        cache.get(&user("alice")).await.unwrap(),
        None,
        "expired entry still served"
    );
    assert!(
        cache.get(&user("bob")).await.unwrap().is_some(),
        "other entries must stay"
    );
}

async fn put_replaces_the_session(cache: &dyn TokenCache) {
    cache
        .put(&user("alice"), session("old"), LONG)
        .await
        .unwrap();
    cache
        .put(&user("alice"), session("new"), LONG)
        .await
        .unwrap();
    let got = cache.get(&user("alice")).await.unwrap().unwrap();
    assert_eq!(got.token.expose(), "new");
}

async fn remove_drops_and_remove_of_absent_user_is_ok(cache: &dyn TokenCache) {
    cache.put(&user("alice"), session("t"), LONG).await.unwrap();
    cache.remove(&user("alice")).await.unwrap();
    assert_eq!(cache.get(&user("alice")).await.unwrap(), None);
    cache.remove(&user("never-there")).await.unwrap();
}

async fn invalidate_drops_only_the_stale_session(cache: &dyn TokenCache) {
    cache
        .put(&user("alice"), session("fresh"), LONG)
        .await
        .unwrap();
    cache
        .invalidate(&user("alice"), &AuthToken::new("stale"))
        .await
        .unwrap();
    let kept = cache.get(&user("alice")).await.unwrap().unwrap();
    assert_eq!(
        kept.token.expose(),
        "fresh",
        "a fresh session was thrown away"
    );
    cache
        .invalidate(&user("alice"), &AuthToken::new("fresh"))
        .await
        .unwrap();
    assert_eq!(cache.get(&user("alice")).await.unwrap(), None);
    cache
        .invalidate(&user("nobody"), &AuthToken::new("x"))
        .await
        .unwrap();
}

async fn get_or_login_returns_the_cached_session_without_login(cache: &dyn TokenCache) {
    cache
        .put(&user("alice"), session("cached"), LONG)
        .await
        .unwrap();
    let got = cache
        .get_or_login(
            &user("alice"),
            LONG,
            Box::pin(async { panic!("logged in although a session was cached") }),
        )
        .await
        .unwrap();
    assert_eq!(got.token.expose(), "cached");
}

async fn concurrent_get_or_login_logs_in_exactly_once(cache: Arc<dyn TokenCache>) {
    let logins = Arc::new(AtomicUsize::new(0));
    let callers = (0..100).map(|_| {
        let cache = cache.clone();
        let logins = logins.clone();
        tokio::spawn(async move {
            let login = Box::pin(async move {
                let n = logins.fetch_add(1, Ordering::SeqCst);
                // A login takes a while, so the other 99 callers arrive while it runs.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(session(&format!("login-{n}")))
            });
            cache.get_or_login(&user("alice"), LONG, login).await
        })
    });
    let results = within("100 concurrent logins", futures::future::join_all(callers)).await;
    assert_eq!(
        logins.load(Ordering::SeqCst),
        1,
        "expected exactly one provider login"
    );
    for result in results {
        let session = result.expect("task panicked").expect("login failed");
        assert_eq!(session.token.expose(), "login-0");
    }
    let cached = cache.get(&user("alice")).await.unwrap().unwrap();
    assert_eq!(cached.token.expose(), "login-0");
}

async fn a_failed_login_reaches_every_waiter_and_is_not_cached(cache: Arc<dyn TokenCache>) {
    let callers = (0..10).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let login = Box::pin(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(ProviderError::Unavailable("down".into()))
            });
            cache.get_or_login(&user("alice"), LONG, login).await
        })
    });
    for result in within("failing logins", futures::future::join_all(callers)).await {
        assert_eq!(
            result.expect("task panicked"),
            Err(LoginError::Provider(ProviderError::Unavailable(
                "down".into()
            )))
        );
    }
    assert_eq!(cache.get(&user("alice")).await.unwrap(), None);
    let retried = cache
        .get_or_login(
            &user("alice"),
            LONG,
            Box::pin(async { Ok(session("later")) }),
        )
        .await
        .unwrap();
    assert_eq!(retried.token.expose(), "later");
}
