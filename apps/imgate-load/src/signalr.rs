//! A minimal SignalR client: negotiate (version 1), the WebSocket transport and the JSON hub
//! protocol. Enough to hold many connections cheaply and count what they receive; the
//! official clients are what the end-to-end tests use for compatibility.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use url::Url;

use crate::ws::Socket;

/// Ends every record of the JSON hub protocol.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// How often the client pings when it has sent nothing else; the hub closes connections it
/// has not heard from for 30 s by default, and the official clients also ping every 15 s.
const PING_EVERY: Duration = Duration::from_secs(15);

/// How long `close` waits for the server to answer the WebSocket close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why a connection could not be made or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum HubClientError {
    /// The base URL cannot carry a hub.
    #[error("bad hub URL: {0}")]
    BadUrl(String),
    /// Negotiate answered something other than 200.
    #[error("negotiate answered {status}: {body}")]
    NegotiateStatus {
        /// The HTTP status.
        status: u16,
        /// The start of the body, for the log.
        body: String,
    },
    /// Negotiate failed below HTTP or answered an unreadable body.
    #[error("negotiate failed")]
    Negotiate(#[source] reqwest::Error),
    /// Negotiate answered 200 without a usable connection token.
    #[error("negotiate answer without a connection token: {0}")]
    NegotiateShape(String),
    /// The WebSocket could not be opened or broke.
    #[error("websocket")]
    WebSocket(#[source] tokio_tungstenite::tungstenite::Error),
    /// The hub refused the handshake.
    #[error("handshake refused: {0}")]
    Handshake(String),
    /// The hub sent something that is not the JSON hub protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A step took longer than allowed.
    #[error("timed out during {0}")]
    Timeout(&'static str),
}

impl HubClientError {
    /// A short, stable label for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            Self::BadUrl(_) => "hub_bad_url".into(),
            Self::NegotiateStatus { status, .. } => format!("negotiate_{status}"),
            Self::Negotiate(err) if err.is_timeout() => "negotiate_timeout".into(),
            Self::Negotiate(err) if err.is_connect() => "negotiate_connect".into(),
            Self::Negotiate(_) => "negotiate_failed".into(),
            Self::NegotiateShape(_) => "negotiate_shape".into(),
            Self::WebSocket(err) => {
                use tokio_tungstenite::tungstenite::Error as E;
                match err {
                    E::Http(response) => format!("websocket_http_{}", response.status().as_u16()),
                    E::ConnectionClosed | E::AlreadyClosed => "websocket_closed".into(),
                    E::Io(_) => "websocket_io".into(),
                    E::Protocol(_) => "websocket_protocol".into(),
                    _ => "websocket_other".into(),
                }
            }
            Self::Handshake(_) => "handshake_refused".into(),
            Self::Protocol(_) => "hub_protocol".into(),
            Self::Timeout(step) => format!("timeout_{}", step.replace(' ', "_")),
        }
    }
}

/// What the hub sent, as far as a client of the JSON protocol cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A server-to-client call (type 1), e.g. `getRoomMessageNotification`.
    Invocation {
        /// The client method the server calls.
        target: String,
        /// Its arguments.
        arguments: Vec<Value>,
    },
    /// The answer to one of our invocations (type 3).
    Completion {
        /// The id we gave the invocation.
        invocation_id: String,
        /// The result, when there is one.
        result: Option<Value>,
        /// The error, when the call failed.
        error: Option<String>,
    },
    /// The server closes the connection (type 7).
    Close {
        /// Why, when it says.
        error: Option<String>,
        /// Whether the server invites a reconnect.
        allow_reconnect: bool,
    },
    /// The socket ended without a Close record.
    Ended,
}

/// One open hub connection over WebSockets.
pub struct HubClient {
    socket: Socket,
    /// The public id negotiate gave this connection (the one in the hub's logs).
    connection_id: String,
    /// Whole records received and not handed out yet.
    records: VecDeque<String>,
    /// The unfinished record at the end of the last frame.
    partial: String,
    last_sent: Instant,
    next_invocation: u64,
}

