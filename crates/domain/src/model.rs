//! The types of the product contract (`User`, `Room`, `Message`) and the inputs and outputs
//! of provider operations. JSON names follow the contract (camelCase, RFC 3339 UTC dates).

use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::ids::{AuthToken, FileId, MessageId, ProviderUserId, RoomId, UserId};

/// A host user mirrored into the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The host's user id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: UserId,
    /// The provider username derived from the host id.
    pub username: String,
    /// Display name.
    pub name: String,
    /// E-mail address, when the host gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The account's id inside the provider.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub provider_user_id: ProviderUserId,
}

/// What the host says about a user when it mirrors them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// Preferred username; adapters may have to escape it to fit the provider's rules.
    pub username: String,
    /// Display name.
    pub name: String,
    /// E-mail address; adapters default one when absent.
    pub email: Option<String>,
}

/// Whether an upsert made a new account or changed an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// The account did not exist and was created.
    Created,
    /// The account existed and was brought in line with the profile.
    Updated,
}

/// The kinds of room the contract knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    /// A public room anyone may find and join.
    Channel,
    /// A private group: members only.
    Group,
    /// A direct conversation between two or more users.
    Direct,
}

/// A room as one user sees it: unread count and last message are that user's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Room {
    /// The room id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: RoomId,
    /// Channel, group or direct.
    pub kind: RoomKind,
    /// Room name; for a direct room, the other members' names.
    pub name: String,
    /// Members' host ids, when the operation returned them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<String>>))]
    pub members: Option<Vec<UserId>>,
    /// Messages the caller has not read.
    pub unread: u64,
    /// The newest message, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message: Option<Box<Message>>,
    /// When the room last changed.
    pub updated_at: DateTime<Utc>,
}

/// Who sent a message, in host terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sender {
    /// The sender's host user id (not the provider's).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: UserId,
    /// The sender's provider username.
    pub username: String,
    /// The sender's display name.
    pub name: String,
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileRef {
    /// The file id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: FileId,
    /// The file name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type.
    pub mime: String,
    /// Where the gateway serves it (`/api/v1/files/{id}/{name}`).
    pub url: String,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// The message id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: MessageId,
    /// The room it belongs to.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub room_id: RoomId,
    /// Its author.
    pub sender: Sender,
    /// The text; empty for a file-only message.
    pub text: String,
    /// When it was sent.
    pub created_at: DateTime<Utc>,
    /// When it was last edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<DateTime<Utc>>,
    /// The thread's first message, for a reply in a thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub thread_id: Option<MessageId>,
    /// The kind of system message (`joined`, `left`, `added`, `removed`, …), absent on user messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The attached file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
}

impl Message {
    /// What makes two copies of a message the same delivery: its id and its last edit. An
    /// edit is news; the same revision again is a repeat.
    pub fn revision(&self) -> (&MessageId, Option<DateTime<Utc>>) {
        (&self.id, self.edited_at)
    }
}

/// A new room as the caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoom {
    /// Channel or group; direct rooms are opened with `open_direct`.
    pub kind: RoomKind,
    /// The room name.
    pub name: String,
    /// Host ids of the other members.
    pub members: Vec<UserId>,
}

/// The longest message text accepted (Rocket.Chat's default `Message_MaxAllowedSize`).
pub const MAX_TEXT_CHARS: usize = 5000;

/// Checks a message text: not blank, at most [`MAX_TEXT_CHARS`] characters; the error text
/// names the field.
pub fn check_text(text: &str) -> Result<(), crate::ports::ProviderError> {
    let problem = if text.trim().is_empty() {
        "must not be empty".to_owned()
    } else if text.chars().count() > MAX_TEXT_CHARS {
        format!("must be at most {MAX_TEXT_CHARS} characters")
    } else {
        return Ok(());
    };
    Err(crate::ports::ProviderError::Invalid {
        field: "text".into(),
        message: problem,
    })
}

/// A message as the caller sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The text.
    pub text: String,
    /// Thread to reply in.
    pub thread_id: Option<MessageId>,
    /// A client-chosen id that makes a retry idempotent.
    pub client_message_id: Option<String>,
}

/// Which page of a room's history to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages strictly older than this; newest when absent.
    pub before: Option<DateTime<Utc>>,
    /// Only messages strictly newer than this; used to fill gaps after a reconnect.
    pub after: Option<DateTime<Utc>>,
    /// At most this many messages (1..=100).
    pub limit: u16,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The messages, newest first.
    pub messages: Vec<Message>,
    /// Whether older messages exist.
    pub has_more: bool,
}

impl HistoryPage {
    /// The page of the newest `limit` of `messages` (newest first), which providers fetch one
    /// longer than asked: an extra message means older ones exist.
    pub fn newest(mut messages: Vec<Message>, limit: usize) -> Self {
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        HistoryPage { messages, has_more }
    }
}

/// Unread counts of one user.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnreadSummary {
    /// The sum over all rooms.
    pub total: u64,
    /// Unread count per room id, only rooms with unread messages.
    pub rooms: std::collections::BTreeMap<String, u64>,
}

/// A user's logged-in session at the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSession {
    /// The account's id inside the provider.
    pub user_id: ProviderUserId,
    /// The session token.
    pub token: AuthToken,
    /// When the gateway logged in.
    pub issued_at: DateTime<Utc>,
}

/// What frontend mode hands to a browser so it can use the provider's realtime API itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendSession {
    /// Provider name, e.g. `rocketchat`.
    pub provider: &'static str,
    /// The account's id inside the provider.
    pub user_id: ProviderUserId,
    /// The session token.
    pub token: AuthToken,
    /// The provider's realtime endpoint.
    pub realtime_url: String,
    /// When the gateway stops vouching for this token.
    pub expires_at: DateTime<Utc>,
}

/// A stream of file bytes; errors end the stream.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A file on its way to the provider, streamed rather than buffered.
pub struct FileUpload {
    /// The file name as the client gave it.
    pub name: String,
    /// MIME type.
    pub mime: String,
    /// Size in bytes when known in advance.
    pub size: Option<u64>,
    /// The bytes.
    pub body: ByteStream,
    /// Text to post with the file.
    pub text: Option<String>,
}

/// A file on its way from the provider to the client.
pub struct FileDownload {
    /// MIME type.
    pub mime: String,
    /// Size in bytes when the provider said.
    pub size: Option<u64>,
    /// The bytes.
    pub body: ByteStream,
}
