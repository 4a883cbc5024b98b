//! What the hub needs from the app ([`HubBackend`]), the hub methods clients may call, and
//! how domain events become client invocations.

use async_trait::async_trait;
use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{Message, Room};
use imgate_domain::ports::{HostInvocation, MessageStamp};
use imgate_domain::{ClientError, MessageId, RoomId, UserEvent, UserId};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::protocol::json::frame;
use crate::protocol::to_value;

/// Who is calling: the end user authenticated when the connection was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The host user id from the JWT.
    pub user: UserId,
    /// Display name from the JWT, when present.
    pub name: Option<String>,
    /// E-mail from the JWT, when present.
    pub email: Option<String>,
    /// When the JWT expires; the connection is closed then.
    pub expires_at: Option<std::time::SystemTime>,
}

/// Why a backend call failed; the one place where it becomes completion error text is
/// [`HubError::client_message`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// A bad argument of a hub method; the text names it and is shown to the client.
    #[error("{0}")]
    Invalid(String),
    /// A service's failure, as [`ClientError`]'s table says every client sees it.
    #[error("{}", .0.detail().map_or_else(|| .0.message(), str::to_owned))]
    Client(ClientError),
    /// Anything else; the detail goes to the log only.
    #[error("internal: {0}")]
    Internal(String),
}

impl HubError {
    /// The text a client sees in its completion's `error`; internals stay in the log.
    pub fn client_message(&self) -> String {
        match self {
            Self::Invalid(text) => text.clone(),
            Self::Client(err) => err.message(),
            Self::Internal(_) => "internal error".into(),
        }
    }

    /// Whether the failure is the gateway's or its provider's rather than the caller's, so
    /// worth a warning in the log.
    pub fn is_fault(&self) -> bool {
        match self {
            Self::Invalid(_) => false,
            Self::Client(err) => err.detail().is_some(),
            Self::Internal(_) => true,
        }
    }
}

impl<E: Into<ClientError>> From<E> for HubError {
    fn from(err: E) -> Self {
        Self::Client(err.into())
    }
}

/// What the hub needs from the app; the app implements it with domain services.
///
/// Contract:
/// - `connection_opened` is called once per connection after the client's handshake was
///   read, before the handshake is answered: an `Err` refuses the connection with the error
///   as handshake error. Keep it quick: the client is waiting.
/// - `connection_closed` is called exactly once for every `connection_opened` that returned
///   `Ok`, when that connection ends for whatever reason.
/// - `user_online` is called when a user's first connection on this node is past its
///   handshake, `user_offline` when the last such connection ended; they alternate per user.
///   Both run under the hub's registry lock: never block in them (start work in the
///   background).
/// - `first_delivery` decides whether a room message another node sent is new to this node's
///   connections of the user.
/// - The invocation methods run one at a time per connection, in the order the client sent
///   them; their errors become the invocation's completion error.
#[async_trait]
pub trait HubBackend: Send + Sync {
    /// `caller` has one more hub connection.
    async fn connection_opened(&self, caller: &Caller) -> Result<(), HubError>;
    /// `caller` has one connection fewer.
    async fn connection_closed(&self, caller: &Caller);
    /// `user` has a first connection on this node.
    fn user_online(&self, user: &UserId);
    /// `user` has no connection on this node any more.
    fn user_offline(&self, user: &UserId);
    /// Whether the message revision `stamp`, sent to `user` by another node, is new here.
    fn first_delivery(&self, user: &UserId, stamp: &MessageStamp) -> bool;
    /// The backplane was down and is back: what other nodes sent meanwhile was lost.
    fn backplane_resumed(&self);
    /// The id of the node holding `user`'s upstream, if any node does (see `routing`).
    async fn upstream_node(&self, user: &UserId) -> Option<String>;
    /// `SendMessage(roomId, text)`: posts a message as the caller.
    async fn send_message(
        &self,
        caller: &Caller,
        room: RoomId,
        text: String,
    ) -> Result<Message, HubError>;
    /// `MarkRead(roomId)`: sets the caller's unread count of the room to 0.
    async fn mark_read(&self, caller: &Caller, room: RoomId) -> Result<(), HubError>;
    /// `Typing(roomId, typing)`: the caller started or stopped typing.
    async fn typing(&self, caller: &Caller, room: RoomId, typing: bool) -> Result<(), HubError>;
}

/// A hub method call with its arguments checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubCall {
    /// `SendMessage(roomId, text)`.
    SendMessage {
        /// The room.
        room: RoomId,
        /// The text.
        text: String,
    },
    /// `MarkRead(roomId)`.
    MarkRead {
        /// The room.
        room: RoomId,
    },
    /// `Typing(roomId, typing)`.
    Typing {
        /// The room.
        room: RoomId,
        /// Started or stopped.
        typing: bool,
    },
}

