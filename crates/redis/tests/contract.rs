//! The port contract suites against a real Redis, plus the cross-node cases only a shared
//! store has: single-flight across two caches, and a publisher surviving a killed connection.
//!
//! Redis is `IMGATE_TEST_REDIS_URL` or `redis://127.0.0.1:6379`; a test that cannot reach it
//! fails, saying how to start one. Each instance gets its own key prefix, so tests run in
//! parallel and never see each other's keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use imgate_domain::ports::{
    EventPublisher, HealthCheck, Lease, LoginError, PasswordStore, ProviderError, TokenCache,
};
use imgate_redis::{
    RedisConfig, RedisEventPublisher, RedisHealthCheck, RedisLease, RedisPasswordStore,
    RedisTokenCache, SingleFlight,
};
use imgate_testkit::event_publisher::typing;
use imgate_testkit::token_cache::session;
use imgate_testkit::{user, within};

/// The Redis the tests use; fails the test when it does not answer.
async fn redis_url() -> String {
    let url = std::env::var("IMGATE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let answered = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(3), answered).await {
        Ok(Some(_)) => url,
        _ => panic!(
            "no Redis answers at {url}: run `bash scripts/ensure-redis.sh` \
             (or set IMGATE_TEST_REDIS_URL)"
        ),
    }
}

/// A config with a prefix no other test instance uses.
async fn fresh_config() -> RedisConfig {
    let prefix = format!("imgate-test-{}", uuid::Uuid::new_v4().simple());
    RedisConfig::new(redis_url().await, prefix)
}

#[tokio::test]
async fn redis_lease_meets_the_lease_contract() {
    let prefixes = Arc::new(std::sync::Mutex::new(Vec::new()));
    imgate_testkit::lease::run_all(|| {
        let prefixes = prefixes.clone();
        async move {
            let config = fresh_config().await;
            prefixes.lock().unwrap().push(config.prefix.clone());
            RedisLease::connect(&config).await.expect("connect")
        }
    })
    .await;
    // Fence counters never expire, by design; do not leave the tests' ones behind.
    let prefixes = prefixes.lock().unwrap().clone();
    delete_keys(&fresh_config().await, &prefixes).await;
}

