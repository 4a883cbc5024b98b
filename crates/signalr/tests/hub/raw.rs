//! The wire protocol by hand: negotiate shapes, CORS, 401s, handshake refusals, framing,
//! limits, keep-alive and the slow-client cut-off.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imgate_domain::{RoomId, UserEvent, UserId};
use imgate_signalr::HubConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{message, metric, token, typing, TestHub, WAIT};

const RS: char = '\u{1e}';
type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn open(hub: &TestHub, user: &str) -> Socket {
    let url = format!("ws://{}/hub?access_token={}", hub.addr, token(user));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
}

/// The WebSocket URL of the connection `id` for `user` on `hub`.
fn transport_url(hub: &TestHub, id: &str, user: &str) -> String {
    format!("ws://{}/hub?id={id}&access_token={}", hub.addr, token(user))
}

/// Opens a skipNegotiation socket and completes the handshake.
async fn connect(hub: &TestHub, user: &str) -> Socket {
    let mut socket = open(hub, user).await;
    handshake(&mut socket).await;
    socket
}

/// Sends the JSON protocol handshake and expects the empty answer.
async fn handshake(socket: &mut Socket) {
    send(socket, &format!(r#"{{"protocol":"json","version":1}}{RS}"#)).await;
    assert_eq!(next_records(socket).await, vec![json!({})]);
}

async fn send(socket: &mut Socket, text: &str) {
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
                assert!(text.ends_with(RS), "record without separator: {text:?}");
                return text
                    .split(RS)
                    .filter(|r| !r.is_empty())
                    .map(|r| serde_json::from_str(r).unwrap())
                    .collect();
            }
            Some(Ok(WsMessage::Binary(_))) => panic!("the JSON protocol must use text frames"),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Vec::new(),
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until a Close message (type 7) and returns it; pings and events are skipped.
async fn until_close(socket: &mut Socket) -> Value {
    loop {
        let records = next_records(socket).await;
        assert!(!records.is_empty(), "socket closed without a Close message");
        if let Some(close) = records.into_iter().find(|r| r["type"] == 7) {
            return close;
        }
    }
}

#[tokio::test]
async fn negotiate_answers_version_zero_or_one_as_asked() {
    let hub = TestHub::start(HubConfig::default()).await;
    let http = reqwest::Client::new();
    let negotiate = |query: &'static str| {
        http.post(format!("{}/negotiate{query}", hub.url()))
            .bearer_auth(token("alice"))
            .send()
    };
    let v0: Value = negotiate("").await.unwrap().json().await.unwrap();
    assert_eq!(v0["negotiateVersion"], 0);
    assert!(v0["connectionId"].as_str().is_some());
    assert!(v0.get("connectionToken").is_none(), "{v0}");
    let transports: Vec<&str> = v0["availableTransports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["transport"].as_str().unwrap())
        .collect();
    assert_eq!(
        transports,
        ["WebSockets", "ServerSentEvents", "LongPolling"]
    );
    // Text first (signalrcore takes the first), Binary for MessagePack where it can travel.
    let formats: Vec<&Value> = v0["availableTransports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["transferFormats"])
        .collect();
    assert_eq!(
        formats,
        [
            &json!(["Text", "Binary"]),
            &json!(["Text"]),
            &json!(["Text", "Binary"])
        ]
    );

    let v1: Value = negotiate("?negotiateVersion=1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["negotiateVersion"], 1);
    assert_ne!(v1["connectionToken"], v1["connectionId"]);
    let v1_more: Value = negotiate("?negotiateVersion=7")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1_more["negotiateVersion"], 1);

    // An id no hub could have handed out is 404.
    let made_up = format!(
        "ws://{}/hub?id=not-an-id&access_token={}",
        hub.addr,
        token("alice")
    );
    let refused = tokio_tungstenite::connect_async(made_up).await.unwrap_err();
    assert!(refused.to_string().contains("404"), "{refused}");
    // Another user cannot take over a negotiated connection.
    let stolen = format!(
        "ws://{}/hub?id={}&access_token={}",
        hub.addr,
        v1["connectionToken"].as_str().unwrap(),
        token("mallory")
    );
    let refused = tokio_tungstenite::connect_async(stolen).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let by_token = format!(
        "ws://{}/hub?id={}&access_token={}",
        hub.addr,
        v1["connectionToken"].as_str().unwrap(),
        token("alice")
    );
    let (_socket, _) = tokio_tungstenite::connect_async(by_token.clone())
        .await
        .unwrap();
    let again = tokio_tungstenite::connect_async(by_token)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("409"), "{again}");
    hub.stop().await;
}

/// Behind a proxy that routes each connection's requests by their `id`, negotiate can land on
/// one node and the transport on another; the second node takes the connection over.
#[tokio::test]
async fn a_connection_negotiated_on_another_node_is_taken_over_here() {
    let negotiated_on = TestHub::start(HubConfig::default()).await;
    let here = TestHub::start(HubConfig::default()).await;
    let http = reqwest::Client::new();
    let v1: Value = http
        .post(format!(
            "{}/negotiate?negotiateVersion=1",
            negotiated_on.url()
        ))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = v1["connectionToken"].as_str().unwrap();
    let url = transport_url(&here, id, "alice");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut socket).await;
    here.eventually("the backend told of the connection", |h| {
        h.backend.count("opened:alice") == 1
    })
    .await;
    here.publish("alice", &typing("r1", "carol"));
    let records = next_records(&mut socket).await;
    assert_eq!(
        records[0]["arguments"][0]["username"], "carol",
        "{records:?}"
    );

    // Only a transport's first request takes over: a send to an unknown id is still 404.
    let other = format!("{}?id={}", here.url(), "A".repeat(22));
    let posted = http
        .post(&other)
        .bearer_auth(token("alice"))
        .body("{}\u{1e}")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 404);
    // An id that ended here is not taken over again: its client must reconnect.
    send(&mut socket, &format!(r#"{{"type":7}}{RS}"#)).await;
    here.eventually("the connection forgotten", |h| {
        h.hub.open_connections() == 0
    })
    .await;
    let again = transport_url(&here, id, "alice");
    let refused = tokio_tungstenite::connect_async(again).await.unwrap_err();
    assert!(refused.to_string().contains("404"), "{refused}");
    negotiated_on.stop().await;
    here.stop().await;
}

#[tokio::test]
async fn bad_or_missing_tokens_get_401_with_the_json_envelope() {
    let hub = TestHub::start(HubConfig::default()).await;
    let http = reqwest::Client::new();
    for request in [
        http.post(format!("{}/negotiate", hub.url())),
        http.post(format!("{}/negotiate", hub.url()))
            .bearer_auth("garbage"),
        http.post(format!("{}/negotiate?access_token=garbage", hub.url())),
        http.post(format!("{}/negotiate", hub.url()))
            .bearer_auth(imgate_http::auth::mint_hs256(
                b"another-secret",
                "sub",
                "alice",
                Duration::from_secs(60),
            )),
        http.get(format!("{}?id=x", hub.url())),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{body}");
        assert!(body["message"].as_str().is_some());
    }
    let refused =
        tokio_tungstenite::connect_async(format!("ws://{}/hub?access_token=bad", hub.addr))
            .await
            .unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert!(hub.backend.calls().is_empty());
    hub.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_listed_origins_with_credentials_only() {
    let hub = TestHub::start(HubConfig {
        cors_origins: vec!["https://app.example.com".into()],
        ..HubConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/negotiate", hub.url()))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, x-requested-with, x-signalr-user-agent",
            )
            .send()
    };
    let allowed = preflight("https://app.example.com").await.unwrap();
    assert!(allowed.status().is_success());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    let allow_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for wanted in ["authorization", "x-requested-with", "x-signalr-user-agent"] {
        assert!(allow_headers.contains(wanted), "{allow_headers}");
    }
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let negotiated = http
        .post(format!("{}/negotiate?negotiateVersion=1", hub.url()))
        .header("Origin", "https://app.example.com")
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        negotiated.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let unauthorized = http
        .post(format!("{}/negotiate", hub.url()))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        unauthorized.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    hub.stop().await;
}

#[tokio::test]
async fn unknown_protocols_and_garbage_handshakes_are_refused_with_an_error() {
    let hub = TestHub::start(HubConfig::default()).await;
    for (request, expected) in [
        (
            format!(r#"{{"protocol":"blueprint","version":1}}{RS}"#),
            "'blueprint' is not supported",
        ),
        (format!("hello{RS}"), "malformed"),
        (
            format!(r#"{{"protocol":"json","version":3}}{RS}"#),
            "version 3",
        ),
    ] {
        let mut socket = open(&hub, "alice").await;
        send(&mut socket, &request).await;
        let reply = next_records(&mut socket).await;
        let error = reply[0]["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(expected), "{request:?} -> {reply:?}");
        assert!(
            next_records(&mut socket).await.is_empty(),
            "socket stays open"
        );
    }
    assert!(hub.backend.calls().is_empty(), "{:?}", hub.backend.calls());
    hub.stop().await;
}

#[tokio::test]
async fn a_missing_handshake_times_out_with_an_error() {
    let hub = TestHub::start(HubConfig {
        handshake_timeout_ms: 300,
        ..HubConfig::default()
    })
    .await;
    let mut socket = open(&hub, "alice").await;
    let reply = next_records(&mut socket).await;
    assert!(
        reply[0]["error"]
            .as_str()
            .unwrap()
            .contains("not received in time"),
        "{reply:?}"
    );
    assert!(next_records(&mut socket).await.is_empty());
    assert!(hub.backend.calls().is_empty());
    hub.stop().await;
}

#[tokio::test]
async fn a_connection_the_backend_refuses_gets_a_handshake_error() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut socket = open(&hub, "refused").await;
    send(
        &mut socket,
        &format!(r#"{{"protocol":"json","version":1}}{RS}"#),
    )
    .await;
    let reply = next_records(&mut socket).await;
    assert_eq!(reply, vec![json!({"error": "this user may not connect"})]);
    assert!(next_records(&mut socket).await.is_empty());
    hub.eventually("the connection forgotten", |h| {
        h.hub.open_connections() == 0
    })
    .await;
    assert!(hub.backend.calls().is_empty(), "{:?}", hub.backend.calls());
    hub.stop().await;
}

#[tokio::test]
async fn long_polling_by_hand_activates_delivers_and_ends_with_delete() {
    let hub = TestHub::start(HubConfig {
        client_timeout_ms: 500,
        long_poll_timeout_ms: 1_500,
        keep_alive_interval_ms: 60_000,
        ..HubConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let v1: Value = http
        .post(format!("{}/negotiate?negotiateVersion=1", hub.url()))
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!(
        "{}?id={}",
        hub.url(),
        v1["connectionToken"].as_str().unwrap()
    );
    let get = || http.get(&url).bearer_auth(token("alice")).send();
    // The first poll answers at once, empty.
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.text().await.unwrap().is_empty());
    let posted = http
        .post(&url)
        .bearer_auth(token("alice"))
        .body(format!(r#"{{"protocol":"json","version":1}}{RS}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(
        get().await.unwrap().text().await.unwrap(),
        format!("{{}}{RS}")
    );
    // A poll that waits longer than the client timeout keeps the connection alive.
    let idle = get().await.unwrap();
    assert_eq!(idle.status(), 200);
    assert!(idle.text().await.unwrap().is_empty());
    assert_eq!(hub.hub.open_connections(), 1);
    hub.publish("alice", &typing("r1", "carol"));
    let body = get().await.unwrap().text().await.unwrap();
    let record: Value = serde_json::from_str(body.strip_suffix(RS).unwrap()).unwrap();
    assert_eq!(record["type"], 1);
    assert_eq!(record["arguments"][0]["username"], "carol");
    let deleted = http
        .delete(&url)
        .bearer_auth(token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 202);
    hub.eventually("the backend told of the close", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    hub.eventually("the connection forgotten", |h| {
        h.hub.open_connections() == 0
    })
    .await;
    assert_eq!(get().await.unwrap().status(), 404);
    hub.stop().await;
}

#[tokio::test]
async fn coalesced_invocations_each_get_exactly_one_completion() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut socket = connect(&hub, "alice").await;
    // One WebSocket message with many records, as the JS client sends when it coalesces.
    let records = [
        r#"{"type":1,"invocationId":"1","target":"SendMessage","arguments":["r1","a"]}"#,
        r#"{"type":1,"target":"Typing","arguments":["r1",true]}"#,
        r#"{"type":1,"invocationId":"2","target":"nope","arguments":[]}"#,
        r#"{"type":4,"invocationId":"3","target":"SendMessage","arguments":["r1","b"]}"#,
        r#"{"type":5,"invocationId":"4"}"#,
        r#"{"type":1,"invocationId":"5","target":"MarkRead","arguments":["r1"],"streamIds":["s"]}"#,
        r#"{"type":1,"invocationId":"6","target":"MarkRead"}"#,
        r#"{"type":1,"invocationId":"7","target":"markread","arguments":["r1"]}"#,
        r#"{"type":6}"#,
        r#"{"type":99}"#,
        r#"{"type":1,"target":"Nope","arguments":[]}"#,
    ];
    let batch: String = records.iter().map(|r| format!("{r}{RS}")).collect();
    send(&mut socket, &batch).await;
    let mut completions = std::collections::BTreeMap::new();
    while completions.len() < 7 {
        for record in next_records(&mut socket).await {
            if record["type"] == 3 {
                let id = record["invocationId"].as_str().unwrap().to_owned();
                assert!(
                    completions.insert(id, record.clone()).is_none(),
                    "second completion {record}"
                );
            }
        }
    }
    assert_eq!(completions["1"]["result"]["text"], "a");
    assert!(completions["1"].get("error").is_none());
    for id in ["2", "3", "4", "5", "6"] {
        assert!(
            completions[id]["error"].as_str().is_some(),
            "{id}: {}",
            completions[id]
        );
        assert!(completions[id].get("result").is_none());
    }
    assert_eq!(completions["7"], json!({"type": 3, "invocationId": "7"}));
    // Nothing more is owed: a ping round trip shows no stray completion follows.
    send(
        &mut socket,
        &format!(r#"{{"type":1,"invocationId":"8","target":"MarkRead","arguments":["r2"]}}{RS}"#),
    )
    .await;
    let next = next_records(&mut socket).await;
    assert_eq!(next, vec![json!({"type": 3, "invocationId": "8"})]);
    assert_eq!(hub.backend.count("typing:alice:r1:true"), 1);
    assert_eq!(hub.backend.count("read:alice:r1"), 1);

    // Garbage after the handshake closes the connection with an error, never a crash.
    send(&mut socket, &format!("{{not json{RS}")).await;
    let close = until_close(&mut socket).await;
    assert!(
        close["error"].as_str().unwrap().contains("malformed"),
        "{close}"
    );
    assert!(close.get("allowReconnect").is_none());
    hub.eventually("the backend told of the close", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;
    hub.stop().await;
}

#[tokio::test]
async fn an_oversize_message_closes_the_connection_with_an_error() {
    let hub = TestHub::start(HubConfig {
        max_message_size: 1024,
        ..HubConfig::default()
    })
    .await;
    // Over the record limit, under the WebSocket message limit.
    let mut socket = connect(&hub, "alice").await;
    let big = format!(
        r#"{{"type":1,"target":"SendMessage","arguments":["r1","{}"]}}{RS}"#,
        "x".repeat(4096)
    );
    send(&mut socket, &big).await;
    let close = until_close(&mut socket).await;
    assert!(
        close["error"]
            .as_str()
            .unwrap()
            .contains("maximum size of 1024"),
        "{close}"
    );
    // Over the WebSocket message limit too.
    let mut socket = connect(&hub, "alice").await;
    send(&mut socket, &"y".repeat(1024 * 1024)).await;
    let close = until_close(&mut socket).await;
    assert!(
        close["error"].as_str().unwrap().contains("maximum size"),
        "{close}"
    );
    hub.eventually("both closed", |h| h.backend.count("closed:alice") == 2)
        .await;
    hub.stop().await;
}

#[tokio::test]
async fn a_connection_that_gets_messages_gets_no_keep_alive_pings() {
    let hub = TestHub::start(HubConfig {
        keep_alive_interval_ms: 400,
        ..HubConfig::default()
    })
    .await;
    let mut socket = connect(&hub, "alice").await;
    let mut kinds = Vec::new();
    for n in 0..12 {
        hub.publish("alice", &typing("r1", &format!("u{n}")));
        for record in next_records(&mut socket).await {
            kinds.push(record["type"].clone());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kinds.iter().all(|kind| *kind == 1), "{kinds:?}");
    // Once they stop, the pings come back.
    assert_eq!(next_records(&mut socket).await, vec![json!({"type": 6})]);
    hub.stop().await;
}

#[tokio::test]
async fn idle_connections_get_pings_and_silent_clients_time_out() {
    let hub = TestHub::start(HubConfig {
        keep_alive_interval_ms: 200,
        client_timeout_ms: 1_000,
        ..HubConfig::default()
    })
    .await;
    let mut socket = connect(&hub, "alice").await;
    let started = tokio::time::Instant::now();
    assert_eq!(next_records(&mut socket).await, vec![json!({"type": 6})]);
    assert!(started.elapsed() < Duration::from_millis(800));
    // We never send anything: the server gives up after the client timeout.
    loop {
        let records = next_records(&mut socket).await;
        if records.is_empty() {
            break;
        }
        assert!(records.iter().all(|r| r["type"] == 6), "{records:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    hub.eventually("the backend told of the close", |h| {
        h.backend.count("closed:alice") == 1
    })
    .await;

    // A client that pings stays.
    let mut socket = connect(&hub, "alice").await;
    for _ in 0..8 {
        send(&mut socket, &format!(r#"{{"type":6}}{RS}"#)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(hub.hub.open_connections(), 1);
    hub.stop().await;
}

#[tokio::test]
async fn a_connection_whose_queue_overflows_is_closed_saying_so() {
    let hub = TestHub::start(HubConfig {
        outbound_buffer: 2,
        ..HubConfig::default()
    })
    .await;
    let mut socket = connect(&hub, "alice").await;
    hub.eventually("the connection", |h| h.hub.open_connections() == 1)
        .await;
    // Sending does not wait for anyone, so a burst overflows a queue of 2.
    for n in 0..5_000 {
        hub.publish("alice", &typing("r1", &format!("u{n}")));
    }
    let close = until_close(&mut socket).await;
    assert!(
        close["error"].as_str().unwrap().contains("lagged"),
        "{close}"
    );
    assert_eq!(close["allowReconnect"], true);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_while_its_buffer_is_full_is_not_mistaken_for_a_slow_one() {
    let hub = TestHub::start(HubConfig {
        // Room for the 200 events; the client's records pile up behind them.
        outbound_buffer: 256,
        max_pending_invocations: 2,
        slow_client_timeout_ms: 1_000,
        ..HubConfig::default()
    })
    .await;
    let mut socket = connect(&hub, "alice").await;
    hub.eventually("the connection", |h| h.hub.open_connections() == 1)
        .await;
    // Many events and many client messages at once, and the client reads only later: the
    // hub must keep writing while it holds off reading.
    for n in 0..200 {
        hub.publish("alice", &typing("r1", &format!("u{n}")));
    }
    for n in 0..100 {
        send(
            &mut socket,
            &format!(r#"{{"type":1,"target":"Typing","arguments":["r{n}",true]}}{RS}"#),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut events = 0;
    while events < 200 {
        let records = next_records(&mut socket).await;
        assert!(!records.is_empty(), "closed after {events} events");
        events += records.iter().filter(|r| r["type"] == 1).count();
    }
    hub.eventually("every client call ran", |h| {
        h.backend
            .calls()
            .iter()
            .filter(|c| c.starts_with("typing:"))
            .count()
            == 100
    })
    .await;
    assert_eq!(hub.backend.count("closed:alice"), 0);
    hub.stop().await;
}

fn cut_off_count() -> f64 {
    metric(r#"imgate_hub_connections_closed_total{reason="slow_client"}"#)
        + metric(r#"imgate_hub_connections_closed_total{reason="lagged"}"#)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_with_bounded_memory() {
    let hub = TestHub::start(HubConfig {
        // Room for bob to fall behind a little on a busy machine without being cut off;
        // alice's queue holds the same shared frames, not copies.
        outbound_buffer: 1_024,
        slow_client_timeout_ms: 1_000,
        ..HubConfig::default()
    })
    .await;
    let cut_before = cut_off_count();
    let socket = connect(&hub, "alice").await;
    // Keep alice's socket open but never read from it again.
    let (_write, _read) = socket.split();
    // Bob gets the same traffic and reads it all.
    let mut reader = connect(&hub, "bob").await;
    hub.eventually("both connections", |h| h.hub.open_connections() == 2)
        .await;
    let bob_received = tokio::spawn(async move {
        let mut count = 0usize;
        loop {
            let records = next_records(&mut reader).await;
            if records.is_empty() {
                return (count, reader);
            }
            for record in records {
                if record["arguments"][0]["username"] == "last" {
                    // Hand the socket back: dropping it would close bob's connection.
                    return (count, reader);
                }
                count += usize::from(record["type"] == 1);
            }
        }
    });
    let before = resident_bytes();
    let padding = "p".repeat(8 * 1024);
    let mut published = 0usize;
    let deadline = tokio::time::Instant::now() + WAIT;
    // 8 KiB events at a pace a reading client keeps up with, until the hub gives up on
    // alice; holding them all for her would take unbounded memory.
    while hub.backend.count("closed:alice") == 0 || published < 1_500 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice was never cut off"
        );
        for _ in 0..2 {
            let event = typing("r1", &padding);
            hub.publish("alice", &event);
            hub.publish("bob", &event);
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    hub.publish("bob", &typing("r1", "last"));
    let grown = resident_bytes().saturating_sub(before);
    eprintln!("published {published} events of 8 KiB; resident memory grew {grown} bytes");
    assert!(
        grown < 64 * 1024 * 1024,
        "memory grew by {grown} bytes after {published} events"
    );
    // Whichever comes first: the stall timer or her queue overflowing.
    assert!(
        cut_off_count() > cut_before,
        "{}",
        crate::support::metrics().render()
    );
    let (received, _bob) = tokio::time::timeout(WAIT, bob_received)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received, published, "bob, who reads, gets everything");
    assert_eq!(hub.backend.count("closed:bob"), 0);
    hub.eventually("alice's connection removed", |h| {
        h.hub.open_connections() == 1
    })
    .await;
    hub.stop().await;
}

/// A thousand connections of one user against a limit of five: five get in, every other one
/// is told why; a closed connection makes room again.
#[tokio::test]
async fn connections_beyond_the_per_user_limit_are_refused_with_a_clear_code() {
    let hub = TestHub::start(HubConfig {
        max_connections_per_user: 5,
        ..HubConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let negotiate = |user: &'static str| {
        http.post(format!("{}/negotiate?negotiateVersion=1", hub.url()))
            .bearer_auth(token(user))
            .send()
    };
    let answers = futures::future::join_all((0..1000).map(|_| negotiate("alice"))).await;
    let mut accepted = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            200 => accepted.push(answer.json::<Value>().await.unwrap()),
            429 => {
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"], "too_many_connections", "{body}");
                assert!(
                    body["message"].as_str().unwrap().contains('5'),
                    "the message names the limit: {body}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(accepted.len(), 5);
    // Another user is not affected.
    assert_eq!(negotiate("bob").await.unwrap().status(), 200);
    // A skipNegotiation socket is refused the same way, before the upgrade.
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/hub?access_token={}",
        hub.addr,
        token("alice")
    ))
    .await
    .unwrap_err();
    assert!(refused.to_string().contains("429"), "{refused}");

    // Closing one makes room for one.
    let id = accepted[0]["connectionToken"].as_str().unwrap();
    let url = transport_url(&hub, id, "alice");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut socket).await;
    send(&mut socket, &format!(r#"{{"type":7}}{RS}"#)).await;
    hub.eventually("the connection gone", |h| h.hub.open_connections() == 0)
        .await;
    assert_eq!(negotiate("alice").await.unwrap().status(), 200);
    assert_eq!(negotiate("alice").await.unwrap().status(), 429);
    hub.stop().await;
}

#[tokio::test]
async fn the_node_wide_limit_refuses_any_user() {
    let hub = TestHub::start(HubConfig {
        max_connections: 2,
        ..HubConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    for (user, status) in [("alice", 200), ("bob", 200), ("carol", 429)] {
        let answer = http
            .post(format!("{}/negotiate?negotiateVersion=1", hub.url()))
            .bearer_auth(token(user))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{user}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn a_connection_is_closed_when_its_token_expires_and_may_reconnect() {
    let hub = TestHub::start(HubConfig::default()).await;
    let short = imgate_http::auth::mint_hs256(
        crate::support::SECRET,
        "sub",
        "alice",
        Duration::from_secs(2),
    );
    let url = format!("ws://{}/hub?access_token={short}", hub.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut socket).await;
    let close = until_close(&mut socket).await;
    assert_eq!(close["allowReconnect"], true, "{close}");
    assert!(
        close["error"].as_str().unwrap().contains("token expired"),
        "{close}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn a_deleted_user_is_disconnected_for_good() {
    let hub = TestHub::start(HubConfig::default()).await;
    let mut socket = connect(&hub, "alice").await;
    let mut bob = connect(&hub, "bob").await;
    hub.publish("alice", &imgate_domain::UserEvent::AccountDeleted);
    let close = until_close(&mut socket).await;
    assert!(
        close.get("allowReconnect").is_none() || close["allowReconnect"] == false,
        "{close}"
    );
    assert!(
        close["error"].as_str().unwrap().contains("deleted"),
        "{close}"
    );
    // Bob's connection is untouched.
    hub.publish("bob", &typing("r1", "carol"));
    let records = next_records(&mut bob).await;
    assert_eq!(records[0]["target"], "typing", "{records:?}");
    hub.stop().await;
}

#[tokio::test]
async fn two_nodes_on_one_backplane_deliver_each_message_once_everywhere_and_close_a_user_everywhere(
) {
    let bus = imgate_memory::MemoryBus::new();
    let a = TestHub::start_on(HubConfig::default(), bus.node("a")).await;
    let b = TestHub::start_on(HubConfig::default(), bus.node("b")).await;
    let mut alice_a = connect(&a, "alice").await;
    let mut alice_b = connect(&b, "alice").await;
    let mut bob_b = connect(&b, "bob").await;
    for (hub, users) in [(&a, &["alice"][..]), (&b, &["alice", "bob"][..])] {
        for user in users {
            let line = format!("online:{user}");
            hub.eventually("the user online on the node", |h| {
                h.backend.count(&line) == 1
            })
            .await;
        }
    }

    // Node a holds alice's upstream: its connection gets the message straight away, node b's
    // through the backplane; node b asks its backend whether the message is new there.
    let room = RoomId::parse("r1").unwrap();
    let sender = UserId::parse("bob").unwrap();
    a.publish(
        "alice",
        &UserEvent::RoomMessage {
            message: Box::new(message(&room, &sender, "hello")),
        },
    );
    a.publish("alice", &typing("r1", "carol"));
    for socket in [&mut alice_a, &mut alice_b] {
        let first = next_records(socket).await;
        assert_eq!(
            first[0]["target"], "getRoomMessageNotification",
            "{first:?}"
        );
        assert_eq!(first[0]["arguments"][0]["text"], "hello");
        let mut second = first[1..].to_vec();
        if second.is_empty() {
            second = next_records(socket).await;
        }
        assert_eq!(second[0]["target"], "typing", "{second:?}");
    }
    assert_eq!(b.backend.count("first_delivery:alice:m-hello"), 1);
    assert_eq!(
        a.backend.count("first_delivery:alice:m-hello"),
        0,
        "no echo on a"
    );

    // To everyone: bob, who is only on node b, gets it too.
    let frames = imgate_signalr::Frames::of_event(&typing("r9", "everyone")).unwrap();
    a.hub.manager().send_all(&frames);
    for socket in [&mut alice_a, &mut alice_b, &mut bob_b] {
        let records = next_records(socket).await;
        assert_eq!(records[0]["arguments"][0]["roomId"], "r9", "{records:?}");
    }

    // A host's invocation for alice, sent on node a, reaches both her connections, and each
    // node counts what it handed over; one to everyone reaches all three.
    use imgate_domain::ports::{Audience, HostChannel, HostInvocation};
    let deliveries = || metric("imgate_host_push_deliveries_total");
    let before = deliveries();
    let invocation = |text: &str| HostInvocation {
        target: "notify".into(),
        arguments: serde_json::value::RawValue::from_string(format!("[\"{text}\"]")).unwrap(),
    };
    let alice = Audience::User(UserId::parse("alice").unwrap());
    a.hub
        .manager()
        .send(&alice, &invocation("yours"))
        .await
        .unwrap();
    a.hub
        .manager()
        .send(&Audience::All, &invocation("all"))
        .await
        .unwrap();
    for (socket, expected) in [
        (&mut alice_a, &["yours", "all"][..]),
        (&mut alice_b, &["yours", "all"][..]),
        (&mut bob_b, &["all"][..]),
    ] {
        let mut got = Vec::new();
        while got.len() < expected.len() {
            for record in next_records(socket).await {
                assert_eq!(record["target"], "notify", "{record}");
                got.push(record["arguments"][0].as_str().unwrap().to_owned());
            }
        }
        assert_eq!(got, expected);
    }
    // Counted right after handing over, so a moment after the records can arrive.
    let deadline = tokio::time::Instant::now() + WAIT;
    while deliveries() - before < 5.0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(deliveries() - before, 5.0);

    // Closing alice's connections on node a closes them on node b too, for good.
    a.hub
        .manager()
        .close_user(&UserId::parse("alice").unwrap(), "access revoked")
        .unwrap();
    for socket in [&mut alice_a, &mut alice_b] {
        let close = until_close(socket).await;
        assert_eq!(close["error"], "access revoked", "{close}");
        assert!(close.get("allowReconnect").is_none() || close["allowReconnect"] == false);
    }
    for hub in [&a, &b] {
        hub.eventually("alice offline", |h| h.backend.count("offline:alice") == 1)
            .await;
    }
    b.publish("bob", &typing("r1", "still here"));
    let records = next_records(&mut bob_b).await;
    assert_eq!(records[0]["arguments"][0]["username"], "still here");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn negotiate_hands_out_ids_routed_to_the_node_holding_the_users_upstream() {
    let hub = TestHub::start(HubConfig {
        route: "a".into(),
        ..HubConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let negotiate = |version: u8| {
        let request = http
            .post(format!(
                "{}/negotiate?negotiateVersion={version}",
                hub.url()
            ))
            .bearer_auth(token("alice"));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let routed_to = |answer: &Value, field: &str, route: &str| {
        let id = answer[field].as_str().unwrap_or_default();
        assert!(id.starts_with(&format!("{route}.")), "{answer}");
    };
    // Nobody holds alice's upstream yet: the connection is made here, with this node's route.
    routed_to(&negotiate(1).await, "connectionToken", "a");
    // Node b holds it: ids for node b, in both negotiate versions.
    *hub.backend.upstream_node.lock().unwrap() = Some("b@host-1234".into());
    let routed = negotiate(1).await;
    routed_to(&routed, "connectionToken", "b");
    routed_to(&negotiate(0).await, "connectionId", "b");
    // This node holds it: here again.
    *hub.backend.upstream_node.lock().unwrap() = Some("a@host-5678".into());
    routed_to(&negotiate(1).await, "connectionToken", "a");
    // An id routed elsewhere that reaches this node anyway (that node died) is served here.
    let id = routed["connectionToken"].as_str().unwrap();
    let url = transport_url(&hub, id, "alice");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    handshake(&mut socket).await;
    hub.publish("alice", &typing("r1", "carol"));
    assert_eq!(next_records(&mut socket).await[0]["target"], "typing");
    hub.stop().await;
}
