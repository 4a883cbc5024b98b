//! The port contract suites against a real Redis, plus the cross-node cases only a shared
//! store has: single-flight across two caches, and a backplane surviving a killed connection.
//!
//! Redis is `IMGATE_TEST_REDIS_URL` or `redis://127.0.0.1:6379`; a test that cannot reach it
//! fails, saying how to start one. Each instance gets its own key prefix, so tests run in
//! parallel and never see each other's keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use imgate_domain::ports::backplane::wire;
use imgate_domain::ports::{
    BackplaneError, HealthCheck, Lease, LoginError, PasswordStore, Presence, ProviderError,
    TokenCache,
};
use imgate_redis::{
    RedisBackplane, RedisConfig, RedisHealthCheck, RedisLease, RedisPasswordStore, RedisPresence,
    RedisTokenCache, SingleFlight,
};
use imgate_testkit::backplane::{marker, to_user, SuiteNode};
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

// The backplane.

/// A backplane on `config` named `node_id`, with a recorder attached.
async fn node(config: &RedisConfig, node_id: &str) -> SuiteNode {
    let backplane = RedisBackplane::connect(config, node_id)
        .await
        .expect("connect");
    SuiteNode::attached(Arc::new(backplane))
}

#[tokio::test]
async fn redis_backplane_meets_the_backplane_contract() {
    imgate_testkit::backplane::run_all(|| async {
        // Three backplanes on one prefix are three nodes.
        let config = fresh_config().await;
        [
            node(&config, "node-a").await,
            node(&config, "node-b").await,
            node(&config, "node-c").await,
        ]
    })
    .await;
}

#[tokio::test]
async fn backplanes_with_different_prefixes_do_not_hear_each_other() {
    let (here, there) = (fresh_config().await, fresh_config().await);
    let a = node(&here, "node-a").await;
    let b = node(&here, "node-b").await;
    let x = node(&there, "node-x").await;
    let y = node(&there, "node-y").await;
    b.subscribe("alice").await;
    x.subscribe("alice").await;
    a.publish(&to_user("alice", "m1"));
    a.publish(&marker("here"));
    b.expect(&to_user("alice", "m1"), "a's message on b").await;
    b.expect(&marker("here"), "a's marker on b").await;
    // Published after Redis handed a's messages out: x would have got those first.
    y.publish(&marker("there"));
    x.expect(
        &marker("there"),
        "y's marker on x, with nothing of a's before it",
    )
    .await;
}

