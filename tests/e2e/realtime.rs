//! Backend mode end to end: the official SignalR clients connect to the gateway's hub, the
//! gateway holds one upstream per user to the provider (the Rocket.Chat-compatible server's
//! DDP, or Synapse's `/sync`), and every event reaches every connection of the user exactly
//! once.

use std::time::{Duration, Instant};

use imgate_testkit::hub_client::HubClient;
use rocketchat_sim::{Sim, SimConfig};
use serde_json::{json, Value};

use crate::helpers::{each_provider, Provider, TestGateway, API_KEY};

struct Setup {
    /// The Rocket.Chat-compatible server, for the Rocket.Chat variant.
    sim: Option<Sim>,
    gw: TestGateway,
}

impl Setup {
    /// `None` when the Matrix variant is skipped on this machine.
    async fn start(provider: Provider) -> Option<Self> {
        let grace = [("realtime.grace_s", "1")];
        let (sim, gw) = match provider {
            Provider::RocketChat => {
                let sim = Sim::start(SimConfig::default()).await.unwrap();
                let gw = TestGateway::against(&sim, &grace).await;
                gw.mirror(&["alice", "bob", "carol"]).await;
                (Some(sim), gw)
            }
            // It comes with alice, bob and carol.
            Provider::Matrix => (None, TestGateway::on(provider, &grace).await?),
        };
        Some(Self { sim, gw })
    }

    /// The Rocket.Chat-compatible server of the Rocket.Chat-only tests.
    fn sim(&self) -> &Sim {
        self.sim.as_ref().expect("a Rocket.Chat-compatible server")
    }

    fn token(&self, user: &str) -> String {
        self.gw.token(user)
    }

    fn hub(&self) -> String {
        format!("{}/hub", self.gw.base)
    }

    async fn node(&self, user: &str, transport: &str) -> HubClient {
        let mut client = HubClient::spawn_node(&self.hub(), &self.token(user), transport);
        client.connected().await;
        client
    }

    async fn python(&self, user: &str) -> HubClient {
        let mut client = HubClient::spawn_python(&self.hub(), &self.token(user), "signalrcore");
        client.connected().await;
        client
    }

    async fn post(&self, user: &str, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .gw
            .send(self.gw.post(path).bearer_auth(self.token(user)).json(&body))
            .await;
        assert!(
            status == 200 || status == 201 || status == 204,
            "{path}: {status} {answer}"
        );
        answer
    }

    async fn say(&self, user: &str, room: &str, text: &str) -> Value {
        self.post(
            user,
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"text": text}),
        )
        .await
    }

    /// Sends probes until every client has seen one: the upstream is then live.
    async fn until_live(&self, sender: &str, room: &str, clients: &mut [&mut HubClient]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 0.. {
            assert!(Instant::now() < deadline, "the upstream never went live");
            self.say(sender, room, &format!("probe {n}")).await;
            let mut all = true;
            for client in clients.iter_mut() {
                let seen = tokio::time::timeout(
                    Duration::from_millis(300),
                    client.wait_for("a probe", is_probe),
                )
                .await;
                all &= seen.is_ok();
            }
            if all {
                return;
            }
        }
    }
}

fn is_probe(v: &Value) -> bool {
    v["event"] == "recv"
        && v["arg"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("probe"))
}

/// The texts of user (not system) messages a client received, probes left out.
fn texts(client: &HubClient, target: &str) -> Vec<String> {
    client
        .received()
        .into_iter()
        .filter(|v| v["target"] == target && v["arg"]["system"].is_null())
        .filter_map(|v| v["arg"]["text"].as_str().map(str::to_owned))
        .filter(|t| !t.starts_with("probe"))
        .collect()
}

each_provider!(every_connection_of_a_user_gets_each_event_exactly_once);

