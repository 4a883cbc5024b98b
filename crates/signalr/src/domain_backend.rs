//! [`HubBackend`] on the domain services: a user's first and last connection drive the
//! upstream lifecycle, and hub methods call the same chat service as the REST API.

use std::sync::Arc;

use async_trait::async_trait;
use imgate_domain::model::{Message, NewMessage};
use imgate_domain::ports::MessageStamp;
use imgate_domain::services::{ChatService, UpstreamService};
use imgate_domain::{RoomId, UserId};

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

#[async_trait]
impl HubBackend for DomainBackend {
    async fn connection_opened(&self, _caller: &Caller) -> Result<(), HubError> {
        Ok(())
    }

    async fn connection_closed(&self, _caller: &Caller) {}

    fn user_online(&self, user: &UserId) {
        // Opens the upstream in the background.
        self.upstreams.online(user);
    }

    fn user_offline(&self, user: &UserId) {
        self.upstreams.offline(user);
    }

    fn first_delivery(&self, user: &UserId, stamp: &MessageStamp) -> bool {
        self.upstreams.observe(user, stamp)
    }

    fn backplane_resumed(&self) {
        self.upstreams.backplane_resumed();
    }

    async fn upstream_node(&self, user: &UserId) -> Option<String> {
        self.upstreams.holder(user).await
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
