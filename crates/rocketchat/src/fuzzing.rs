//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): the DDP frame decoding of an
//! upstream session and the mapping of Rocket.Chat documents, reachable from outside the
//! crate. Compiled only for tests and with the `fuzzing` feature, so no real build widens the
//! crate's API.

use imgate_domain::model::{Message, Room, RoomKind};
use imgate_domain::ports::{ProviderError, RealtimeSignal};
use imgate_domain::RoomId;
use serde_json::Value;

use crate::ddp::{inbound, method_outcome, Inbound};
use crate::decoded_frames::DecodedFrames;
use crate::documents::read;
use crate::mapping;
use crate::upstream::State;
use crate::FramesDecoded;

/// The id the fuzzed session gives its one outstanding method call, as the login call is
/// numbered on a fresh socket.
pub const CALL_ID: &str = "1";

/// An upstream DDP session fed one text frame at a time, exactly as the connection task
/// feeds it after the socket read.
pub struct DdpSession {
    state: State,
    kinds: moka::sync::Cache<RoomId, RoomKind>,
    frames: DecodedFrames,
}

/// What one frame did to the session.
#[derive(Debug, Default)]
pub struct FrameOutcome {
    /// The pong owed for a server ping.
    pub pong: Option<Value>,
    /// Whether the frame was ignored as not JSON. What the session does not need (unknown
    /// keys, a stream event's `args` until the event is known) is only skipped over, so JSON a
    /// `Value` cannot hold there (nested past serde_json's recursion limit, a number out of
    /// range) still reads as a frame; documents in it are then ignored as unreadable.
    pub not_json: bool,
    /// The outcome of the call [`CALL_ID`] if the frame is its `result`.
    pub call: Option<Result<Value, ProviderError>>,
    /// Signals for the domain, in order.
    pub signals: Vec<RealtimeSignal>,
    /// Frames the session sends back (`sub`/`unsub` of rooms joined or left).
    pub replies: Vec<Value>,
}

impl DdpSession {
    /// A session of `username` (provider id `uid`) that starts from a `subscriptions.get`
    /// answer, and the `sub` frames it opens with.
    pub fn start(username: &str, uid: &str, subscriptions: &Value) -> (Self, Vec<Value>) {
        let (state, frames) = State::start(username, uid, subscriptions);
        let session = Self {
            state,
            kinds: moka::sync::Cache::new(1024),
            frames: DecodedFrames::default(),
        };
        (session, frames)
    }

    /// Feeds one text frame from the server.
    pub fn feed(&mut self, text: &str) -> FrameOutcome {
        match inbound(text) {
            Inbound::NotJson => FrameOutcome {
                not_json: true,
                ..FrameOutcome::default()
            },
            Inbound::Unreadable => FrameOutcome::default(),
            Inbound::Ping { pong } => FrameOutcome {
                pong: Some(pong),
                ..FrameOutcome::default()
            },
            Inbound::Frame(frame) => {
                let call = method_outcome(&frame, CALL_ID, "login");
                let (signals, replies) = self.state.handle(&frame, &self.frames, &self.kinds);
                FrameOutcome {
                    call,
                    signals,
                    replies,
                    ..FrameOutcome::default()
                }
            }
        }
    }

    /// The documents the session decoded so far; a message or room frame fed again is read
    /// from the session's cache, as from the node's.
    pub fn decoded(&self) -> FramesDecoded {
        self.frames.decoded()
    }
}

/// A value read as each kind of Rocket.Chat document.
#[derive(Debug)]
pub struct Documents {
    /// As a message.
    pub message: Result<Message, ProviderError>,
    /// As a room document.
    pub room: Result<Room, ProviderError>,
    /// As a subscription, with the value also standing in for its room document.
    pub subscribed_room: Option<Room>,
    /// As a subscription without a room document.
    pub bare_subscription: Option<Room>,
}

