//! The provider misbehaves; the user sees a clear error and the gateway keeps serving.

use std::time::{Duration, Instant};

use rocketchat_sim::{RateLimit, RestFault, RestFaultKind, Sim, SimConfig};
use serde_json::json;

use crate::helpers::{TestGateway, API_KEY, SECRET};

/// A gateway in front of a test server the test controls, with alice mirrored.
async fn gateway(sim: &Sim, extra: &[(&str, &str)]) -> TestGateway {
    let mut overrides = vec![("provider.timeout_ms", "800")];
    overrides.extend_from_slice(extra);
    let gw = TestGateway::against(sim, &overrides).await;
    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/alice")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "alice", "name": "Alice"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    gw
}

fn alice() -> String {
    imgate_http::auth::mint_hs256(SECRET.as_bytes(), "sub", "alice", Duration::from_secs(600))
}

async fn rooms(gw: &TestGateway) -> (u16, serde_json::Value) {
    gw.send(gw.get("/api/v1/rooms").bearer_auth(alice())).await
}

#[tokio::test]
async fn a_provider_that_is_down_or_slow_gives_503_quickly_and_recovery_is_automatic() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = gateway(&sim, &[]).await;
    assert_eq!(rooms(&gw).await.0, 200);

    sim.refuse_connections().await;
    let started = Instant::now();
    let (status, body) = rooms(&gw).await;
    assert_eq!(
        (status, body),
        (
            503,
            json!({"error": "provider_unavailable", "message": "the chat provider is unavailable"})
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let (status, ready) = gw.send(gw.get("/readyz")).await;
    assert_eq!((status, ready["status"].clone()), (503, json!("not_ready")));
    sim.accept_connections().await.unwrap();
    assert_eq!(rooms(&gw).await.0, 200);

    sim.set_delay(Some(Duration::from_secs(5)));
    let started = Instant::now();
    assert_eq!(rooms(&gw).await.1["error"], "provider_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    sim.set_delay(None);
    assert_eq!(rooms(&gw).await.0, 200);
    gw.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn garbage_and_server_errors_are_told_apart() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = gateway(&sim, &[]).await;
    for (kind, status, code) in [
        (RestFaultKind::Garbage, 502, "provider_error"),
        (RestFaultKind::Truncated, 502, "provider_error"),
        (RestFaultKind::InternalError, 503, "provider_unavailable"),
        (RestFaultKind::BadGateway, 503, "provider_unavailable"),
    ] {
        sim.add_rest_fault(RestFault {
            kind: kind.clone(),
            path_contains: Some("rooms.get".into()),
            times: Some(1),
        });
        let (got, body) = rooms(&gw).await;
        assert_eq!(
            (got, body["error"].clone()),
            (status, json!(code)),
            "{kind:?}"
        );
        assert_eq!(
            rooms(&gw).await.0,
            200,
            "the next request after {kind:?} is served"
        );
    }
    gw.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_when_short_and_reported_when_long() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = gateway(&sim, &[]).await;
    sim.add_rest_fault(RestFault {
        kind: RestFaultKind::TooManyRequests,
        path_contains: Some("rooms.get".into()),
        times: Some(1),
    });
    let response = gw
        .get("/api/v1/rooms")
        .bearer_auth(alice())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "rate_limited"
    );
    // The gateway remembers the window rather than asking again: the next call is refused at
    // once, though the injected fault is spent and the server would have answered.
    let started = Instant::now();
    assert_eq!(rooms(&gw).await.0, 429);
    assert!(started.elapsed() < Duration::from_millis(500));

    // A limiter whose window is one second: the gateway sits it out instead of failing.
    sim.set_rate_limit(Some(RateLimit {
        calls: 2,
        window: Duration::from_secs(1),
    }));
    for _ in 0..5 {
        let (status, body) = gw
            .send(
                gw.post("/api/v1/rooms/direct")
                    .bearer_auth(alice())
                    .json(&json!({"members": ["admin"]})),
            )
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    sim.set_rate_limit(None);
    gw.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn revoked_user_and_admin_sessions_are_renewed_transparently() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = gateway(&sim, &[]).await;
    assert_eq!(rooms(&gw).await.0, 200);
    assert!(sim.revoke_tokens("alice").unwrap() > 0);
    assert_eq!(rooms(&gw).await.0, 200, "one transparent re-login");

    assert!(sim.revoke_tokens("admin").unwrap() > 0);
    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/bob")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "bob", "name": "Bob"})),
        )
        .await;
    assert_eq!(status, 201, "the admin agent logs in again: {body}");
    gw.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_gateway_started_while_the_provider_is_down_becomes_ready_when_it_returns() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.refuse_connections().await;
    let gw = TestGateway::against(&sim, &[]).await;
    let (status, ready) = gw.send(gw.get("/readyz")).await;
    assert_eq!(status, 503, "{ready}");
    sim.accept_connections().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, ready) = gw.send(gw.get("/readyz")).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.stop().await;
    sim.stop().await;
}

/// Every provider call failing for a while, under concurrent load: every caller gets a quick
/// 503, the process stays up, and service resumes the moment the provider does.
#[tokio::test]
async fn a_storm_of_server_errors_is_answered_503_and_passes_without_trace() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    // One user stands for many here; the per-user request rate is not what is tested.
    let gw = gateway(&sim, &[("server.user_rate_limit_per_s", "0")]).await;
    assert_eq!(rooms(&gw).await.0, 200);
    sim.add_rest_fault(RestFault::always(RestFaultKind::InternalError));
    let storm = futures::future::join_all((0..50).map(|_| rooms(&gw))).await;
    for (status, body) in &storm {
        assert_eq!(
            (*status, body["error"].clone()),
            (503, json!("provider_unavailable")),
            "{body}"
        );
    }
    sim.clear_rest_faults();
    let after = futures::future::join_all((0..50).map(|_| rooms(&gw))).await;
    assert!(
        after.iter().all(|(status, _)| *status == 200),
        "{:?}",
        after.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    let (status, _) = gw.send(gw.get("/healthz")).await;
    assert_eq!(status, 200);
    gw.stop().await;
    sim.stop().await;
}
