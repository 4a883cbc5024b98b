//! Upstream lifecycle: one provider realtime connection per online user. The first live
//! connection of a user opens it, the last one leaving starts a grace period after which it
//! closes; deleting or logging out the user closes it at once. Events go to the publisher, and
//! after a reconnect what arrived meanwhile is fetched from history and delivered first, each
//! message once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::event::{SubscriptionChange, UserEvent};
use crate::ids::{MessageId, UserId};
use crate::model::{HistoryQuery, Message};
use crate::ports::{EventPublisher, ImProvider, RealtimeSignal};
use crate::services::{SessionService, UserSessions};

/// How far before the last event seen the gap fill starts, for clock differences between the
/// provider's nodes; duplicates this brings are dropped.
const GAP_MARGIN: Duration = Duration::from_secs(2);
/// Messages remembered per user to drop duplicates between history and live events.
const REMEMBERED: usize = 2048;
/// Messages fetched per room when filling a gap.
const GAP_PAGE: u16 = 100;

struct Online {
    connections: usize,
    upstream: JoinHandle<()>,
    closing: Option<JoinHandle<()>>,
}

/// Opens and closes users' upstream connections as their live connections come and go.
pub struct UpstreamService {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    publisher: Arc<dyn EventPublisher>,
    grace: Duration,
    online: Mutex<HashMap<UserId, Online>>,
}

impl UpstreamService {
    /// A service closing idle upstreams `grace` after their last connection left.
    pub fn new(
        provider: Arc<dyn ImProvider>,
        sessions: Arc<SessionService>,
        publisher: Arc<dyn EventPublisher>,
        grace: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            provider,
            sessions,
            publisher,
            grace,
            online: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Online>> {
        // Every edit of the map is a single call, so a poisoned lock still holds a consistent map.
        self.online.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more live connection of `user`; the first opens the upstream.
    pub fn connected(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let entry = online.entry(user.clone()).or_insert_with(|| Online {
            connections: 0,
            upstream: self.spawn_upstream(user),
            closing: None,
        });
        entry.connections += 1;
        if let Some(closing) = entry.closing.take() {
            closing.abort();
        }
        // An upstream that ended (the user could not log in) gets another chance.
        if entry.upstream.is_finished() {
            entry.upstream = self.spawn_upstream(user);
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// One fewer live connection of `user`; after the last, the upstream closes once `grace`
    /// has passed without a new one.
    pub fn disconnected(self: &Arc<Self>, user: &UserId) {
        let mut online = self.lock();
        let Some(entry) = online.get_mut(user) else {
            return;
        };
        entry.connections = entry.connections.saturating_sub(1);
        if entry.connections == 0 && entry.closing.is_none() {
            let this = Arc::clone(self);
            let user = user.clone();
            entry.closing = Some(tokio::spawn(async move {
                tokio::time::sleep(this.grace).await;
                this.close_if_idle(&user);
            }));
        }
    }

    fn close_if_idle(&self, user: &UserId) {
        let mut online = self.lock();
        if online.get(user).is_some_and(|e| e.connections == 0) {
            if let Some(entry) = online.remove(user) {
                entry.upstream.abort();
                tracing::info!(user = %user, "upstream closed after the grace period");
            }
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// Closes the user's upstream now: the user was deleted or logged out.
    pub fn close(&self, user: &UserId) {
        let mut online = self.lock();
        if let Some(entry) = online.remove(user) {
            entry.upstream.abort();
            if let Some(closing) = entry.closing {
                closing.abort();
            }
        }
        metrics::gauge!("imgate_upstream_users").set(online.len() as f64);
    }

    /// How many users have an upstream open.
    pub fn online_users(&self) -> usize {
        self.lock().len()
    }

    /// Closes every upstream, for shutdown.
    pub fn shutdown(&self) {
        let mut online = self.lock();
        for (_, entry) in online.drain() {
            entry.upstream.abort();
            if let Some(closing) = entry.closing {
                closing.abort();
            }
        }
    }

    fn spawn_upstream(&self, user: &UserId) -> JoinHandle<()> {
        let pump = Pump {
            provider: self.provider.clone(),
            sessions: self.sessions.clone(),
            publisher: self.publisher.clone(),
            user: user.clone(),
            seen: Seen::default(),
            last_event: None,
        };
        tokio::spawn(pump.run())
    }
}

/// Messages already delivered, by id and edit time, oldest forgotten first.
#[derive(Default)]
struct Seen {
    keys: HashSet<(MessageId, Option<DateTime<Utc>>)>,
    order: VecDeque<(MessageId, Option<DateTime<Utc>>)>,
}

impl Seen {
    /// Whether `message` is new; remembers it.
    fn first_time(&mut self, message: &Message) -> bool {
        let key = (message.id.clone(), message.edited_at);
        if !self.keys.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
        true
    }
}

/// Moves one user's upstream signals to the publisher.
struct Pump {
    provider: Arc<dyn ImProvider>,
    sessions: Arc<SessionService>,
    publisher: Arc<dyn EventPublisher>,
    user: UserId,
    seen: Seen,
    last_event: Option<DateTime<Utc>>,
}

impl Pump {
    async fn run(mut self) {
        let source: Arc<dyn crate::ports::SessionSource> =
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
                    Some(RealtimeSignal::Connected) => match self.last_event {
                        // The first connection: what came before is history the client reads itself.
                        None => self.last_event = Some(Utc::now()),
                        Some(since) => self.fill_gap(since).await,
                    },
                    Some(RealtimeSignal::Event(event)) => self.deliver(event).await,
                    None => {
                        tracing::info!(user = %self.user, "upstream ended");
                        return;
                    }
                }
            }
            tracing::info!(user = %self.user, "session expired, renewing the upstream");
        }
    }

    async fn deliver(&mut self, event: UserEvent) {
        if let UserEvent::RoomMessage { message } = &event {
            if !self.seen.first_time(message) {
                return;
            }
            let at = message.edited_at.unwrap_or(message.created_at);
            self.last_event = Some(self.last_event.map_or(at, |last| last.max(at)));
        }
        if let Err(error) = self.publisher.publish(&self.user, &event).await {
            tracing::warn!(user = %self.user, error = %error, "could not publish an event");
        }
    }

    /// Delivers what arrived in the user's rooms since `since`, oldest first, before any live
    /// event that follows the reconnect.
    async fn fill_gap(&mut self, since: DateTime<Utc>) {
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
                return;
            }
        };
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
                Ok(page) => missed.extend(page.messages),
                Err(error) => {
                    tracing::warn!(user = %self.user, room = %room.id, error = %error, "gap fill: cannot read history")
                }
            }
        }
        missed.sort_by_key(|m| m.edited_at.unwrap_or(m.created_at));
        let found = missed.len();
        for message in missed {
            self.deliver(UserEvent::RoomMessage {
                message: Box::new(message),
            })
            .await;
        }
        // Unread counts may have moved while we were away.
        for room in rooms.into_iter().filter(|room| room.updated_at >= from) {
            let event = UserEvent::SubscriptionChanged {
                method: SubscriptionChange::Updated,
                room: Box::new(room),
            };
            self.deliver(event).await;
        }
        tracing::info!(user = %self.user, messages = found, "upstream reconnected, gap filled");
    }
}
