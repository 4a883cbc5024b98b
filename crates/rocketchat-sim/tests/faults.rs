//! Fault injection and connection observability through the library API.

mod common;

use std::time::{Duration, Instant};

use common::{decode, sim, sim_with, Ddp, Rest};
use rocketchat_sim::{RestFault, RestFaultKind, SimConfig};
use serde_json::json;

#[tokio::test]
async fn refuse_then_accept_connections_keeps_state() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    sim.refuse_connections().await;
    assert!(
        ddp.closed_within(common::WAIT).await,
        "open sockets are dropped"
    );
    let err = reqwest::Client::new()
        .get(format!("{}/api/info", sim.http_url()))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(err.is_err(), "connections are refused while down");
    sim.accept_connections().await.unwrap();
    let rest = Rest::as_user(&sim, &alice.id, &alice.token);
    assert_eq!(rest.get("me").await.0, 200, "tokens survive a restart");
    let _ddp = Ddp::logged_in(&sim, &alice.token).await;
    sim.stop().await;
}

#[tokio::test]
async fn delay_applies_to_rest_and_ddp_methods() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let rest = Rest::as_user(&sim, &alice.id, &alice.token);
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    let delay = Duration::from_millis(600);
    sim.set_delay(Some(delay));
    let started = Instant::now();
    assert_eq!(rest.get("me").await.0, 200);
    assert!(started.elapsed() >= delay);
    let started = Instant::now();
    ddp.call("rooms/get", json!([])).await;
    assert!(started.elapsed() >= delay);
    sim.set_delay(None);
    let started = Instant::now();
    rest.get("me").await;
    assert!(started.elapsed() < delay, "the delay is gone");
}

#[tokio::test]
async fn rest_faults_by_kind_path_and_count() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let rest = Rest::as_user(&sim, &alice.id, &alice.token);

    sim.add_rest_fault(
        RestFault::always(RestFaultKind::InternalError)
            .on_path("chat.sendMessage")
            .times(1),
    );
    let (status, body) = rest
        .post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x"}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            500,
            json!({"success": false, "error": "Internal server error"})
        )
    );
    assert_eq!(rest.get("me").await.0, 200, "other paths are untouched");
    assert_eq!(
        rest.post(
            "chat.sendMessage",
            json!({"message": {"rid": "GENERAL", "msg": "x"}})
        )
        .await
        .0,
        200,
        "rule expired"
    );

    sim.add_rest_fault(RestFault::always(RestFaultKind::Garbage).times(1));
    let resp = rest.get_raw("me").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.json::<serde_json::Value>().await.is_err(),
        "garbage is not JSON"
    );

    sim.add_rest_fault(RestFault::always(RestFaultKind::BadGateway).times(1));
    assert_eq!(rest.get_raw("me").await.status(), 502);

    sim.add_rest_fault(RestFault::always(RestFaultKind::Disconnect).times(1));
    let broken = reqwest::Client::new()
        .get(format!("{}/api/v1/me", sim.http_url()))
        .header("X-User-Id", &alice.id)
        .header("X-Auth-Token", &alice.token)
        .send()
        .await;
    assert!(broken.is_err(), "the connection closes without an answer");

    sim.add_rest_fault(RestFault::always(RestFaultKind::TooManyRequests));
    let resp = rest.get_raw("me").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    let (_, body) = decode(resp).await;
    assert!(body["error"]
        .as_str()
        .unwrap()
        .ends_with("[error-too-many-requests]"));
    sim.clear_rest_faults();
    assert_eq!(rest.get("me").await.0, 200);
}

#[tokio::test]
async fn revoked_tokens_get_401_and_close_ddp() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    assert_eq!(sim.revoke_tokens("alice").unwrap(), 1);
    let (status, body) = Rest::as_user(&sim, &alice.id, &alice.token).get("me").await;
    assert_eq!(status, 401);
    assert_eq!(body["message"], "You must be logged in to do this.");
    assert!(ddp.closed_within(common::WAIT).await);
    let mut again = Ddp::connect(&sim).await;
    let res = again.call("login", json!([{"resume": alice.token}])).await;
    assert_eq!(res["error"]["error"], 403);
    // A fresh password login works again.
    assert_eq!(
        Rest::login(&sim, "alice", "pw").await.get("me").await.0,
        200
    );
}

