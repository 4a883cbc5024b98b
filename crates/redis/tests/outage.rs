//! Adapters created while Redis is down: they start, fail their calls with the port's
//! `Unavailable` quickly, and work once Redis answers, without being created again.
//!
//! Each test runs its own redis-server on a free port, started only after the adapter exists,
//! so stopping or delaying it disturbs no other test.

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgate_domain::ports::{
    BackplaneError, CacheError, HealthCheck, Lease, LeaseError, PasswordStore, PasswordStoreError,
    TokenCache,
};
use imgate_domain::Password;
use imgate_redis::{
    ConnectError, RedisBackplane, RedisConfig, RedisHealthCheck, RedisLease, RedisPasswordStore,
    RedisTokenCache,
};
use imgate_testkit::backplane::{to_user, SuiteNode};
use imgate_testkit::token_cache::session;
use imgate_testkit::{user, within};

/// The command timeout of these tests; every failing call must end within it (plus slack).
const TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on a busy test machine.
const SLACK: Duration = Duration::from_millis(500);

/// A redis-server of this test's own; killed on drop.
struct PrivateRedis {
    child: Child,
}

impl PrivateRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs: `bash scripts/ensure-redis.sh` installs it");
        let redis = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(port: u16) -> RedisConfig {
    let mut config = RedisConfig::new(
        format!("redis://127.0.0.1:{port}"),
        format!("imgate-test-{}", uuid::Uuid::new_v4().simple()),
    );
    config.command_timeout_ms = u64::try_from(TIMEOUT.as_millis()).unwrap();
    config
}

/// Runs `call`, which must fail, and checks it failed within the command timeout.
async fn fails_quickly<T, E>(what: &str, call: impl Future<Output = Result<T, E>>) -> E {
    let started = Instant::now();
    let Err(err) = within(what, call).await else {
        panic!("{what} succeeded while Redis is down");
    };
    assert!(
        started.elapsed() <= TIMEOUT + SLACK,
        "{what} took {:?}",
        started.elapsed()
    );
    err
}

