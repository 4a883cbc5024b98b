//! Redis goes away and comes back, or is not there yet when the gateway starts: the gateway
//! says it is not ready, answers 503 where it needs Redis, and recovers by itself, without a
//! restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rocketchat_sim::{Sim, SimConfig};
use serde_json::json;

use crate::helpers::{TestGateway, API_KEY};

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
    let (status, _) = gw
        .send(
            gw.put("/api/v1/users/alice")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "alice", "name": "Alice"})),
        )
        .await;
    assert_eq!(status, 201);
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
    // The cached session is gone with Redis; a call that needs it gets a clear 503.
    let (status, body) = gw.send(rooms()).await;
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
