//! The official clients, unmodified, against the hub.

use std::time::Duration;

use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{Room, RoomKind};
use imgate_domain::{MessageId, RoomId, UserEvent, UserId};
use imgate_signalr::HubConfig;
use serde_json::{json, Value};

use crate::support::{message, metric, token, typing, Client, ClientExt, TestHub};
use imgate_testkit::blip::BlipProxy;

fn room_id(id: &str) -> RoomId {
    RoomId::parse(id).unwrap()
}

/// One event of each kind, in the order they are published.
fn events() -> Vec<UserEvent> {
    let room = room_id("r1");
    vec![
        UserEvent::RoomMessage {
            message: Box::new(message(&room, &UserId::parse("carol").unwrap(), "hello")),
        },
        UserEvent::SubscriptionChanged {
            method: SubscriptionChange::Inserted,
            room: Box::new(Room {
                id: room.clone(),
                kind: RoomKind::Channel,
                name: "general".into(),
                members: None,
                unread: 3,
                last_message: None,
                updated_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            }),
        },
        UserEvent::MessageDeleted {
            room_id: room.clone(),
            message_id: MessageId::parse("m-old").unwrap(),
        },
        typing("r1", "carol"),
    ]
}

/// Checks a client received exactly the published events, once each, in order, up to the
/// `done` marker.
async fn expect_events_once(client: &mut Client) {
    client
        .wait_for("the marker event", |v| {
            v["event"] == "recv" && v["arg"]["username"] == "done"
        })
        .await;
    let received: Vec<Value> = client.received().into_iter().cloned().collect();
    let targets: Vec<&str> = received
        .iter()
        .map(|v| v["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        targets,
        [
            "getRoomMessageNotification",
            "getRoomSubscriptionChangedNotification",
            "messageDeleted",
            "typing",
            "typing"
        ],
        "{} received {received:?}",
        client.name
    );
    let message = &received[0]["arg"];
    assert_eq!(message["roomId"], "r1");
    assert_eq!(message["sender"]["id"], "carol");
    assert_eq!(message["createdAt"], "2023-11-14T22:13:20Z");
    assert_eq!(received[1]["arg"]["method"], "inserted");
    assert_eq!(received[1]["arg"]["room"]["unread"], 3);
    assert_eq!(
        received[2]["arg"],
        json!({"roomId": "r1", "messageId": "m-old"})
    );
    assert_eq!(
        received[3]["arg"],
        json!({"roomId": "r1", "username": "carol", "typing": true})
    );
}

#[tokio::test]
async fn every_connection_of_a_user_gets_each_event_once_and_others_get_nothing() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut node_one = Client::node(&hub, "alice", "websockets").await;
    let mut node_two = Client::node(&hub, "alice", "websockets").await;
    let mut python = Client::python(&hub, "alice", "signalrcore").await;
    // Bob skips negotiation: a WebSocket straight to /hub.
    let mut other = Client::node(&hub, "bob", "websockets+skip").await;
    for client in [&mut node_one, &mut node_two, &mut python, &mut other] {
        client.connected().await;
    }
    hub.eventually("four open connections", |h| h.hub.open_connections() == 4)
        .await;
    assert_eq!(hub.backend.count("opened:alice"), 3);
    assert_eq!(hub.backend.count("opened:bob"), 1);
    // The user's first connection brings the user online on this node, once.
    assert_eq!(hub.backend.count("online:alice"), 1);
    assert_eq!(hub.backend.count("online:bob"), 1);

    for event in events() {
        hub.publish("alice", &event);
    }
    hub.publish("alice", &typing("r1", "done"));
    for client in [&mut node_one, &mut node_two, &mut python] {
        expect_events_once(client).await;
    }
    // A round trip on bob's connection: anything meant for alice would have come first.
    let result = other.invoke("sync", "MarkRead", json!(["r9"])).await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(
        other.received().is_empty(),
        "bob got {:?}",
        other.received()
    );

    drop(node_one);
    hub.eventually("alice down to two connections", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    assert_eq!(hub.backend.count("offline:alice"), 0);
    // Her last connection leaving takes her offline here, once.
    drop((node_two, python));
    hub.eventually("alice offline", |h| h.backend.count("offline:alice") == 1)
        .await;
    assert_eq!(hub.backend.count("closed:alice"), 3);
    assert_eq!(hub.backend.count("offline:bob"), 0);
    hub.stop().await;
}

#[tokio::test]
async fn node_invocations_get_exactly_one_completion_each() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut client = Client::node(&hub, "alice", "websockets").await;
    client.connected().await;

    let sent = client
        .invoke("send", "SendMessage", json!(["r1", "hello"]))
        .await;
    assert_eq!(sent["ok"], true, "{sent}");
    assert_eq!(sent["value"]["id"], "m-hello");
    assert_eq!(sent["value"]["roomId"], "r1");
    assert_eq!(sent["value"]["sender"]["id"], "alice");

    let read = client.invoke("read", "MarkRead", json!(["r1"])).await;
    assert_eq!(
        read,
        json!({"event": "result", "tag": "read", "ok": true, "value": null})
    );
    let typed = client.invoke("typing", "typing", json!(["r1", true])).await;
    assert_eq!(typed["ok"], true, "{typed}");

    let refused = client
        .invoke("refused", "SendMessage", json!(["forbidden", "x"]))
        .await;
    assert_eq!(refused["ok"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("not a member"),
        "{refused}"
    );
    let unknown = client.invoke("unknown", "NoSuchMethod", json!([1])).await;
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("Unknown hub method 'NoSuchMethod'"),
        "{unknown}"
    );
    let wrong = client.invoke("wrong", "SendMessage", json!(["r1"])).await;
    assert!(
        wrong["error"].as_str().unwrap().contains("expects 2"),
        "{wrong}"
    );
    let bad_type = client
        .invoke("bad-type", "Typing", json!(["r1", "yes"]))
        .await;
    assert!(
        bad_type["error"].as_str().unwrap().contains("boolean"),
        "{bad_type}"
    );

    // A non-blocking send runs but gets no completion.
    client
        .command(json!({"cmd": "send", "tag": "fire", "method": "Typing", "args": ["r2", false]}))
        .await;
    client.wait_event("sent").await;
    let last = client.invoke("last", "MarkRead", json!(["r3"])).await;
    assert_eq!(last["ok"], true);
    let calls = hub.backend.calls();
    let typing_at = calls.iter().position(|c| c == "typing:alice:r2:false");
    let read_at = calls.iter().position(|c| c == "read:alice:r3");
    assert!(typing_at.is_some() && typing_at < read_at, "{calls:?}");
    let results = client
        .seen
        .iter()
        .filter(|v| v["event"] == "result")
        .count();
    assert_eq!(results, 8, "{:?}", client.seen);
    hub.stop().await;
}

