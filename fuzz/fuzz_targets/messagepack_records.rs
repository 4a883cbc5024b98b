//! Arbitrary bytes through the hub's MessagePack record splitter and message decoder, as a
//! binary WebSocket message or POST body reaches them after a `messagepack` handshake.
//!
//! Input: one byte choosing the record size limit, one byte choosing how the rest is cut into
//! transport messages, then the bytes the client sent.
//! Properties: nothing panics; how the bytes are cut does not change the records or the error;
//! every answer the hub would write (Close, error completion) is exactly one record that
//! carries the text or id it was given; a decoded message written back as a client would
//! write it decodes to the same message; and an invocation's arguments survive the hub's
//! JSON-to-MessagePack re-encoding of pushed invocations unchanged.

#![no_main]

use bytes::Bytes;
use imgate_signalr::protocol::messagepack::{decode, invocation_from_json};
use imgate_signalr::protocol::{Frame, HubProtocol, Incoming, Outgoing, ProtocolError, RecordBuffer};
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
    let whole = RecordBuffer::new(HubProtocol::MessagePack, max_record).push(input);
    let chunked = push_in_chunks(max_record, input, usize::from(*cut) + 1);
    assert_eq!(whole, chunked, "cutting the input changed what was read");
    let records = match whole {
        Ok(records) => records,
        Err(err) => return check_close(&err),
    };
    for record in &records {
        assert!(record.len() <= max_record, "a record over the limit");
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
    let mut buffer = RecordBuffer::new(HubProtocol::MessagePack, max_record);
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
        one_record(close.encode(HubProtocol::MessagePack)),
        json!([7, err.to_string(), false])
    );
}

fn check_message(incoming: &Incoming) {
    if let Some(written) = written_back(incoming) {
        assert_eq!(decode(&written).as_ref(), Ok(incoming), "{written:02x?}");
    }
    if let Incoming::Invocation {
        target, arguments, ..
    } = incoming
    {
        // What the hub would push with these arguments reads back as the same values.
        let record = json!({ "type": 1, "target": target, "arguments": arguments });
        let pushed = invocation_from_json(format!("{record}\u{1e}").as_bytes())
            .expect("the hub re-encodes its own JSON records");
        let read = one_body(&pushed);
        assert_eq!(
            decode(&read),
            Ok(Incoming::Invocation {
                invocation_id: None,
                target: target.clone(),
                arguments: arguments.clone(),
                has_streams: false,
            })
        );
    }
    let (id, error) = match incoming {
        Incoming::Invalid {
            invocation_id,
            reason,
        } => (invocation_id.clone(), reason.clone()),
        Incoming::StreamInvocation { invocation_id, .. }
        | Incoming::CancelInvocation { invocation_id } => {
            (Some(invocation_id.clone()), "refused".into())
        }
        _ => return,
    };
    // The client matches the completion by this id, whatever characters it holds.
    if let Some(id) = id {
        let completion = Outgoing::Completion {
            invocation_id: id.clone(),
            outcome: Err(error.clone()),
        };
        assert_eq!(
            one_record(completion.encode(HubProtocol::MessagePack)),
            json!([3, {}, id, 1, error])
        );
    }
}

/// The message as a client would write it (one framed record), when the hub understands it.
fn written_back(incoming: &Incoming) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let w = &mut body;
    let id = |w: &mut Vec<u8>, id: &Option<String>| match id {
        Some(id) => rmp::encode::write_str(w, id).unwrap(),
        None => rmp::encode::write_nil(w).unwrap(),
    };
    match incoming {
        Incoming::Invocation {
            invocation_id,
            target,
            arguments,
            has_streams,
        } => {
            rmp::encode::write_array_len(w, 6).unwrap();
            rmp::encode::write_uint(w, 1).unwrap();
            rmp::encode::write_map_len(w, 0).unwrap();
            id(w, invocation_id);
            rmp::encode::write_str(w, target).unwrap();
            rmp_serde::encode::write(w, arguments).unwrap();
            let streams: &[&str] = if *has_streams { &["0"] } else { &[] };
            rmp_serde::encode::write(w, streams).unwrap();
        }
        Incoming::StreamInvocation {
            invocation_id,
            target,
        } => {
            rmp::encode::write_array_len(w, 5).unwrap();
            rmp::encode::write_uint(w, 4).unwrap();
            rmp::encode::write_map_len(w, 0).unwrap();
            rmp::encode::write_str(w, invocation_id).unwrap();
            rmp::encode::write_str(w, target).unwrap();
            rmp::encode::write_array_len(w, 0).unwrap();
        }
        Incoming::CancelInvocation { invocation_id } => {
            rmp::encode::write_array_len(w, 3).unwrap();
            rmp::encode::write_uint(w, 5).unwrap();
            rmp::encode::write_map_len(w, 0).unwrap();
            rmp::encode::write_str(w, invocation_id).unwrap();
        }
        Incoming::Ping => w.extend([0x91, 0x06]),
        Incoming::Close => w.extend([0x92, 0x07, 0xc0]),
        Incoming::Ignored(kind) => {
            rmp::encode::write_array_len(w, 1).unwrap();
            rmp::encode::write_uint(w, *kind).unwrap();
        }
        Incoming::Invalid { .. } => return None,
    }
    Some(body)
}

/// The one record's body in `bytes`, as the client would split them.
fn one_body(bytes: &Bytes) -> Vec<u8> {
    let mut buffer = RecordBuffer::new(HubProtocol::MessagePack, usize::MAX);
    let records = buffer.push(bytes).expect("the hub writes readable records");
    assert!(!buffer.has_partial(), "a record cut short: {bytes:02x?}");
    assert_eq!(records.len(), 1, "not one record: {bytes:02x?}");
    records.into_iter().next().unwrap()
}

/// Reads a frame as the client would: exactly one whole MessagePack record, as JSON.
fn one_record(frame: Frame) -> Value {
    let Frame::Binary(bytes) = frame else {
        panic!("the MessagePack protocol writes binary");
    };
    let body = one_body(&bytes);
    let value = rmpv::decode::read_value(&mut body.as_slice()).expect("the hub writes MessagePack");
    serde_json::to_value(rmpv_json(value)).unwrap()
}

/// A MessagePack value the hub wrote, as JSON.
fn rmpv_json(value: rmpv::Value) -> Value {
    match value {
        rmpv::Value::Nil => Value::Null,
        rmpv::Value::Boolean(flag) => json!(flag),
        rmpv::Value::Integer(n) => n.as_i64().map_or_else(|| json!(n.as_u64()), |n| json!(n)),
        rmpv::Value::String(text) => json!(text.into_str().expect("the hub writes UTF-8")),
        rmpv::Value::Array(items) => Value::Array(items.into_iter().map(rmpv_json).collect()),
        rmpv::Value::Map(entries) => Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_str().expect("string keys").to_owned(), rmpv_json(v)))
                .collect(),
        ),
        other => panic!("the hub wrote {other} in an answer"),
    }
}
