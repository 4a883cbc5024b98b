//! The JSON hub protocol: records are JSON objects, each ended by the 0x1E record separator.

use serde_json::{json, Map, Value};

use super::{Incoming, Outgoing, ProtocolError};

/// The ASCII record separator that ends every JSON hub protocol record.
pub const RECORD_SEPARATOR: u8 = 0x1e;

/// Whether a record holds nothing but JSON white space.
pub(super) fn is_blank(record: &[u8]) -> bool {
    record.iter().all(u8::is_ascii_whitespace)
}

/// Appends the record separator to a serialized record.
pub fn frame(mut record: String) -> String {
    record.push(RECORD_SEPARATOR as char);
    record
}

/// Decodes one record (without its separator). Non-JSON is an error; a JSON object of the
/// wrong shape is [`Incoming::Invalid`].
pub fn decode(record: &[u8]) -> Result<Incoming, ProtocolError> {
    let value: Value =
        serde_json::from_slice(record).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
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
        8 | 9 => match object.get("sequenceId").and_then(Value::as_u64) {
            Some(id) if kind == 8 => Incoming::Ack(id),
            Some(id) => Incoming::Sequence(id),
            None => invalid("needs an integer 'sequenceId'"),
        },
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

/// Serializes and frames `message`.
pub(super) fn encode(message: &Outgoing) -> String {
    let value = match message {
        Outgoing::Completion {
            invocation_id,
            outcome,
        } => match outcome {
            Ok(None) => json!({ "type": 3, "invocationId": invocation_id }),
            Ok(Some(result)) => {
                json!({ "type": 3, "invocationId": invocation_id, "result": result })
            }
            Err(error) => json!({ "type": 3, "invocationId": invocation_id, "error": error }),
        },
        Outgoing::Ping => return frame(r#"{"type":6}"#.into()),
        Outgoing::Ack(id) => json!({ "type": 8, "sequenceId": id }),
        Outgoing::Sequence(id) => json!({ "type": 9, "sequenceId": id }),
        Outgoing::Close {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HubProtocol, RecordBuffer};

    const RS: char = '\u{1e}';

    fn records(buffer: &mut RecordBuffer, data: &str) -> Vec<String> {
        let list = buffer.push(data.as_bytes()).unwrap();
        list.into_iter()
            .map(|r| String::from_utf8(r).unwrap())
            .collect()
    }

    #[test]
    fn records_split_on_the_separator_and_keep_partial_tails() {
        let mut buffer = RecordBuffer::new(HubProtocol::Json, 1024);
        let input = format!("{{\"type\":6}}{RS}{{\"type\":7}}{RS}{{\"ty");
        assert_eq!(
            records(&mut buffer, &input),
            vec![r#"{"type":6}"#, r#"{"type":7}"#]
        );
        assert!(buffer.has_partial());
        assert_eq!(
            records(&mut buffer, &format!("pe\":6}}{RS}")),
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
        let mut buffer = RecordBuffer::new(HubProtocol::Json, 8);
        assert_eq!(
            buffer.push(format!("{}{RS}", "x".repeat(9)).as_bytes()),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        assert_eq!(
            buffer.push("x".repeat(9).as_bytes()),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        let mut buffer = RecordBuffer::new(HubProtocol::Json, 8);
        buffer.push(b"xxxx").unwrap();
        assert_eq!(
            buffer.push(b"xxxxx"),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        assert_eq!(
            RecordBuffer::new(HubProtocol::Json, 8).push(&[0xff, 0xfe, 0x1e]),
            Ok(vec![vec![0xff, 0xfe]])
        );
        assert!(matches!(
            decode(&[0xff, 0xfe]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn frame_appends_exactly_one_separator() {
        assert_eq!(frame("{}".into()), format!("{{}}{RS}"));
    }

    #[test]
    fn decodes_the_messages_clients_send() {
        let check = |input: &str, expected: Incoming| {
            assert_eq!(decode(input.as_bytes()).unwrap(), expected, "{input}");
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
        check(r#"{"type":8,"sequenceId":1}"#, Incoming::Ack(1));
        check(r#"{"type":9,"sequenceId":12}"#, Incoming::Sequence(12));
        check(
            r#"{"type":2,"invocationId":"1","item":3}"#,
            Incoming::Ignored(2),
        );
        check(r#"{"type":42}"#, Incoming::Ignored(42));
    }

    #[test]
    fn broken_messages_are_invalid_and_keep_their_invocation_id() {
        let reason_of = |input: &str| match decode(input.as_bytes()).unwrap() {
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
        assert!(reason_of(r#"{"type":8}"#).1.contains("sequenceId"));
        for garbage in ["", "not json", "[1,2]", "\"x\"", "{\"type\":1", "null"] {
            assert!(
                matches!(decode(garbage.as_bytes()), Err(ProtocolError::Malformed(_))),
                "{garbage}"
            );
        }
    }

    #[test]
    fn encodes_only_spec_fields() {
        let decode_out = |message: Outgoing| -> Value {
            let text = encode(&message);
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
            decode_out(Outgoing::Ack(3)),
            json!({"type": 8, "sequenceId": 3})
        );
        assert_eq!(
            decode_out(Outgoing::Sequence(4)),
            json!({"type": 9, "sequenceId": 4})
        );
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
