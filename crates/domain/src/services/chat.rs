//! Everything an end user does in the provider, as themself: rooms, messages, unread counts,
//! files, and the frontend-mode session hand-over.

use std::sync::Arc;

use crate::ids::{FileId, MessageId, RoomId, UserId};
use crate::model::{
    check_text, FileDownload, FileUpload, FrontendSession, HistoryPage, HistoryQuery, Message,
    NewMessage, NewRoom, Room, UnreadSummary,
};
use crate::ports::{ImProvider, ProviderError};
use crate::services::{SessionError, SessionService, UpstreamService};

/// The end user's chat operations; each runs with the user's provider session, renewed once
/// when the provider rejects it.
pub struct ChatService {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    upstreams: Arc<UpstreamService>,
}

impl ChatService {
    /// A service calling `provider` with sessions from `sessions`; logging out closes the
    /// user's upstream in `upstreams`.
    pub fn new(
        provider: Arc<dyn ImProvider>,
        sessions: Arc<SessionService>,
        upstreams: Arc<UpstreamService>,
    ) -> Self {
        Self {
            provider,
            sessions,
            upstreams,
        }
    }

    /// The user's rooms with their unread counts.
    pub async fn rooms(&self, user: &UserId) -> Result<Vec<Room>, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.list_rooms(&s).await })
            .await
    }

    /// Creates a channel or group with the user in it.
    pub async fn create_room(&self, user: &UserId, room: &NewRoom) -> Result<Room, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.create_room(&s, room).await })
            .await
    }

    /// Opens (or finds) the direct room of the user and `members`; `true` when created.
    pub async fn open_direct(
        &self,
        user: &UserId,
        members: &[UserId],
    ) -> Result<(Room, bool), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.open_direct(&s, members).await })
            .await
    }

    /// One room the user can see.
    pub async fn room(&self, user: &UserId, room: &RoomId) -> Result<Room, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.get_room(&s, room).await })
            .await
    }

    /// Adds members to a room.
    pub async fn add_members(
        &self,
        user: &UserId,
        room: &RoomId,
        members: &[UserId],
    ) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(
                user,
                |s| async move { p.add_members(&s, room, members).await },
            )
            .await
    }

    /// Removes a member from a room.
    pub async fn remove_member(
        &self,
        user: &UserId,
        room: &RoomId,
        member: &UserId,
    ) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(
                user,
                |s| async move { p.remove_member(&s, room, member).await },
            )
            .await
    }

    /// The user leaves a room.
    pub async fn leave(&self, user: &UserId, room: &RoomId) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.leave_room(&s, room).await })
            .await
    }

    /// A page of a room's history, newest first.
    pub async fn history(
        &self,
        user: &UserId,
        room: &RoomId,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.history(&s, room, query).await })
            .await
    }

    /// Posts a message; a repeated `client_message_id` returns the first one.
    pub async fn send(
        &self,
        user: &UserId,
        room: &RoomId,
        message: &NewMessage,
    ) -> Result<Message, SessionError> {
        check_text(&message.text)?;
        let p = &self.provider;
        self.sessions
            .run(
                user,
                |s| async move { p.send_message(&s, room, message).await },
            )
            .await
    }

    /// Replaces a message's text.
    pub async fn edit(
        &self,
        user: &UserId,
        room: &RoomId,
        message: &MessageId,
        text: &str,
    ) -> Result<Message, SessionError> {
        check_text(text)?;
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move {
                p.edit_message(&s, room, message, text).await
            })
            .await
    }

    /// Deletes a message.
    pub async fn delete(
        &self,
        user: &UserId,
        room: &RoomId,
        message: &MessageId,
    ) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move {
                p.delete_message(&s, room, message).await
            })
            .await
    }

    /// Marks the room read for the user.
    pub async fn mark_read(&self, user: &UserId, room: &RoomId) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.mark_read(&s, room).await })
            .await
    }

    /// The user's unread counts.
    pub async fn unread(&self, user: &UserId) -> Result<UnreadSummary, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(user, |s| async move { p.unread(&s).await })
            .await
    }

    /// Tells a room the user started or stopped typing.
    pub async fn typing(
        &self,
        user: &UserId,
        room: &RoomId,
        typing: bool,
    ) -> Result<(), SessionError> {
        let p = &self.provider;
        self.sessions
            .run(
                user,
                |s| async move { p.set_typing(&s, room, typing).await },
            )
            .await
    }

    /// Uploads a file into a room. The body streams once, so a rejected session cannot be
    /// retried with it: the session is renewed and the caller is asked to send again.
    pub async fn upload(
        &self,
        user: &UserId,
        room: &RoomId,
        file: FileUpload,
    ) -> Result<Message, SessionError> {
        if let Some(text) = &file.text {
            check_text(text)?;
        }
        let session = self.sessions.session(user).await?;
        match self.provider.upload_file(&session, room, file).await {
            Err(ProviderError::SessionExpired) => {
                self.sessions.forget(user).await?;
                Err(ProviderError::Unavailable(
                    "the provider session was renewed; send the file again".into(),
                )
                .into())
            }
            other => Ok(other?),
        }
    }

    /// Downloads a file the user can see.
    pub async fn download(
        &self,
        user: &UserId,
        file: &FileId,
        name: &str,
    ) -> Result<FileDownload, SessionError> {
        let p = &self.provider;
        self.sessions
            .run(
                user,
                |s| async move { p.download_file(&s, file, name).await },
            )
            .await
    }

    /// The user's provider credentials for frontend mode.
    pub async fn frontend_session(&self, user: &UserId) -> Result<FrontendSession, SessionError> {
        let session = self.sessions.session(user).await?;
        Ok(self
            .provider
            .frontend_session(&session, self.sessions.ttl()))
    }

    /// Logs the user out of the provider, forgets their session and closes their upstream.
    pub async fn logout(&self, user: &UserId) -> Result<(), SessionError> {
        self.upstreams.close(user);
        self.sessions.logout(user).await
    }
}
