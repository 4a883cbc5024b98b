//! `ImProvider`: the chat provider (Rocket.Chat, Matrix, …) as the domain needs it.
//!
//! The port is split by concern so that each part stays small; [`ImProvider`] is all of them
//! together and is what the app holds as `Arc<dyn ImProvider>`. Every method speaks host ids
//! ([`UserId`]); mapping them to provider accounts is the adapter's business.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;

use crate::event::UserEvent;
use crate::ids::{FileId, MessageId, Password, RoomId, UserId};
use crate::model::{
    FileDownload, FileUpload, FrontendSession, HistoryPage, HistoryQuery, Message, NewMessage,
    NewRoom, ProviderSession, Room, UnreadSummary, Upserted, User, UserProfile,
};

/// What went wrong in a provider call, in terms a caller can act on.
///
/// `Clone` because one login result is shared by every request that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The session token was rejected (expired or revoked): log in again and retry once.
    #[error("the provider rejected the session")]
    SessionExpired,
    /// A login was refused: wrong password, unknown or deactivated account.
    #[error("the provider refused the login")]
    InvalidCredentials,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The user, room, message or file does not exist, or the caller cannot see it.
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what exists (a taken room name, say).
    #[error("{0}")]
    Conflict(String),
    /// The provider refused a value; `field` names it in the contract's terms.
    #[error("{field}: {message}")]
    Invalid {
        /// The request field at fault.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The provider asks us to slow down.
    #[error("the provider is rate limiting, retry in {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long until the provider accepts calls again.
        retry_after: Duration,
    },
    /// The provider is down, refusing connections, failing with 5xx or too slow.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something we cannot read.
    #[error("the provider answered something unexpected: {0}")]
    BadResponse(String),
}

impl ProviderError {
    /// The variant's `snake_case` name: a metric label (`outcome`) and a log field.
    pub fn outcome(&self) -> &'static str {
        match self {
            ProviderError::SessionExpired => "session_expired",
            ProviderError::InvalidCredentials => "invalid_credentials",
            ProviderError::Forbidden(_) => "forbidden",
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Conflict(_) => "conflict",
            ProviderError::Invalid { .. } => "invalid",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::BadResponse(_) => "bad_response",
        }
    }
}

/// Accounts and sessions.
///
/// Contract:
/// - `login_user` after `upsert_user` with the same password returns a session whose
///   `user_id` is the user's `provider_user_id`; a wrong password gives `InvalidCredentials`.
/// - `upsert_user` is idempotent: a second call with the same profile returns `Updated` and the same user.
/// - `get_user` and `delete_user` of an unknown user give `NotFound`.
/// - After `logout`, calls with that session give `SessionExpired`.
#[async_trait]
pub trait ProviderAccounts: Send + Sync {
    /// The provider's short name, e.g. `rocketchat`.
    fn kind(&self) -> &'static str;
    /// Logs a provider account (the admin agent) in by its provider username.
    async fn login_admin(
        &self,
        username: &str,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError>;
    /// Logs a mirrored host user in.
    async fn login_user(
        &self,
        user: &UserId,
        password: &Password,
    ) -> Result<ProviderSession, ProviderError>;
    /// Ends a session; an already dead session is not an error.
    async fn logout(&self, session: &ProviderSession) -> Result<(), ProviderError>;
    /// Creates or updates the provider account of a host user (admin session).
    async fn upsert_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
        profile: &UserProfile,
        password: &Password,
    ) -> Result<(User, Upserted), ProviderError>;
    /// Reads a mirrored user (admin session).
    async fn get_user(&self, admin: &ProviderSession, user: &UserId)
        -> Result<User, ProviderError>;
    /// Deletes a mirrored user (admin session).
    async fn delete_user(
        &self,
        admin: &ProviderSession,
        user: &UserId,
    ) -> Result<(), ProviderError>;
    /// What frontend mode hands to the browser for this session.
    fn frontend_session(&self, session: &ProviderSession, ttl: Duration) -> FrontendSession;
}

/// Rooms, membership and unread state, always as the calling user.
///
/// Contract:
/// - `list_rooms` returns exactly the rooms the caller is a member of, with the caller's unread counts.
/// - `open_direct` with the same members returns the same room every time.
/// - `mark_read` sets the room's unread count to 0 for the caller only.
#[async_trait]
pub trait ProviderRooms: Send + Sync {
    /// The caller's rooms.
    async fn list_rooms(&self, session: &ProviderSession) -> Result<Vec<Room>, ProviderError>;
    /// Creates a channel or private group with the caller and `members`.
    async fn create_room(
        &self,
        session: &ProviderSession,
        room: &NewRoom,
    ) -> Result<Room, ProviderError>;
    /// Opens (or finds) the direct room of the caller and `members`; `true` when it was created.
    async fn open_direct(
        &self,
        session: &ProviderSession,
        members: &[UserId],
    ) -> Result<(Room, bool), ProviderError>;
    /// One room the caller can see.
    async fn get_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<Room, ProviderError>;
    /// Adds members to a room.
    async fn add_members(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        members: &[UserId],
    ) -> Result<(), ProviderError>;
    /// Removes one member from a room.
    async fn remove_member(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        member: &UserId,
    ) -> Result<(), ProviderError>;
    /// The caller leaves a room.
    async fn leave_room(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError>;
    /// Marks everything in the room read for the caller.
    async fn mark_read(
        &self,
        session: &ProviderSession,
        room: &RoomId,
    ) -> Result<(), ProviderError>;
    /// The caller's unread counts.
    async fn unread(&self, session: &ProviderSession) -> Result<UnreadSummary, ProviderError>;
}

/// Messages, as the calling user.
///
/// Contract:
/// - `send_message` with a `client_message_id` already used in that room returns the
///   existing message instead of posting a second one.
/// - `history` is newest first, never longer than `limit`, and `has_more` is true exactly
///   when older messages exist.
/// - `edit_message` and `delete_message` of a message that is not there give `NotFound`.
#[async_trait]
pub trait ProviderMessages: Send + Sync {
    /// A page of a room's history.
    async fn history(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ProviderError>;
    /// Posts a message.
    async fn send_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &NewMessage,
    ) -> Result<Message, ProviderError>;
    /// Replaces a message's text.
    async fn edit_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
        text: &str,
    ) -> Result<Message, ProviderError>;
    /// Deletes a message.
    async fn delete_message(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        message: &MessageId,
    ) -> Result<(), ProviderError>;
    /// Tells the room's members the caller started or stopped typing.
    async fn set_typing(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        typing: bool,
    ) -> Result<(), ProviderError>;
}