/// Maps `value` as every document kind the REST answers and DDP events carry, read as a REST
/// answer is (the DDP path reads the same structs from text, through [`DdpSession::feed`]).
pub fn documents(value: &Value) -> Documents {
    Documents {
        message: mapping::message(&read(value)),
        room: mapping::room(&read(value)),
        subscribed_room: mapping::subscribed_room(&read(value), Some(&read(value))),
        bare_subscription: mapping::subscribed_room(&read(value), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::UserEvent;
    use serde_json::json;

    #[test]
    fn a_session_connects_once_every_opening_sub_is_ready() {
        let subscriptions = json!({"update": [{"rid": "GENERAL", "t": "c"}]});
        let (mut session, opening) = DdpSession::start("alice", "u1", &subscriptions);
        assert_eq!(opening.len(), 5);
        assert!(session.feed("not json").not_json);
        assert_eq!(
            session.feed(r#"{"msg":"ping"}"#).pong,
            Some(json!({"msg": "pong"}))
        );
        let login = session.feed(r#"{"msg":"result","id":"1","result":{"id":"u1"}}"#);
        assert_eq!(login.call, Some(Ok(json!({"id": "u1"}))));
        let ready = session.feed(r#"{"msg":"ready","subs":["s1","s2","s3","s4","s5"]}"#);
        assert_eq!(ready.signals, vec![RealtimeSignal::Connected]);
        let typing = session.feed(
            r#"{"msg":"changed","collection":"stream-notify-room","id":"id","fields":{"eventName":"GENERAL/user-activity","args":["bob",["user-typing"],{}]}}"#,
        );
        assert!(matches!(
            typing.signals.as_slice(),
            [RealtimeSignal::Event(UserEvent::Typing {
                typing: true,
                ..
            })]
        ));
    }

    #[test]
    fn odd_frames_are_ignored_and_shared_frames_decoded_once() {
        let (mut session, _) = DdpSession::start("alice", "u1", &json!({}));
        session.feed(r#"{"msg":"ready","subs":["s1","s2","s3"]}"#);
        let deep = format!(
            r#"{{"msg":"changed","collection":"stream-room-messages","fields":{{"eventName":"__my_messages__","args":{}1{}}}}}"#,
            "[".repeat(500),
            "]".repeat(500)
        );
        let huge = r#"{"msg":"changed","collection":"stream-room-messages","fields":{"eventName":"__my_messages__","args":[{"_id":"m","ts":1e999}]}}"#;
        for line in [
            "",
            "[]",
            "5",
            r#"{"msg":5}"#,
            r#"{"msg":"changed","fields":"x"}"#,
            r#"{"msg":"changed","collection":"stream-notify-user","fields":{"eventName":7,"args":{}}}"#,
            r#"{"msg":"nosub","id":{"a":1}}"#,
            r#"{"msg":"ping","id":1e999}"#,
            &deep,
            huge,
        ] {
            let outcome = session.feed(line);
            assert!(outcome.signals.is_empty(), "{line}");
            assert!(outcome.replies.is_empty(), "{line}");
        }
        assert!(session.feed("").not_json);
        assert!(!session.feed(&deep).not_json);
        assert_eq!(
            session.feed(r#"{"msg":"ping","id":1e999}"#).pong,
            Some(json!({"msg": "pong"}))
        );

        let message = r#"{"msg":"changed","collection":"stream-room-messages","id":"id","fields":{"eventName":"__my_messages__","args":[{"_id":"m1","rid":"r1","msg":"hi","ts":{"$date":1},"u":{"_id":"u2","username":"bob"}}]}}"#;
        let before = session.decoded().message;
        for _ in 0..3 {
            assert_eq!(session.feed(message).signals.len(), 1);
        }
        assert_eq!(session.decoded().message, before + 1);
    }

    #[test]
    fn any_value_maps_to_a_result() {
        let docs = documents(&json!({"_id": "r1", "t": "d", "usernames": ["alice", 7]}));
        assert!(docs.message.is_err());
        assert_eq!(docs.room.unwrap().name, "alice");
        assert!(documents(&json!(null)).subscribed_room.is_none());
    }
}