/// Deletes every key under the given prefixes.
async fn delete_keys(config: &RedisConfig, prefixes: &[String]) {
    let mut conn = raw(config).await;
    for prefix in prefixes {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn leases_of_two_nodes_exclude_each_other() {
    let config = fresh_config().await;
    let a = RedisLease::connect(&config).await.expect("connect");
    let b = RedisLease::connect(&config).await.expect("connect");
    let ttl = Duration::from_secs(60);
    let token = a.acquire(&user("alice"), "node-a", ttl).await.unwrap();
    assert!(token.is_some());
    assert_eq!(
        b.acquire(&user("alice"), "node-b", ttl).await.unwrap(),
        None
    );
    delete_keys(&config, std::slice::from_ref(&config.prefix)).await;
}

#[tokio::test]
async fn health_check_pings_redis() {
    let check = RedisHealthCheck::connect(&fresh_config().await)
        .await
        .expect("connect");
    assert_eq!(check.name(), "redis");
    assert_eq!(check.check().await, Ok(()));
}

#[tokio::test]
async fn redis_password_store_meets_the_password_store_contract() {
    let prefixes = Arc::new(std::sync::Mutex::new(Vec::new()));
    imgate_testkit::password_store::run_all(|| {
        let prefixes = prefixes.clone();
        async move {
            // Two stores on one prefix are two nodes.
            let config = fresh_config().await;
            prefixes.lock().unwrap().push(config.prefix.clone());
            let a = RedisPasswordStore::connect(&config).await.expect("connect");
            let b = RedisPasswordStore::connect(&config).await.expect("connect");
            (Arc::new(a), Arc::new(b))
        }
    })
    .await;
    // Passwords never expire, by design; do not leave the tests' ones behind.
    let prefixes = prefixes.lock().unwrap().clone();
    delete_keys(&fresh_config().await, &prefixes).await;
}

#[tokio::test]
async fn a_password_is_one_plain_key_without_ttl() {
    let config = fresh_config().await;
    let store = RedisPasswordStore::connect(&config).await.expect("connect");
    store
        .set(&user("alice"), &imgate_domain::Password::new("s3cret-pw"))
        .await
        .unwrap();
    let mut conn = raw(&config).await;
    let key = format!("{}:{{alice}}:password", config.prefix);
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, "s3cret-pw");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ttl, -1, "no expiry");
    store.remove(&user("alice")).await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_token_cache_meets_the_token_cache_contract() {
    imgate_testkit::token_cache::run_all(|| async {
        RedisTokenCache::connect(&fresh_config().await)
            .await
            .expect("connect")
    })
    .await;
}

/// Two caches on one prefix stand for two nodes.
async fn two_nodes(config: &RedisConfig) -> [Arc<dyn TokenCache>; 2] {
    let connect = || async {
        Arc::new(RedisTokenCache::connect(config).await.expect("connect")) as Arc<dyn TokenCache>
    };
    [connect().await, connect().await]
}

#[tokio::test]
async fn get_or_login_is_single_flight_across_nodes() {
    let nodes = two_nodes(&fresh_config().await).await;
    let logins = Arc::new(AtomicUsize::new(0));
    let callers = (0..60).map(|n| {
        let cache = nodes[n % 2].clone();
        let logins = logins.clone();
        tokio::spawn(async move {
            let login = Box::pin(async move {
                let n = logins.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(session(&format!("login-{n}")))
            });
            cache
                .get_or_login(&user("alice"), Duration::from_secs(60), login)
                .await
        })
    });
    let results = within(
        "60 logins over two nodes",
        futures::future::join_all(callers),
    )
    .await;
    assert_eq!(
        logins.load(Ordering::SeqCst),
        1,
        "expected one login in all"
    );
    for result in results {
        let session = result.expect("task panicked").expect("login failed");
        assert_eq!(session.token.expose(), "login-0");
    }
}

#[tokio::test]
async fn a_failed_login_reaches_the_waiters_on_other_nodes_and_is_not_cached() {
    let [a, b] = two_nodes(&fresh_config().await).await;
    let failing = {
        let a = a.clone();
        tokio::spawn(async move {
            let login = Box::pin(async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Err(ProviderError::InvalidCredentials)
            });
            a.get_or_login(&user("alice"), Duration::from_secs(60), login)
                .await
        })
    };
    // Let node a take the lock first; node b then waits for its outcome.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let alice = user("alice");
    let waiting = b.get_or_login(
        &alice,
        Duration::from_secs(60),
        Box::pin(async { panic!("node b logged in although node a was logging in") }),
    );
    let waited = within("node b's wait", waiting).await;
    let failed = within("node a's login", failing).await.expect("task");
    let expected = Err(LoginError::Provider(ProviderError::InvalidCredentials));
    assert_eq!(failed, expected);
    assert_eq!(waited, expected);
    assert_eq!(b.get(&user("alice")).await.unwrap(), None);
    let later = b
        .get_or_login(
            &user("alice"),
            Duration::from_secs(60),
            Box::pin(async { Ok(session("later")) }),
        )
        .await
        .unwrap();
    assert_eq!(later.token.expose(), "later");
}

