//! The hub protocols: the handshake (JSON for both), what clients send ([`Incoming`]) and what
//! the hub writes ([`Outgoing`]), in the JSON protocol ([`json`], text records ending with
//! 0x1E) or the MessagePack protocol ([`messagepack`], binary records with a length prefix).
//!
//! Everything here is pure (no IO), so garbage input is tested in each module.

use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;
use serde_json::{json, Value};

pub mod json;
pub mod messagepack;

pub use json::RECORD_SEPARATOR;

/// The hub protocol a connection chose in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubProtocol {
    /// `json`: text records ending with the record separator.
    Json,
    /// `messagepack`: binary records, each a MessagePack array after a VarInt length.
    MessagePack,
}

impl HubProtocol {
    /// The name clients give in the handshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "messagepack",
        }
    }

    /// Whether the protocol needs a transport that carries binary data.
    pub fn is_binary(self) -> bool {
        self == Self::MessagePack
    }

    /// Decodes one record (without its framing). Bytes that are not a message of the protocol
    /// at all are an error; a message of the wrong shape is [`Incoming::Invalid`].
    pub fn decode(self, record: &[u8]) -> Result<Incoming, ProtocolError> {
        match self {
            Self::Json => json::decode(record),
            Self::MessagePack => messagepack::decode(record),
        }
    }

    /// The handshake answer in this protocol's transfer format: a JSON record either way.
    pub fn handshake_response(self, error: Option<&str>) -> Frame {
        let text = handshake_response(error);
        match self {
            Self::Json => Frame::Text(text.into()),
            Self::MessagePack => Frame::Binary(text.into_bytes().into()),
        }
    }
}

/// Records ready for a transport, in their protocol's transfer format: text for JSON
/// (WebSocket text messages, SSE events), binary for MessagePack. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One or more JSON records.
    Text(ByteString),
    /// One or more MessagePack records.
    Binary(Bytes),
}

impl Frame {
    /// The bytes of the records.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// Whether the records are binary (MessagePack).
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// Their length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether there are no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

/// Why incoming bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A record grew past the configured limit.
    #[error("message exceeds the maximum size of {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// A record is not a message of the protocol (not UTF-8 JSON, not MessagePack).
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Splits incoming bytes into records, keeping an incomplete tail for the next call.
///
/// The official clients always send whole records, but a record split across transport
/// messages costs nothing to support, and the tail is bounded by `max_record`.
#[derive(Debug)]
pub struct RecordBuffer {
    protocol: HubProtocol,
    partial: Vec<u8>,
    max_record: usize,
}

impl RecordBuffer {
    /// A buffer for `protocol`'s framing, refusing records longer than `max_record` bytes
    /// (framing excluded).
    pub fn new(protocol: HubProtocol, max_record: usize) -> Self {
        Self {
            protocol,
            partial: Vec::new(),
            max_record: max_record.max(1),
        }
    }

    /// The protocol whose framing this buffer reads.
    pub fn protocol(&self) -> HubProtocol {
        self.protocol
    }

    /// Appends `data` and returns every record it completed, without framing. Empty JSON
    /// records (two separators in a row, white space) are skipped.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        let result = match self.protocol {
            HubProtocol::Json => {
                let mut rest = data;
                let mut records = Vec::new();
                while let Some(record) = self.next_json(&mut rest)? {
                    records.push(record);
                }
                Ok(records)
            }
            HubProtocol::MessagePack => {
                messagepack::split(&mut self.partial, data, self.max_record)
            }
        };
        if result.is_err() {
            self.partial.clear();
        }
        result
    }

    /// Reads the handshake, the first JSON record whatever the protocol; `None` until its
    /// separator has arrived.
    pub fn push_handshake(&mut self, data: &[u8]) -> Result<Option<Handshake>, ProtocolError> {
        let mut rest = data;
        let result = self.next_json(&mut rest);
        if result.is_err() {
            self.partial.clear();
        }
        Ok(result?.map(|request| Handshake {
            request,
            rest: rest.to_vec(),
        }))
    }

    /// The next non-blank JSON record that `rest` completes, moving `rest` past it; `None`
    /// once `rest` holds no separator, its bytes kept for the next call.
    fn next_json(&mut self, rest: &mut &[u8]) -> Result<Option<Vec<u8>>, ProtocolError> {
        let too_large = ProtocolError::TooLarge {
            max: self.max_record,
        };
        while let Some(end) = rest.iter().position(|&b| b == RECORD_SEPARATOR) {
            let (head, tail) = rest.split_at(end);
            *rest = &tail[1..];
            if self.partial.len() + head.len() > self.max_record {
                return Err(too_large);
            }
            let mut record = std::mem::take(&mut self.partial);
            record.extend_from_slice(head);
            if !json::is_blank(&record) {
                return Ok(Some(record));
            }
        }
        if self.partial.len() + rest.len() > self.max_record {
            return Err(too_large);
        }
        self.partial.extend_from_slice(rest);
        *rest = &[];
        Ok(None)
    }

    /// Whether an incomplete record is waiting for the rest of it.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }
}

