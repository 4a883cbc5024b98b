//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): the DDP frame decoding of an
//! upstream session and the mapping of Rocket.Chat documents, reachable from outside the
//! crate. Compiled only for tests and with the `fuzzing` feature, so no real build widens the
//! crate's API.

use imgate_domain::model::{Message, Room, RoomKind};
use imgate_domain::ports::{ProviderError, RealtimeSignal};
use imgate_domain::RoomId;
use serde_json::Value;

use crate::ddp::{inbound, method_outcome, Inbound};
use crate::mapping;
use crate::upstream::State;

/// The id the fuzzed session gives its one outstanding method call, as the login call is
/// numbered on a fresh socket.
pub const CALL_ID: &str = "1";

/// An upstream DDP session fed one text frame at a time, exactly as the connection task
/// feeds it after the socket read.
pub struct DdpSession {
    state: State,
    kinds: moka::sync::Cache<RoomId, RoomKind>,
}

/// What one frame did to the session.
#[derive(Debug, Default)]
pub struct FrameOutcome {
    /// The pong owed for a server ping.
    pub pong: Option<Value>,
    /// Whether the frame was ignored as not JSON.
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
            Inbound::Ping { pong } => FrameOutcome {
                pong: Some(pong),
                ..FrameOutcome::default()
            },
            Inbound::Frame(frame) => {
                let call = method_outcome(&frame, CALL_ID, "login");
                let (signals, replies) = self.state.handle(frame, &self.kinds);
                FrameOutcome {
                    call,
                    signals,
                    replies,
                    ..FrameOutcome::default()
                }
            }
        }
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

/// Maps `value` as every document kind the REST answers and DDP events carry.
pub fn documents(value: &Value) -> Documents {
    Documents {
        message: mapping::message(value),
        room: mapping::room(value),
        subscribed_room: mapping::subscribed_room(value, Some(value)),
        bare_subscription: mapping::subscribed_room(value, None),
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
    fn any_value_maps_to_a_result() {
        let docs = documents(&json!({"_id": "r1", "t": "d", "usernames": ["alice", 7]}));
        assert!(docs.message.is_err());
        assert_eq!(docs.room.unwrap().name, "alice");
        assert!(documents(&json!(null)).subscribed_room.is_none());
    }
}
