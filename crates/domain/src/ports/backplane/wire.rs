//! The backplane's wire format, version 1: what one node sends the others.
//!
//! Binary, big-endian, every variable part length-prefixed:
//!
//! ```text
//! u8 version (1) · u16+bytes origin node id · u8 audience (0 all, 1 user) [· u16+bytes user id]
//! · u8 kind
//!   kind 1 (frames): u8 stamped (0/1) [· u16+bytes message id · i64 at_s · u32 at_ns
//!                    · u8 edited (0/1) [· i64 edited_s · u32 edited_ns]]
//!                    · frames
//!   kind 2 (close):  u16+bytes reason (UTF-8)
//!   kind 3 (host):   frames
//! frames: u8 frame count · per frame: u8 protocol · u32+bytes frame
//! ```
//!
//! A reader refuses any other version rather than guess: nodes of two versions would
//! otherwise misread each other during a rolling upgrade. A change to the layout is a new
//! version, which readers learn before writers send it. A new kind is not: a reader that does
//! not know it refuses the message as malformed, never misreads it, so a kind is added only for
//! what older nodes could not do anyway (kind 3 came with host realtime).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use chrono::{DateTime, Utc};

use super::{Audience, BackplaneMessage, MessageStamp, Payload, ProtocolCode};
use crate::ids::{MessageId, UserId};

/// The version this build writes and reads.
pub const VERSION: u8 = 1;

const AUDIENCE_ALL: u8 = 0;
const AUDIENCE_USER: u8 = 1;
const KIND_FRAMES: u8 = 1;
const KIND_CLOSE: u8 = 2;
const KIND_HOST: u8 = 3;

/// Why bytes from the backplane could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Written by a version this build does not read.
    #[error("backplane message of version {0}; this node reads version {VERSION}")]
    Version(u8),
    /// Cut short or otherwise not a message of this version.
    #[error("malformed backplane message: {0}")]
    Malformed(&'static str),
}

/// Encodes `message` as sent by node `origin`.
pub fn encode(origin: &str, message: &BackplaneMessage) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + payload_len(&message.payload));
    out.put_u8(VERSION);
    put_short(&mut out, origin.as_bytes());
    match &message.audience {
        Audience::All => out.put_u8(AUDIENCE_ALL),
        Audience::User(user) => {
            out.put_u8(AUDIENCE_USER);
            put_short(&mut out, user.as_str().as_bytes());
        }
    }
    match &message.payload {
        Payload::Frames { stamp, frames } => {
            out.put_u8(KIND_FRAMES);
            match stamp {
                None => out.put_u8(0),
                Some(stamp) => {
                    out.put_u8(1);
                    put_short(&mut out, stamp.id.as_str().as_bytes());
                    put_time(&mut out, stamp.at);
                    match stamp.edited_at {
                        None => out.put_u8(0),
                        Some(edited) => {
                            out.put_u8(1);
                            put_time(&mut out, edited);
                        }
                    }
                }
            }
            put_frames(&mut out, frames);
        }
        Payload::Host { frames } => {
            out.put_u8(KIND_HOST);
            put_frames(&mut out, frames);
        }
        Payload::Close { reason } => {
            out.put_u8(KIND_CLOSE);
            put_short(&mut out, reason.as_bytes());
        }
    }
    out.freeze()
}

fn payload_len(payload: &Payload) -> usize {
    match payload {
        Payload::Frames { frames, .. } | Payload::Host { frames } => {
            frames.iter().map(|(_, f)| f.len() + 5).sum()
        }
        Payload::Close { reason } => reason.len(),
    }
}

fn put_frames(out: &mut BytesMut, frames: &[(ProtocolCode, Bytes)]) {
    // Callers hold one frame per protocol, so a handful at most.
    out.put_u8(u8::try_from(frames.len()).unwrap_or(u8::MAX));
    for (protocol, frame) in frames.iter().take(usize::from(u8::MAX)) {
        out.put_u8(protocol.0);
        out.put_u32(u32::try_from(frame.len()).unwrap_or(u32::MAX));
        out.put_slice(frame);
    }
}

fn take_frames(input: &mut Bytes) -> Result<Vec<(ProtocolCode, Bytes)>, WireError> {
    let count = take_u8(input)?;
    let mut frames = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let protocol = ProtocolCode(take_u8(input)?);
        let len = take_u32(input)? as usize;
        if input.remaining() < len {
            return Err(WireError::Malformed("frame cut short"));
        }
        frames.push((protocol, input.split_to(len)));
    }
    Ok(frames)
}

/// Strings up to 64 KiB: ids, node names and reasons are far shorter; longer ones are cut.
fn put_short(out: &mut BytesMut, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.put_u16(len as u16);
    out.put_slice(&bytes[..len]);
}

fn put_time(out: &mut BytesMut, at: DateTime<Utc>) {
    out.put_i64(at.timestamp());
    out.put_u32(at.timestamp_subsec_nanos());
}

