//! One user's upstream signals to the connections: deliver each event, and after a reconnect
//! fill the gap from history first, each message once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::watch::{lock_watch, Watch};
use crate::event::{SubscriptionChange, UserEvent};
use crate::ids::UserId;
use crate::model::{HistoryQuery, Message};
use crate::ports::{EventDelivery, ImProvider, MessageStamp, Reach, RealtimeSignal, SessionSource};
use crate::services::{SessionService, UserSessions};

/// How far before the last event seen the gap fill starts, for clock differences between the
/// provider's nodes; duplicates this brings are dropped.
const GAP_MARGIN: Duration = Duration::from_secs(2);
/// Messages fetched per room when filling a gap.
const GAP_PAGE: u16 = 100;

/// Moves one user's upstream signals to the connections.
pub(super) struct Pump {
    pub(super) provider: Arc<dyn ImProvider>,
    pub(super) sessions: Arc<SessionService>,
    pub(super) delivery: Arc<dyn EventDelivery>,
    pub(super) user: UserId,
    pub(super) watch: Arc<Mutex<Watch>>,
}

impl Pump {
    /// Starts counting from now what another node delivers, unless already counting: a
    /// takeover fills the gap from here.
    pub(super) fn watch_from_now(&self) {
        lock_watch(&self.watch)
            .last_event
            .get_or_insert_with(Utc::now);
    }

    /// The newest message time delivered here, if any.
    pub(super) fn last_event(&self) -> Option<DateTime<Utc>> {
        lock_watch(&self.watch).last_event
    }

    pub(super) async fn run(&mut self) {
        let source: Arc<dyn SessionSource> =
            Arc::new(UserSessions::new(self.user.clone(), self.sessions.clone()));
        loop {
            let mut stream = match self
                .provider
                .connect_realtime(&self.user, source.clone())
                .await
            {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(user = %self.user, error = %error, "cannot open the upstream");
                    return;
                }
            };
            // The upstream lives as long as the cached session: when that expires it is closed
            // and opened again with a fresh login, the gap in between filled like any reconnect.
            let expires = tokio::time::sleep(self.sessions.ttl());
            tokio::pin!(expires);
            loop {
                let signal = tokio::select! {
                    signal = stream.next() => signal,
                    _ = &mut expires => break,
                };
                match signal {
                    Some(RealtimeSignal::Connected) => match self.last_event() {
                        // The first connection: what came before is history the client reads itself.
                        None => self.watch_from_now(),
                        Some(since) => {
                            // Not filled completely: the provider's own reconnect logic
                            // brings the next chance; what could be read went out.
                            self.fill_gap(since, Reach::AllNodes).await;
                        }
                    },
                    Some(RealtimeSignal::Event(event)) => self.deliver(event, Reach::AllNodes),
                    None => {
                        tracing::info!(user = %self.user, "upstream ended");
                        return;
                    }
                }
            }
            tracing::info!(user = %self.user, "session expired, renewing the upstream");
        }
    }

    fn deliver(&self, event: UserEvent, reach: Reach) {
        if let UserEvent::RoomMessage { message } = &event {
            if !lock_watch(&self.watch).note(&MessageStamp::of(message)) {
                return;
            }
        }
        self.delivery.deliver(&self.user, &event, reach);
    }

    /// Delivers within `reach` what arrived in the user's rooms since `since`, oldest first,
    /// before any live event that follows the reconnect. `false` when some of it could not
    /// be read; what could was delivered.
    pub(super) async fn fill_gap(&self, since: DateTime<Utc>, reach: Reach) -> bool {
        let from = since - chrono::Duration::from_std(GAP_MARGIN).unwrap_or_default();
        let sessions = &self.sessions;
        let provider = &self.provider;
        let rooms = match sessions
            .run(&self.user, |s| async move { provider.list_rooms(&s).await })
            .await
        {
            Ok(rooms) => rooms,
            Err(error) => {
                tracing::warn!(user = %self.user, error = %error, "gap fill: cannot list rooms");
                return false;
            }
        };
        let mut complete = true;
        let mut missed: Vec<Message> = Vec::new();
        for room in rooms.iter().filter(|room| room.updated_at >= from) {
            let query = HistoryQuery {
                before: None,
                after: Some(from),
                limit: GAP_PAGE,
            };
            let (room_id, query) = (&room.id, &query);
            match sessions
                .run(&self.user, |s| async move {
                    provider.history(&s, room_id, query).await
                })
                .await
            {
                // Pages come newest first; oldest first keeps messages of the same
                // millisecond in order through the stable sort below.
                Ok(page) => missed.extend(page.messages.into_iter().rev()),
                Err(error) => {
                    complete = false;
                    tracing::warn!(user = %self.user, room = %room.id, error = %error, "gap fill: cannot read history")
                }
            }
        }
        missed.sort_by_key(|m| m.edited_at.unwrap_or(m.created_at));
        let found = missed.len();
        for message in missed {
            let event = UserEvent::RoomMessage {
                message: Box::new(message),
            };
            self.deliver(event, reach);
        }
        // Unread counts may have moved while we were away.
        for room in rooms.into_iter().filter(|room| room.updated_at >= from) {
            let event = UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Updated,
                room: Box::new(room),
            };
            self.deliver(event, reach);
        }
        tracing::info!(user = %self.user, messages = found, "gap filled from history");
        complete
    }
}
