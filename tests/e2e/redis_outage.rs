//! Redis goes away and comes back, or is not there yet when the gateway starts: the gateway
//! says it is not ready, keeps serving the users whose sessions it knows, answers 503 where it
//! needs Redis, and recovers by itself, without a restart. Hub connections stay open across a
//! blip and get every message once, in order, on every node.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgate_testkit::hub_client::HubClient;
use rocketchat_sim::{Sim, SimConfig};
use serde_json::json;

use crate::helpers::{direct_room, until_live, TestGateway, API_KEY};

/// A private redis-server on its own port, so stopping it disturbs nobody else.
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
            .expect("redis-server runs (bash scripts/ensure-redis.sh installs it)");
        let redis = Self { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn eventually(
    gw: &TestGateway,
    what: &str,
    check: impl Fn(u16, &serde_json::Value) -> bool,
    request: impl Fn() -> reqwest::RequestBuilder,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = gw.send(request()).await;
        if check(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}: last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn redis_down_then_back_is_reported_and_recovered_without_a_restart() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::against(
        &sim,
        &[
            ("cache.kind", "redis"),
            ("push.kind", "redis"),
            ("redis.url", url.as_str()),
            ("redis.command_timeout_ms", "500"),
        ],
    )
    .await;
    gw.mirror(&["alice", "bob"]).await;
    let rooms = || gw.get("/api/v1/rooms").bearer_auth(gw.host_token("alice"));
    assert_eq!(gw.send(rooms()).await.0, 200);

    redis.stop();
    eventually(
        &gw,
        "not ready",
        |status, body| status == 503 && body["checks"]["redis"] != "ok",
        || gw.get("/readyz"),
    )
    .await;
    // Alice's session is known here: her calls keep working. Bob's is only in Redis, if
    // anywhere: his call gets a clear 503.
    assert_eq!(gw.send(rooms()).await.0, 200, "a session this node knows");
    let (status, body) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.host_token("bob")))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("service_unavailable")),
        "{body}"
    );
    assert_eq!(
        gw.send(gw.get("/healthz")).await.0,
        200,
        "the process itself stays up"
    );

    let _redis = PrivateRedis::start(port);
    eventually(
        &gw,
        "ready again",
        |status, _| status == 200,
        || gw.get("/readyz"),
    )
    .await;
    eventually(&gw, "rooms served again", |status, _| status == 200, rooms).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_gateway_started_while_redis_is_down_serves_once_redis_answers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::against(
        &sim,
        &[
            ("cache.kind", "redis"),
            ("push.kind", "redis"),
            ("redis.url", url.as_str()),
            ("redis.command_timeout_ms", "500"),
        ],
    )
    .await;
    let (status, body) = gw.send(gw.get("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["checks"]["redis"], "ok", "{body}");
    // A user's call needs their session from the token cache.
    let rooms = || gw.get("/api/v1/rooms").bearer_auth(gw.host_token("alice"));
    let (status, body) = gw.send(rooms()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("service_unavailable")),
        "{body}"
    );

    let _redis = PrivateRedis::start(port);
    eventually(
        &gw,
        "ready",
        |status, body| status == 200 && body["checks"]["redis"] == "ok",
        || gw.get("/readyz"),
    )
    .await;
    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/alice")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "alice", "name": "Alice"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    eventually(&gw, "rooms served", |status, _| status == 200, rooms).await;
    gw.stop().await;
}

/// The received room messages of `client` that `keep` selects, in order.
fn texts(client: &HubClient, keep: impl Fn(&str) -> bool) -> Vec<String> {
    client
        .received()
        .into_iter()
        .filter(|v| v["target"] == "getRoomMessageNotification")
        .filter_map(|v| v["arg"]["text"].as_str())
        .filter(|text| keep(text))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_redis_blip_keeps_every_connection_open_and_each_gets_every_message_once_in_order() {
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}");
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let shared = [
        ("cache.kind", "redis"),
        ("push.kind", "redis"),
        ("redis.url", url.as_str()),
        ("redis.command_timeout_ms", "500"),
    ];
    let a = TestGateway::against(&sim, &shared).await;
    let b = TestGateway::against(&sim, &shared).await;
    a.mirror(&["alice", "bob"]).await;
    let dm = direct_room(&a, "bob", "alice").await;
    let send = |text: String| {
        a.send(
            a.post(&format!("/api/v1/rooms/{dm}/messages"))
                .bearer_auth(a.host_token("bob"))
                .json(&json!({ "text": text })),
        )
    };

    // Alice on node a first, so node a holds her upstream; then on node b, served across.
    let mut on_a = HubClient::spawn_node(
        &format!("{}/hub", a.base),
        &a.host_token("alice"),
        "websockets",
    );
    on_a.connected().await;
    // Node a is the only one with a connection of hers, so the upstream that opens is its.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.open_ddp_connections("alice") != 1 {
        assert!(
            Instant::now() < deadline,
            "node a never opened alice's upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut on_b = HubClient::spawn_node(
        &format!("{}/hub", b.base),
        &b.host_token("alice"),
        "websockets",
    );
    on_b.connected().await;
    until_live(&a, &dm, &mut [&mut on_a, &mut on_b]).await;

    // 30 messages, one every 200 ms, through node a; Redis is away for 3 s in the middle.
    let total = 30;
    let sending = async {
        for n in 0..total {
            let (status, body) = send(format!("m{n}")).await;
            assert_eq!(status, 201, "m{n} while Redis may be down: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let blip = async {
        tokio::time::sleep(Duration::from_millis(1_900)).await;
        redis.stop();
        tokio::time::sleep(Duration::from_secs(3)).await;
        PrivateRedis::start(port)
    };
    let ((), _redis) = tokio::join!(sending, blip);

    let last = format!("m{}", total - 1);
    let expected: Vec<String> = (0..total).map(|n| format!("m{n}")).collect();
    for client in [&mut on_a, &mut on_b] {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == last.as_str())
            .await;
        // Late arrivals would be repeats.
        tokio::time::sleep(Duration::from_millis(500)).await;
        client.drain();
        assert_eq!(
            texts(client, |t| t.starts_with('m')),
            expected,
            "{}: every message once, in order",
            client.name
        );
        for event in ["reconnecting", "closed"] {
            assert_eq!(
                client.count_events(event),
                0,
                "{}: the connection stayed open",
                client.name
            );
        }
    }
    assert_eq!(
        sim.open_ddp_connections("alice"),
        1,
        "one upstream for alice"
    );
    a.stop().await;
    b.stop().await;
}
