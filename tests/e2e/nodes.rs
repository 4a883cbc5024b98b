//! Two gateway nodes sharing Redis in front of one provider: one upstream per user across
//! both, and each event on every connection of the user, whichever node it is on.

use std::time::Instant;

use imgate_testkit::hub_client::HubClient;
use rocketchat_sim::{Sim, SimConfig};
use serde_json::json;

use crate::helpers::{direct_room, until_live, TestGateway, API_KEY};

fn redis_url() -> String {
    std::env::var("IMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn a_user_on_two_nodes_has_one_upstream_and_gets_every_message_on_both() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (a, b) = two_nodes(&sim, "e2e").await;
    a.mirror(&["alice", "bob"]).await;
    let (_, ready) = a.send(a.get("/readyz")).await;
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
    let dm = direct_room(&a, "bob", "alice").await;

    let mut on_a = HubClient::spawn_node(
        &format!("{}/hub", a.base),
        &a.host_token("alice"),
        "websockets",
    );
    let mut on_b = HubClient::spawn_node(
        &format!("{}/hub", b.base),
        &b.host_token("alice"),
        "websockets",
    );
    on_a.connected().await;
    on_b.connected().await;

    // Probe until both connections see messages: the single upstream is live.
    until_live(&a, &dm, &mut [&mut on_a, &mut on_b]).await;
    for n in 0..10 {
        let node = if n % 2 == 0 { &a } else { &b };
        let (status, _) = node
            .send(
                node.post(&format!("/api/v1/rooms/{dm}/messages"))
                    .bearer_auth(node.host_token("bob"))
                    .json(&json!({"text": format!("m{n}")})),
            )
            .await;
        assert_eq!(status, 201);
    }
    for client in [&mut on_a, &mut on_b] {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == "m9")
            .await;
        let texts: Vec<String> = client
            .received()
            .into_iter()
            .filter(|v| v["target"] == "getRoomMessageNotification")
            .filter_map(|v| v["arg"]["text"].as_str().map(str::to_owned))
            .filter(|t| !t.starts_with("probe"))
            .collect();
        assert_eq!(
            texts,
            (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>(),
            "{}",
            client.name
        );
    }
    assert_eq!(
        sim.open_ddp_connections("alice"),
        1,
        "one upstream for alice across both nodes"
    );
    for client in [&mut on_a, &mut on_b] {
        client.command(json!({"cmd": "stop"})).await;
        client.wait_event("stopped").await;
    }
    a.stop().await;
    b.stop().await;
}

/// Two gateway nodes in front of `sim`, sharing Redis under a prefix of their own (`name`
/// and a random part), with short upstream leases.
async fn two_nodes(sim: &Sim, name: &str) -> (TestGateway, TestGateway) {
    let prefix = format!("{name}-{}-{}", std::process::id(), rand_part());
    let redis = redis_url();
    let shared = [
        ("cache.kind", "redis"),
        ("push.kind", "redis"),
        ("redis.url", redis.as_str()),
        ("redis.prefix", prefix.as_str()),
        ("realtime.lease_ttl_s", "3"),
    ];
    (
        TestGateway::against(sim, &shared).await,
        TestGateway::against(sim, &shared).await,
    )
}

fn rand_part() -> u64 {
    u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    )
}

#[tokio::test]
async fn a_password_the_host_set_through_one_node_logs_the_user_in_on_another() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (a, b) = two_nodes(&sim, "e2e-pw").await;
    let (status, body) = a
        .send(
            a.put("/api/v1/users/carol")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "carol", "name": "Carol", "password": "carol-own-password"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Node b never saw the upsert; it must log carol in with the password node a stored.
    let (status, body) = b
        .send(b.get("/api/v1/rooms").bearer_auth(b.host_token("carol")))
        .await;
    assert_eq!(status, 200, "{body}");

    // Deleting the user removes the password too (it never expires by itself).
    let (status, body) = a
        .send(a.delete("/api/v1/users/carol").header("X-Api-Key", API_KEY))
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    a.stop().await;
    b.stop().await;
}