async fn every_connection_of_a_user_gets_each_event_exactly_once(provider: Provider) {
    let Some(s) = Setup::start(provider).await else {
        return;
    };
    let dm = s
        .post("bob", "/api/v1/rooms/direct", json!({"members": ["alice"]}))
        .await;
    let dm = dm["id"].as_str().unwrap().to_owned();
    let mut a1 = s.node("alice", "websockets").await;
    let mut a2 = s.node("alice", "sse").await;
    let mut a3 = s.python("alice").await;
    let mut carol = s.node("carol", "websockets").await;
    s.until_live("bob", &dm, &mut [&mut a1, &mut a2, &mut a3])
        .await;

    let hello = s.say("bob", &dm, "hello alice").await;
    let id = hello["id"].as_str().unwrap().to_owned();
    let (status, _) =
        s.gw.send(
            s.gw.http
                .patch(format!("{}/api/v1/rooms/{dm}/messages/{id}", s.gw.base))
                .bearer_auth(s.token("bob"))
                .json(&json!({"text": "hello, alice"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) =
        s.gw.send(
            s.gw.delete(&format!("/api/v1/rooms/{dm}/messages/{id}"))
                .bearer_auth(s.token("bob")),
        )
        .await;
    assert_eq!(status, 204);
    let group = s
        .post(
            "bob",
            "/api/v1/rooms",
            json!({"kind": "group", "name": "crew", "members": ["alice"]}),
        )
        .await;
    let group = group["id"].as_str().unwrap().to_owned();
    let (status, _) =
        s.gw.send(
            s.gw.delete(&format!("/api/v1/rooms/{group}/members/alice"))
                .bearer_auth(s.token("bob")),
        )
        .await;
    assert_eq!(status, 204);
    s.say("bob", &dm, "last").await;

    for client in [&mut a1, &mut a2, &mut a3] {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == "last")
            .await;
        let name = client.name.clone();
        assert_eq!(
            texts(client, "getRoomMessageNotification"),
            ["hello alice", "hello, alice", "last"],
            "{name}"
        );
        let deleted: Vec<&Value> = client
            .received()
            .into_iter()
            .filter(|v| v["target"] == "messageDeleted")
            .collect();
        assert_eq!(deleted.len(), 1, "{name}");
        assert_eq!(
            deleted[0]["arg"],
            json!({"roomId": dm, "messageId": id}),
            "{name}"
        );
        let changes: Vec<(String, String)> = client
            .received()
            .into_iter()
            .filter(|v| {
                v["target"] == "getRoomSubscriptionChangedNotification"
                    && v["arg"]["room"]["id"] == json!(group)
            })
            .map(|v| {
                (
                    v["arg"]["method"].as_str().unwrap().to_owned(),
                    v["arg"]["room"]["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            changes.first(),
            Some(&("inserted".to_owned(), "group".to_owned())),
            "{name}: {changes:?}"
        );
        assert_eq!(
            changes.last().map(|c| c.0.as_str()),
            Some("removed"),
            "{name}: {changes:?}"
        );
        assert!(
            client.received().iter().any(|v| v["target"]
                == "getRoomSubscriptionChangedNotification"
                && v["arg"]["room"]["id"] == json!(dm)
                && v["arg"]["method"] == "updated"
                && v["arg"]["room"]["unread"].as_u64() > Some(0)),
            "{name}: unread changes arrive"
        );
    }
    // Carol is in none of these rooms.
    let (status, _) =
        s.gw.send(s.gw.get("/api/v1/rooms").bearer_auth(s.token("carol")))
            .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    carol.command(json!({"cmd": "stop"})).await;
    carol.wait_event("stopped").await;
    assert!(
        carol.received().is_empty(),
        "carol saw {:?}",
        carol.received()
    );
    if let Some(sim) = &s.sim {
        assert_eq!(
            sim.open_ddp_connections("alice"),
            1,
            "one upstream for alice's three connections"
        );
    }
}

each_provider!(messagepack_and_json_connections_of_one_user_get_the_same_events_once);

/// The official MessagePack clients (Node over WebSockets and Long Polling, pysignalr) and a
/// JSON one, all alice's: each gets every chat event and host push once, with the same values
/// (dates as RFC 3339 strings), and completes `SendMessage` with the `Message`.
async fn messagepack_and_json_connections_of_one_user_get_the_same_events_once(provider: Provider) {
    let Some(s) = Setup::start(provider).await else {
        return;
    };
    let dm = s
        .post("bob", "/api/v1/rooms/direct", json!({"members": ["alice"]}))
        .await;
    let dm = dm["id"].as_str().unwrap().to_owned();
    let mut json_ws = s.node("alice", "websockets").await;
    let mut packed_ws = s.node("alice", "websockets+msgpack").await;
    let mut packed_poll = s.node("alice", "longpolling+msgpack").await;
    let mut packed_py = HubClient::spawn_python(&s.hub(), &s.token("alice"), "pysignalr+msgpack");
    packed_py.connected().await;
    s.until_live(
        "bob",
        &dm,
        &mut [
            &mut json_ws,
            &mut packed_ws,
            &mut packed_poll,
            &mut packed_py,
        ],
    )
    .await;

    let hello = s.say("bob", &dm, "hello in two protocols").await;
    let id = hello["id"].as_str().unwrap().to_owned();
    let (status, _) =
        s.gw.send(
            s.gw.delete(&format!("/api/v1/rooms/{dm}/messages/{id}"))
                .bearer_auth(s.token("bob")),
        )
        .await;
    assert_eq!(status, 204);
    // Chat events come through the provider, host pushes straight away: one at a time, so
    // the order every connection sees is known.
    for client in [
        &mut json_ws,
        &mut packed_ws,
        &mut packed_poll,
        &mut packed_py,
    ] {
        client
            .wait_for("the deletion", |v| v["target"] == "messageDeleted")
            .await;
    }
    let order = json!({"orderId": 42, "total": -1.5, "at": "2026-12-05T09:00:00Z", "lines": ["é ✓", null, true]});
    let (status, _) =
        s.gw.send(
            s.gw.post("/api/v1/hub/users/alice")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"target": "notify", "arguments": [order, 7]})),
        )
        .await;
    assert_eq!(status, 202);
    s.say("bob", &dm, "last").await;

    let mut seen = Vec::new();
    for client in [
        &mut json_ws,
        &mut packed_ws,
        &mut packed_poll,
        &mut packed_py,
    ] {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == "last")
            .await;
        let name = client.name.clone();
        let received: Vec<Value> = client
            .received()
            .into_iter()
            // Unread counts move with the probes; the rest must match exactly.
            .filter(|v| !is_probe(v) && v["target"] != "getRoomSubscriptionChangedNotification")
            .cloned()
            .collect();
        let targets: Vec<&str> = received
            .iter()
            .map(|v| v["target"].as_str().unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "getRoomMessageNotification",
                "messageDeleted",
                "notify",
                "getRoomMessageNotification"
            ],
            "{name}: {received:?}"
        );
        assert_eq!(
            received[0]["arg"]["text"], "hello in two protocols",
            "{name}"
        );
        assert!(
            received[0]["arg"]["createdAt"]
                .as_str()
                .is_some_and(|at| chrono::DateTime::parse_from_rfc3339(at).is_ok()),
            "{name}: {}",
            received[0]["arg"]
        );
        assert_eq!(received[2]["args"], json!([order, 7]), "{name}");
        seen.push(received);
    }
    // Byte for byte the same values, whichever protocol carried them.
    assert!(seen.windows(2).all(|pair| pair[0] == pair[1]), "{seen:?}");

    for client in [&mut packed_ws, &mut packed_poll, &mut packed_py] {
        let sent = client
            .invoke(
                "send",
                "SendMessage",
                json!([dm, format!("from {}", client.name)]),
            )
            .await;
        assert_eq!(sent["ok"], true, "{} {sent}", client.name);
        assert_eq!(sent["value"]["roomId"], json!(dm), "{}", client.name);
        assert_eq!(sent["value"]["sender"]["id"], "alice", "{}", client.name);
        assert!(sent["value"]["id"].is_string(), "{} {sent}", client.name);
    }
}

