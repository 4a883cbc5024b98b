//! The MessagePack hub protocol, version 1 (dotnet/aspnetcore `HubProtocol.md`, "MessagePack
//! (MsgPack) encoding"): each message is one MessagePack array whose first item is the message
//! type, and each record is that array after its length as a VarInt (1 to 5 bytes, the lowest
//! 7 bits first, the top bit set on every byte but the last).
//!
//! Values mean what they mean in the JSON protocol, so an event reads the same in both:
//! objects are maps with string keys, and dates are the contract's RFC 3339 strings rather
//! than MessagePack timestamps.

use bytes::Bytes;
use rmpv::Value as Pack;
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use super::{Incoming, Outgoing, ProtocolError, RECORD_SEPARATOR};

/// How deeply a client's values may nest: far more than any hub method takes, and a bound,
/// so a crafted record cannot exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The longest length prefix: 5 bytes carry 35 bits, more than the 2 GiB the spec allows.
const MAX_PREFIX: usize = 5;

/// A completion's result kinds.
const ERROR_RESULT: u64 = 1;
const VOID_RESULT: u64 = 2;
const NON_VOID_RESULT: u64 = 3;

/// The length at the start of `bytes` and the size of its prefix; `None` while the prefix is
/// incomplete.
fn read_length(bytes: &[u8]) -> Result<Option<(usize, usize)>, ProtocolError> {
    let mut length: u64 = 0;
    for (index, &byte) in bytes.iter().take(MAX_PREFIX).enumerate() {
        length |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((
                usize::try_from(length).unwrap_or(usize::MAX),
                index + 1,
            )));
        }
    }
    if bytes.len() >= MAX_PREFIX {
        return Err(ProtocolError::Malformed(
            "the length prefix is longer than 5 bytes".into(),
        ));
    }
    Ok(None)
}

/// Moves the records `data` completes out of `partial` and `data`, keeping an incomplete one
/// in `partial`. A record is refused as soon as its prefix announces more than `max_record`
/// bytes, so the tail kept never exceeds one record within the limit.
pub(super) fn split(
    partial: &mut Vec<u8>,
    data: &[u8],
    max_record: usize,
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    partial.extend_from_slice(data);
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((length, prefix)) = read_length(&partial[at..])? {
        if length > max_record {
            return Err(ProtocolError::TooLarge { max: max_record });
        }
        let start = at + prefix;
        if partial.len() - start < length {
            break;
        }
        records.push(partial[start..start + length].to_vec());
        at = start + length;
    }
    partial.drain(..at);
    Ok(records)
}