/// The `notify` invocations `client` received, each as its list of arguments.
fn notices(client: &HubClient) -> Vec<serde_json::Value> {
    client
        .received()
        .into_iter()
        .filter(|v| v["target"] == "notify")
        .map(|v| v["args"].clone())
        .collect()
}

#[tokio::test]
async fn the_host_pushes_to_a_users_connections_on_every_node_and_closes_them() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let (a, b) = two_nodes(&sim, "e2e-host").await;
    a.mirror(&["bob", "carol"]).await;
    let mut bob_a = HubClient::spawn_node(
        &format!("{}/hub", a.base),
        &a.host_token("bob"),
        "websockets",
    );
    let mut bob_b = HubClient::spawn_node(
        &format!("{}/hub", b.base),
        &b.host_token("bob"),
        "longpolling",
    );
    let mut carol_b = HubClient::spawn_python(
        &format!("{}/hub", b.base),
        &b.host_token("carol"),
        "pysignalr",
    );
    for client in [&mut bob_a, &mut bob_b, &mut carol_b] {
        client.connected().await;
    }
    let presence = |node: &TestGateway, user: &str| {
        node.get(&format!("/api/v1/hub/users/{user}"))
            .header("X-Api-Key", API_KEY)
    };
    // Presence is written a moment after a connection starts.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, body) = b.send(presence(&b, "bob")).await;
        assert_eq!(status, 200, "{body}");
        if body == json!({"userId": "bob", "online": true, "connections": 2}) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence of bob on node b: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let push = |node: &TestGateway, path: &str, arguments: serde_json::Value| {
        node.post(path)
            .header("X-Api-Key", API_KEY)
            .json(&json!({"target": "notify", "arguments": arguments}))
    };
    let payload = json!({"orderId": 42, "text": "é ✓ \"quoted\"", "nested": [1, null, true]});
    // Through the two nodes in turn, each call once the one before was accepted: every
    // connection gets them in the order they were accepted, whichever node took them.
    for n in 0..20 {
        let node = if n % 2 == 0 { &a } else { &b };
        let (status, body) = node
            .send(push(node, "/api/v1/hub/users/bob", json!([n, payload])))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, _) = b
        .send(push(&b, "/api/v1/hub/broadcast", json!(["everyone"])))
        .await;
    assert_eq!(status, 202);
    let mut expected: Vec<_> = (0..20).map(|n| json!([n, payload])).collect();
    expected.push(json!(["everyone"]));
    for client in [&mut bob_a, &mut bob_b] {
        if !notices(client).contains(&json!(["everyone"])) {
            client
                .wait_for("the broadcast", |v| v["args"] == json!(["everyone"]))
                .await;
        }
        assert_eq!(notices(client), expected, "{}", client.name);
    }
    carol_b
        .wait_for("the broadcast", |v| v["args"] == json!(["everyone"]))
        .await;
    assert_eq!(
        notices(&carol_b),
        [json!(["everyone"])],
        "carol gets no push to bob"
    );

    let (status, _) = a
        .send(
            a.delete("/api/v1/hub/users/bob/connections")
                .header("X-Api-Key", API_KEY),
        )
        .await;
    assert_eq!(status, 204);
    for client in [&mut bob_a, &mut bob_b] {
        let closed = client.wait_event("closed").await;
        assert!(
            closed["error"]
                .as_str()
                .is_some_and(|e| e.contains("closed this user's connections")),
            "{}: {closed}",
            client.name
        );
        assert!(
            client.seen.iter().all(|v| v["event"] != "reconnecting"),
            "{} does not reconnect",
            client.name
        );
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, body) = a.send(presence(&a, "bob")).await;
        if body == json!({"userId": "bob", "online": false, "connections": 0}) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "presence of bob after the close: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, carol) = a.send(presence(&a, "carol")).await;
    assert_eq!(carol["connections"], 1, "carol's connection stays: {carol}");
    carol_b.command(json!({"cmd": "stop"})).await;
    carol_b.wait_event("stopped").await;
    a.stop().await;
    b.stop().await;
}