#[tokio::test]
async fn python_clients_receive_events_and_invoke() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut pysignalr = Client::python(&hub, "alice", "pysignalr").await;
    let mut signalrcore = Client::python(&hub, "alice", "signalrcore").await;
    pysignalr.connected().await;
    signalrcore.connected().await;
    hub.eventually("two open connections", |h| h.hub.open_connections() == 2)
        .await;

    for event in events() {
        hub.publish("alice", &event);
    }
    hub.publish("alice", &typing("r1", "done"));
    expect_events_once(&mut pysignalr).await;
    expect_events_once(&mut signalrcore).await;

    for client in [&mut pysignalr, &mut signalrcore] {
        let sent = client
            .invoke("send", "SendMessage", json!(["r1", "from-python"]))
            .await;
        assert_eq!(sent["ok"], true, "{} {sent}", client.name);
        assert_eq!(sent["value"]["text"], "from-python");
        let unknown = client.invoke("unknown", "Nope", json!([])).await;
        assert_eq!(unknown["ok"], false, "{unknown}");
        assert!(unknown["error"]
            .as_str()
            .unwrap()
            .contains("Unknown hub method"));
    }
    // pysignalr's `send` without a callback is non-blocking: no completion comes back.
    pysignalr
        .command(json!({"cmd": "send", "tag": "fire", "method": "Typing", "args": ["r5", true]}))
        .await;
    hub.eventually("the non-blocking call", |h| {
        h.backend.count("typing:alice:r5:true") == 1
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn messagepack_clients_beside_a_json_one_get_the_same_events_and_completions() {
    let handshakes = || metric(r#"imgate_hub_handshakes_total{protocol="messagepack"}"#);
    let before = handshakes();
    let hub = TestHub::start(HubConfig::default()).await;
    let mut clients = [
        Client::node(&hub, "alice", "websockets+msgpack").await,
        Client::node(&hub, "alice", "longpolling+msgpack").await,
        Client::python(&hub, "alice", "pysignalr+msgpack").await,
        Client::node(&hub, "alice", "websockets").await,
    ];
    for client in &mut clients {
        client.connected().await;
    }
    hub.eventually("four open connections", |h| h.hub.open_connections() == 4)
        .await;
    // Other tests of this binary may shake hands in MessagePack meanwhile, never fewer.
    assert!(handshakes() - before >= 3.0, "the three spoke MessagePack");
    for event in events() {
        hub.publish("alice", &event);
    }
    hub.publish("alice", &typing("r1", "done"));
    for client in &mut clients {
        expect_events_once(client).await;
    }
    for client in &mut clients {
        let sent = client
            .invoke("send", "SendMessage", json!(["r1", "packed"]))
            .await;
        assert_eq!(sent["ok"], true, "{} {sent}", client.name);
        assert_eq!(sent["value"]["text"], "packed", "{}", client.name);
        assert_eq!(sent["value"]["sender"]["id"], "alice", "{}", client.name);
        let read = client.invoke("read", "MarkRead", json!(["r1"])).await;
        assert_eq!(read["ok"], true, "{} {read}", client.name);
        let unknown = client.invoke("unknown", "Nope", json!([])).await;
        assert_eq!(unknown["ok"], false, "{unknown}");
        assert!(
            unknown["error"]
                .as_str()
                .unwrap()
                .contains("Unknown hub method"),
            "{} {unknown}",
            client.name
        );
    }
    assert_eq!(hub.backend.count("send:alice:r1:packed"), 4);
    hub.stop().await;
}

/// The official client's `withStatefulReconnect()`, in both protocols, behind a proxy that
/// cuts every connection for 3 s: the messages sent before, during and after the blip arrive
/// once each and in order, and a call made during it completes, on connections that never
/// closed.
#[tokio::test]
async fn stateful_reconnect_carries_clients_through_a_three_second_blip() {
    let hub = TestHub::start(HubConfig::default()).await;
    let proxy = BlipProxy::start(hub.addr).await;
    let url = format!("http://{}/hub", proxy.addr);
    let mut clients = [
        Client::spawn_node(&url, &token("alice"), "websockets+stateful"),
        Client::spawn_node(&url, &token("alice"), "websockets+msgpack+stateful"),
    ];
    for client in &mut clients {
        client.connected().await;
    }
    hub.eventually("two open connections", |h| h.hub.open_connections() == 2)
        .await;
    let reconnects = metric("imgate_hub_reconnects_total");
    let names: Vec<String> = (1..=12).map(|n| format!("m{n}")).collect();
    for name in &names[..4] {
        hub.publish("alice", &typing("r1", name));
    }
    for client in &mut clients {
        client
            .wait_for("m4", |v| v["arg"]["username"] == "m4")
            .await;
    }

    proxy.cut(Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for name in &names[4..8] {
        hub.publish("alice", &typing("r1", name));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for client in &mut clients {
        client
            .command(
                json!({"cmd": "invoke", "tag": "during", "method": "MarkRead", "args": ["r-blip"]}),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    for name in &names[8..] {
        hub.publish("alice", &typing("r1", name));
    }

    for client in &mut clients {
        client
            .wait_for("m12", |v| v["arg"]["username"] == "m12")
            .await;
        let during = |v: &Value| v["event"] == "result" && v["tag"] == "during";
        if !client.seen.iter().any(during) {
            client
                .wait_for("the call made during the blip", during)
                .await;
        }
        let result = client.seen.iter().find(|v| during(v)).unwrap().clone();
        assert_eq!(result["ok"], true, "{} {result}", client.name);
        let got: Vec<&str> = client
            .received()
            .into_iter()
            .map(|v| v["arg"]["username"].as_str().unwrap())
            .collect();
        assert_eq!(got, names, "{}", client.name);
        let interrupted: Vec<&Value> = client
            .seen
            .iter()
            .filter(|v| {
                matches!(
                    v["event"].as_str(),
                    Some("reconnecting" | "reconnected" | "closed")
                )
            })
            .collect();
        assert!(interrupted.is_empty(), "{}: {interrupted:?}", client.name);
    }
    assert_eq!(hub.backend.count("opened:alice"), 2);
    assert_eq!(hub.backend.count("closed:alice"), 0);
    assert_eq!(hub.backend.count("read:alice:r-blip"), 2);
    assert!(metric("imgate_hub_reconnects_total") - reconnects >= 2.0);
    hub.stop().await;
}

#[tokio::test]
async fn server_sent_events_and_long_polling_carry_events_and_invocations() {
    let hub = TestHub::start(HubConfig {
        long_poll_timeout_ms: 2_000,
        // A dropped SSE stream is noticed when the next write fails.
        keep_alive_interval_ms: 1_000,
        ..HubConfig::default()
    })
    .await;
    let mut sse = Client::node(&hub, "alice", "sse").await;
    let mut polling = Client::node(&hub, "alice", "longpolling").await;
    sse.connected().await;
    polling.connected().await;
    hub.eventually("two open connections", |h| h.hub.open_connections() == 2)
        .await;
    for event in events() {
        hub.publish("alice", &event);
    }
    hub.publish("alice", &typing("r1", "done"));
    expect_events_once(&mut sse).await;
    expect_events_once(&mut polling).await;

    for client in [&mut sse, &mut polling] {
        let sent = client
            .invoke("send", "SendMessage", json!(["r1", "via-http"]))
            .await;
        assert_eq!(sent["ok"], true, "{} {sent}", client.name);
        let unknown = client.invoke("unknown", "Nope", json!([])).await;
        assert_eq!(unknown["ok"], false);
    }
    // Long polls time out empty and the client polls again without losing the connection.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    hub.publish("alice", &typing("r2", "after-idle"));
    polling
        .wait_for("an event after an idle poll", |v| {
            v["arg"]["username"] == "after-idle"
        })
        .await;
    for client in [&mut sse, &mut polling] {
        client.command(json!({"cmd": "stop"})).await;
        client.wait_event("stopped").await;
    }
    hub.eventually("both connections closed", |h| {
        h.backend.count("closed:alice") == 2 && h.hub.open_connections() == 0
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn shutdown_makes_automatic_reconnect_clients_come_back() {
    let hub = TestHub::start(HubConfig {
        long_poll_timeout_ms: 2_000,
        ..HubConfig::default()
    })
    .await;
    let mut clients = vec![
        Client::node(&hub, "alice", "websockets").await,
        Client::node(&hub, "alice", "sse").await,
        Client::node(&hub, "alice", "longpolling").await,
    ];
    for client in &mut clients {
        client.connected().await;
    }
    hub.eventually("three open connections", |h| h.hub.open_connections() == 3)
        .await;
    hub.hub.shutdown(Duration::from_secs(10)).await;
    for client in &mut clients {
        // A plain `{"type":7,"allowReconnect":true}`: the client reconnects without an error.
        let reconnecting = client.wait_event("reconnecting").await;
        assert_eq!(
            reconnecting["error"],
            Value::Null,
            "{} {reconnecting}",
            client.name
        );
        client.wait_event("reconnected").await;
    }
    assert!(clients
        .iter()
        .all(|c| !c.seen.iter().any(|v| v["event"] == "closed")));
    hub.eventually("three reconnected connections", |h| {
        h.hub.open_connections() == 3 && h.backend.count("opened:alice") == 6
    })
    .await;
    assert_eq!(hub.backend.count("closed:alice"), 3);
    hub.publish("alice", &typing("r1", "after-reconnect"));
    for client in &mut clients {
        client
            .wait_for("an event after reconnecting", |v| {
                v["arg"]["username"] == "after-reconnect"
            })
            .await;
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_bad_token_fails_the_official_client_with_401() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut client = Client::node_with_token(&hub, "not-a-jwt", "websockets").await;
    let failed = client.wait_event("start_failed").await;
    assert!(
        failed["error"].as_str().unwrap().contains("401"),
        "{failed}"
    );
    assert!(hub.backend.calls().is_empty());
    hub.stop().await;
}
