//! A minimal SignalR client: negotiate (version 1), the WebSocket transport and the JSON or
//! MessagePack hub protocol. Enough to hold many connections cheaply and count what they
//! receive; the official clients are what the end-to-end tests use for compatibility.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rmpv::ValueRef;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};
use url::Url;

use crate::ws::Socket;

/// Ends every record of the JSON hub protocol, and the handshake and its answer in both.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// [`RECORD_SEPARATOR`] as a byte.
const SEPARATOR: u8 = 0x1e;

/// The longest MessagePack length prefix: 5 bytes carry more than the 2 GiB the spec allows.
const MAX_PREFIX: usize = 5;

/// How often the client pings when it has sent nothing else; the hub closes connections it
/// has not heard from for 30 s by default, and the official clients also ping every 15 s.
const PING_EVERY: Duration = Duration::from_secs(15);

/// How long `close` waits for the server to answer the WebSocket close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The hub protocol a connection speaks, chosen in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubProtocol {
    /// Text messages; each record is JSON ending with [`RECORD_SEPARATOR`].
    Json,
    /// Binary messages; each record is one MessagePack array after its length as a VarInt.
    MessagePack,
}

impl HubProtocol {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "JSON",
            Self::MessagePack => "MessagePack",
        }
    }

    /// Appends the whole records of `chunk` (without their framing) to `records`; an
    /// unfinished one stays in `partial` for the next chunk (a record may span messages).
    pub fn split(
        self,
        partial: &mut Vec<u8>,
        chunk: &[u8],
        records: &mut VecDeque<Vec<u8>>,
    ) -> Result<(), HubClientError> {
        partial.extend_from_slice(chunk);
        let mut at = 0;
        match self {
            Self::Json => {
                while let Some(end) = partial[at..].iter().position(|&b| b == SEPARATOR) {
                    if end > 0 {
                        records.push_back(partial[at..at + end].to_vec());
                    }
                    at += end + 1;
                }
            }
            Self::MessagePack => {
                while let Some((length, prefix)) = read_length(&partial[at..])? {
                    let start = at + prefix;
                    if partial.len() - start < length {
                        break;
                    }
                    records.push_back(partial[start..start + length].to_vec());
                    at = start + length;
                }
            }
        }
        partial.drain(..at);
        Ok(())
    }

    /// One record as it goes on the wire: JSON with its separator, MessagePack after its
    /// length.
    fn frame(self, record: &[u8], into: &mut Vec<u8>) {
        match self {
            Self::Json => {
                into.extend_from_slice(record);
                into.push(SEPARATOR);
            }
            Self::MessagePack => {
                let mut length = record.len();
                loop {
                    let low = (length & 0x7f) as u8;
                    length >>= 7;
                    if length == 0 {
                        into.push(low);
                        break;
                    }
                    into.push(low | 0x80);
                }
                into.extend_from_slice(record);
            }
        }
    }

    /// The message carrying `message` to the hub.
    fn encode(self, message: Outgoing<'_>) -> Frame {
        match self {
            Self::Json => {
                let record = match message {
                    Outgoing::Invocation {
                        id,
                        target,
                        arguments,
                    } => json!({
                        "type": 1,
                        "invocationId": id,
                        "target": target,
                        "arguments": arguments,
                    }),
                    Outgoing::Ping => json!({"type": 6}),
                    Outgoing::Close => json!({"type": 7}),
                };
                Frame::text(format!("{record}{RECORD_SEPARATOR}"))
            }
            Self::MessagePack => {
                // JSON values written as MessagePack: arrays stay arrays, objects become maps
                // with string keys, as the hub reads them.
                let record = match message {
                    Outgoing::Invocation {
                        id,
                        target,
                        arguments,
                    } => json!([1, {}, id, target, arguments]),
                    Outgoing::Ping => json!([6]),
                    Outgoing::Close => json!([7, null, false]),
                };
                let body =
                    rmp_serde::to_vec(&record).expect("a JSON value is always valid MessagePack");
                let mut framed = Vec::with_capacity(body.len() + MAX_PREFIX);
                self.frame(&body, &mut framed);
                Frame::binary(framed)
            }
        }
    }

    /// One record (without its framing); `None` for those a client ignores (pings, stream
    /// items and whatever a newer protocol adds).
    pub fn decode(self, record: &[u8]) -> Result<Option<Incoming>, HubClientError> {
        match self {
            Self::Json => decode_json(record),
            Self::MessagePack => decode_messagepack(record),
        }
    }
}