each_provider!(send_message_over_the_hub_reaches_the_other_members);

async fn send_message_over_the_hub_reaches_the_other_members(provider: Provider) {
    let Some(s) = Setup::start(provider).await else {
        return;
    };
    let dm = s
        .post("alice", "/api/v1/rooms/direct", json!({"members": ["bob"]}))
        .await;
    let dm = dm["id"].as_str().unwrap().to_owned();
    let mut alice = s.node("alice", "websockets").await;
    let mut bob = s.node("bob", "longpolling").await;
    s.until_live("alice", &dm, &mut [&mut bob]).await;
    let result = alice
        .invoke("send", "SendMessage", json!([dm, "over the hub"]))
        .await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["value"]["text"], "over the hub");
    assert_eq!(result["value"]["sender"]["id"], "alice");
    bob.wait_for("alice's hub message", |v| {
        v["arg"]["text"] == "over the hub"
    })
    .await;
    let bad = alice.invoke("bad", "SendMessage", json!([dm, ""])).await;
    assert_eq!(
        (
            bad["ok"].clone(),
            bad["error"].as_str().map(|e| e.contains("text"))
        ),
        (json!(false), Some(true)),
        "{bad}"
    );
    let read = bob.invoke("read", "MarkRead", json!([dm])).await;
    assert_eq!(read["ok"], true, "{read}");
    let (_, unread) =
        s.gw.send(s.gw.get("/api/v1/unread").bearer_auth(s.token("bob")))
            .await;
    assert!(unread["rooms"].get(&dm).is_none(), "{unread}");
}