impl HubCall {
    /// Reads a call from an invocation's target and arguments. Method names match
    /// case-insensitively, as in ASP.NET Core; the error text goes back in the completion.
    pub fn parse(target: &str, arguments: &[Value]) -> Result<Self, String> {
        let expect = |count: usize| {
            if arguments.len() == count {
                Ok(())
            } else {
                Err(format!(
                    "Invocation provides {} argument(s) but target expects {count}.",
                    arguments.len()
                ))
            }
        };
        let room = |index: usize| -> Result<RoomId, String> {
            let text = arguments[index]
                .as_str()
                .ok_or_else(|| format!("argument {index} (roomId) must be a string"))?;
            RoomId::parse(text).map_err(|err| format!("argument {index} (roomId) {err}"))
        };
        match target.to_ascii_lowercase().as_str() {
            "sendmessage" => {
                expect(2)?;
                let text = arguments[1]
                    .as_str()
                    .ok_or("argument 1 (text) must be a string")?;
                Ok(Self::SendMessage {
                    room: room(0)?,
                    text: text.to_owned(),
                })
            }
            "markread" => {
                expect(1)?;
                Ok(Self::MarkRead { room: room(0)? })
            }
            "typing" => {
                expect(2)?;
                let typing = arguments[1]
                    .as_bool()
                    .ok_or("argument 1 (typing) must be a boolean")?;
                Ok(Self::Typing {
                    room: room(0)?,
                    typing,
                })
            }
            _ => Err(format!("Unknown hub method '{target}'")),
        }
    }

    /// The method name for metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SendMessage { .. } => "SendMessage",
            Self::MarkRead { .. } => "MarkRead",
            Self::Typing { .. } => "Typing",
        }
    }

    /// Runs the call against the backend; the value is the completion's `result`, if any.
    pub async fn run(
        self,
        backend: &dyn HubBackend,
        caller: &Caller,
    ) -> Result<Option<Value>, HubError> {
        match self {
            Self::SendMessage { room, text } => backend
                .send_message(caller, room, text)
                .await
                .map(|message| Some(to_value(&message))),
            Self::MarkRead { room } => backend.mark_read(caller, room).await.map(|()| None),
            Self::Typing { room, typing } => {
                backend.typing(caller, room, typing).await.map(|()| None)
            }
        }
    }
}

/// The targets of the hub's own events, which the host may not send.
pub const CHAT_TARGETS: [&str; 4] = [ROOM_MESSAGE, SUBSCRIPTION_CHANGED, MESSAGE_DELETED, TYPING];

pub(crate) const ROOM_MESSAGE: &str = "getRoomMessageNotification";
pub(crate) const SUBSCRIPTION_CHANGED: &str = "getRoomSubscriptionChangedNotification";
pub(crate) const MESSAGE_DELETED: &str = "messageDeleted";
pub(crate) const TYPING: &str = "typing";

/// `getRoomSubscriptionChangedNotification`'s argument: how the user's view of a room changed.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RoomSubscriptionChange<'a> {
    /// Joined or added (`inserted`), changed (`updated`), left or removed (`removed`).
    method: &'a SubscriptionChange,
    /// The room as the user sees it now.
    room: &'a Room,
}

/// `messageDeleted`'s argument.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageDeletion<'a> {
    /// The room.
    #[schema(value_type = String)]
    room_id: &'a RoomId,
    /// The message that was deleted.
    #[schema(value_type = String)]
    message_id: &'a MessageId,
}

/// `typing`'s argument.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TypingNotice<'a> {
    /// The room.
    #[schema(value_type = String)]
    room_id: &'a RoomId,
    /// Who started or stopped typing.
    username: &'a str,
    /// Started (`true`) or stopped.
    typing: bool,
}

/// The framed client invocation a host asked for, its arguments as the host sent them.
pub fn invocation_frame(invocation: &HostInvocation) -> String {
    #[derive(Serialize)]
    struct Record<'a> {
        #[serde(rename = "type")]
        kind: u8,
        target: &'a str,
        arguments: &'a RawValue,
    }
    let record = Record {
        kind: 1,
        target: &invocation.target,
        arguments: &invocation.arguments,
    };
    // A string and a JSON text already checked serialize infallibly.
    frame(serde_json::to_string(&record).unwrap_or_default())
}