/// Decodes one record (without its length). Bytes that are not one MessagePack array are an
/// error; an array of the wrong shape is [`Incoming::Invalid`].
pub fn decode(record: &[u8]) -> Result<Incoming, ProtocolError> {
    if record.is_empty() {
        return Err(ProtocolError::Malformed("empty message".into()));
    }
    let mut rest = record;
    let value = rmpv::decode::read_value_with_max_depth(&mut rest, MAX_DEPTH)
        .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ProtocolError::Malformed(format!(
            "{} bytes after the message",
            rest.len()
        )));
    }
    let Pack::Array(items) = value else {
        return Err(ProtocolError::Malformed(
            "expected a MessagePack array".into(),
        ));
    };
    let Some(kind) = items.first().and_then(Pack::as_u64) else {
        return Ok(Incoming::Invalid {
            invocation_id: None,
            reason: "missing integer message type".into(),
        });
    };
    match kind {
        1 | 4 | 5 => {}
        6 => return Ok(Incoming::Ping),
        7 => return Ok(Incoming::Close),
        8 | 9 => {
            return Ok(match items.get(1).and_then(Pack::as_u64) {
                Some(id) if kind == 8 => Incoming::Ack(id),
                Some(id) => Incoming::Sequence(id),
                None => Incoming::Invalid {
                    invocation_id: None,
                    reason: "needs an integer sequence id".into(),
                },
            })
        }
        other => return Ok(Incoming::Ignored(other)),
    }
    let invocation_id = match items.get(2) {
        None | Some(Pack::Nil) => None,
        Some(Pack::String(id)) if id.as_str().is_some_and(|id| !id.is_empty()) => {
            id.as_str().map(str::to_owned)
        }
        Some(_) => {
            return Ok(Incoming::Invalid {
                invocation_id: None,
                reason: "the invocation id must be a non-empty string".into(),
            })
        }
    };
    let invalid = |reason: String| {
        Ok(Incoming::Invalid {
            invocation_id: invocation_id.clone(),
            reason,
        })
    };
    if !matches!(items.get(1), Some(Pack::Map(_))) {
        return invalid("the headers must be a map".into());
    }
    let target = items
        .get(3)
        .and_then(Pack::as_str)
        .filter(|target| !target.is_empty())
        .map(str::to_owned);
    match (kind, invocation_id.clone()) {
        (1, _) => {
            let Some(target) = target else {
                return invalid("invocation needs a non-empty string target".into());
            };
            let Some(Pack::Array(arguments)) = items.get(4) else {
                return invalid("invocation needs an array of arguments".into());
            };
            let mut values = Vec::with_capacity(arguments.len());
            for (index, argument) in arguments.iter().enumerate() {
                match to_json(argument) {
                    Ok(value) => values.push(value),
                    Err(reason) => return invalid(format!("argument {}: {reason}", index + 1)),
                }
            }
            let has_streams = matches!(items.get(5), Some(Pack::Array(ids)) if !ids.is_empty());
            Ok(Incoming::Invocation {
                invocation_id,
                target,
                arguments: values,
                has_streams,
            })
        }
        (4, Some(invocation_id)) => Ok(Incoming::StreamInvocation {
            invocation_id,
            target: target.unwrap_or_default(),
        }),
        (5, Some(invocation_id)) => Ok(Incoming::CancelInvocation { invocation_id }),
        _ => invalid("this message needs an invocation id".into()),
    }
}

/// A client's value as the JSON protocol would have carried it; what JSON cannot carry is
/// refused with the reason.
fn to_json(value: &Pack) -> Result<Value, String> {
    let finite = |float: f64| {
        Number::from_f64(float)
            .map(Value::Number)
            .ok_or_else(|| "numbers must be finite".to_owned())
    };
    Ok(match value {
        Pack::Nil => Value::Null,
        Pack::Boolean(flag) => Value::Bool(*flag),
        Pack::Integer(number) => match (number.as_u64(), number.as_i64()) {
            (Some(unsigned), _) => unsigned.into(),
            (_, Some(signed)) => signed.into(),
            _ => Value::Null,
        },
        Pack::F32(float) => finite(f64::from(*float))?,
        Pack::F64(float) => finite(*float)?,
        Pack::String(text) => {
            Value::String(text.as_str().ok_or("strings must be UTF-8")?.to_owned())
        }
        Pack::Binary(_) => return Err("binary values are not taken by this hub".into()),
        Pack::Ext(kind, _) => {
            return Err(format!(
                "extension type {kind} is not taken by this hub (dates are RFC 3339 strings)"
            ))
        }
        Pack::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Pack::Map(entries) => {
            let mut object = Map::new();
            for (key, item) in entries {
                let key = key.as_str().ok_or("map keys must be strings")?;
                object.insert(key.to_owned(), to_json(item)?);
            }
            Value::Object(object)
        }
    })
}

