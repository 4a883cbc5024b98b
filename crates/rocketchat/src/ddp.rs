//! A DDP client over tokio-tungstenite (wire reference §5): connect, log in by resume token,
//! call methods, answer pings. Frames without a known `msg` are ignored, as the reference asks.
//!
//! A frame is read into an [`Envelope`] that borrows from its text and leaves the stream
//! event's `args` unparsed, so the session decides what to decode, and how, once it knows the
//! event. Only the rare frames (pings, method results) go through a `Value`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imgate_domain::ports::ProviderError;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::documents::{Lenient, List, Text};
use crate::telemetry;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of a DDP socket. Each online user holds one socket, and tungstenite's default
/// of 128 KiB per socket made these buffers most of the gateway's memory (22 MiB of 50 with
/// 175 users online, in the soak). tungstenite zero-fills the whole buffer before each read,
/// so all of it is resident; a DDP frame is mostly under 2 KiB and a larger one grows it.
const READ_BUFFER: usize = 4 * 1024;

/// One DDP session.
pub(crate) struct Ddp {
    socket: Socket,
    next_id: u64,
    timeout: Duration,
}

fn unavailable(what: &str, err: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("realtime {what}: {err}"))
}

/// The top level of a server frame. Every field is lenient (see `documents`), so any JSON
/// object reads as an envelope and unknown frames reach the session to be ignored there.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow)]
    pub msg: Text<'a>,
    /// Kept as written: a ping's id is echoed back whatever its type.
    #[serde(borrow)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow)]
    pub collection: Text<'a>,
    /// The subscriptions a `ready` reports.
    #[serde(borrow)]
    pub subs: List<Text<'a>>,
    #[serde(borrow)]
    pub fields: Lenient<Fields<'a>>,
    #[serde(borrow)]
    pub error: Option<&'a RawValue>,
    #[serde(borrow)]
    pub result: Option<&'a RawValue>,
    /// Why the server refused a frame (`error`).
    #[serde(borrow)]
    pub reason: Text<'a>,
}

/// The `fields` of a stream event (`changed`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Fields<'a> {
    #[serde(rename = "eventName", borrow)]
    pub event_name: Text<'a>,
    /// Left as text: a message's args are decoded once per node, not once per reader.
    #[serde(borrow)]
    pub args: Option<&'a RawValue>,
}

impl Envelope<'_> {
    /// The frame's `id` if it is a string (method results, `nosub`).
    pub(crate) fn id_text(&self) -> Option<String> {
        let id = serde_json::from_str::<Text>(self.id?.get()).ok()?;
        id.get().map(str::to_owned)
    }
}

