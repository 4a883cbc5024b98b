//! Limits as a user meets them: the per-user request rate on the REST API.

use rocketchat_sim::{Sim, SimConfig};

use crate::helpers::{TestGateway, API_KEY};

#[tokio::test]
async fn a_user_over_the_request_rate_gets_429_with_retry_after_and_nobody_else_does() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::against(
        &sim,
        &[
            ("server.user_rate_limit_per_s", "1"),
            ("server.user_rate_limit_burst", "4"),
        ],
    )
    .await;
    gw.mirror(&["alice", "bob"]).await;
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for _ in 0..8 {
        let response = gw
            .get("/api/v1/rooms")
            .bearer_auth(gw.host_token("alice"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after.push(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited", "{body}");
        }
    }
    assert_eq!(&statuses[..4], [200; 4], "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    assert!(retry_after.iter().all(|s| *s == 1), "{retry_after:?}");
    // Another user, and the host back end, are not slowed by alice.
    let (status, _) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.host_token("bob")))
        .await;
    assert_eq!(status, 200);
    for _ in 0..6 {
        let (status, _) = gw
            .send(gw.get("/api/v1/users/alice").header("X-Api-Key", API_KEY))
            .await;
        assert_eq!(status, 200);
    }
    // After the wait it names, alice is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, _) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.host_token("alice")))
        .await;
    assert_eq!(status, 200);
    gw.stop().await;
}
