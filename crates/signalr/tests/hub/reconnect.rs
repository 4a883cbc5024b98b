//! Stateful reconnect by hand: negotiate's flag, a WebSocket that drops and comes back with
//! the same token, Ack and Sequence records, the window and the buffer limit.

use futures::{SinkExt, StreamExt};
use imgate_signalr::HubConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{metric, token, typing, TestHub, WAIT};

const RS: char = '\u{1e}';
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Negotiates (version 1) and returns the answer.
async fn negotiate(hub: &TestHub, stateful: bool) -> Value {
    let query = if stateful {
        "?negotiateVersion=1&useStatefulReconnect=true"
    } else {
        "?negotiateVersion=1"
    };
    reqwest::Client::new()
        .post(format!("{}/negotiate{query}", hub.url()))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Opens the WebSocket of connection `id` as `user`.
async fn open(hub: &TestHub, id: &str, user: &str) -> Result<Socket, String> {
    let url = format!("ws://{}/hub?id={id}&access_token={}", hub.addr, token(user));
    tokio_tungstenite::connect_async(url)
        .await
        .map(|(socket, _)| socket)
        .map_err(|err| err.to_string())
}

/// Negotiates (stateful reconnect asked for or not), opens alice's WebSocket and shakes hands
/// with protocol version 2; returns the connection token and the socket.
async fn handshaken(hub: &TestHub, stateful: bool) -> (String, Socket) {
    let id = negotiate(hub, stateful).await["connectionToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut socket = open(hub, &id, "alice").await.unwrap();
    send(&mut socket, &[json!({"protocol": "json", "version": 2})]).await;
    assert_eq!(next_records(&mut socket).await, [json!({})]);
    (id, socket)
}

async fn send(socket: &mut Socket, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}{RS}")).collect();
    socket.send(WsMessage::text(text)).await.unwrap();
}

/// The records of the next text message; empty when the socket closed.
async fn next_records(socket: &mut Socket) -> Vec<Value> {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a message");
        match message {
            Some(Ok(WsMessage::Text(text))) => {
                return text
                    .split(RS)
                    .filter(|r| !r.is_empty())
                    .map(|r| serde_json::from_str(r).unwrap())
                    .collect()
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Vec::new(),
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until `count` records other than pings and Acks arrived; returns them, and the Acks
/// seen meanwhile.
async fn read(socket: &mut Socket, count: usize) -> (Vec<Value>, Vec<u64>) {
    let (mut records, mut acks) = (Vec::new(), Vec::new());
    while records.len() < count {
        let batch = next_records(socket).await;
        assert!(!batch.is_empty(), "closed after {records:?}");
        for record in batch {
            match record["type"].as_u64() {
                Some(6) => {}
                Some(8) => acks.push(record["sequenceId"].as_u64().unwrap()),
                _ => records.push(record),
            }
        }
    }
    (records, acks)
}

/// The `username` of each typing event among `records`, the marker of the test's messages.
fn names(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["arguments"][0]["username"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn negotiate_grants_stateful_reconnect_only_when_asked() {
    let hub = TestHub::start(HubConfig::default()).await;
    let plain = negotiate(&hub, false).await;
    assert!(plain.get("useStatefulReconnect").is_none(), "{plain}");
    let stateful = negotiate(&hub, true).await;
    assert_eq!(stateful["useStatefulReconnect"], true, "{stateful}");
    hub.stop().await;
}

#[tokio::test]
async fn a_dropped_websocket_resumes_with_every_unacknowledged_message_once() {
    let hub = TestHub::start(HubConfig::default()).await;
    let (id, mut socket) = handshaken(&hub, true).await;
    hub.eventually("alice online", |h| h.backend.count("online:alice") == 1)
        .await;

    for name in ["m1", "m2", "m3"] {
        hub.publish("alice", &typing("r1", name));
    }
    assert_eq!(names(&read(&mut socket, 3).await.0), ["m1", "m2", "m3"]);
    // The client acknowledges two of them and calls a method: the completion is message 4,
    // and the hub acknowledges the call (the client's message 1).
    send(
        &mut socket,
        &[
            json!({"type": 8, "sequenceId": 2}),
            json!({"type": 1, "invocationId": "a", "target": "MarkRead", "arguments": ["r1"]}),
        ],
    )
    .await;
    let mut got = Vec::new();
    while !(got.iter().any(|r: &Value| r["type"] == 3) && got.iter().any(|r| r["type"] == 8)) {
        let batch = next_records(&mut socket).await;
        assert!(!batch.is_empty(), "closed after {got:?}");
        got.extend(batch);
    }
    assert!(
        got.contains(&json!({"type": 3, "invocationId": "a"})),
        "{got:?}"
    );
    assert!(
        got.contains(&json!({"type": 8, "sequenceId": 1})),
        "{got:?}"
    );

    // The socket drops without a Close; messages keep coming meanwhile.
    drop(socket);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for name in ["m5", "m6"] {
        hub.publish("alice", &typing("r1", name));
    }
    // Only alice may take the connection back.
    let stolen = open(&hub, &id, "mallory").await.unwrap_err();
    assert!(stolen.contains("403"), "{stolen}");

    let mut socket = open(&hub, &id, "alice").await.unwrap();
    // First the Sequence record, then every message not acknowledged, in order, once.
    let first = next_records(&mut socket).await;
    assert_eq!(first[0], json!({"type": 9, "sequenceId": 3}), "{first:?}");
    let mut resumed: Vec<Value> = first.into_iter().skip(1).collect();
    if resumed.len() < 4 {
        resumed.extend(read(&mut socket, 4 - resumed.len()).await.0);
    }
    assert_eq!(resumed[1], json!({"type": 3, "invocationId": "a"}));
    assert_eq!(names(&resumed), ["m3", "?", "m5", "m6"]);
    // The client did not see the hub's Ack, so it sends its call again after its Sequence;
    // the hub recognises it and runs only the new one.
    send(
        &mut socket,
        &[
            json!({"type": 9, "sequenceId": 1}),
            json!({"type": 1, "invocationId": "a", "target": "MarkRead", "arguments": ["r1"]}),
            json!({"type": 1, "invocationId": "b", "target": "MarkRead", "arguments": ["r2"]}),
        ],
    )
    .await;
    let (completion, _) = read(&mut socket, 1).await;
    assert_eq!(completion, [json!({"type": 3, "invocationId": "b"})]);
    hub.publish("alice", &typing("r1", "m8"));
    assert_eq!(names(&read(&mut socket, 1).await.0), ["m8"]);
    assert_eq!(hub.backend.count("read:alice:r1"), 1);
    assert_eq!(hub.backend.count("read:alice:r2"), 1);
    // One connection all along.
    assert_eq!(hub.backend.count("opened:alice"), 1);
    assert_eq!(hub.backend.count("closed:alice"), 0);
    assert!(metric("imgate_hub_reconnects_total") >= 1.0);
    hub.stop().await;
}

#[tokio::test]
async fn past_the_window_a_reconnect_finds_no_connection() {
    let hub = TestHub::start(HubConfig {
        reconnect_window_s: 1,
        ..HubConfig::default()
    })
    .await;
    let (id, socket) = handshaken(&hub, true).await;
    drop(socket);
    hub.eventually("the connection ended", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    let refused = open(&hub, &id, "alice").await.unwrap_err();
    assert!(refused.contains("404"), "{refused}");
    assert!(metric(r#"imgate_hub_connections_closed_total{reason="reconnect_timeout"}"#) >= 1.0);
    hub.stop().await;
}

#[tokio::test]
async fn without_stateful_reconnect_a_dropped_websocket_ends_the_connection() {
    let hub = TestHub::start(HubConfig::default()).await;
    // Version 2 alone does not turn it on: negotiate must have granted it.
    let (_, socket) = handshaken(&hub, false).await;
    drop(socket);
    hub.eventually("the connection ended", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_acknowledge_is_closed_saying_why() {
    let hub = TestHub::start(HubConfig {
        stateful_reconnect_buffer_bytes: 1_000,
        ..HubConfig::default()
    })
    .await;
    let (_, mut socket) = handshaken(&hub, true).await;
    hub.eventually("alice online", |h| h.backend.count("online:alice") == 1)
        .await;
    // About 90 bytes each: the twelfth does not fit.
    for n in 0..20 {
        hub.publish("alice", &typing("r1", &format!("m{n}")));
    }
    let close = loop {
        let records = next_records(&mut socket).await;
        assert!(!records.is_empty(), "closed without a Close message");
        if let Some(close) = records.into_iter().find(|r| r["type"] == 7) {
            break close;
        }
    };
    assert_eq!(close["allowReconnect"], true, "{close}");
    assert!(
        close["error"]
            .as_str()
            .unwrap()
            .contains("did not acknowledge its messages (more than 1000 bytes"),
        "{close}"
    );
    hub.eventually("the connection ended", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    hub.stop().await;
}