#[tokio::test]
async fn drop_ddp_closes_sockets_and_updates_counts_and_log() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let bob = sim.create_user("bob", "pw").unwrap();
    let mut a1 = Ddp::logged_in(&sim, &alice.token).await;
    let mut a2 = Ddp::logged_in(&sim, &alice.token).await;
    let _b = Ddp::logged_in(&sim, &bob.token).await;
    assert_eq!(sim.open_ddp_connections("alice"), 2);
    assert_eq!(sim.open_ddp_connections("bob"), 1);
    assert_eq!(sim.drop_ddp("alice").unwrap(), 2);
    assert!(a1.closed_within(common::WAIT).await);
    assert!(a2.closed_within(common::WAIT).await);
    let deadline = Instant::now() + common::WAIT;
    while sim.open_ddp_connections("alice") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.open_ddp_connections("alice"), 0);
    assert_eq!(sim.open_ddp_connections("bob"), 1);
    let log = sim.ddp_connection_log();
    let alice_log: Vec<_> = log
        .iter()
        .filter(|r| r.username.as_deref() == Some("alice"))
        .collect();
    assert_eq!(alice_log.len(), 2);
    assert!(alice_log
        .iter()
        .all(|r| r.closed_at.is_some() && r.user_id.as_deref() == Some(alice.id.as_str())));
    assert!(log
        .iter()
        .any(|r| r.username.as_deref() == Some("bob") && r.closed_at.is_none()));
}

#[tokio::test]
async fn frozen_socket_stays_open_but_silent() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    ddp.sub("stream-room-messages", "GENERAL").await;
    sim.freeze_ddp("alice", true).unwrap();
    let rest = Rest::as_user(&sim, &alice.id, &alice.token);
    rest.post(
        "chat.sendMessage",
        json!({"message": {"rid": "GENERAL", "msg": "lost"}}),
    )
    .await;
    ddp.send(json!({"msg": "ping", "id": "p"})).await;
    assert!(
        ddp.next_within(Duration::from_millis(400)).await.is_none(),
        "nothing comes out of a frozen socket"
    );
    assert_eq!(sim.open_ddp_connections("alice"), 1, "still open");
    sim.freeze_ddp("alice", false).unwrap();
    ddp.send(json!({"msg": "ping", "id": "q"})).await;
    assert_eq!(ddp.next().await.unwrap(), json!({"msg": "pong", "id": "q"}));
}

#[tokio::test]
async fn ignored_pings_get_no_pong_and_no_server_pings() {
    let sim = sim_with(SimConfig {
        ddp_ping_interval: Duration::from_millis(100),
        ddp_ping_timeout: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let alice = sim.create_user("alice", "pw").unwrap();
    // Set before login so no server ping can slip in between login and the knob.
    sim.ignore_pings("alice", true).unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    ddp.send(json!({"msg": "ping", "id": "1"})).await;
    assert!(
        ddp.next_within(Duration::from_millis(500)).await.is_none(),
        "no pong and no server ping"
    );
    sim.ignore_pings("alice", false).unwrap();
    ddp.send(json!({"msg": "ping", "id": "2"})).await;
    // Server pings may resume first; the pong must still come.
    let pong = ddp.expect(|f| f["msg"] == "pong").await;
    assert_eq!(pong, json!({"msg": "pong", "id": "2"}));
}

#[tokio::test]
async fn one_upstream_per_user_is_observable() {
    let sim = sim().await;
    let users: Vec<_> = (0..3)
        .map(|i| sim.create_user(&format!("u{i}"), "pw").unwrap())
        .collect();
    let mut sockets = Vec::new();
    for u in &users {
        sockets.push(Ddp::logged_in(&sim, &u.token).await);
    }
    for u in &users {
        assert_eq!(sim.open_ddp_connections(&u.username), 1);
    }
    assert_eq!(sim.open_ddp_total(), 3);
    drop(sockets);
    let deadline = Instant::now() + common::WAIT;
    while sim.open_ddp_total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.open_ddp_total(), 0);
    assert!(sim
        .ddp_connection_log()
        .iter()
        .all(|r| r.closed_at.is_some()));
}

#[tokio::test]
async fn library_seeding_helpers_fire_the_same_events() {
    let sim = sim().await;
    let alice = sim.create_user("alice", "pw").unwrap();
    sim.create_user("bob", "pw").unwrap();
    let rid = sim.create_dm("bob", "alice").unwrap();
    let gid = sim.create_group("ops", "alice", &["bob"]).unwrap();
    let mut ddp = Ddp::logged_in(&sim, &alice.token).await;
    ddp.sub("stream-room-messages", &rid).await;
    let mid = sim.send_message("bob", &rid, "seeded").unwrap();
    let ev = ddp.event("stream-room-messages", &rid).await;
    assert_eq!(ev["fields"]["args"][0]["_id"], mid.as_str());
    assert_eq!(sim.messages(&rid)[0]["msg"], "seeded");
    assert_eq!(sim.subscription("alice", &rid).unwrap()["unread"], 1);
    assert_eq!(sim.subscription("bob", &gid).unwrap()["t"], "p");
    assert!(matches!(
        sim.send_message("nobody", &rid, "x"),
        Err(rocketchat_sim::SimError::UnknownUser(_))
    ));
}
