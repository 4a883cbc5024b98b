//! The MessagePack hub protocol by hand: binary records over WebSockets and Long Polling, the
//! same events as JSON connections of the same user get, and what malformed input costs.

use futures::{SinkExt, StreamExt};
use imgate_domain::ports::{Audience, HostChannel, HostInvocation};
use imgate_domain::UserId;
use imgate_signalr::HubConfig;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{token, typing, TestHub, WAIT};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKE: &str = "{\"protocol\":\"messagepack\",\"version\":1}\u{1e}";

/// A value as the JSON protocol would carry it, for comparisons with `json!`.
fn to_json(value: rmpv::Value) -> Value {
    match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(flag) => json!(flag),
        rmpv::Value::Integer(n) => n.as_i64().map_or_else(|| json!(n.as_u64()), |n| json!(n)),
        rmpv::Value::F32(f) => json!(f),
        rmpv::Value::F64(f) => json!(f),
        rmpv::Value::String(text) => json!(text.into_str().expect("UTF-8")),
        rmpv::Value::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        rmpv::Value::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        other => panic!("the hub wrote {other}, which JSON cannot carry"),
    }
}

/// The records of a binary body: each a VarInt length, then one MessagePack array.
fn records(mut bytes: &[u8]) -> Vec<Value> {
    let mut records = Vec::new();
    while !bytes.is_empty() {
        let (mut length, mut shift, mut prefix) = (0usize, 0, 0);
        loop {
            let byte = bytes[prefix];
            length |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            prefix += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let mut body = &bytes[prefix..prefix + length];
        records.push(to_json(rmpv::decode::read_value(&mut body).unwrap()));
        assert!(body.is_empty(), "one value per record");
        bytes = &bytes[prefix + length..];
    }
    records
}

/// `body` framed as a client frames it.
fn framed(body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 128, "a one-byte length is enough here");
    let mut record = vec![u8::try_from(body.len()).unwrap()];
    record.extend_from_slice(body);
    record
}

/// An invocation record `[1, {}, id, target, arguments]`.
fn invocation(id: &str, target: &str, arguments: Value) -> Vec<u8> {
    let mut body = Vec::new();
    rmp::encode::write_array_len(&mut body, 5).unwrap();
    rmp::encode::write_uint(&mut body, 1).unwrap();
    rmp::encode::write_map_len(&mut body, 0).unwrap();
    rmp::encode::write_str(&mut body, id).unwrap();
    rmp::encode::write_str(&mut body, target).unwrap();
    rmp_serde::encode::write(&mut body, &arguments).unwrap();
    framed(&body)
}

/// Opens a skipNegotiation socket and completes a MessagePack handshake: the answer is the
/// JSON `{}` record, in a binary message.
async fn connect(hub: &TestHub, user: &str) -> Socket {
    let url = format!("ws://{}/hub?access_token={}", hub.addr, token(user));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket.send(WsMessage::text(HANDSHAKE)).await.unwrap();
    assert_eq!(next_binary(&mut socket).await, b"{}\x1e");
    socket
}

/// The next binary message; empty when the socket closed.
async fn next_binary(socket: &mut Socket) -> Vec<u8> {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a message");
        match message {
            Some(Ok(WsMessage::Binary(bytes))) => return bytes.to_vec(),
            Some(Ok(WsMessage::Text(text))) => panic!("text on a MessagePack connection: {text}"),
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return Vec::new(),
            Some(Ok(_)) => continue,
        }
    }
}

/// The records of the next binary message.
async fn next_records(socket: &mut Socket) -> Vec<Value> {
    records(&next_binary(socket).await)
}

