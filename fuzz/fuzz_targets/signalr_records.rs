//! Arbitrary bytes through the hub's JSON record splitter, handshake parser and message
//! decoder, as a WebSocket message or a POST body reaches them. (`messagepack_records` does
//! the same for the MessagePack protocol.)
//!
//! Input: one byte choosing the record size limit, one byte choosing how the rest is cut into
//! transport messages, then the bytes the client sent.
//! Properties: nothing panics; how the bytes are cut does not change the records or the error;
//! every answer the hub would write (handshake error, Close, completion) is exactly one record
//! that carries the text or id it was given; a decoded message written back as JSON decodes
//! to the same message (floats aside, see `without_floats`).

#![no_main]

use imgate_signalr::backend::HubCall;
use imgate_signalr::protocol::json::decode;
use imgate_signalr::protocol::{
    handshake_response, parse_handshake, Frame, HubProtocol, Incoming, Outgoing, ProtocolError,
    RecordBuffer,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let [limit, cut, input @ ..] = data else {
        return;
    };
    // Small limits reach the size checks; the hub's default reaches everything else.
    let max_record = if limit & 0x80 == 0 {
        32 * 1024
    } else {
        usize::from(limit & 0x7f)
    };
    let whole = RecordBuffer::new(HubProtocol::Json, max_record).push(input);
    let chunked = push_in_chunks(max_record, input, usize::from(*cut) + 1);
    assert_eq!(whole, chunked, "cutting the input changed what was read");
    let Ok(records) = whole else {
        let err = whole.unwrap_err();
        check_close(&err);
        return;
    };
    for record in &records {
        assert!(
            !record.iter().all(u8::is_ascii_whitespace),
            "an empty record was returned"
        );
        if let Err(err) = parse_handshake(record) {
            let answer = one_record(&handshake_response(Some(&err.to_string())));
            assert_eq!(answer, json!({ "error": err.to_string() }));
        }
        match decode(record) {
            Err(err) => check_close(&err),
            Ok(incoming) => check_message(&incoming),
        }
    }
});

/// The records of `input` sent as messages of `size` bytes, up to the first error.
fn push_in_chunks(
    max_record: usize,
    input: &[u8],
    size: usize,
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut buffer = RecordBuffer::new(HubProtocol::Json, max_record);
    let mut records = Vec::new();
    for chunk in input.chunks(size) {
        records.extend(buffer.push(chunk)?);
    }
    Ok(records)
}

/// A protocol error closes the connection with its text.
fn check_close(err: &ProtocolError) {
    let close = Outgoing::Close {
        error: Some(err.to_string()),
        allow_reconnect: false,
    };
    assert_eq!(
        one_record(&text(close.encode(HubProtocol::Json))),
        json!({ "type": 7, "error": err.to_string() })
    );
}

fn check_message(incoming: &Incoming) {
    if let Some(written) = written_back(incoming) {
        let read_again = decode(written.to_string().as_bytes()).map(without_floats);
        assert_eq!(
            read_again,
            Ok(without_floats(incoming.clone())),
            "{written}"
        );
    }
    let (id, error) = match incoming {
        Incoming::Invocation {
            invocation_id,
            target,
            arguments,
            ..
        } => match HubCall::parse(target, arguments) {
            Ok(call) => {
                assert!(target.eq_ignore_ascii_case(call.name()));
                return;
            }
            Err(error) => (invocation_id.clone(), error),
        },
        Incoming::Invalid {
            invocation_id,
            reason,
        } => (invocation_id.clone(), reason.clone()),
        Incoming::StreamInvocation { invocation_id, .. }
        | Incoming::CancelInvocation { invocation_id } => {
            (Some(invocation_id.clone()), "refused".into())
        }
        Incoming::Ping | Incoming::Close | Incoming::Ignored(_) => return,
    };
    // The client matches the completion by this id, whatever characters it holds.
    if let Some(id) = id {
        let completion = Outgoing::Completion {
            invocation_id: id.clone(),
            outcome: Err(error.clone()),
        };
        assert_eq!(
            one_record(&text(completion.encode(HubProtocol::Json))),
            json!({ "type": 3, "invocationId": id, "error": error })
        );
    }
}

/// The message as a client would write it, when it is one the hub understands.
fn written_back(incoming: &Incoming) -> Option<Value> {
    Some(match incoming {
        Incoming::Invocation {
            invocation_id,
            target,
            arguments,
            has_streams,
        } => {
            let mut message = json!({ "type": 1, "target": target, "arguments": arguments });
            if let Some(id) = invocation_id {
                message["invocationId"] = json!(id);
            }
            if *has_streams {
                message["streamIds"] = json!(["0"]);
            }
            message
        }
        Incoming::StreamInvocation {
            invocation_id,
            target,
        } => json!({ "type": 4, "invocationId": invocation_id, "target": target, "arguments": [] }),
        Incoming::CancelInvocation { invocation_id } => {
            json!({ "type": 5, "invocationId": invocation_id })
        }
        Incoming::Ping => json!({ "type": 6 }),
        Incoming::Close => json!({ "type": 7 }),
        Incoming::Ignored(kind) => json!({ "type": kind }),
        Incoming::Invalid { .. } => return None,
    })
}

/// The message with every non-integer number in its arguments replaced by `null`.
///
/// serde_json parses floats to within one unit in the last place unless its
/// `float_roundtrip` feature is on, so `2.2202e49` written back may read as
/// `2.2201999999999997e49` (found by this target). No hub method takes a number that is not
/// an integer, so the gateway does not pay for exact float parsing and this target does not
/// compare floats.
fn without_floats(incoming: Incoming) -> Incoming {
    fn strip(value: Value) -> Value {
        match value {
            Value::Number(n) if n.is_f64() => Value::Null,
            Value::Array(items) => Value::Array(items.into_iter().map(strip).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, strip(v))).collect())
            }
            other => other,
        }
    }
    match incoming {
        Incoming::Invocation {
            invocation_id,
            target,
            arguments,
            has_streams,
        } => Incoming::Invocation {
            invocation_id,
            target,
            arguments: arguments.into_iter().map(strip).collect(),
            has_streams,
        },
        other => other,
    }
}

/// The text of a JSON frame.
fn text(frame: Frame) -> String {
    match frame {
        Frame::Text(text) => text.to_string(),
        Frame::Binary(_) => panic!("the JSON protocol writes text"),
    }
}

/// Reads `text` as the client would: exactly one whole JSON record.
fn one_record(text: &str) -> Value {
    let mut buffer = RecordBuffer::new(HubProtocol::Json, usize::MAX);
    let records = buffer
        .push(text.as_bytes())
        .expect("the hub writes readable records");
    assert!(
        !buffer.has_partial(),
        "a record without its separator: {text:?}"
    );
    assert_eq!(records.len(), 1, "not one record: {text:?}");
    serde_json::from_slice(&records[0]).expect("the hub writes JSON")
}
