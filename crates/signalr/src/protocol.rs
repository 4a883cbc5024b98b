//! The JSON hub protocol: record framing (records end with the 0x1E record separator),
//! the handshake, and the hub messages this hub reads and writes.
//!
//! Everything here is pure (no IO), so garbage input is tested at the bottom of the file.

use serde::Serialize;
use serde_json::{json, Map, Value};

/// The ASCII record separator that ends every JSON hub protocol record.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// Why incoming bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A record grew past the configured limit before its separator arrived.
    #[error("message exceeds the maximum size of {max} bytes")]
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// A record is not UTF-8 or not JSON.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Splits incoming bytes into records, keeping an incomplete tail for the next call.
///
/// The official clients always send whole records, but a record split across transport
/// messages costs nothing to support, and the tail is bounded by `max_record`.
#[derive(Debug)]
pub struct RecordBuffer {
    partial: Vec<u8>,
    max_record: usize,
}

impl RecordBuffer {
    /// A buffer refusing records longer than `max_record` bytes (separator excluded).
    pub fn new(max_record: usize) -> Self {
        Self {
            partial: Vec::new(),
            max_record: max_record.max(1),
        }
    }

    /// Appends `data` and returns every record it completed, without separators; empty
    /// records (two separators in a row) are skipped.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<String>, ProtocolError> {
        let mut records = Vec::new();
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == RECORD_SEPARATOR) {
            let (head, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.partial.len() + head.len() > self.max_record {
                self.partial.clear();
                return Err(ProtocolError::TooLarge {
                    max: self.max_record,
                });
            }
            let bytes = if self.partial.is_empty() {
                head.to_vec()
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(head);
                whole
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| ProtocolError::Malformed("record is not UTF-8".into()))?;
            if !text.trim().is_empty() {
                records.push(text);
            }
        }
        if self.partial.len() + rest.len() > self.max_record {
            self.partial.clear();
            return Err(ProtocolError::TooLarge {
                max: self.max_record,
            });
        }
        self.partial.extend_from_slice(rest);
        Ok(records)
    }

    /// Whether an incomplete record is waiting for its separator.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }
}

/// Appends the record separator to a serialized record.
pub fn frame(mut record: String) -> String {
    record.push(RECORD_SEPARATOR as char);
    record
}

/// Why a handshake request was refused; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Not a JSON object with `protocol` and `version`.
    #[error("handshake request is malformed: {0}")]
    Malformed(String),
    /// A protocol other than `json`.
    #[error("the protocol '{0}' is not supported by this hub; use the 'json' protocol")]
    UnsupportedProtocol(String),
    /// A JSON protocol version this hub does not speak.
    #[error("the server does not support version {0} of the 'json' protocol")]
    UnsupportedVersion(u64),
}

/// Checks a handshake request record (`{"protocol":"json","version":1}`).
///
/// Versions 0 and 1 are accepted: signalrcore sends the negotiate version (0) it got.
/// Version 2 means stateful reconnect, which this hub never offers in negotiate.
pub fn parse_handshake(record: &str) -> Result<(), HandshakeError> {
    let value: Value =
        serde_json::from_str(record).map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| HandshakeError::Malformed("expected a JSON object".into()))?;
    let protocol = object
        .get("protocol")
        .and_then(Value::as_str)
        .ok_or_else(|| HandshakeError::Malformed("missing string 'protocol'".into()))?;
    let version = object
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| HandshakeError::Malformed("missing integer 'version'".into()))?;
    if protocol != "json" {
        return Err(HandshakeError::UnsupportedProtocol(protocol.to_owned()));
    }
    if version > 1 {
        return Err(HandshakeError::UnsupportedVersion(version));
    }
    Ok(())
}