/// A handshake request as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The request record, without its separator.
    pub request: Vec<u8>,
    /// The bytes after it: the chosen protocol's first records.
    pub rest: Vec<u8>,
}

/// Why a handshake request was refused; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a JSON object with `protocol` and `version`.
    #[error("handshake request is malformed: {0}")]
    Malformed(String),
    /// A protocol other than `json` and `messagepack`.
    #[error("the protocol '{0}' is not supported by this hub; use 'json' or 'messagepack'")]
    UnsupportedProtocol(String),
    /// A protocol version this hub does not speak.
    #[error("the server does not support version {1} of the '{0}' protocol")]
    UnsupportedVersion(&'static str, u64),
}

/// What a handshake request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The protocol the connection speaks from now on.
    pub protocol: HubProtocol,
    /// The protocol version: 0 and 1 alike, 2 adds stateful reconnect's Ack and Sequence.
    pub version: u64,
}

/// Checks a handshake request record (`{"protocol":"json","version":1}`).
///
/// Versions 0 to 2 are accepted: signalrcore sends the negotiate version (0) it got, and the
/// JS client asks for 2 when negotiate granted stateful reconnect.
pub fn parse_handshake(record: &[u8]) -> Result<HandshakeRequest, HandshakeError> {
    let value: Value =
        serde_json::from_slice(record).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| HandshakeError::Malformed("expected a JSON object".into()))?;
    let name = object
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(|| HandshakeError::Malformed("missing string 'protocol'".into()))?;
    let version = object
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| HandshakeError::Malformed("missing integer 'version'".into()))?;
    let protocol = [HubProtocol::Json, HubProtocol::MessagePack]
        .into_iter()
        .find(|protocol| protocol.name() == name)
        .ok_or_else(|| HandshakeError::UnsupportedProtocol(name.to_owned()))?;
    if version > 2 {
        return Err(HandshakeError::UnsupportedVersion(protocol.name(), version));
    }
    Ok(HandshakeRequest { protocol, version })
}

/// The handshake answer as JSON text: `{}` on success, `{"error": …}` otherwise (framed).
pub fn handshake_response(error: Option<&str>) -> String {
    match error {
        None => json::frame("{}".into()),
        Some(error) => json::frame(json!({ "error": error }).to_string()),
    }
}

/// A client → server message, as far as this hub cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Type 1: call a hub method; a completion is owed only when `invocation_id` is present.
    Invocation {
        /// Present for `invoke`, absent for `send`.
        invocation_id: Option<String>,
        /// The hub method name, as the client spelled it.
        target: String,
        /// The arguments.
        arguments: Vec<Value>,
        /// Whether the client attached upload streams (not supported).
        has_streams: bool,
    },
    /// Type 4: a streaming call (not supported; answered with an error completion).
    StreamInvocation {
        /// The id to complete.
        invocation_id: String,
        /// The hub method name.
        target: String,
    },
    /// Type 5: cancel a streaming call.
    CancelInvocation {
        /// The id being cancelled.
        invocation_id: String,
    },
    /// Type 6.
    Ping,
    /// Type 7: the client is leaving.
    Close,
    /// Type 8 (stateful reconnect): the client has received the messages up to this sequence
    /// id.
    Ack(u64),
    /// Type 9 (stateful reconnect): the id the client's next message carries, sent first
    /// after it reconnected.
    Sequence(u64),
    /// A well-formed message the hub has nothing to do with (types 2, 3, unknown types).
    Ignored(u64),
    /// A message of the wrong shape; when it names an invocation id the client is waiting
    /// for an answer, so it gets an error completion.
    Invalid {
        /// The id of the broken invocation, if one could be read.
        invocation_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

impl Incoming {
    /// Whether the message counts in stateful reconnect's sequence (invocations, stream
    /// items, completions and cancels do; pings, Close, Ack and Sequence do not).
    pub fn is_tracked(&self) -> bool {
        match self {
            Self::Invocation { .. }
            | Self::StreamInvocation { .. }
            | Self::CancelInvocation { .. }
            | Self::Invalid { .. } => true,
            Self::Ignored(kind) => matches!(kind, 2 | 3),
            Self::Ping | Self::Close | Self::Ack(_) | Self::Sequence(_) => false,
        }
    }
}

/// A server → client message. Only spec fields are written: pysignalr refuses unknown keys.
///
/// Pushed events (type 1 without an invocation id) are written by
/// [`crate::backend::event_frame`], straight from the domain types.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// Type 3: the one answer to an invocation.
    Completion {
        /// The invocation being answered.
        invocation_id: String,
        /// `Ok(None)` for a void method, `Ok(Some(v))` for a result, `Err(text)` for a failure.
        outcome: Result<Option<Value>, String>,
    },
    /// Type 6.
    Ping,
    /// Type 7: the server ends the connection.
    Close {
        /// Why, shown to the client.
        error: Option<String>,
        /// Whether `withAutomaticReconnect` clients should come back.
        allow_reconnect: bool,
    },
    /// Type 8 (stateful reconnect): the hub has received the client's messages up to this id.
    Ack(u64),
    /// Type 9 (stateful reconnect): the id of the next message the hub sends, first on a
    /// reconnected transport.
    Sequence(u64),
}