/// The framed client invocation for a domain event, with the exact target names of the
/// contract; `None` for events that end the connection instead ([`UserEvent::AccountDeleted`]).
///
/// Serialized straight to text, without a `serde_json::Value` tree in between: every
/// connection of every user encodes every event, so this is the hub's hottest code.
pub fn event_frame(event: &UserEvent) -> Option<String> {
    #[derive(Serialize)]
    struct Record<A> {
        #[serde(rename = "type")]
        kind: u8,
        target: &'static str,
        arguments: (A,),
    }
    fn record(target: &'static str, argument: impl Serialize) -> String {
        let record = Record {
            kind: 1,
            target,
            arguments: (argument,),
        };
        // Domain types serialize infallibly; a failure still sends `null` rather than panic.
        let text = serde_json::to_string(&record)
            .unwrap_or_else(|_| format!(r#"{{"type":1,"target":"{target}","arguments":[null]}}"#));
        frame(text)
    }
    Some(match event {
        UserEvent::RoomMessage { message } => record(ROOM_MESSAGE, message),
        UserEvent::SubscriptionChanged { method, room } => record(
            SUBSCRIPTION_CHANGED,
            RoomSubscriptionChange { method, room },
        ),
        UserEvent::MessageDeleted {
            room_id,
            message_id,
        } => record(
            MESSAGE_DELETED,
            MessageDeletion {
                room_id,
                message_id,
            },
        ),
        UserEvent::Typing {
            room_id,
            username,
            typing,
        } => record(
            TYPING,
            TypingNotice {
                room_id,
                username,
                typing: *typing,
            },
        ),
        UserEvent::AccountDeleted => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::ports::ProviderError;
    use serde_json::json;

    fn room(id: &str) -> RoomId {
        RoomId::parse(id).unwrap()
    }

    #[test]
    fn calls_parse_case_insensitively_with_checked_arguments() {
        assert_eq!(
            HubCall::parse("SendMessage", &[json!("r1"), json!("hi")]),
            Ok(HubCall::SendMessage {
                room: room("r1"),
                text: "hi".into()
            })
        );
        assert_eq!(
            HubCall::parse("markread", &[json!("r1")]),
            Ok(HubCall::MarkRead { room: room("r1") })
        );
        assert_eq!(
            HubCall::parse("TYPING", &[json!("r1"), json!(false)]),
            Ok(HubCall::Typing {
                room: room("r1"),
                typing: false
            })
        );
    }

    #[test]
    fn wrong_calls_are_errors_not_panics() {
        let error = |target: &str, args: Value| {
            HubCall::parse(target, args.as_array().unwrap()).unwrap_err()
        };
        assert_eq!(error("Nope", json!([])), "Unknown hub method 'Nope'");
        assert_eq!(
            error("SendMessage", json!(["r1"])),
            "Invocation provides 1 argument(s) but target expects 2."
        );
        assert!(error("SendMessage", json!([1, "hi"])).contains("roomId"));
        assert!(error("SendMessage", json!(["", "hi"])).contains("roomId"));
        assert!(error("SendMessage", json!(["r1", null])).contains("text"));
        assert!(error("Typing", json!(["r1", "yes"])).contains("boolean"));
        assert!(error("MarkRead", json!([])).contains("expects 1"));
    }

    /// The record in a frame, parsed.
    fn decoded(frame: &str) -> Value {
        let record = frame
            .strip_suffix('\u{1e}')
            .expect("one separator at the end");
        serde_json::from_str(record).unwrap()
    }

    #[test]
    fn events_become_the_contract_targets() {
        let check = |event: UserEvent, target: &str, argument: Value| {
            assert_eq!(
                decoded(&event_frame(&event).unwrap()),
                json!({"type": 1, "target": target, "arguments": [argument]})
            );
        };
        check(
            UserEvent::MessageDeleted {
                room_id: room("r"),
                message_id: MessageId::parse("m").unwrap(),
            },
            "messageDeleted",
            json!({"roomId": "r", "messageId": "m"}),
        );
        check(
            UserEvent::Typing {
                room_id: room("r"),
                username: "bob".into(),
                typing: true,
            },
            "typing",
            json!({"roomId": "r", "username": "bob", "typing": true}),
        );
        let room_event = UserEvent::SubscriptionChanged {
            method: SubscriptionChange::Inserted,
            room: Box::new(imgate_domain::model::Room {
                id: room("r"),
                kind: imgate_domain::model::RoomKind::Group,
                name: "g".into(),
                members: None,
                unread: 2,
                last_message: None,
                updated_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            }),
        };
        let record = decoded(&event_frame(&room_event).unwrap());
        assert_eq!(record["target"], "getRoomSubscriptionChangedNotification");
        assert_eq!(record["arguments"][0]["method"], "inserted");
        assert_eq!(record["arguments"][0]["room"]["kind"], "group");
        assert_eq!(
            record["arguments"][0]["room"]["updatedAt"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(event_frame(&UserEvent::AccountDeleted), None);
    }

    #[test]
    fn error_details_stay_in_the_log() {
        let down = HubError::from(ProviderError::Unavailable("10.0.0.1 refused".into()));
        assert_eq!(down.client_message(), "the chat provider is unavailable");
        assert!(down.to_string().contains("10.0.0.1"), "{down}");
        assert!(down.is_fault());
        let missing = HubError::from(ProviderError::NotFound("room r1 not found".into()));
        assert_eq!(missing.client_message(), "room r1 not found");
        assert!(!missing.is_fault());
        assert_eq!(
            HubError::Internal("a bug at line 7".into()).client_message(),
            "internal error"
        );
    }
}