impl HubClient {
    /// Negotiates with `{base}/hub/negotiate`, opens the WebSocket transport and completes
    /// the JSON protocol handshake, all within `timeout`.
    pub async fn connect(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<Self, HubClientError> {
        Self::connect_from(http, base, token, timeout, None).await
    }

    /// [`Self::connect`], with the WebSocket opened from local address `source` when given
    /// (a plain `ws://` hub only): one loopback address offers some 28 000 ephemeral ports,
    /// so tens of thousands of connections need several.
    pub async fn connect_from(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        timeout: Duration,
        source: Option<IpAddr>,
    ) -> Result<Self, HubClientError> {
        Self::connect_routed(http, base, &[], token, timeout, source).await
    }

    /// [`Self::connect_from`], with the transport opened where a proxy routing by connection
    /// id would send it: to the base of `routes` whose route starts the id (`b.Xy3...`), else
    /// to `base`, which negotiated.
    pub async fn connect_routed(
        http: &reqwest::Client,
        base: &str,
        routes: &[(String, String)],
        token: &str,
        timeout: Duration,
        source: Option<IpAddr>,
    ) -> Result<Self, HubClientError> {
        let deadline = Instant::now() + timeout;
        let base = base.trim_end_matches('/');
        let negotiated = tokio::time::timeout_at(deadline, negotiate(http, base, token))
            .await
            .map_err(|_| HubClientError::Timeout("negotiate"))??;
        let transport_base = negotiated
            .connection_token
            .split_once('.')
            .and_then(|(route, _)| routes.iter().find(|(name, _)| name == route))
            .map_or(base, |(_, routed)| routed.trim_end_matches('/'));
        let url = transport_url(transport_base, &negotiated.connection_token, token)?;
        let socket = tokio::time::timeout_at(deadline, crate::ws::open(&url, source))
            .await
            .map_err(|_| HubClientError::Timeout("websocket connect"))?
            .map_err(HubClientError::WebSocket)?;
        let mut client = Self {
            socket,
            connection_id: negotiated.connection_id,
            records: VecDeque::new(),
            partial: String::new(),
            last_sent: Instant::now(),
            next_invocation: 1,
        };
        client
            .send_record(&json!({"protocol": "json", "version": 1}))
            .await?;
        let answer = tokio::time::timeout_at(deadline, client.next_record())
            .await
            .map_err(|_| HubClientError::Timeout("handshake"))??;
        let Some(answer) = answer else {
            return Err(HubClientError::Handshake(
                "socket closed before the answer".into(),
            ));
        };
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|err| HubClientError::Protocol(format!("handshake answer: {err}")))?;
        match answer.get("error") {
            None | Some(Value::Null) => Ok(client),
            Some(error) => Err(HubClientError::Handshake(
                error.as_str().unwrap_or("?").to_owned(),
            )),
        }
    }

    /// The id negotiate gave the connection.
    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// The next thing the hub sent that a caller may care about. Pings are dropped, and the
    /// client pings the hub itself while waiting, so an idle connection stays open.
    ///
    /// Cancel safe: a record that arrived is kept for the next call.
    pub async fn next(&mut self) -> Result<Incoming, HubClientError> {
        loop {
            let Some(record) = self.next_record().await? else {
                return Ok(Incoming::Ended);
            };
            if let Some(incoming) = decode(&record)? {
                return Ok(incoming);
            }
        }
    }

    /// Calls hub method `target` with `arguments`; the answer comes later from [`Self::next`]
    /// as a [`Incoming::Completion`] carrying the returned id.
    pub async fn invoke(
        &mut self,
        target: &str,
        arguments: Vec<Value>,
    ) -> Result<String, HubClientError> {
        let id = self.next_invocation.to_string();
        self.next_invocation += 1;
        self.send_record(&json!({
            "type": 1,
            "invocationId": id,
            "target": target,
            "arguments": arguments,
        }))
        .await?;
        Ok(id)
    }