/// What the client sends besides the handshake.
enum Outgoing<'a> {
    Invocation {
        id: &'a str,
        target: &'a str,
        arguments: Vec<Value>,
    },
    Ping,
    Close,
}

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
    /// The hub sent something that is not the hub protocol chosen.
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

/// What the hub sent, as far as a client cares.
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

/// One WebSocket message of the hub, as it came: whole records, or part of one.
#[derive(Debug, Clone)]
pub enum Payload {
    /// A text message (the JSON protocol).
    Text(Utf8Bytes),
    /// A binary message (the MessagePack protocol).
    Binary(Bytes),
}

impl Payload {
    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// Hands `each` every invocation of `target` in the message, decoding no more than that
    /// takes, so a driver can count many deliveries cheaply. A JSON record is handed over
    /// whole: what a caller looks for is in its text, and finding it there costs less than
    /// parsing. Of a MessagePack invocation, the first argument's `text` is (a `Message`'s
    /// text, where the bench's fan-out puts its event); such a record is decoded without
    /// copying, and only when its bytes contain the target. Records that cannot be read are
    /// skipped, and so is a record cut off at the end of the message.
    pub fn each_invocation(&self, target: &str, mut each: impl FnMut(&str)) {
        match self {
            Self::Text(text) => {
                for record in text.as_str().split(RECORD_SEPARATOR) {
                    if names_target(record, target) {
                        each(record);
                    }
                }
            }
            Self::Binary(bytes) => {
                let mut rest: &[u8] = bytes;
                while let Ok(Some((length, prefix))) = read_length(rest) {
                    let Some(record) = rest.get(prefix..prefix + length) else {
                        return;
                    };
                    rest = &rest[prefix + length..];
                    if let Some(text) = first_argument_text(record, target) {
                        each(text);
                    }
                }
            }
        }
    }
}

/// Whether the JSON `record` has `target` as a string, quotes included, without parsing it.
fn names_target(record: &str, target: &str) -> bool {
    record
        .match_indices(target)
        .any(|(at, _)| record[..at].ends_with('"') && record[at + target.len()..].starts_with('"'))
}

/// The first argument's `text` of the MessagePack `record` when it is an invocation
/// (`[1, headers, id, target, [arguments]]`) of `target`.
fn first_argument_text<'a>(record: &'a [u8], target: &str) -> Option<&'a str> {
    let needle = target.as_bytes();
    if needle.is_empty() || !record.windows(needle.len()).any(|window| window == needle) {
        return None;
    }
    let ValueRef::Array(items) = rmpv::decode::read_value_ref(&mut &record[..]).ok()? else {
        return None;
    };
    let string = |value: &ValueRef<'a>| match value {
        ValueRef::String(text) => text.into_str(),
        _ => None,
    };
    if items.first()?.as_u64() != Some(1) || string(items.get(3)?)? != target {
        return None;
    }
    let ValueRef::Array(arguments) = items.get(4)? else {
        return None;
    };
    let ValueRef::Map(fields) = arguments.first()? else {
        return None;
    };
    fields
        .iter()
        .find(|(key, _)| string(key) == Some("text"))
        .and_then(|(_, value)| string(value))
}

/// The length at the start of `bytes` and the size of its prefix; `None` while the prefix is
/// incomplete.
fn read_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, HubClientError> {
    let mut length = 0usize;
    for (index, &byte) in bytes.iter().take(MAX_PREFIX).enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((length, index + 1)));
        }
    }
    if bytes.len() >= MAX_PREFIX {
        return Err(HubClientError::Protocol(
            "a length prefix longer than 5 bytes".into(),
        ));
    }
    Ok(None)
}