// Rocket.Chat only: it drops the upstream through the test server's fault injection.
#[tokio::test]
async fn a_dropped_upstream_loses_no_message_and_the_last_connection_closes_it() {
    let s = Setup::start(Provider::RocketChat)
        .await
        .expect("the Rocket.Chat variant always runs");
    let dm = s
        .post("bob", "/api/v1/rooms/direct", json!({"members": ["alice"]}))
        .await;
    let dm = dm["id"].as_str().unwrap().to_owned();
    let mut alice = s.node("alice", "websockets").await;
    s.until_live("bob", &dm, &mut [&mut alice]).await;

    let sender = {
        let (gw_base, token, dm) = (s.gw.base.clone(), s.token("bob"), dm.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for n in 0..30 {
                let response = http
                    .post(format!("{gw_base}/api/v1/rooms/{dm}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({"text": format!("m{n:02}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(s.sim().drop_ddp("alice").unwrap(), 1);
    sender.await.unwrap();
    alice
        .wait_for("the last message", |v| v["arg"]["text"] == "m29")
        .await;
    let expected: Vec<String> = (0..30).map(|n| format!("m{n:02}")).collect();
    assert_eq!(
        texts(&alice, "getRoomMessageNotification"),
        expected,
        "every message once, in order"
    );

    alice.command(json!({"cmd": "stop"})).await;
    alice.wait_event("stopped").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.sim().open_ddp_connections("alice") > 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream must close after the grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

each_provider!(deleting_a_connected_user_closes_their_connections_for_good);

async fn deleting_a_connected_user_closes_their_connections_for_good(provider: Provider) {
    let Some(setup) = Setup::start(provider).await else {
        return;
    };
    let mut alice = setup.node("alice", "websockets").await;
    let mut bob = setup.node("bob", "websockets").await;
    let (status, _) = setup
        .gw
        .send(
            setup
                .gw
                .delete("/api/v1/users/alice")
                .header("X-Api-Key", API_KEY),
        )
        .await;
    assert_eq!(status, 204);
    let closed = alice.wait_event("closed").await;
    assert!(
        closed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("deleted"),
        "{closed}"
    );
    assert!(
        !alice.seen.iter().any(|v| v["event"] == "reconnecting"),
        "a deleted user's client must not reconnect: {:?}",
        alice.seen
    );
    // Bob's connection carries on.
    let dm = setup
        .post("carol", "/api/v1/rooms/direct", json!({"members": ["bob"]}))
        .await;
    let room = dm["id"].as_str().unwrap().to_owned();
    // The room is new to bob's upstream: wait until it carries the room's messages.
    setup.until_live("carol", &room, &mut [&mut bob]).await;
    setup
        .post(
            "carol",
            &format!("/api/v1/rooms/{room}/messages"),
            json!({"text": "still here"}),
        )
        .await;
    bob.wait_for("carol's message", |v| v["arg"]["text"] == "still here")
        .await;
    setup.gw.stop().await;
    drop(setup.sim);
}