/// Writes one record. Writing MessagePack into a `Vec` cannot fail, so the writers' results
/// are dropped here, once.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn array(&mut self, len: u32) -> &mut Self {
        let _ = rmp::encode::write_array_len(&mut self.0, len);
        self
    }

    fn uint(&mut self, n: u64) -> &mut Self {
        let _ = rmp::encode::write_uint(&mut self.0, n);
        self
    }

    fn no_headers(&mut self) -> &mut Self {
        let _ = rmp::encode::write_map_len(&mut self.0, 0);
        self
    }

    fn str(&mut self, text: &str) -> &mut Self {
        let _ = rmp::encode::write_str(&mut self.0, text);
        self
    }

    fn nil(&mut self) -> &mut Self {
        let _ = rmp::encode::write_nil(&mut self.0);
        self
    }

    fn bool(&mut self, flag: bool) -> &mut Self {
        let _ = rmp::encode::write_bool(&mut self.0, flag);
        self
    }

    /// A JSON value: objects become maps with string keys, numbers the smallest fitting kind.
    fn value(&mut self, value: &impl serde::Serialize) -> &mut Self {
        let _ = rmp_serde::encode::write(&mut self.0, value);
        self
    }

    /// The record: the body after its length.
    fn finish(&mut self) -> Bytes {
        let body = std::mem::take(&mut self.0);
        let mut record = Vec::with_capacity(body.len() + MAX_PREFIX);
        let mut length = body.len();
        loop {
            let low = (length & 0x7f) as u8;
            length >>= 7;
            if length == 0 {
                record.push(low);
                break;
            }
            record.push(low | 0x80);
        }
        record.extend_from_slice(&body);
        record.into()
    }
}

/// Serializes and frames `message`.
pub(super) fn encode(message: &Outgoing) -> Bytes {
    let mut writer = Writer::default();
    match message {
        Outgoing::Completion {
            invocation_id,
            outcome,
        } => {
            let len = if matches!(outcome, Ok(None)) { 4 } else { 5 };
            writer.array(len).uint(3).no_headers().str(invocation_id);
            match outcome {
                Ok(None) => writer.uint(VOID_RESULT),
                Ok(Some(result)) => writer.uint(NON_VOID_RESULT).value(result),
                Err(error) => writer.uint(ERROR_RESULT).str(error),
            };
        }
        Outgoing::Ping => {
            writer.array(1).uint(6);
        }
        Outgoing::Ack(id) => {
            writer.array(2).uint(8).uint(*id);
        }
        Outgoing::Sequence(id) => {
            writer.array(2).uint(9).uint(*id);
        }
        Outgoing::Close {
            error,
            allow_reconnect,
        } => {
            writer.array(3).uint(7);
            match error {
                Some(error) => writer.str(error),
                None => writer.nil(),
            };
            writer.bool(*allow_reconnect);
        }
    }
    writer.finish()
}