#[tokio::test]
async fn messagepack_connections_get_events_completions_and_pushes_as_json_ones_do() {
    let bus = imgate_memory::MemoryBus::new();
    let a = TestHub::start_on(HubConfig::default(), bus.node("a")).await;
    let b = TestHub::start_on(HubConfig::default(), bus.node("b")).await;
    let mut packed = connect(&a, "alice").await;
    let mut packed_b = connect(&b, "alice").await;
    let url = format!("ws://{}/hub?access_token={}", a.addr, token("alice"));
    let (mut text, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    text.send(WsMessage::text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}",
    ))
    .await
    .unwrap();
    assert!(matches!(text.next().await, Some(Ok(WsMessage::Text(t))) if t.as_str() == "{}\u{1e}"));
    for hub in [&a, &b] {
        hub.eventually("alice online", |h| h.backend.count("online:alice") == 1)
            .await;
    }

    // An event: the same values in both protocols, on both nodes.
    a.publish("alice", &typing("r1", "carol"));
    let expected =
        json!([1, {}, null, "typing", [{"roomId": "r1", "username": "carol", "typing": true}]]);
    assert_eq!(
        next_records(&mut packed).await,
        std::slice::from_ref(&expected)
    );
    let Some(Ok(WsMessage::Text(record))) = text.next().await else {
        panic!("no JSON record");
    };
    let record: Value = serde_json::from_str(record.trim_end_matches('\u{1e}')).unwrap();
    assert_eq!(
        json!([1, {}, null, record["target"], record["arguments"]]),
        expected
    );

    // A host's invocation sent on node a: node b makes its MessagePack record from the JSON
    // one that crossed the backplane.
    let arguments = r#"[{"orderId":7,"total":-1.5,"at":"2026-12-05T09:00:00Z"},null,["x"]]"#;
    a.hub
        .manager()
        .send(
            &Audience::User(UserId::parse("alice").unwrap()),
            &HostInvocation {
                target: "orderShipped".into(),
                arguments: serde_json::value::RawValue::from_string(arguments.into()).unwrap(),
            },
        )
        .await
        .unwrap();
    let pushed = json!([
        1,
        {},
        null,
        "orderShipped",
        serde_json::from_str::<Value>(arguments).unwrap()
    ]);
    assert_eq!(
        next_records(&mut packed).await,
        std::slice::from_ref(&pushed)
    );
    let mut on_b = Vec::new();
    while on_b.len() < 2 {
        on_b.extend(next_records(&mut packed_b).await);
    }
    assert_eq!(on_b, [expected, pushed]);

    // Invocations: void, with a result, refused; each gets exactly one completion.
    let mut batch = invocation("1", "MarkRead", json!(["r1"]));
    batch.extend(invocation("2", "SendMessage", json!(["r1", "hi"])));
    batch.extend(invocation("3", "Nope", json!([])));
    packed.send(WsMessage::binary(batch)).await.unwrap();
    let mut completions = Vec::new();
    while completions.len() < 3 {
        completions.extend(next_records(&mut packed).await);
    }
    // A refusal needs no backend call, so it may come first.
    completions.sort_by_key(|completion| completion[2].as_str().unwrap().to_owned());
    assert_eq!(completions[0], json!([3, {}, "1", 2]));
    assert_eq!(
        completions[1].as_array().unwrap()[..4],
        [json!(3), json!({}), json!("2"), json!(3)]
    );
    assert_eq!(completions[1][4]["text"], "hi");
    assert_eq!(completions[1][4]["createdAt"], "2023-11-14T22:13:20Z");
    assert_eq!(completions[2][3], 1);
    assert!(
        completions[2][4]
            .as_str()
            .unwrap()
            .contains("Unknown hub method 'Nope'"),
        "{completions:?}"
    );
    for hub in [a, b] {
        hub.stop().await;
    }
}