impl Ddp {
    /// Opens the websocket and completes the DDP `connect` handshake.
    pub(crate) async fn open(url: &str, timeout: Duration) -> Result<Self, ProviderError> {
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), false);
        let (socket, _) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| unavailable("connect", "timed out"))?
            .map_err(|e| unavailable("connect", e))?;
        let mut ddp = Self {
            socket,
            next_id: 1,
            timeout,
        };
        ddp.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await?;
        loop {
            let text = ddp.next_text().await?;
            let Some(frame) = ddp.envelope(&text).await? else {
                continue;
            };
            match frame.msg.get() {
                Some("connected") => return Ok(ddp),
                Some("failed") => {
                    return Err(ProviderError::BadResponse("DDP version refused".into()))
                }
                _ => continue,
            }
        }
    }

    /// Logs in with a resume token; a rejected token is `SessionExpired`.
    pub(crate) async fn login(&mut self, token: &str) -> Result<Value, ProviderError> {
        self.call("login", json!([{"resume": token}]))
            .await
            .map_err(|err| match err {
                ProviderError::Forbidden(_) => ProviderError::SessionExpired,
                other => other,
            })
    }

    /// Calls a method and waits for its `result`.
    pub(crate) async fn call(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<Value, ProviderError> {
        let id = self.next_id.to_string();
        self.next_id += 1;
        self.send(json!({"msg": "method", "method": method, "id": id, "params": params}))
            .await?;
        loop {
            let text = self.next_text().await?;
            let Some(frame) = self.envelope(&text).await? else {
                continue;
            };
            if let Some(outcome) = method_outcome(&frame, &id, method) {
                return outcome;
            }
        }
    }

    /// Closes the socket politely; errors do not matter any more.
    pub(crate) async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    /// Sends one frame.
    pub(crate) async fn send(&mut self, frame: Value) -> Result<(), ProviderError> {
        tokio::time::timeout(
            self.timeout,
            self.socket.send(Frame::text(frame.to_string())),
        )
        .await
        .map_err(|_| unavailable("send", "timed out"))?
        .map_err(|e| unavailable("send", e))
    }

    /// The next text frame within `wait` (`None` when none came), unread: see [`Self::envelope`].
    pub(crate) async fn recv(
        &mut self,
        wait: Duration,
    ) -> Result<Option<Utf8Bytes>, ProviderError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(unavailable("read", "connection closed")),
                Ok(Some(Err(err))) => return Err(unavailable("read", err)),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Frame::Text(text) = frame {
                return Ok(Some(text));
            }
        }
    }

    /// Reads a text frame: answers a ping, skips what is not a DDP frame, and hands back the
    /// envelope of anything else.
    pub(crate) async fn envelope<'t>(
        &mut self,
        text: &'t str,
    ) -> Result<Option<Envelope<'t>>, ProviderError> {
        match inbound(text) {
            Inbound::NotJson => {
                tracing::debug!("ignoring a DDP frame that is not JSON");
                Ok(None)
            }
            Inbound::Unreadable => {
                telemetry::frame_ignored();
                Ok(None)
            }
            Inbound::Ping { pong } => self.send(pong).await.map(|()| None),
            Inbound::Frame(frame) => Ok(Some(frame)),
        }
    }

    async fn next_text(&mut self) -> Result<Utf8Bytes, ProviderError> {
        self.recv(self.timeout)
            .await?
            .ok_or_else(|| unavailable("read", "timed out"))
    }
}

/// What one text frame from the server asks of the client.
#[derive(Debug)]
pub(crate) enum Inbound<'a> {
    /// Not JSON: ignored, as the reference asks of frames a client does not understand.
    NotJson,
    /// JSON, but no DDP frame (not an object, or a key given twice): ignored and counted.
    Unreadable,
    /// A server ping, answered at once with this pong (it echoes the ping's `id`, if any).
    Ping {
        /// The frame to send back.
        pong: Value,
    },
    /// Anything else, for the session to look at.
    Frame(Envelope<'a>),
}

/// Reads one text frame; kept apart from the socket so garbage frames can be tested.
pub(crate) fn inbound(text: &str) -> Inbound<'_> {
    let frame = match serde_json::from_str::<Lenient<Envelope>>(text) {
        Ok(Lenient(Some(frame))) => frame,
        Ok(Lenient(None)) => return Inbound::Unreadable,
        // Rare: tell garbage from JSON the envelope cannot hold with a second, plain pass.
        Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
            return Inbound::Unreadable
        }
        Err(_) => return Inbound::NotJson,
    };
    if frame.msg.get() == Some("ping") {
        let mut pong = json!({"msg": "pong"});
        if let Some(id) = frame.id {
            // The id was read as JSON already; a number beyond what a `Value` holds is dropped.
            if let Ok(id) = serde_json::from_str::<Value>(id.get()) {
                pong["id"] = id;
            }
        }
        return Inbound::Ping { pong };
    }
    Inbound::Frame(frame)
}