/// The handshake answer: `{}` on success, `{"error": …}` otherwise (framed).
pub fn handshake_response(error: Option<&str>) -> String {
    match error {
        None => frame("{}".into()),
        Some(error) => frame(json!({ "error": error }).to_string()),
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
    /// A well-formed message the hub has nothing to do with (types 2, 3, 8, 9, unknown types).
    Ignored(u64),
    /// A JSON object that is not a valid message; when it names an invocation id the client
    /// is waiting for an answer, so it gets an error completion.
    Invalid {
        /// The id of the broken invocation, if one could be read.
        invocation_id: Option<String>,
        /// What is wrong.
        reason: String,
    },
}

/// Decodes one record (without its separator). Non-JSON is an error; a JSON object of the
/// wrong shape is [`Incoming::Invalid`].
pub fn decode(record: &str) -> Result<Incoming, ProtocolError> {
    let value: Value =
        serde_json::from_str(record).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(ProtocolError::Malformed("expected a JSON object".into()));
    };
    let invocation_id = match object.get("invocationId") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
        Some(_) => {
            return Ok(Incoming::Invalid {
                invocation_id: None,
                reason: "'invocationId' must be a non-empty string".into(),
            })
        }
    };
    let invalid = |reason: &str| Incoming::Invalid {
        invocation_id: invocation_id.clone(),
        reason: reason.to_owned(),
    };
    let Some(kind) = object.get("type").and_then(Value::as_u64) else {
        return Ok(invalid("missing integer 'type'"));
    };
    Ok(match kind {
        1 => {
            let Some(target) = non_empty_str(&object, "target") else {
                return Ok(invalid("invocation needs a non-empty string 'target'"));
            };
            let Some(Value::Array(arguments)) = object.get("arguments") else {
                return Ok(invalid("invocation needs an array 'arguments'"));
            };
            let has_streams =
                matches!(object.get("streamIds"), Some(Value::Array(ids)) if !ids.is_empty());
            Incoming::Invocation {
                invocation_id,
                target,
                arguments: arguments.clone(),
                has_streams,
            }
        }
        4 => match invocation_id {
            Some(invocation_id) => Incoming::StreamInvocation {
                invocation_id,
                target: non_empty_str(&object, "target").unwrap_or_default(),
            },
            None => invalid("stream invocation needs an 'invocationId'"),
        },
        5 => match invocation_id {
            Some(invocation_id) => Incoming::CancelInvocation { invocation_id },
            None => invalid("cancel invocation needs an 'invocationId'"),
        },
        6 => Incoming::Ping,
        7 => Incoming::Close,
        other => Incoming::Ignored(other),
    })
}

fn non_empty_str(object: &Map<String, Value>, key: &str) -> Option<String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
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
}