/// Files, streamed both ways.
///
/// Contract: a file uploaded with `upload_file` downloads byte for byte with `download_file`
/// by any member of the room; a non-member gets `Forbidden` or `NotFound`.
#[async_trait]
pub trait ProviderFiles: Send + Sync {
    /// Uploads a file into a room and posts it as a message.
    async fn upload_file(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        file: FileUpload,
    ) -> Result<Message, ProviderError>;
    /// Downloads a file the caller can see.
    async fn download_file(
        &self,
        session: &ProviderSession,
        file: &FileId,
        name: &str,
    ) -> Result<FileDownload, ProviderError>;
}

/// What a deployment check is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentCheck {
    /// Change what the gateway needs on the provider (as its admin) instead of only reporting it.
    pub fix: bool,
    /// The provider role mirrored users have: what the gateway needs is checked for, and
    /// granted to, this role.
    pub user_role: String,
}

/// Whether a finding needs an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingStatus {
    /// As the gateway needs it.
    Ok,
    /// Works, but hurts users (throttling, say) until someone changes the provider.
    Warning,
}

/// One thing a deployment check looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable `snake_case` name, e.g. `rate_limiter`: a metric label and a `/readyz` key.
    pub name: String,
    /// Ok or warning.
    pub status: FindingStatus,
    /// For an operator: what was found and, for a warning, exactly what to change.
    pub message: String,
}

/// What a deployment check found, and what it changed when asked to fix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentReport {
    /// What was found, after any change.
    pub findings: Vec<Finding>,
    /// Each change made, in words an operator can verify on the provider.
    pub changes: Vec<String>,
}

impl DeploymentReport {
    /// The findings that need an operator.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.status == FindingStatus::Warning)
    }
}

/// The provider's own settings, as far as they matter to a gateway in front of it.
///
/// Contract:
/// - With `fix: false` nothing on the provider changes and `changes` is empty.
/// - Every finding has a stable `snake_case` name; a `Warning` says what to change and where.
/// - With `fix: true` every change made is listed in `changes`, and the findings describe the
///   provider after them; a change the admin may not make leaves its finding a `Warning`.
/// - What the admin may not read is a `Warning` finding, not an error; `Err` means the
///   provider could not be asked at all.
#[async_trait]
pub trait ProviderDeployment: Send + Sync {
    /// Checks (and with `fix`, changes) the provider's settings, as the admin.
    async fn check_deployment(
        &self,
        admin: &ProviderSession,
        check: &DeploymentCheck,
    ) -> Result<DeploymentReport, ProviderError>;
}

/// What an upstream realtime connection reports.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeSignal {
    /// The connection is (again) live and subscribed; events between an earlier drop and now
    /// may have been missed, so the domain fills the gap from history.
    Connected,
    /// An event for the user.
    Event(UserEvent),
}

/// The events of one user's upstream connection; dropping it closes the connection.
pub type RealtimeStream = Pin<Box<dyn Stream<Item = RealtimeSignal> + Send>>;

/// Where an upstream connection gets the user's session, and a fresh one when it is rejected.
#[async_trait]
pub trait SessionSource: Send + Sync {
    /// The user's current session (from the cache, or a login).
    async fn current(&self) -> Result<ProviderSession, ProviderError>;
    /// A new session after `rejected` was refused by the provider.
    async fn renew(&self, rejected: &ProviderSession) -> Result<ProviderSession, ProviderError>;
}

/// One upstream realtime connection per online user.
///
/// Contract: the stream yields `Connected` before the first event and after every reconnect,
/// then every event of the user's rooms once; it reconnects by itself until dropped, and ends
/// only when the user's session cannot be renewed.
#[async_trait]
pub trait ProviderRealtime: Send + Sync {
    /// Opens the user's upstream connection.
    async fn connect_realtime(
        &self,
        user: &UserId,
        sessions: Arc<dyn SessionSource>,
    ) -> Result<RealtimeStream, ProviderError>;
}

/// The whole provider port.
pub trait ImProvider:
    ProviderAccounts
    + ProviderRooms
    + ProviderMessages
    + ProviderFiles
    + ProviderRealtime
    + ProviderDeployment
{
}

impl<T> ImProvider for T where
    T: ProviderAccounts
        + ProviderRooms
        + ProviderMessages
        + ProviderFiles
        + ProviderRealtime
        + ProviderDeployment
{
}
