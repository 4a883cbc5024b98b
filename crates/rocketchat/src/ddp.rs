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
/// 175 users online, in the soak). DDP frames are a few KiB; a larger one grows the buffer.
const READ_BUFFER: usize = 8 * 1024;

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
            if frame.get("msg").and_then(Value::as_str) != Some("result")
                || frame.get("id").and_then(Value::as_str) != Some(id.as_str())
            {
                continue;
            }
            if let Some(error) = frame.get("error") {
                let reason = error
                    .get("reason")
                    .or_else(|| error.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("method failed")
                    .to_owned();
                return Err(match error.get("error") {
                    Some(code) if code == 403 || code == "403" => ProviderError::Forbidden(reason),
                    Some(code) if code == 404 || code == "404" => ProviderError::NotFound(reason),
                    Some(code) if code == "too-many-requests" => ProviderError::RateLimited {
                        retry_after: Duration::from_secs(1),
                    },
                    _ => ProviderError::Invalid {
                        field: method.to_owned(),
                        message: reason,
                    },
                });
            }
            return Ok(frame.get("result").cloned().unwrap_or(Value::Null));
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
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                tracing::debug!("ignoring a DDP frame that is not JSON");
                continue;
            };
            if value.get("msg").and_then(Value::as_str) == Some("ping") {
                let mut pong = json!({"msg": "pong"});
                if let Some(id) = value.get("id") {
                    pong["id"] = id.clone();
                }
                self.send(pong).await?;
                continue;
            }
            return Ok(Some(value));
        }
    }

    async fn next_frame(&mut self) -> Result<Value, ProviderError> {
        self.recv(self.timeout)
            .await?
            .ok_or_else(|| unavailable("read", "timed out"))
    }
}