/// Retries `call` until it succeeds, for at most 15 s.
async fn eventually<T, E: std::fmt::Debug, Fut: Future<Output = Result<T, E>>>(
    what: &str,
    call: impl Fn() -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(value) => return value,
            Err(err) => assert!(Instant::now() < deadline, "{what} never worked: {err:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_invalid_url_is_still_a_connect_error() {
    let config = RedisConfig::new("http://not-redis", "imgate-test");
    assert!(matches!(
        RedisLease::connect(&config).await,
        Err(ConnectError::InvalidUrl(_))
    ));
    assert!(matches!(
        RedisBackplane::connect(&config, "node-a").await,
        Err(ConnectError::InvalidUrl(_))
    ));
}

#[tokio::test]
async fn a_token_cache_created_while_redis_is_down_works_once_it_answers() {
    let port = free_port();
    let cache = within(
        "creating the cache",
        RedisTokenCache::connect(&config(port)),
    )
    .await
    .expect("created although Redis is down");
    let alice = user("alice");
    for _ in 0..3 {
        let err = fails_quickly("get", cache.get(&alice)).await;
        assert!(matches!(err, CacheError::Unavailable(_)), "{err:?}");
    }
    let err = fails_quickly(
        "get_or_login",
        cache.get_or_login(
            &alice,
            Duration::from_secs(60),
            Box::pin(async { panic!("logged in although the cache is down") }),
        ),
    )
    .await;
    assert!(
        matches!(
            err,
            imgate_domain::ports::LoginError::Cache(CacheError::Unavailable(_))
        ),
        "{err:?}"
    );

    let _redis = PrivateRedis::start(port);
    eventually("put", || {
        cache.put(&alice, session("after"), Duration::from_secs(60))
    })
    .await;
    assert_eq!(
        cache
            .get(&alice)
            .await
            .unwrap()
            .map(|s| s.token.expose().to_owned()),
        Some("after".to_owned())
    );
}

#[tokio::test]
async fn a_lease_and_a_health_check_created_while_redis_is_down_work_once_it_answers() {
    let port = free_port();
    let config = config(port);
    let lease = RedisLease::connect(&config).await.expect("created");
    let health = RedisHealthCheck::connect(&config).await.expect("created");
    let ttl = Duration::from_secs(60);
    let err = fails_quickly("acquire", lease.acquire(&user("alice"), "node-a", ttl)).await;
    assert!(matches!(err, LeaseError::Unavailable(_)), "{err:?}");
    fails_quickly("the health check", health.check()).await;

    let _redis = PrivateRedis::start(port);
    eventually("the health check", || health.check()).await;
    let alice = user("alice");
    let token = eventually("acquire", || lease.acquire(&alice, "node-a", ttl)).await;
    assert!(token.is_some());
}

#[tokio::test]
async fn a_password_store_created_while_redis_is_down_works_once_it_answers() {
    let port = free_port();
    let config = config(port);
    let store = RedisPasswordStore::connect(&config).await.expect("created");
    let alice = user("alice");
    let password = Password::new("alice-pw");
    let err = fails_quickly("get", store.get(&alice)).await;
    assert!(matches!(err, PasswordStoreError::Unavailable(_)), "{err:?}");
    let err = fails_quickly("set", store.set(&alice, &password)).await;
    assert!(matches!(err, PasswordStoreError::Unavailable(_)), "{err:?}");
    let err = fails_quickly("remove", store.remove(&alice)).await;
    assert!(matches!(err, PasswordStoreError::Unavailable(_)), "{err:?}");

    let _redis = PrivateRedis::start(port);
    eventually("set", || store.set(&alice, &password)).await;
    assert_eq!(store.get(&alice).await.unwrap(), Some(password));
}

/// How long a reconnecting backplane may take: its backoff grows to 5 s between attempts.
const RECONNECT: Duration = Duration::from_secs(15);

/// A backplane on `config` named `node_id`, with a recorder attached.
async fn backplane_node(config: &RedisConfig, node_id: &str) -> SuiteNode {
    let backplane = within(
        "creating the backplane",
        RedisBackplane::connect(config, node_id),
    )
    .await
    .expect("created whether or not Redis answers");
    SuiteNode::attached(Arc::new(backplane))
}

/// Calls `publish`, which must be refused at once.
fn refused_at_once(node: &SuiteNode, user_id: &str) {
    let started = Instant::now();
    let outcome = node.backplane.publish(&to_user(user_id, "refused"));
    assert!(
        matches!(outcome, Err(BackplaneError::Unavailable(_))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "publish took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_backplane_created_while_redis_is_down_subscribes_once_it_answers() {
    let port = free_port();
    let config = config(port);
    let a = backplane_node(&config, "node-a").await;
    refused_at_once(&a, "alice");
    let err = fails_quickly("subscribe", a.backplane.subscribe(&user("alice"))).await;
    assert!(matches!(err, BackplaneError::Unavailable(_)), "{err:?}");

    let _redis = PrivateRedis::start(port);
    // The subscription refused above was kept, and made with the first connection.
    a.recorder.resumed_at_least(1, RECONNECT).await;
    let b = backplane_node(&config, "node-b").await;
    b.publish(&to_user("alice", "m1"));
    a.expect(&to_user("alice", "m1"), "b's message on a").await;
    let alice = user("alice");
    eventually("a's publish", || {
        std::future::ready(a.backplane.publish(&to_user("bob", "m2")))
    })
    .await;
    eventually("subscribe", || a.backplane.subscribe(&alice)).await;
}

#[tokio::test]
async fn a_backplane_that_loses_redis_refuses_to_publish_and_resumes_once_it_is_back() {
    let port = free_port();
    let config = config(port);
    let redis = PrivateRedis::start(port);
    let a = backplane_node(&config, "node-a").await;
    let b = backplane_node(&config, "node-b").await;
    a.subscribe("alice").await;
    b.publish(&to_user("alice", "m1"));
    a.expect(&to_user("alice", "m1"), "the message before the outage")
        .await;

    drop(redis);
    // The subscriber connection notices the loss at once; from then on publish refuses
    // immediately instead of queuing what cannot be sent.
    within("publish to be refused", async {
        loop {
            let started = Instant::now();
            let outcome = b.backplane.publish(&to_user("alice", "during"));
            assert!(started.elapsed() < Duration::from_millis(50));
            if outcome.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    refused_at_once(&b, "alice");
    // A subscription made while down is refused, but kept for the reconnect.
    let err = fails_quickly("subscribe", a.backplane.subscribe(&user("bob"))).await;
    assert!(matches!(err, BackplaneError::Unavailable(_)), "{err:?}");
    assert_eq!(a.recorder.resumed(), 0);

    let _redis = PrivateRedis::start(port);
    a.recorder.resumed_at_least(1, RECONNECT).await;
    b.recorder.resumed_at_least(1, RECONNECT).await;
    let m2 = to_user("alice", "m2");
    eventually("b's publish", || {
        std::future::ready(b.backplane.publish(&m2))
    })
    .await;
    b.publish(&to_user("bob", "m3"));
    a.expect(
        &m2,
        "alice's message after the outage: her subscription was renewed",
    )
    .await;
    a.expect(
        &to_user("bob", "m3"),
        "bob's message: subscribed while Redis was down",
    )
    .await;
}

#[tokio::test]
async fn calls_while_redis_hangs_share_one_connection_attempt() {
    // Accepts connections and never answers, the worst kind of outage: each attempt lasts
    // the whole timeout, so attempts per call would pile up.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let hanging = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    let cache = Arc::new(
        RedisTokenCache::connect(&config(port))
            .await
            .expect("created"),
    );
    let calls = (0..50).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = cache.get(&user("alice")).await;
            (result, started.elapsed())
        })
    });
    for call in within("50 calls", futures::future::join_all(calls)).await {
        let (result, took) = call.expect("task");
        assert!(
            matches!(result, Err(CacheError::Unavailable(_))),
            "{result:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "a call took {took:?}");
    }
    // One attempt (from creation) has run; a few retries within it are fine, one per call not.
    assert!(
        accepted.load(Ordering::SeqCst) <= 3,
        "{} connections for 50 calls",
        accepted.load(Ordering::SeqCst)
    );
    hanging.abort();
}