#[tokio::test]
async fn malformed_or_oversized_messagepack_gets_a_close_with_the_reason() {
    let hub = TestHub::start(HubConfig {
        max_message_size: 1024,
        ..HubConfig::default()
    })
    .await;
    for (input, expected) in [
        (framed(&[0xc1]), "malformed message"),
        (framed(&[0xa1, b'x']), "expected a MessagePack array"),
        (vec![0xff; 6], "length prefix"),
        // The prefix announces 2 MiB: refused before any of it arrives.
        (vec![0x80, 0x80, 0x80, 0x01], "maximum size of 1024"),
    ] {
        let mut socket = connect(&hub, "alice").await;
        socket.send(WsMessage::binary(input)).await.unwrap();
        let close = next_records(&mut socket).await;
        assert_eq!(close.len(), 1, "{close:?}");
        assert_eq!(close[0][0], 7, "{close:?}");
        assert!(
            close[0][1].as_str().unwrap().contains(expected),
            "{expected}: {close:?}"
        );
        assert_eq!(close[0][2], false);
        assert!(next_binary(&mut socket).await.is_empty(), "then it closes");
    }
    // Arguments JSON cannot carry are refused to the caller, and the connection lives on.
    let mut socket = connect(&hub, "alice").await;
    let mut body = Vec::new();
    rmp::encode::write_array_len(&mut body, 5).unwrap();
    rmp::encode::write_uint(&mut body, 1).unwrap();
    rmp::encode::write_map_len(&mut body, 0).unwrap();
    rmp::encode::write_str(&mut body, "9").unwrap();
    rmp::encode::write_str(&mut body, "SendMessage").unwrap();
    body.extend([0x92, 0xa2, b'r', b'1', 0xc4, 0x01, 0x00]);
    socket.send(WsMessage::binary(framed(&body))).await.unwrap();
    let refused = next_records(&mut socket).await;
    assert_eq!(
        refused[0].as_array().unwrap()[..4],
        [json!(3), json!({}), json!("9"), json!(1)]
    );
    assert!(
        refused[0][4].as_str().unwrap().contains("binary"),
        "{refused:?}"
    );
    socket
        .send(WsMessage::binary(invocation(
            "10",
            "MarkRead",
            json!(["r1"]),
        )))
        .await
        .unwrap();
    assert_eq!(next_records(&mut socket).await, [json!([3, {}, "10", 2])]);
    hub.stop().await;
}

#[tokio::test]
async fn long_polling_carries_messagepack_and_server_sent_events_refuse_it() {
    let hub = TestHub::start(HubConfig::default()).await;
    let http = reqwest::Client::new();
    let negotiate = || async {
        let v1: Value = http
            .post(format!("{}/negotiate?negotiateVersion=1", hub.url()))
            .bearer_auth(token("alice"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        format!(
            "{}?id={}",
            hub.url(),
            v1["connectionToken"].as_str().unwrap()
        )
    };
    let post = |url: String, body: Vec<u8>| {
        http.post(url)
            .bearer_auth(token("alice"))
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };

    let url = negotiate().await;
    let get = || http.get(&url).bearer_auth(token("alice")).send();
    assert_eq!(get().await.unwrap().status(), 200, "activated");
    assert_eq!(
        post(url.clone(), HANDSHAKE.into()).await.unwrap().status(),
        200
    );
    let answer = get().await.unwrap();
    assert_eq!(answer.headers()["content-type"], "application/octet-stream");
    assert_eq!(&answer.bytes().await.unwrap()[..], b"{}\x1e");
    let sent = post(
        url.clone(),
        invocation("1", "SendMessage", json!(["r1", "by poll"])),
    );
    assert_eq!(sent.await.unwrap().status(), 200);
    let completion = records(&get().await.unwrap().bytes().await.unwrap());
    assert_eq!(completion[0][4]["text"], "by poll", "{completion:?}");

    // SSE carries text only: the handshake says why, in JSON.
    let url = negotiate().await;
    let mut stream = http
        .get(&url)
        .bearer_auth(token("alice"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    assert_eq!(
        post(url.clone(), HANDSHAKE.into()).await.unwrap().status(),
        200
    );
    let mut events = String::new();
    while !events.contains("error") {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an SSE event")
            .expect("the stream open")
            .unwrap();
        events.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        events.contains("needs a transport that carries binary data"),
        "{events}"
    );
    hub.stop().await;
}
