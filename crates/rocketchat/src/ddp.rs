//! A DDP client over tokio-tungstenite (wire reference §5): connect, log in by resume token,
//! call methods, answer pings. Frames without a known `msg` are ignored, as the reference asks.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use imgate_domain::ports::ProviderError;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
            let frame = ddp.next_frame().await?;
            match frame.get("msg").and_then(Value::as_str) {
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
            let frame = self.next_frame().await?;
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

    /// The next JSON frame within `wait` (`None` when none came), answering pings on the way.
    pub(crate) async fn recv(&mut self, wait: Duration) -> Result<Option<Value>, ProviderError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(unavailable("read", "connection closed")),
                Ok(Some(Err(err))) => return Err(unavailable("read", err)),
                Ok(Some(Ok(frame))) => frame,
            };
            let Frame::Text(text) = frame else {
                continue;
            };
            match inbound(&text) {
                Inbound::NotJson => tracing::debug!("ignoring a DDP frame that is not JSON"),
                Inbound::Ping { pong } => self.send(pong).await?,
                Inbound::Frame(value) => return Ok(Some(value)),
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Value, ProviderError> {
        self.recv(self.timeout)
            .await?
            .ok_or_else(|| unavailable("read", "timed out"))
    }
}

/// What one text frame from the server asks of the client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Inbound {
    /// Not JSON: ignored, as the reference asks of frames a client does not understand.
    NotJson,
    /// A server ping, answered at once with this pong (it echoes the ping's `id`, if any).
    Ping {
        /// The frame to send back.
        pong: Value,
    },
    /// Anything else, for the session to look at.
    Frame(Value),
}

/// Reads one text frame; kept apart from the socket so garbage frames can be tested.
pub(crate) fn inbound(text: &str) -> Inbound {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Inbound::NotJson;
    };
    if value.get("msg").and_then(Value::as_str) == Some("ping") {
        let mut pong = json!({"msg": "pong"});
        if let Some(id) = value.get("id") {
            pong["id"] = id.clone();
        }
        return Inbound::Ping { pong };
    }
    Inbound::Frame(value)
}

/// The outcome of the call `id` to `method` if `frame` is its `result`, `None` for any other
/// frame (the session keeps waiting).
pub(crate) fn method_outcome(
    frame: &Value,
    id: &str,
    method: &str,
) -> Option<Result<Value, ProviderError>> {
    if frame.get("msg").and_then(Value::as_str) != Some("result")
        || frame.get("id").and_then(Value::as_str) != Some(id)
    {
        return None;
    }
    let Some(error) = frame.get("error") else {
        return Some(Ok(frame.get("result").cloned().unwrap_or(Value::Null)));
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

    #[test]
    fn pings_are_answered_and_garbage_ignored() {
        assert_eq!(
            inbound(r#"{"msg":"ping","id":"k"}"#),
            Inbound::Ping {
                pong: json!({"msg": "pong", "id": "k"})
            }
        );
        assert_eq!(
            inbound(r#"{"msg":"ping"}"#),
            Inbound::Ping {
                pong: json!({"msg": "pong"})
            }
        );
        assert_eq!(inbound("{\"msg\":"), Inbound::NotJson);
        assert_eq!(
            inbound(r#"{"server_id":"0"}"#),
            Inbound::Frame(json!({"server_id": "0"}))
        );
    }

    #[test]
    fn method_results_and_errors_are_told_apart() {
        let result = json!({"msg": "result", "id": "1", "result": {"id": "u1"}});
        assert_eq!(method_outcome(&result, "2", "login"), None);
        assert_eq!(
            method_outcome(&result, "1", "login"),
            Some(Ok(json!({"id": "u1"})))
        );
        let refused =
            json!({"msg": "result", "id": "1", "error": {"error": 403, "reason": "logged out"}});
        assert!(matches!(
            method_outcome(&refused, "1", "login"),
            Some(Err(ProviderError::Forbidden(reason))) if reason == "logged out"
        ));
        let odd = json!({"msg": "result", "id": "1", "error": "text"});
        assert!(matches!(
            method_outcome(&odd, "1", "m"),
            Some(Err(ProviderError::Invalid { message, .. })) if message == "method failed"
        ));
        // Rocket.Chat's method limiter, as `RateLimiter.limitMethod` words it.
        let limited = json!({"msg": "result", "id": "1", "error": {
            "error": "error-too-many-requests",
            "reason": "Error, too many requests. Please slow down. You must wait 2 seconds before trying again.",
            "details": {"timeToReset": 1500, "seconds": 2}
        }});
        assert_eq!(
            method_outcome(&limited, "1", "sendMessage"),
            Some(Err(ProviderError::RateLimited {
                retry_after: Duration::from_millis(1500)
            }))
        );
    }
}