/// The outcome of the call `id` to `method` if `frame` is its `result`, `None` for any other
/// frame (the session keeps waiting).
pub(crate) fn method_outcome(
    frame: &Envelope,
    id: &str,
    method: &str,
) -> Option<Result<Value, ProviderError>> {
    if frame.msg.get() != Some("result") || frame.id_text().as_deref() != Some(id) {
        return None;
    }
    // Results are rare (login, typing), so a `Value` is fine here.
    let value = |raw: &RawValue| serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null);
    let Some(error) = frame.error.map(value) else {
        return Some(Ok(frame.result.map(value).unwrap_or(Value::Null)));
    };
    let reason = error
        .get("reason")
        .or_else(|| error.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("method failed")
        .to_owned();
    Some(Err(match error.get("error") {
        Some(code) if code == 403 || code == "403" => ProviderError::Forbidden(reason),
        Some(code) if code == 404 || code == "404" => ProviderError::NotFound(reason),
        // Rocket.Chat's own method limiter says `error-too-many-requests` with the wait in
        // `details`; Meteor's DDP limiter says `too-many-requests`.
        Some(code) if code == "error-too-many-requests" || code == "too-many-requests" => {
            let wait_ms = error
                .pointer("/details/timeToReset")
                .and_then(Value::as_u64)
                .unwrap_or(1_000);
            ProviderError::RateLimited {
                retry_after: Duration::from_millis(wait_ms.max(1)),
            }
        }
        _ => ProviderError::Invalid {
            field: method.to_owned(),
            message: reason,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong(text: &str) -> Option<Value> {
        match inbound(text) {
            Inbound::Ping { pong } => Some(pong),
            _ => None,
        }
    }

    fn outcome(frame: Value, id: &str, method: &str) -> Option<Result<Value, ProviderError>> {
        let text = frame.to_string();
        match inbound(&text) {
            Inbound::Frame(envelope) => method_outcome(&envelope, id, method),
            other => panic!("{text} read as {other:?}"),
        }
    }

    #[test]
    fn pings_are_answered_and_garbage_ignored() {
        assert_eq!(
            pong(r#"{"msg":"ping","id":"k"}"#),
            Some(json!({"msg": "pong", "id": "k"}))
        );
        assert_eq!(
            pong(r#"{"msg":"ping","id":7}"#),
            Some(json!({"msg": "pong", "id": 7}))
        );
        assert_eq!(pong(r#"{"msg":"ping"}"#), Some(json!({"msg": "pong"})));
        assert!(matches!(inbound("{\"msg\":"), Inbound::NotJson));
        assert!(matches!(inbound("[1, 2]"), Inbound::Unreadable));
        assert!(matches!(
            inbound(r#"{"msg":"ping","msg":"ping"}"#),
            Inbound::Unreadable
        ));
        assert!(matches!(
            inbound(r#"{"server_id":"0"}"#),
            Inbound::Frame(Envelope {
                msg: Text(None),
                ..
            })
        ));
    }

    #[test]
    fn stream_events_keep_their_args_as_text() {
        let text = r#"{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{"eventName":"__my_messages__","args":[{"_id":"m1"}, {"roomType":"c"}]}}"#;
        let Inbound::Frame(frame) = inbound(text) else {
            panic!("not a frame");
        };
        assert_eq!(frame.msg.get(), Some("changed"));
        assert_eq!(frame.collection.get(), Some("stream-room-messages"));
        let fields = frame.fields.0.unwrap();
        assert_eq!(fields.event_name.get(), Some("__my_messages__"));
        assert_eq!(
            fields.args.map(RawValue::get),
            Some(r#"[{"_id":"m1"}, {"roomType":"c"}]"#)
        );
    }

    #[test]
    fn method_results_and_errors_are_told_apart() {
        let result = json!({"msg": "result", "id": "1", "result": {"id": "u1"}});
        assert_eq!(outcome(result.clone(), "2", "login"), None);
        assert_eq!(outcome(result, "1", "login"), Some(Ok(json!({"id": "u1"}))));
        assert_eq!(
            outcome(json!({"msg": "result", "id": "1"}), "1", "m"),
            Some(Ok(Value::Null))
        );
        let refused =
            json!({"msg": "result", "id": "1", "error": {"error": 403, "reason": "logged out"}});
        assert!(matches!(
            outcome(refused, "1", "login"),
            Some(Err(ProviderError::Forbidden(reason))) if reason == "logged out"
        ));
        let odd = json!({"msg": "result", "id": "1", "error": "text"});
        assert!(matches!(
            outcome(odd, "1", "m"),
            Some(Err(ProviderError::Invalid { message, .. })) if message == "method failed"
        ));
        // Rocket.Chat's method limiter, as `RateLimiter.limitMethod` words it.
        let limited = json!({"msg": "result", "id": "1", "error": {
            "error": "error-too-many-requests",
            "reason": "Error, too many requests. Please slow down. You must wait 2 seconds before trying again.",
            "details": {"timeToReset": 1500, "seconds": 2}
        }});
        assert_eq!(
            outcome(limited, "1", "sendMessage"),
            Some(Err(ProviderError::RateLimited {
                retry_after: Duration::from_millis(1500)
            }))
        );
    }
}