/// Reads a message; gives the origin node id with it. Frames share `bytes`' buffer.
pub fn decode(bytes: Bytes) -> Result<(String, BackplaneMessage), WireError> {
    let mut input = bytes;
    let version = take_u8(&mut input)?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let origin = take_string(&mut input)?;
    let audience = match take_u8(&mut input)? {
        AUDIENCE_ALL => Audience::All,
        AUDIENCE_USER => Audience::User(
            UserId::parse(take_string(&mut input)?).map_err(|_| WireError::Malformed("user id"))?,
        ),
        _ => return Err(WireError::Malformed("audience")),
    };
    let payload = match take_u8(&mut input)? {
        KIND_FRAMES => {
            let stamp = match take_u8(&mut input)? {
                0 => None,
                1 => {
                    let id = MessageId::parse(take_string(&mut input)?)
                        .map_err(|_| WireError::Malformed("message id"))?;
                    let at = take_time(&mut input)?;
                    let edited_at = match take_u8(&mut input)? {
                        0 => None,
                        1 => Some(take_time(&mut input)?),
                        _ => return Err(WireError::Malformed("edit flag")),
                    };
                    Some(MessageStamp { id, edited_at, at })
                }
                _ => return Err(WireError::Malformed("stamp flag")),
            };
            Payload::Frames {
                stamp,
                frames: take_frames(&mut input)?,
            }
        }
        KIND_HOST => Payload::Host {
            frames: take_frames(&mut input)?,
        },
        KIND_CLOSE => Payload::Close {
            reason: take_string(&mut input)?,
        },
        _ => return Err(WireError::Malformed("kind")),
    };
    if input.has_remaining() {
        return Err(WireError::Malformed("trailing bytes"));
    }
    Ok((origin, BackplaneMessage { audience, payload }))
}

fn take_u8(input: &mut Bytes) -> Result<u8, WireError> {
    input
        .has_remaining()
        .then(|| input.get_u8())
        .ok_or(WireError::Malformed("cut short"))
}

fn take_u32(input: &mut Bytes) -> Result<u32, WireError> {
    (input.remaining() >= 4)
        .then(|| input.get_u32())
        .ok_or(WireError::Malformed("cut short"))
}

fn take_string(input: &mut Bytes) -> Result<String, WireError> {
    if input.remaining() < 2 {
        return Err(WireError::Malformed("cut short"));
    }
    let len = usize::from(input.get_u16());
    if input.remaining() < len {
        return Err(WireError::Malformed("cut short"));
    }
    String::from_utf8(input.split_to(len).to_vec()).map_err(|_| WireError::Malformed("not UTF-8"))
}

fn take_time(input: &mut Bytes) -> Result<DateTime<Utc>, WireError> {
    if input.remaining() < 12 {
        return Err(WireError::Malformed("cut short"));
    }
    let seconds = input.get_i64();
    let nanos = input.get_u32();
    DateTime::from_timestamp(seconds, nanos).ok_or(WireError::Malformed("time out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped() -> BackplaneMessage {
        BackplaneMessage {
            audience: Audience::User(UserId::parse("alice").unwrap()),
            payload: Payload::Frames {
                stamp: Some(MessageStamp {
                    id: MessageId::parse("m1").unwrap(),
                    edited_at: Some(DateTime::from_timestamp(1_700_000_060, 5).unwrap()),
                    at: DateTime::from_timestamp(1_700_000_060, 5).unwrap(),
                }),
                frames: vec![(ProtocolCode::JSON, Bytes::from_static(b"{}\x1e"))],
            },
        }
    }

    #[test]
    fn every_kind_of_message_reads_back_as_written() {
        let close = BackplaneMessage {
            audience: Audience::User(UserId::parse("bob").unwrap()),
            payload: Payload::Close {
                reason: "the user's account was deleted".into(),
            },
        };
        let broadcast = BackplaneMessage {
            audience: Audience::All,
            payload: Payload::Frames {
                stamp: None,
                frames: vec![
                    (ProtocolCode::JSON, Bytes::from_static(b"{\"type\":1}\x1e")),
                    (ProtocolCode::MESSAGEPACK, Bytes::from_static(&[3, 0x91, 1])),
                ],
            },
        };
        let host = BackplaneMessage {
            audience: Audience::User(UserId::parse("carol").unwrap()),
            payload: Payload::Host {
                frames: vec![(ProtocolCode::JSON, Bytes::from_static(b"{\"type\":1}\x1e"))],
            },
        };
        for message in [stamped(), close, broadcast, host] {
            let (origin, read) = decode(encode("node-a", &message)).unwrap();
            assert_eq!(origin, "node-a");
            assert_eq!(read, message);
        }
    }

    /// The exact bytes of version 1. If this test fails, the format changed: nodes of the
    /// old build would drop what the new one sends. Make it a new version instead.
    #[test]
    fn version_1_is_pinned_byte_for_byte() {
        let expected: &[u8] = &[
            1, // version
            0, 1, b'n', // origin "n"
            1, 0, 5, b'a', b'l', b'i', b'c', b'e', // user "alice"
            1,    // frames
            1, 0, 2, b'm', b'1', // stamp, id "m1"
            0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x3c, 0, 0, 0, 5, // at
            1, 0, 0, 0, 0, 0x65, 0x53, 0xf1, 0x3c, 0, 0, 0, 5, // edited
            1, 1, 0, 0, 0, 3, b'{', b'}', 0x1e, // one JSON frame
        ];
        assert_eq!(&encode("n", &stamped())[..], expected);
        let host = BackplaneMessage {
            audience: Audience::All,
            payload: Payload::Host {
                frames: vec![(ProtocolCode::JSON, Bytes::from_static(b"{}\x1e"))],
            },
        };
        let expected: &[u8] = &[
            1, 0, 1, b'n', // version, origin "n"
            0,    // everyone
            3,    // host
            1, 1, 0, 0, 0, 3, b'{', b'}', 0x1e, // one JSON frame
        ];
        assert_eq!(&encode("n", &host)[..], expected);
    }

    #[test]
    fn other_versions_and_broken_messages_are_refused_not_guessed() {
        let good = encode("n", &stamped());
        let mut newer = good.to_vec();
        newer[0] = 2;
        assert_eq!(decode(newer.into()), Err(WireError::Version(2)));
        for cut in 0..good.len() {
            assert!(decode(good.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(decode(longer.into()).is_err());
    }
}