    /// Leaves politely: a Close record, then the WebSocket close, waiting a little for the
    /// server's side of it.
    pub async fn close(mut self) -> Result<(), HubClientError> {
        self.send_record(&json!({"type": 7})).await?;
        self.socket
            .close(None)
            .await
            .map_err(HubClientError::WebSocket)?;
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        tokio::time::timeout(CLOSE_WAIT, drain)
            .await
            .map_err(|_| HubClientError::Timeout("close"))
    }

    async fn send_record(&mut self, record: &Value) -> Result<(), HubClientError> {
        let text = format!("{record}{RECORD_SEPARATOR}");
        self.socket
            .send(Frame::text(text))
            .await
            .map_err(HubClientError::WebSocket)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The next whole record, `None` once the socket ended; pings the hub when due.
    async fn next_record(&mut self) -> Result<Option<String>, HubClientError> {
        loop {
            if let Some(record) = self.records.pop_front() {
                return Ok(Some(record));
            }
            let Some(text) = self.next_frame().await? else {
                return Ok(None);
            };
            self.records
                .extend(split_records(&mut self.partial, text.as_str()));
        }
    }

    /// The next text message as it came (whole records, or part of one), `None` once the
    /// socket ended; pings the hub when due. Nothing is split or parsed, so a driver can
    /// count many deliveries cheaply; records kept by an earlier [`Self::next`] come first.
    pub async fn next_text(&mut self) -> Result<Option<Utf8Bytes>, HubClientError> {
        if !self.records.is_empty() {
            let mut joined = String::new();
            for record in self.records.drain(..) {
                joined.push_str(&record);
                joined.push(RECORD_SEPARATOR);
            }
            return Ok(Some(joined.into()));
        }
        self.next_frame().await
    }

    async fn next_frame(&mut self) -> Result<Option<Utf8Bytes>, HubClientError> {
        loop {
            let ping_at = self.last_sent + PING_EVERY;
            tokio::select! {
                frame = self.socket.next() => match frame {
                    None | Some(Ok(Frame::Close(_))) => return Ok(None),
                    Some(Err(err)) => return Err(HubClientError::WebSocket(err)),
                    Some(Ok(Frame::Text(text))) => return Ok(Some(text)),
                    Some(Ok(Frame::Binary(_))) => {
                        return Err(HubClientError::Protocol("binary frame on the JSON protocol".into()))
                    }
                    // tungstenite answers WebSocket pings by itself.
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(ping_at) => self.send_record(&json!({"type": 6})).await?,
            }
        }
    }
}

struct Negotiated {
    connection_id: String,
    connection_token: String,
}

async fn negotiate(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<Negotiated, HubClientError> {
    let response = http
        .post(format!("{base}/hub/negotiate?negotiateVersion=1"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(HubClientError::Negotiate)?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        return Err(HubClientError::NegotiateStatus {
            status,
            body: body.chars().take(200).collect(),
        });
    }
    let body: Value = response.json().await.map_err(HubClientError::Negotiate)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("connectionId"), field("connectionToken")) {
        (Some(connection_id), Some(connection_token)) => Ok(Negotiated {
            connection_id,
            connection_token,
        }),
        _ => Err(HubClientError::NegotiateShape(body.to_string())),
    }
}

/// `{base}/hub?id=…&access_token=…` with the scheme turned into ws(s).
fn transport_url(base: &str, connection_token: &str, token: &str) -> Result<Url, HubClientError> {
    let mut url = Url::parse(&format!("{base}/hub"))
        .map_err(|err| HubClientError::BadUrl(err.to_string()))?;
    let scheme = match url.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => return Err(HubClientError::BadUrl(format!("scheme {other}"))),
    };
    url.set_scheme(scheme)
        .map_err(|()| HubClientError::BadUrl(base.to_owned()))?;
    url.query_pairs_mut()
        .append_pair("id", connection_token)
        .append_pair("access_token", token);
    Ok(url)
}

/// Appends `chunk` to `partial` and takes out every whole record; what follows the last
/// separator stays in `partial` for the next chunk (a record may span WebSocket messages).
pub fn split_records(partial: &mut String, chunk: &str) -> Vec<String> {
    partial.push_str(chunk);
    let Some(last) = partial.rfind(RECORD_SEPARATOR) else {
        return Vec::new();
    };
    let rest = partial.split_off(last + RECORD_SEPARATOR.len_utf8());
    let whole = std::mem::replace(partial, rest);
    whole
        .split(RECORD_SEPARATOR)
        .filter(|record| !record.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One record of the JSON hub protocol; `None` for those a client ignores (pings, stream
/// items and whatever a newer protocol adds).
pub fn decode(record: &str) -> Result<Option<Incoming>, HubClientError> {
    let value: Value = serde_json::from_str(record)
        .map_err(|err| HubClientError::Protocol(format!("not JSON: {err}")))?;
    let text = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let incoming = match value.get("type").and_then(Value::as_u64) {
        Some(1) => Incoming::Invocation {
            target: text("target")
                .ok_or_else(|| HubClientError::Protocol("invocation without target".into()))?,
            arguments: match value.get("arguments") {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            },
        },
        Some(3) => Incoming::Completion {
            invocation_id: text("invocationId")
                .ok_or_else(|| HubClientError::Protocol("completion without id".into()))?,
            result: value.get("result").cloned(),
            error: text("error"),
        },
        Some(7) => Incoming::Close {
            error: text("error"),
            allow_reconnect: value.get("allowReconnect") == Some(&Value::Bool(true)),
        },
        Some(_) => return Ok(None),
        None => {
            return Err(HubClientError::Protocol(format!(
                "record without type: {record}"
            )))
        }
    };
    Ok(Some(incoming))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> (Vec<String>, String) {
        let mut partial = String::new();
        let mut all = Vec::new();
        for chunk in chunks {
            all.extend(split_records(&mut partial, chunk));
        }
        (all, partial)
    }

    #[test]
    fn records_are_split_on_the_separator_and_joined_across_frames() {
        assert_eq!(split(&["{}\u{1e}"]), (vec!["{}".to_owned()], String::new()));
        assert_eq!(
            split(&["{\"type\":6}\u{1e}{\"ty", "pe\":6}\u{1e}{"]),
            (
                vec!["{\"type\":6}".to_owned(), "{\"type\":6}".to_owned()],
                "{".to_owned()
            )
        );
        assert_eq!(split(&["no separator yet"]).0, Vec::<String>::new());
        assert_eq!(split(&["\u{1e}\u{1e}"]).0, Vec::<String>::new());
    }

    #[test]
    fn decode_keeps_what_a_client_acts_on() {
        assert_eq!(
            decode(
                r#"{"type":1,"target":"getRoomMessageNotification","arguments":[{"text":"hi"}]}"#
            )
            .unwrap(),
            Some(Incoming::Invocation {
                target: "getRoomMessageNotification".into(),
                arguments: vec![json!({"text": "hi"})],
            })
        );
        assert_eq!(decode(r#"{"type":6}"#).unwrap(), None);
        assert_eq!(
            decode(r#"{"type":3,"invocationId":"4","error":"nope"}"#).unwrap(),
            Some(Incoming::Completion {
                invocation_id: "4".into(),
                result: None,
                error: Some("nope".into()),
            })
        );
        assert_eq!(
            decode(r#"{"type":7,"error":"the user's account was deleted"}"#).unwrap(),
            Some(Incoming::Close {
                error: Some("the user's account was deleted".into()),
                allow_reconnect: false,
            })
        );
        assert_eq!(
            decode(r#"{"type":7,"allowReconnect":true}"#).unwrap(),
            Some(Incoming::Close {
                error: None,
                allow_reconnect: true,
            })
        );
        assert!(decode("not json").is_err());
        assert!(decode(r#"{"target":"x"}"#).is_err());
    }

    #[test]
    fn the_transport_url_carries_token_and_jwt() {
        let url = transport_url("http://127.0.0.1:8080/chat", "tok-en_1", "a.b.c").unwrap();
        assert_eq!(
            url.as_str(),
            "ws://127.0.0.1:8080/chat/hub?id=tok-en_1&access_token=a.b.c"
        );
        let url = transport_url("https://gw.example", "t", "j").unwrap();
        assert_eq!(url.scheme(), "wss");
        assert!(transport_url("ftp://x", "t", "j").is_err());
    }
}