#[tokio::test]
async fn what_goes_on_a_channel_is_exactly_the_wire_format() {
    let config = fresh_config().await;
    let a = node(&config, "node-a").await;
    let _b = node(&config, "node-b").await;
    let mut listener = redis::Client::open(config.url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let alice_channel = format!("{}:{{alice}}:events", config.prefix);
    let all_channel = format!("{}:all", config.prefix);
    listener.subscribe(&alice_channel).await.unwrap();
    listener.subscribe(&all_channel).await.unwrap();
    assert_eq!(
        subscribers(&config, &all_channel).await,
        3,
        "both nodes listen to the all-channel from the start, as does this test"
    );
    a.publish(&to_user("alice", "m1"));
    a.publish(&marker("everyone"));
    let mut messages = listener.on_message();
    for (channel, message) in [
        (&alice_channel, to_user("alice", "m1")),
        (&all_channel, marker("everyone")),
    ] {
        let got = within("a message on the raw listener", messages.next())
            .await
            .expect("listening");
        assert_eq!(got.get_channel_name(), channel);
        assert_eq!(
            got.get_payload_bytes(),
            &wire::encode("node-a", &message)[..],
            "the payload is the wire format, with the publisher's node id"
        );
    }
}

/// How many connections listen to `channel`, from `PUBSUB NUMSUB`.
async fn subscribers(config: &RedisConfig, channel: &str) -> i64 {
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(&mut raw(config).await)
        .await
        .unwrap();
    counts.first().map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn a_users_channel_is_subscribed_once_per_node_and_unsubscribed_at_once() {
    let config = fresh_config().await;
    let a = node(&config, "node-a").await;
    let channel = format!("{}:{{alice}}:events", config.prefix);
    assert_eq!(subscribers(&config, &channel).await, 0);
    a.subscribe("alice").await;
    a.subscribe("alice").await;
    assert_eq!(
        subscribers(&config, &channel).await,
        1,
        "one SUBSCRIBE per node"
    );
    a.unsubscribe("alice").await;
    assert_eq!(
        subscribers(&config, &channel).await,
        0,
        "unsubscribed when the future resolves, not later"
    );
    a.subscribe("alice").await;
    assert_eq!(subscribers(&config, &channel).await, 1);
}

#[tokio::test]
async fn unreadable_and_own_messages_on_a_channel_are_skipped() {
    let config = fresh_config().await;
    let a = node(&config, "node-a").await;
    a.subscribe("alice").await;
    let channel = format!("{}:{{alice}}:events", config.prefix);
    let mut newer = wire::encode("node-x", &to_user("alice", "v2")).to_vec();
    newer[0] = 2;
    let planted: [Vec<u8>; 4] = [
        b"{\"type\":\"nonsense\"}".to_vec(),
        newer,
        // Claims to come from node a itself: an echo of its own, which it delivered already.
        wire::encode("node-a", &to_user("alice", "echo")).to_vec(),
        wire::encode("node-x", &to_user("alice", "good")).to_vec(),
    ];
    let mut conn = raw(&config).await;
    for payload in planted {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    a.expect(
        &to_user("alice", "good"),
        "the one readable message of another node",
    )
    .await;
}

#[tokio::test]
async fn many_users_subscribed_at_once_each_get_their_own_messages() {
    let config = fresh_config().await;
    let a = node(&config, "node-a").await;
    let b = node(&config, "node-b").await;
    let users: Vec<String> = (0..300).map(|n| format!("user-{n}")).collect();
    // Called together, so they queue together and go to Redis in a few batched commands.
    let changes: Vec<_> = users
        .iter()
        .map(|name| a.backplane.subscribe(&user(name)))
        .collect();
    for outcome in within("300 subscriptions", futures::future::join_all(changes)).await {
        outcome.expect("subscribe");
    }
    for name in &users {
        b.publish(&to_user(name, &format!("for-{name}")));
    }
    for name in &users {
        a.expect(&to_user(name, &format!("for-{name}")), "a user's message")
            .await;
    }
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
async fn a_backplane_recovers_after_its_subscriber_connection_is_killed() {
    // A database of its own, so the kill below finds only this test's connection: pub/sub
    // ignores databases, but `CLIENT LIST` shows which one a connection selected.
    const DB: u32 = 13;
    let base = fresh_config().await;
    let url = format!("{}/{DB}", base.url.trim_end_matches('/'));
    let killed_config = RedisConfig::new(url.clone(), base.prefix.clone());
    let a = node(&killed_config, "node-a").await;
    // Node b shares the prefix from the default database, so the kill spares it.
    let b = node(&base, "node-b").await;
    a.subscribe("alice").await;
    b.publish(&to_user("alice", "m1"));
    a.expect(&to_user("alice", "m1"), "the first message").await;

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let victims = pubsub_clients_on_db(&mut admin, DB).await;
    assert!(
        !victims.is_empty(),
        "the backplane's subscriber connection is not listed"
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

    // Messages published while it reconnects are lost to it, so it says so once it is back,
    // with the subscription to alice renewed without being asked.
    a.recorder
        .resumed_at_least(1, Duration::from_secs(15))
        .await;
    b.publish(&to_user("alice", "m2"));
    a.expect(&to_user("alice", "m2"), "a message after the reconnect")
        .await;
    // Its own publishing works again too, once the writer checked Redis.
    within("a's publish to work again", async {
        while let Err(BackplaneError::Unavailable(_)) = a.backplane.publish(&marker("from-a")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    b.expect(&marker("from-a"), "a's marker on b").await;
}

// Presence.

#[tokio::test]
async fn redis_presence_meets_the_presence_contract() {
    imgate_testkit::presence::run_all(|| async {
        // Three presences on one prefix are three nodes; a short liveness keeps the case of a
        // stopped node short (though a dropped node deletes its key at once).
        let config = fresh_config().await;
        let mut nodes = Vec::new();
        for name in ["node-a", "node-b", "node-c"] {
            let node = RedisPresence::connect(&config, name, Duration::from_secs(1))
                .await
                .expect("connect");
            nodes.push(Arc::new(node) as Arc<dyn Presence>);
        }
        nodes.try_into().unwrap_or_else(|_| unreachable!())
    })
    .await;
}

#[tokio::test]
async fn a_killed_nodes_connections_stop_counting_once_its_key_expires() {
    let config = fresh_config().await;
    let a = RedisPresence::connect(&config, "node-a", Duration::from_secs(1))
        .await
        .unwrap();
    a.set(&user("alice"), 2);
    // A node killed with one connection of alice: its count, and its key with what was left of
    // its TTL, which nobody renews now.
    let client = redis::Client::open(config.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = format!("{}:{{alice}}:presence", config.prefix);
    let _: () = redis::pipe()
        .hset(&hash, "node-z", 1)
        .cmd("SET")
        .arg(format!("{}:node:node-z:alive", config.prefix))
        .arg(1)
        .arg("PX")
        .arg(600)
        .query_async(&mut conn)
        .await
        .unwrap();
    let count = || async { a.connections(&user("alice")).await.unwrap() };
    within("both nodes counted", async {
        while count().await != 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(count().await, 2, "the killed node no longer counts");
}

#[tokio::test]
async fn counts_lost_by_redis_are_sent_again() {
    let config = fresh_config().await;
    let a = RedisPresence::connect(&config, "node-a", Duration::from_secs(1))
        .await
        .unwrap();
    a.set(&user("alice"), 2);
    let count = || async { a.connections(&user("alice")).await.unwrap() };
    within("alice counted", async {
        while count().await != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // What a restarted Redis (it keeps nothing on disk) holds of this deployment: nothing.
    let client = redis::Client::open(config.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*", config.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut conn)
        .await
        .unwrap();
    within("alice counted again", async {
        while count().await != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