/// One open hub connection over WebSockets.
pub struct HubClient {
    socket: Socket,
    protocol: HubProtocol,
    /// The public id negotiate gave this connection (the one in the hub's logs).
    connection_id: String,
    /// Whole records received and not handed out yet, without their framing.
    records: VecDeque<Vec<u8>>,
    /// The unfinished record at the end of the last message.
    partial: Vec<u8>,
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
        Self::connect_routed(http, base, &[], token, timeout, source, HubProtocol::Json).await
    }

    /// [`Self::connect_from`] speaking `protocol`, with the transport opened where a proxy
    /// routing by connection id would send it: to the base of `routes` whose route starts the
    /// id (`b.Xy3...`), else to `base`, which negotiated.
    pub async fn connect_routed(
        http: &reqwest::Client,
        base: &str,
        routes: &[(String, String)],
        token: &str,
        timeout: Duration,
        source: Option<IpAddr>,
        protocol: HubProtocol,
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
            protocol,
            connection_id: negotiated.connection_id,
            records: VecDeque::new(),
            partial: Vec::new(),
            last_sent: Instant::now(),
            next_invocation: 1,
        };
        let name = match protocol {
            HubProtocol::Json => "json",
            HubProtocol::MessagePack => "messagepack",
        };
        let request = json!({"protocol": name, "version": 1});
        client
            .send(Frame::text(format!("{request}{RECORD_SEPARATOR}")))
            .await?;
        let answer = tokio::time::timeout_at(deadline, client.handshake_answer())
            .await
            .map_err(|_| HubClientError::Timeout("handshake"))??;
        let answer: Value = serde_json::from_slice(&answer)
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

    /// The protocol the connection speaks.
    pub fn protocol(&self) -> HubProtocol {
        self.protocol
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
            if let Some(incoming) = self.protocol.decode(&record)? {
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
        let invocation = Outgoing::Invocation {
            id: &id,
            target,
            arguments,
        };
        self.send(self.protocol.encode(invocation)).await?;
        Ok(id)
    }

    /// Leaves politely: a Close record, then the WebSocket close, waiting a little for the
    /// server's side of it.
    pub async fn close(mut self) -> Result<(), HubClientError> {
        self.send(self.protocol.encode(Outgoing::Close)).await?;
        self.socket
            .close(None)
            .await
            .map_err(HubClientError::WebSocket)?;
        let drain = async { while let Some(Ok(_)) = self.socket.next().await {} };
        tokio::time::timeout(CLOSE_WAIT, drain)
            .await
            .map_err(|_| HubClientError::Timeout("close"))
    }

    async fn send(&mut self, frame: Frame) -> Result<(), HubClientError> {
        self.socket
            .send(frame)
            .await
            .map_err(HubClientError::WebSocket)?;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// The handshake's answer, a JSON record in either protocol, in a text message (JSON) or a
    /// binary one (MessagePack); what follows it in that message are the protocol's first
    /// records.
    async fn handshake_answer(&mut self) -> Result<Vec<u8>, HubClientError> {
        loop {
            let Some(message) = self.next_frame().await? else {
                return Err(HubClientError::Handshake(
                    "socket closed before the answer".into(),
                ));
            };
            self.partial.extend_from_slice(message.as_bytes());
            if let Some(end) = self.partial.iter().position(|&b| b == SEPARATOR) {
                let rest = self.partial.split_off(end + 1);
                let mut answer = std::mem::take(&mut self.partial);
                answer.pop();
                self.protocol
                    .split(&mut self.partial, &rest, &mut self.records)?;
                return Ok(answer);
            }
        }
    }

    /// The next whole record, `None` once the socket ended; pings the hub when due.
    async fn next_record(&mut self) -> Result<Option<Vec<u8>>, HubClientError> {
        loop {
            if let Some(record) = self.records.pop_front() {
                return Ok(Some(record));
            }
            let Some(message) = self.next_of_protocol().await? else {
                return Ok(None);
            };
            self.protocol
                .split(&mut self.partial, message.as_bytes(), &mut self.records)?;
        }
    }

    /// The next message as it came (whole records, or part of one), `None` once the socket
    /// ended; pings the hub when due. Nothing is split or parsed, so a driver can count many
    /// deliveries cheaply ([`Payload::each_invocation`]); records kept by an earlier
    /// [`Self::next`] come first, framed again.
    pub async fn next_message(&mut self) -> Result<Option<Payload>, HubClientError> {
        if self.records.is_empty() {
            return self.next_of_protocol().await;
        }
        let mut joined = Vec::new();
        for record in self.records.drain(..) {
            self.protocol.frame(&record, &mut joined);
        }
        Ok(Some(match self.protocol {
            HubProtocol::Json => Payload::Text(
                String::from_utf8(joined)
                    .map_err(|_| HubClientError::Protocol("a record is not UTF-8".into()))?
                    .into(),
            ),
            HubProtocol::MessagePack => Payload::Binary(joined.into()),
        }))
    }

    /// The next message, which must be of the kind the protocol sends.
    async fn next_of_protocol(&mut self) -> Result<Option<Payload>, HubClientError> {
        let message = self.next_frame().await?;
        match (self.protocol, &message) {
            (_, None)
            | (HubProtocol::Json, Some(Payload::Text(_)))
            | (HubProtocol::MessagePack, Some(Payload::Binary(_))) => Ok(message),
            (protocol, Some(_)) => Err(HubClientError::Protocol(format!(
                "a message of the other kind on the {} protocol",
                protocol.name()
            ))),
        }
    }

    /// The next text or binary message, `None` once the socket ended; pings the hub when due.
    async fn next_frame(&mut self) -> Result<Option<Payload>, HubClientError> {
        loop {
            let ping_at = self.last_sent + PING_EVERY;
            tokio::select! {
                frame = self.socket.next() => match frame {
                    None | Some(Ok(Frame::Close(_))) => return Ok(None),
                    Some(Err(err)) => return Err(HubClientError::WebSocket(err)),
                    Some(Ok(Frame::Text(text))) => return Ok(Some(Payload::Text(text))),
                    Some(Ok(Frame::Binary(bytes))) => return Ok(Some(Payload::Binary(bytes))),
                    // tungstenite answers WebSocket pings by itself.
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(ping_at) => {
                    self.send(self.protocol.encode(Outgoing::Ping)).await?;
                }
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

/// One record of the JSON hub protocol (without its separator).
fn decode_json(record: &[u8]) -> Result<Option<Incoming>, HubClientError> {
    let value: Value = serde_json::from_slice(record)
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
                "record without type: {}",
                String::from_utf8_lossy(record)
            )))
        }
    };
    Ok(Some(incoming))
}

/// One record of the MessagePack hub protocol (without its length): an array whose first item
/// is the type, its values read as the JSON protocol's.
fn decode_messagepack(record: &[u8]) -> Result<Option<Incoming>, HubClientError> {
    let value: Value = rmp_serde::from_slice(record)
        .map_err(|err| HubClientError::Protocol(format!("not MessagePack: {err}")))?;
    let Value::Array(items) = value else {
        return Err(HubClientError::Protocol(format!(
            "record is not an array: {value}"
        )));
    };
    let text = |index: usize| items.get(index).and_then(Value::as_str).map(str::to_owned);
    let incoming = match items.first().and_then(Value::as_u64) {
        // [1, headers, invocation id, target, [arguments]]
        Some(1) => Incoming::Invocation {
            target: text(3)
                .ok_or_else(|| HubClientError::Protocol("invocation without target".into()))?,
            arguments: match items.get(4) {
                Some(Value::Array(arguments)) => arguments.clone(),
                _ => Vec::new(),
            },
        },
        // [3, headers, invocation id, result kind (1 error, 2 void, 3 result), error or result]
        Some(3) => {
            let kind = items.get(3).and_then(Value::as_u64);
            Incoming::Completion {
                invocation_id: text(2)
                    .ok_or_else(|| HubClientError::Protocol("completion without id".into()))?,
                result: items.get(4).filter(|_| kind == Some(3)).cloned(),
                error: text(4).filter(|_| kind == Some(1)),
            }
        }
        // [7, error, allow reconnect]
        Some(7) => Incoming::Close {
            error: text(1),
            allow_reconnect: items.get(2) == Some(&Value::Bool(true)),
        },
        Some(_) => return Ok(None),
        None => {
            return Err(HubClientError::Protocol(format!(
                "record without type: {}",
                Value::Array(items)
            )))
        }
    };
    Ok(Some(incoming))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(protocol: HubProtocol, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut partial = Vec::new();
        let mut records = VecDeque::new();
        for chunk in chunks {
            protocol.split(&mut partial, chunk, &mut records).unwrap();
        }
        (records.into(), partial)
    }

    /// `value` as a MessagePack record, without its length.
    fn pack(value: Value) -> Vec<u8> {
        rmp_serde::to_vec(&value).unwrap()
    }

    /// `records` as one MessagePack message.
    fn framed(records: &[Vec<u8>]) -> Vec<u8> {
        let mut message = Vec::new();
        for record in records {
            HubProtocol::MessagePack.frame(record, &mut message);
        }
        message
    }

    fn message(text: &str) -> Value {
        json!({"id": "m1", "roomId": "r1", "text": text, "createdAt": "2026-12-05T08:26:00.000Z"})
    }

    #[test]
    fn json_records_are_split_on_the_separator_and_joined_across_messages() {
        let json = HubProtocol::Json;
        assert_eq!(
            split(json, &[b"{}\x1e"]),
            (vec![b"{}".to_vec()], Vec::new())
        );
        assert_eq!(
            split(json, &[b"{\"type\":6}\x1e{\"ty", b"pe\":6}\x1e{"]),
            (
                vec![b"{\"type\":6}".to_vec(), b"{\"type\":6}".to_vec()],
                b"{".to_vec()
            )
        );
        assert_eq!(split(json, &[b"no separator yet"]).0, Vec::<Vec<u8>>::new());
        assert_eq!(split(json, &[b"\x1e\x1e"]).0, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn messagepack_records_are_split_on_their_lengths_and_joined_across_messages() {
        let ping = pack(json!([6]));
        let long = pack(json!([1, {}, null, "x", [message(&"a".repeat(300))]]));
        let all = framed(&[ping.clone(), long.clone(), ping.clone()]);
        // The long record's length takes two bytes: cut between them, and inside the record.
        let cut = ping.len() + 2;
        let (records, partial) = split(
            HubProtocol::MessagePack,
            &[
                &all[..cut],
                &all[cut..cut + 100],
                &all[cut + 100..all.len() - 1],
            ],
        );
        assert_eq!(records, vec![ping.clone(), long]);
        assert_eq!(partial, vec![2, 0x91]);
        let mut records = VecDeque::new();
        let mut too_long = vec![0xff; 5];
        assert!(HubProtocol::MessagePack
            .split(&mut too_long, &[], &mut records)
            .is_err());
    }

    #[test]
    fn lengths_are_varints_low_bits_first() {
        let frame = |length: usize| {
            let mut into = Vec::new();
            HubProtocol::MessagePack.frame(&vec![0; length], &mut into);
            into.truncate(into.len() - length);
            into
        };
        assert_eq!(frame(0), vec![0x00]);
        assert_eq!(frame(127), vec![0x7f]);
        assert_eq!(frame(128), vec![0x80, 0x01]);
        assert_eq!(frame(300), vec![0xac, 0x02]);
        assert_eq!(read_length(&[0xac, 0x02, 0xff]).unwrap(), Some((300, 2)));
        assert_eq!(read_length(&[0xac]).unwrap(), None);
    }

    #[test]
    fn decode_keeps_what_a_client_acts_on() {
        let decode = |record: &str| HubProtocol::Json.decode(record.as_bytes());
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
    fn messagepack_records_decode_as_their_json_twins() {
        let decode = |value: Value| HubProtocol::MessagePack.decode(&pack(value));
        assert_eq!(
            decode(json!([
                1,
                {},
                null,
                "getRoomMessageNotification",
                [message("hi")]
            ]))
            .unwrap(),
            Some(Incoming::Invocation {
                target: "getRoomMessageNotification".into(),
                arguments: vec![message("hi")],
            })
        );
        assert_eq!(decode(json!([6])).unwrap(), None);
        assert_eq!(
            decode(json!([3, {}, "4", 1, "nope"])).unwrap(),
            Some(Incoming::Completion {
                invocation_id: "4".into(),
                result: None,
                error: Some("nope".into()),
            })
        );
        assert_eq!(
            decode(json!([3, {}, "5", 3, message("sent")])).unwrap(),
            Some(Incoming::Completion {
                invocation_id: "5".into(),
                result: Some(message("sent")),
                error: None,
            })
        );
        assert_eq!(
            decode(json!([3, {}, "6", 2])).unwrap(),
            Some(Incoming::Completion {
                invocation_id: "6".into(),
                result: None,
                error: None,
            })
        );
        assert_eq!(
            decode(json!([7, "the user's account was deleted", false])).unwrap(),
            Some(Incoming::Close {
                error: Some("the user's account was deleted".into()),
                allow_reconnect: false,
            })
        );
        assert_eq!(
            decode(json!([7, null, true])).unwrap(),
            Some(Incoming::Close {
                error: None,
                allow_reconnect: true,
            })
        );
        assert!(decode(json!({"type": 1})).is_err());
        assert!(HubProtocol::MessagePack.decode(&[0xc1]).is_err());
    }

    #[test]
    fn the_clients_records_are_those_of_its_protocol() {
        let bytes = |frame: Frame| frame.into_data().to_vec();
        assert_eq!(
            bytes(HubProtocol::Json.encode(Outgoing::Ping)),
            b"{\"type\":6}\x1e"
        );
        assert_eq!(
            bytes(HubProtocol::MessagePack.encode(Outgoing::Ping)),
            vec![2, 0x91, 6]
        );
        let invocation = || Outgoing::Invocation {
            id: "7",
            target: "SendMessage",
            arguments: vec![json!("r1"), json!("hi")],
        };
        let (records, partial) = split(
            HubProtocol::MessagePack,
            &[&bytes(HubProtocol::MessagePack.encode(invocation()))],
        );
        assert!(partial.is_empty());
        let read: Value = rmp_serde::from_slice(&records[0]).unwrap();
        assert_eq!(read, json!([1, {}, "7", "SendMessage", ["r1", "hi"]]));
        let close = bytes(HubProtocol::MessagePack.encode(Outgoing::Close));
        let read: Value = rmp_serde::from_slice(&close[1..]).unwrap();
        assert_eq!(read, json!([7, null, false]));
        let json = bytes(HubProtocol::Json.encode(invocation()));
        let read: Value = serde_json::from_slice(json.strip_suffix(b"\x1e").unwrap()).unwrap();
        assert_eq!(
            read,
            json!({"type": 1, "invocationId": "7", "target": "SendMessage", "arguments": ["r1", "hi"]})
        );
    }

    #[test]
    fn invocations_of_the_target_are_found_in_both_protocols() {
        let target = "getRoomMessageNotification";
        let found = |message: Payload| {
            let mut texts = Vec::new();
            message.each_invocation(target, |text| texts.push(text.to_owned()));
            texts
        };
        // The room update quotes the last message too, and must not count.
        let event = message("bench 3 1234");
        let changed = json!({"method": "updated", "room": {"lastMessage": event}});
        let json_record = |target: &str, argument: &Value| {
            format!(r#"{{"type":1,"target":"{target}","arguments":[{argument}]}}"#)
        };
        let text = format!(
            "{}\u{1e}{}\u{1e}{{\"type\":6}}\u{1e}{}\u{1e}",
            json_record("getRoomSubscriptionChangedNotification", &changed),
            json_record(target, &event),
            json_record("getRoomMessageNotificationX", &event),
        );
        assert_eq!(
            found(Payload::Text(text.into())),
            vec![json_record(target, &event)]
        );
        let invocation =
            |target: &str, argument: &Value| pack(json!([1, {}, null, target, [argument]]));
        let mut binary = framed(&[
            invocation("getRoomSubscriptionChangedNotification", &changed),
            pack(json!([6])),
            invocation(target, &event),
            invocation("getRoomMessageNotificationX", &event),
            invocation(target, &json!("not a message")),
            invocation(target, &message("second")),
        ]);
        // A record cut off at the end is skipped.
        binary.extend_from_slice(&framed(&[invocation(target, &event)])[..20]);
        assert_eq!(
            found(Payload::Binary(binary.into())),
            vec!["bench 3 1234".to_owned(), "second".to_owned()]
        );
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