impl Outgoing {
    /// Serializes and frames the message.
    pub fn encode(&self) -> String {
        let value = match self {
            Self::Completion {
                invocation_id,
                outcome,
            } => match outcome {
                Ok(None) => json!({ "type": 3, "invocationId": invocation_id }),
                Ok(Some(result)) => {
                    json!({ "type": 3, "invocationId": invocation_id, "result": result })
                }
                Err(error) => json!({ "type": 3, "invocationId": invocation_id, "error": error }),
            },
            Self::Ping => return frame(r#"{"type":6}"#.into()),
            Self::Close {
                error,
                allow_reconnect,
            } => {
                let mut close = Map::new();
                close.insert("type".into(), 7.into());
                if let Some(error) = error {
                    close.insert("error".into(), error.clone().into());
                }
                if *allow_reconnect {
                    close.insert("allowReconnect".into(), true.into());
                }
                Value::Object(close)
            }
        };
        frame(value.to_string())
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
    fn records_split_on_the_separator_and_keep_partial_tails() {
        let mut buffer = RecordBuffer::new(1024);
        let input = format!("{{\"type\":6}}{RS}{{\"type\":7}}{RS}{{\"ty");
        assert_eq!(
            buffer.push(input.as_bytes()).unwrap(),
            vec![r#"{"type":6}"#, r#"{"type":7}"#]
        );
        assert!(buffer.has_partial());
        assert_eq!(
            buffer.push(format!("pe\":6}}{RS}").as_bytes()).unwrap(),
            vec![r#"{"type":6}"#]
        );
        assert!(!buffer.has_partial());
        // Empty records are skipped.
        assert!(buffer
            .push(format!("{RS}{RS} {RS}").as_bytes())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn oversize_records_are_refused_whether_complete_or_partial() {
        let mut buffer = RecordBuffer::new(8);
        assert_eq!(
            buffer.push(format!("{}{RS}", "x".repeat(9)).as_bytes()),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        assert_eq!(
            buffer.push("x".repeat(9).as_bytes()),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        let mut buffer = RecordBuffer::new(8);
        buffer.push(b"xxxx").unwrap();
        assert_eq!(
            buffer.push(b"xxxxx"),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        assert!(matches!(
            RecordBuffer::new(8).push(&[0xff, 0xfe, 0x1e]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn frame_appends_exactly_one_separator() {
        assert_eq!(frame("{}".into()), format!("{{}}{RS}"));
        assert_eq!(handshake_response(None), format!("{{}}{RS}"));
        assert_eq!(
            handshake_response(Some("no")),
            format!("{{\"error\":\"no\"}}{RS}")
        );
    }

    #[test]
    fn handshake_accepts_json_versions_zero_and_one_only() {
        assert_eq!(
            parse_handshake(r#"{"protocol":"json","version":1}"#),
            Ok(())
        );
        assert_eq!(
            parse_handshake(r#"{"protocol": "json", "version": 0}"#),
            Ok(())
        );
        assert_eq!(
            parse_handshake(r#"{"protocol":"messagepack","version":1}"#),
            Err(HandshakeError::UnsupportedProtocol("messagepack".into()))
        );
        assert_eq!(
            parse_handshake(r#"{"protocol":"json","version":2}"#),
            Err(HandshakeError::UnsupportedVersion(2))
        );
        for garbage in [
            "",
            "nope",
            "[]",
            r#"{"protocol":"json"}"#,
            r#"{"version":1}"#,
        ] {
            assert!(
                matches!(parse_handshake(garbage), Err(HandshakeError::Malformed(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn decodes_the_messages_clients_send() {
        let check = |input: &str, expected: Incoming| {
            assert_eq!(decode(input).unwrap(), expected, "{input}");
        };
        check(
            r#"{"type":1,"invocationId":"0","target":"SendMessage","arguments":["r1","hi"]}"#,
            Incoming::Invocation {
                invocation_id: Some("0".into()),
                target: "SendMessage".into(),
                arguments: vec![json!("r1"), json!("hi")],
                has_streams: false,
            },
        );
        check(
            r#"{"type":1,"target":"Typing","arguments":["r1",true],"streamIds":["1"],"headers":{}}"#,
            Incoming::Invocation {
                invocation_id: None,
                target: "Typing".into(),
                arguments: vec![json!("r1"), json!(true)],
                has_streams: true,
            },
        );
        check(
            r#"{"type":4,"invocationId":"2","target":"S","arguments":[]}"#,
            Incoming::StreamInvocation {
                invocation_id: "2".into(),
                target: "S".into(),
            },
        );
        check(
            r#"{"type":5,"invocationId":"2"}"#,
            Incoming::CancelInvocation {
                invocation_id: "2".into(),
            },
        );
        check(r#"{"type":6}"#, Incoming::Ping);
        check(r#"{"type":7,"error":null}"#, Incoming::Close);
        check(r#"{"type":8,"sequenceId":1}"#, Incoming::Ignored(8));
        check(r#"{"type":42}"#, Incoming::Ignored(42));
    }

    #[test]
    fn broken_messages_are_invalid_and_keep_their_invocation_id() {
        let reason_of = |input: &str| match decode(input).unwrap() {
            Incoming::Invalid {
                invocation_id,
                reason,
            } => (invocation_id, reason),
            other => panic!("{input} decoded as {other:?}"),
        };
        assert_eq!(
            reason_of(r#"{"type":1,"invocationId":"9","arguments":[]}"#).0,
            Some("9".into())
        );
        assert_eq!(
            reason_of(r#"{"type":1,"invocationId":"9","target":"X","arguments":{}}"#).0,
            Some("9".into())
        );
        assert_eq!(reason_of(r#"{"invocationId":"3"}"#).0, Some("3".into()));
        assert_eq!(reason_of(r#"{"type":1,"invocationId":5}"#).0, None);
        assert_eq!(reason_of(r#"{"type":"1"}"#).0, None);
        assert_eq!(reason_of(r#"{"type":4,"target":"X"}"#).0, None);
        for garbage in ["", "not json", "[1,2]", "\"x\"", "{\"type\":1", "null"] {
            assert!(
                matches!(decode(garbage), Err(ProtocolError::Malformed(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn encodes_only_spec_fields() {
        let decode_out = |message: Outgoing| -> Value {
            let text = message.encode();
            assert!(text.ends_with(RS));
            serde_json::from_str(text.trim_end_matches(RS)).unwrap()
        };
        assert_eq!(
            decode_out(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Ok(None)
            }),
            json!({"type": 3, "invocationId": "1"})
        );
        assert_eq!(
            decode_out(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Ok(Some(json!({"id": "m"})))
            }),
            json!({"type": 3, "invocationId": "1", "result": {"id": "m"}})
        );
        assert_eq!(
            decode_out(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Err("nope".into())
            }),
            json!({"type": 3, "invocationId": "1", "error": "nope"})
        );
        assert_eq!(decode_out(Outgoing::Ping), json!({"type": 6}));
        assert_eq!(
            decode_out(Outgoing::Close {
                error: Some("bye".into()),
                allow_reconnect: true
            }),
            json!({"type": 7, "error": "bye", "allowReconnect": true})
        );
        assert_eq!(
            decode_out(Outgoing::Close {
                error: None,
                allow_reconnect: false
            }),
            json!({"type": 7})
        );
    }
}
