//! Realtime: typing notices over DDP, and the per-user upstream connection (`upstream/`).

use std::sync::Arc;

use async_trait::async_trait;
use imgate_domain::model::ProviderSession;
use imgate_domain::ports::{ProviderError, ProviderRealtime, RealtimeStream, SessionSource};
use imgate_domain::{RoomId, UserId};
use serde_json::json;

use crate::ddp::Ddp;
use crate::mapping::{bad, text};
use crate::upstream::Upstream;
use crate::RocketChatProvider;

impl RocketChatProvider {
    /// Tells the room's members that the session's user started or stopped typing. Rocket.Chat
    /// has no REST call for this, so it goes over a short DDP session.
    pub(crate) async fn notify_typing(
        &self,
        session: &ProviderSession,
        room: &RoomId,
        typing: bool,
    ) -> Result<(), ProviderError> {
        let me = self.rest.get("me", Some(session), &[]).await?;
        let username = text(&me, "username")
            .ok_or_else(|| bad("the caller's username"))?
            .to_owned();
        let mut ddp = Ddp::open(&self.realtime_url, self.ddp_timeout).await?;
        let result = async {
            ddp.login(session.token.expose()).await?;
            let activity = if typing {
                json!(["user-typing"])
            } else {
                json!([])
            };
            ddp.call(
                "stream-notify-room",
                json!([format!("{room}/user-activity"), username, activity, {}]),
            )
            .await
        }
        .await;
        ddp.close().await;
        result.map(drop)
    }
}

#[async_trait]
impl ProviderRealtime for RocketChatProvider {
    async fn connect_realtime(
        &self,
        user: &UserId,
        sessions: Arc<dyn SessionSource>,
    ) -> Result<RealtimeStream, ProviderError> {
        let signals = Upstream {
            rest: self.rest.clone(),
            url: self.realtime_url.clone(),
            call_timeout: self.ddp_timeout,
            timing: self.upstream_timing,
            user: user.clone(),
            sessions,
            room_kinds: self.room_kinds.clone(),
            frames: self.frames.clone(),
        }
        .spawn();
        Ok(Box::pin(futures::stream::unfold(
            signals,
            |mut signals| async move { signals.recv().await.map(|signal| (signal, signals)) },
        )))
    }
}