/// The MessagePack record of a framed JSON invocation record (an event or a host's
/// invocation): the same target and arguments, read from the JSON the hub wrote, so the two
/// protocols never disagree on a value. `None` if `record` is not such a record.
pub fn invocation_from_json(record: &[u8]) -> Option<Bytes> {
    #[derive(Deserialize)]
    struct Invocation {
        target: String,
        arguments: Vec<Value>,
    }
    let text = record.strip_suffix(&[RECORD_SEPARATOR])?;
    let Invocation { target, arguments } = serde_json::from_slice(text).ok()?;
    Some(
        Writer::default()
            .array(5)
            .uint(1)
            .no_headers()
            .nil()
            .str(&target)
            .value(&arguments)
            .finish(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{HubProtocol, RecordBuffer};
    use serde_json::json;

    /// `body` framed with its length, as a client sends it.
    fn framed(body: &[u8]) -> Vec<u8> {
        let mut writer = Writer(body.to_vec());
        writer.finish().to_vec()
    }

    #[test]
    fn lengths_are_varints_of_up_to_five_bytes() {
        assert_eq!(read_length(&[0x35]), Ok(Some((0x35, 1))));
        assert_eq!(read_length(&[0x80, 0x29]), Ok(Some((0x1480, 2))));
        assert_eq!(read_length(&[0x80]), Ok(None));
        assert_eq!(
            read_length(&[0xff, 0xff, 0xff, 0xff, 0x07]),
            Ok(Some((0x7fff_ffff, 5)))
        );
        assert!(matches!(
            read_length(&[0xff; 5]),
            Err(ProtocolError::Malformed(_))
        ));
        for length in [0, 1, 127, 128, 16_383, 16_384, 100_000] {
            let record = framed(&vec![0; length]);
            let (read, prefix) = read_length(&record).unwrap().unwrap();
            assert_eq!((read, prefix + length), (length, record.len()));
        }
    }

    #[test]
    fn records_split_on_their_lengths_and_keep_partial_tails() {
        let mut buffer = RecordBuffer::new(HubProtocol::MessagePack, 1024);
        let mut input = framed(&[0x91, 0x06]);
        input.extend(framed(&[0x91, 0x07]));
        input.extend(&framed(&[0x91, 0x06])[..2]);
        assert_eq!(
            buffer.push(&input).unwrap(),
            vec![vec![0x91, 0x06], vec![0x91, 0x07]]
        );
        assert!(buffer.has_partial());
        assert_eq!(buffer.push(&[0x06]).unwrap(), vec![vec![0x91, 0x06]]);
        assert!(!buffer.has_partial());
        // Refused as soon as the prefix says too much, before the bytes arrive.
        let mut buffer = RecordBuffer::new(HubProtocol::MessagePack, 8);
        assert_eq!(
            buffer.push(&[0x09]),
            Err(ProtocolError::TooLarge { max: 8 })
        );
        assert!(!buffer.has_partial());
        assert!(matches!(
            buffer.push(&[0xff; 6]),
            Err(ProtocolError::Malformed(_))
        ));
    }

    #[test]
    fn decodes_the_messages_clients_send() {
        // The examples of the spec, then what the official clients write.
        let check = |bytes: &[u8], expected: Incoming| {
            assert_eq!(decode(bytes).unwrap(), expected, "{bytes:02x?}");
        };
        check(
            &[
                0x96, 0x01, 0x80, 0xa3, b'x', b'y', b'z', 0xa6, b'm', b'e', b't', b'h', b'o', b'd',
                0x91, 0x2a, 0x90,
            ],
            Incoming::Invocation {
                invocation_id: Some("xyz".into()),
                target: "method".into(),
                arguments: vec![json!(42)],
                has_streams: false,
            },
        );
        let mut typing = Writer::default();
        typing
            .array(6)
            .uint(1)
            .no_headers()
            .nil()
            .str("Typing")
            .value(&json!(["r1", true, {"n": -1.5}]))
            .value(&json!(["s"]));
        check(
            &typing.0,
            Incoming::Invocation {
                invocation_id: None,
                target: "Typing".into(),
                arguments: vec![json!("r1"), json!(true), json!({"n": -1.5})],
                has_streams: true,
            },
        );
        check(
            &[0x93, 0x05, 0x80, 0xa1, b'2'],
            Incoming::CancelInvocation {
                invocation_id: "2".into(),
            },
        );
        check(&[0x91, 0x06], Incoming::Ping);
        check(&[0x92, 0x07, 0xc0], Incoming::Close);
        check(&[0x92, 0x08, 0xcc, 0x24], Incoming::Ack(36));
        check(&[0x92, 0x09, 0x13], Incoming::Sequence(19));
        check(&[0x94, 0x02, 0x80, 0xa1, b'1', 0x2a], Incoming::Ignored(2));
    }

    #[test]
    fn broken_messages_are_invalid_or_malformed() {
        let reason_of = |bytes: &[u8]| match decode(bytes).unwrap() {
            Incoming::Invalid {
                invocation_id,
                reason,
            } => (invocation_id, reason),
            other => panic!("{bytes:02x?} decoded as {other:?}"),
        };
        // Arguments JSON cannot carry keep the id, so the caller gets its error.
        let mut binary = Writer::default();
        binary
            .array(5)
            .uint(1)
            .no_headers()
            .str("9")
            .str("SendMessage");
        binary.0.extend([0x91, 0xc4, 0x01, 0x00]);
        let (id, reason) = reason_of(&binary.0);
        assert_eq!(id, Some("9".into()));
        assert!(reason.contains("binary"), "{reason}");
        let mut timestamp = Writer::default();
        timestamp.array(5).uint(1).no_headers().str("9").str("S");
        timestamp.0.extend([0x91, 0xd6, 0xff, 0, 0, 0, 0]);
        assert!(reason_of(&timestamp.0).1.contains("RFC 3339"));
        assert_eq!(
            reason_of(&[0x93, 0x01, 0x80, 0xa1, b'9']).0,
            Some("9".into())
        );
        assert_eq!(
            reason_of(&[0x93, 0x01, 0x90, 0xa1, b'9']).1,
            "the headers must be a map"
        );
        assert_eq!(reason_of(&[0x93, 0x04, 0x80, 0xc0]).0, None);
        assert_eq!(reason_of(&[0x91, 0xa1, b'1']).0, None);
        // Nesting deeper than the limit, trailing bytes, and non-arrays are not messages.
        let mut deep = vec![0x91; MAX_DEPTH + 8];
        deep.push(0xc0);
        for garbage in [
            &[][..],
            &[0xc1],
            &[0x91, 0x06, 0x00],
            &[0xa1, b'x'],
            &[0x92, 0x06],
            &deep,
        ] {
            assert!(
                matches!(decode(garbage), Err(ProtocolError::Malformed(_))),
                "{garbage:02x?}"
            );
        }
    }

    /// A record the hub wrote, read back as a generic MessagePack value (length checked).
    fn read_back(record: &[u8]) -> Pack {
        let (length, prefix) = read_length(record).unwrap().unwrap();
        assert_eq!(prefix + length, record.len(), "one whole record");
        rmpv::decode::read_value(&mut &record[prefix..]).unwrap()
    }

    #[test]
    fn encodes_what_the_clients_expect() {
        let pack = |message: Outgoing| read_back(&encode(&message)).to_string();
        assert_eq!(
            pack(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Ok(None)
            }),
            r#"[3, {}, "1", 2]"#
        );
        assert_eq!(
            pack(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Ok(Some(json!({"id": "m", "n": 7})))
            }),
            r#"[3, {}, "1", 3, {"id": "m", "n": 7}]"#
        );
        assert_eq!(
            pack(Outgoing::Completion {
                invocation_id: "1".into(),
                outcome: Err("nope".into())
            }),
            r#"[3, {}, "1", 1, "nope"]"#
        );
        assert_eq!(encode(&Outgoing::Ping).as_ref(), &[0x02, 0x91, 0x06]);
        assert_eq!(pack(Outgoing::Ack(36)), "[8, 36]");
        assert_eq!(pack(Outgoing::Sequence(19)), "[9, 19]");
        assert_eq!(
            pack(Outgoing::Close {
                error: Some("bye".into()),
                allow_reconnect: true
            }),
            r#"[7, "bye", true]"#
        );
        assert_eq!(
            pack(Outgoing::Close {
                error: None,
                allow_reconnect: false
            }),
            "[7, nil, false]"
        );
    }

    #[test]
    fn invocations_carry_the_json_records_values() {
        let json = br#"{"type":1,"target":"notify","arguments":[{"at":"2026-12-05T09:00:00Z","n":-3,"x":0.5},null,[true]]}"#;
        let mut record = json.to_vec();
        record.push(RECORD_SEPARATOR);
        let packed = invocation_from_json(&record).unwrap();
        assert_eq!(
            read_back(&packed).to_string(),
            r#"[1, {}, nil, "notify", [{"at": "2026-12-05T09:00:00Z", "n": -3, "x": 0.5}, nil, [true]]]"#
        );
        assert_eq!(invocation_from_json(json), None, "not framed");
        assert_eq!(invocation_from_json(b"[]\x1e"), None);
    }
}
