//! What a user's live connections receive, provider-neutral.

use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, RoomId};
use crate::model::{Message, Room};

/// How a user's view of a room changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionChange {
    /// The user joined or was added to the room.
    Inserted,
    /// The room changed for the user (unread count, last message, name).
    Updated,
    /// The user left or was removed.
    Removed,
}

/// One event for one user; the hub turns each into one SignalR invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserEvent {
    /// A new or edited message in one of the user's rooms.
    RoomMessage {
        /// The message as it now is.
        message: Box<Message>,
    },
    /// The user's subscription to a room changed.
    SubscriptionChanged {
        /// What happened.
        method: SubscriptionChange,
        /// The room as the user now sees it.
        room: Box<Room>,
    },
    /// A message was deleted.
    MessageDeleted {
        /// The room.
        room_id: RoomId,
        /// The deleted message.
        message_id: MessageId,
    },
    /// The user's account was deleted: their live connections end, without reconnecting.
    AccountDeleted,
    /// Someone started or stopped typing.
    Typing {
        /// The room.
        room_id: RoomId,
        /// Who is typing.
        username: String,
        /// Started (`true`) or stopped.
        typing: bool,
    },
}
