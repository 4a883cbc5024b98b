//! [`HubBackend`] on the domain services: hub connections drive the upstream lifecycle, and
//! hub methods call the same chat service as the REST API.

use std::sync::Arc;

use async_trait::async_trait;
use imgate_domain::model::{Message, NewMessage};
use imgate_domain::services::{ChatService, SessionError, UpstreamService};
use imgate_domain::RoomId;

use crate::backend::{Caller, HubBackend, HubError};

/// The hub's view of the domain.
pub struct DomainBackend {
    chat: Arc<ChatService>,
    upstreams: Arc<UpstreamService>,
}

impl DomainBackend {
    /// A backend on these services.
    pub fn new(chat: Arc<ChatService>, upstreams: Arc<UpstreamService>) -> Self {
        Self { chat, upstreams }
    }
}

impl From<SessionError> for HubError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Provider(err) => err.into(),
            SessionError::Cache(err) => Self::Unavailable(err.to_string()),
        }
    }
}

#[async_trait]
impl HubBackend for DomainBackend {
    async fn connection_opened(&self, caller: &Caller) -> Result<(), HubError> {
        // Opens the upstream in the background when this is the user's first connection.
        self.upstreams.connected(&caller.user);
        Ok(())
    }

    async fn connection_closed(&self, caller: &Caller) {
        self.upstreams.disconnected(&caller.user);
    }

    async fn send_message(
        &self,
        caller: &Caller,
        room: RoomId,
        text: String,
    ) -> Result<Message, HubError> {
        let message = NewMessage {
            text,
            thread_id: None,
            client_message_id: None,
        };
        Ok(self.chat.send(&caller.user, &room, &message).await?)
    }

    async fn mark_read(&self, caller: &Caller, room: RoomId) -> Result<(), HubError> {
        Ok(self.chat.mark_read(&caller.user, &room).await?)
    }

    async fn typing(&self, caller: &Caller, room: RoomId, typing: bool) -> Result<(), HubError> {
        Ok(self.chat.typing(&caller.user, &room, typing).await?)
    }
}