impl Outgoing {
    /// Whether the message counts in stateful reconnect's sequence: completions do; pings,
    /// Close, Ack and Sequence do not.
    pub fn is_tracked(&self) -> bool {
        matches!(self, Self::Completion { .. })
    }

    /// Serializes and frames the message in `protocol`.
    pub fn encode(&self, protocol: HubProtocol) -> Frame {
        match protocol {
            HubProtocol::Json => Frame::Text(json::encode(self).into()),
            HubProtocol::MessagePack => Frame::Binary(messagepack::encode(self)),
        }
    }
}

/// Serializes a value for an argument or result; domain types serialize infallibly, but a
/// failure still becomes `null` rather than a panic.
pub fn to_value(value: &impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: char = '\u{1e}';

    #[test]
    fn handshake_accepts_both_protocols_in_versions_zero_to_two() {
        let parse = |text: &str| parse_handshake(text.as_bytes());
        let request = |protocol, version| Ok(HandshakeRequest { protocol, version });
        assert_eq!(
            parse(r#"{"protocol":"json","version":1}"#),
            request(HubProtocol::Json, 1)
        );
        assert_eq!(
            parse(r#"{"protocol": "json", "version": 0}"#),
            request(HubProtocol::Json, 0)
        );
        assert_eq!(
            parse(r#"{"protocol":"messagepack","version":2}"#),
            request(HubProtocol::MessagePack, 2)
        );
        assert_eq!(
            parse(r#"{"protocol":"blueprint","version":1}"#),
            Err(HandshakeError::UnsupportedProtocol("blueprint".into()))
        );
        assert_eq!(
            parse(r#"{"protocol":"json","version":3}"#),
            Err(HandshakeError::UnsupportedVersion("json", 3))
        );
        for garbage in [
            "",
            "nope",
            "[]",
            r#"{"protocol":"json"}"#,
            r#"{"version":1}"#,
        ] {
            assert!(
                matches!(parse(garbage), Err(HandshakeError::Malformed(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn the_handshake_is_read_up_to_its_separator_and_the_rest_kept_for_the_protocol() {
        let mut buffer = RecordBuffer::new(HubProtocol::Json, 64);
        assert_eq!(buffer.push_handshake(b"{\"protocol\":").unwrap(), None);
        let handshake = buffer
            .push_handshake(b"\"messagepack\",\"version\":1}\x1e\x02\x91\x06")
            .unwrap()
            .unwrap();
        assert_eq!(
            parse_handshake(&handshake.request).map(|request| request.protocol),
            Ok(HubProtocol::MessagePack),
            "{handshake:?}"
        );
        assert_eq!(handshake.rest, b"\x02\x91\x06");
        // Blank records before it are skipped; an oversize one is refused.
        let mut buffer = RecordBuffer::new(HubProtocol::Json, 8);
        assert_eq!(
            buffer.push_handshake(b"\x1e \x1e{}\x1e").unwrap(),
            Some(Handshake {
                request: b"{}".to_vec(),
                rest: vec![]
            })
        );
        assert_eq!(
            buffer.push_handshake(&[b'x'; 9]),
            Err(ProtocolError::TooLarge { max: 8 })
        );
    }

    #[test]
    fn handshake_answers_are_json_in_either_transfer_format() {
        assert_eq!(handshake_response(None), format!("{{}}{RS}"));
        assert_eq!(
            handshake_response(Some("no")),
            format!("{{\"error\":\"no\"}}{RS}")
        );
        assert_eq!(
            HubProtocol::Json.handshake_response(None),
            Frame::Text(format!("{{}}{RS}").into())
        );
        assert_eq!(
            HubProtocol::MessagePack.handshake_response(None),
            Frame::Binary(Bytes::from_static(b"{}\x1e"))
        );
    }
}