#[tokio::test]
async fn a_dead_nodes_login_lock_expires_and_another_takes_over() {
    let config = fresh_config().await;
    let cache = RedisTokenCache::connect_with(
        &config,
        SingleFlight {
            lock_ttl: Duration::from_millis(600),
            ..SingleFlight::default()
        },
    )
    .await
    .expect("connect");
    // A node took the lock and died: nobody extends or deletes it.
    let client = redis::Client::open(config.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut set = redis::cmd("SET");
    set.arg(format!("{}:{{alice}}:login-lock", config.prefix))
        .arg("dead-attempt")
        .arg("PX")
        .arg(600);
    let _: () = set.query_async(&mut conn).await.unwrap();
    let logins = Arc::new(AtomicUsize::new(0));
    let counted = logins.clone();
    let started = tokio::time::Instant::now();
    let got = within(
        "a takeover",
        cache.get_or_login(
            &user("alice"),
            Duration::from_secs(60),
            Box::pin(async move {
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(session("after-takeover"))
            }),
        ),
    )
    .await
    .unwrap();
    assert_eq!(got.token.expose(), "after-takeover");
    assert_eq!(logins.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "logged in while the dead node's lock was still there"
    );
}

#[tokio::test]
async fn redis_event_publisher_meets_the_event_publisher_contract() {
    imgate_testkit::event_publisher::run_all(|buffer| async move {
        // Two publishers on one prefix are two nodes sharing the backplane.
        let config = fresh_config().await;
        let a = RedisEventPublisher::connect(&config, buffer)
            .await
            .expect("connect");
        let b = RedisEventPublisher::connect(&config, buffer)
            .await
            .expect("connect");
        (Arc::new(a), Arc::new(b))
    })
    .await;
}

#[tokio::test]
async fn publishers_with_different_prefixes_do_not_hear_each_other() {
    let url = redis_url().await;
    let a = RedisEventPublisher::connect(&fresh_config().await, 16)
        .await
        .expect("connect");
    let b = RedisEventPublisher::connect(
        &RedisConfig::new(url, format!("{}-other", uuid::Uuid::new_v4().simple())),
        16,
    )
    .await
    .expect("connect");
    let mut other = b.subscribe(&user("alice")).await.unwrap();
    let mut own = a.subscribe(&user("alice")).await.unwrap();
    a.publish(&user("alice"), &typing(1)).await.unwrap();
    b.publish(&user("alice"), &typing(2)).await.unwrap();
    assert_eq!(*within("a's event", own.next()).await.unwrap(), typing(1));
    assert_eq!(*within("b's event", other.next()).await.unwrap(), typing(2));
}

/// Ids of the pub/sub connections on `db`, from `CLIENT LIST`.
async fn pubsub_clients_on_db(
    conn: &mut redis::aio::MultiplexedConnection,
    db: u32,
) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(conn)
        .await
        .unwrap();
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == format!("db={db}")))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn a_publisher_recovers_after_its_subscriber_connection_is_killed() {
    // A database of its own, so the kill below finds only this test's connection: pub/sub
    // ignores databases, but `CLIENT LIST` shows which one a connection selected.
    const DB: u32 = 13;
    let base = redis_url().await;
    let url = format!("{}/{DB}", base.trim_end_matches('/'));
    let config = RedisConfig::new(
        url.clone(),
        format!("imgate-test-{}", uuid::Uuid::new_v4().simple()),
    );
    let publisher = RedisEventPublisher::connect(&config, 16)
        .await
        .expect("connect");
    let mut alice = publisher.subscribe(&user("alice")).await.unwrap();
    publisher.publish(&user("alice"), &typing(1)).await.unwrap();
    assert_eq!(
        *within("the first event", alice.next()).await.unwrap(),
        typing(1)
    );

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let victims = pubsub_clients_on_db(&mut admin, DB).await;
    assert!(
        !victims.is_empty(),
        "the publisher's subscriber connection is not listed"
    );
    for id in victims {
        let _: redis::Value = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .query_async(&mut admin)
            .await
            .unwrap();
    }

    // Events published while it reconnects would be lost to it, so its feed ends rather than
    // silently skipping them; a new subscription gets events again once it is back.
    assert_eq!(within("the feed to end", alice.next()).await, None);
    within("events to flow again", async {
        for n in 2.. {
            let Ok(mut again) = publisher.subscribe(&user("alice")).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            publisher.publish(&user("alice"), &typing(n)).await.unwrap();
            if let Ok(Some(event)) =
                tokio::time::timeout(Duration::from_millis(100), again.next()).await
            {
                assert!(matches!(*event, imgate_domain::UserEvent::Typing { .. }));
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_user_without_local_subscribers_is_unsubscribed() {
    let config = fresh_config().await;
    let publisher = RedisEventPublisher::connect(&config, 16)
        .await
        .expect("connect");
    let channel = format!("{}:{{alice}}:events", config.prefix);
    let client = redis::Client::open(config.url.as_str()).unwrap();
    let admin = client.get_multiplexed_async_connection().await.unwrap();
    let subscribers = |mut conn: redis::aio::MultiplexedConnection, channel: String| async move {
        let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        counts.first().map_or(0, |(_, n)| *n)
    };
    let first = publisher.subscribe(&user("alice")).await.unwrap();
    let second = publisher.subscribe(&user("alice")).await.unwrap();
    assert_eq!(
        subscribers(admin.clone(), channel.clone()).await,
        1,
        "one SUBSCRIBE per node"
    );
    drop(first);
    drop(second);
    within("the channel to be unsubscribed", async {
        while subscribers(admin.clone(), channel.clone()).await > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    // Coming back after the sweep subscribes the channel again.
    let mut again = publisher.subscribe(&user("alice")).await.unwrap();
    assert_eq!(subscribers(admin.clone(), channel.clone()).await, 1);
    publisher.publish(&user("alice"), &typing(5)).await.unwrap();
    assert_eq!(
        *within("an event after resubscribing", again.next())
            .await
            .unwrap(),
        typing(5)
    );
}

/// A raw connection to the tests' Redis, for planting values and inspecting state.
async fn raw(config: &RedisConfig) -> redis::aio::MultiplexedConnection {
    redis::Client::open(config.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_unreadable_session_is_corrupt_to_get_and_replaced_by_get_or_login() {
    let config = fresh_config().await;
    let cache = RedisTokenCache::connect(&config).await.expect("connect");
    let mut conn = raw(&config).await;
    let key = format!("{}:{{alice}}:session", config.prefix);
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        cache.get(&user("alice")).await,
        Err(imgate_domain::ports::CacheError::Corrupt(_))
    ));
    let fresh = cache
        .get_or_login(
            &user("alice"),
            Duration::from_secs(60),
            Box::pin(async { Ok(session("fresh")) }),
        )
        .await
        .unwrap();
    assert_eq!(fresh.token.expose(), "fresh");
    assert_eq!(cache.get(&user("alice")).await.unwrap(), Some(fresh));
    // An unreadable entry is also dropped by `invalidate`, whatever token it names.
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("[1,2")
        .query_async(&mut conn)
        .await
        .unwrap();
    cache
        .invalidate(&user("alice"), &imgate_domain::AuthToken::new("x"))
        .await
        .unwrap();
    assert_eq!(cache.get(&user("alice")).await.unwrap(), None);
}

#[tokio::test]
async fn a_holder_id_with_colons_keeps_its_lease() {
    let config = fresh_config().await;
    let lease = RedisLease::connect(&config).await.expect("connect");
    let ttl = Duration::from_secs(60);
    let first = lease
        .acquire(&user("alice"), "node:10.0.0.1:8080", ttl)
        .await
        .unwrap()
        .expect("free lease");
    let again = lease
        .acquire(&user("alice"), "node:10.0.0.1:8080", ttl)
        .await
        .unwrap();
    assert_eq!(again, Some(first.clone()));
    assert_eq!(
        lease
            .acquire(&user("alice"), "node:10.0.0.1", ttl)
            .await
            .unwrap(),
        None
    );
    assert!(lease.renew(&user("alice"), &first, ttl).await.unwrap());
    delete_keys(&config, std::slice::from_ref(&config.prefix)).await;
}

#[tokio::test]
async fn an_unreadable_event_on_the_wire_is_skipped() {
    let config = fresh_config().await;
    let publisher = RedisEventPublisher::connect(&config, 16)
        .await
        .expect("connect");
    let mut alice = publisher.subscribe(&user("alice")).await.unwrap();
    let mut conn = raw(&config).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}:{{alice}}:events", config.prefix))
        .arg("{\"type\":\"nonsense\"}")
        .query_async(&mut conn)
        .await
        .unwrap();
    publisher.publish(&user("alice"), &typing(7)).await.unwrap();
    assert_eq!(
        *within("the good event", alice.next()).await.unwrap(),
        typing(7)
    );
}

#[tokio::test]
async fn a_login_whose_callers_gave_up_is_not_joined_later() {
    let cache = RedisTokenCache::connect(&fresh_config().await)
        .await
        .expect("connect");
    let alice = user("alice");
    let abandoned = cache.get_or_login(
        &alice,
        Duration::from_secs(60),
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(ProviderError::Unavailable("down".into()))
        }),
    );
    assert!(tokio::time::timeout(Duration::from_millis(50), abandoned)
        .await
        .is_err());
    // The abandoned login finishes (and fails) on its own; a later caller starts afresh.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let later = within(
        "a later login",
        cache.get_or_login(
            &alice,
            Duration::from_secs(60),
            Box::pin(async { Ok(session("later")) }),
        ),
    )
    .await
    .unwrap();
    assert_eq!(later.token.expose(), "later");
}

#[tokio::test]
async fn many_users_subscribing_at_once_each_get_their_own_events() {
    let config = fresh_config().await;
    let a = Arc::new(
        RedisEventPublisher::connect(&config, 16)
            .await
            .expect("connect"),
    );
    let b = RedisEventPublisher::connect(&config, 16)
        .await
        .expect("connect");
    let subscribing = (0..100).map(|n| {
        let a = a.clone();
        tokio::spawn(async move { a.subscribe(&user(&format!("user-{n}"))).await })
    });
    let mut subscriptions: Vec<_> =
        within("100 subscriptions", futures::future::join_all(subscribing))
            .await
            .into_iter()
            .map(|result| result.expect("task").expect("subscribe"))
            .collect();
    for n in 0..100 {
        b.publish(&user(&format!("user-{n}")), &typing(n))
            .await
            .unwrap();
    }
    for (n, subscription) in subscriptions.iter_mut().enumerate() {
        assert_eq!(
            *within("a user's event", subscription.next()).await.unwrap(),
            typing(n)
        );
    }
    assert_eq!(a.fanout().user_count(), 100);
}
