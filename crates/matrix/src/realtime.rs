//! Realtime: one long-poll `/sync` loop per online user, translated into domain events. The
//! loop keeps its `since` token across failures, so a reconnect resumes where it stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::event::{SubscriptionChange, UserEvent};
use imgate_domain::model::{Message, ProviderSession};
use imgate_domain::ports::{
    ProviderError, ProviderRealtime, RealtimeSignal, RealtimeStream, SessionSource,
};
use imgate_domain::{MessageId, RoomId, UserId};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::events::{self, edit_target, learn_names, text, RoomState};
use crate::naming;
use crate::rooms::{fold_sync, sync_events, unread_of};
use crate::{telemetry, MatrixProvider};

/// Signals buffered between the loop and the domain.
const SIGNAL_BUFFER: usize = 256;
/// What the loop needs from `/sync`: everything of joined and left rooms but receipts and
/// room account data, typing notices, no presence.
const SYNC_FILTER: &str = r#"{"presence":{"types":[]},"account_data":{"types":[]},"room":{"account_data":{"types":[]},"ephemeral":{"types":["m.typing"]},"state":{"lazy_load_members":false},"timeline":{"limit":50},"include_leave":true}}"#;
/// First and longest pause before the loop tries again after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One room as the loop last saw it.
struct Known {
    state: RoomState,
    unread: u64,
    last: Option<Message>,
    typing: BTreeSet<String>,
}

struct SyncLoop {
    provider: MatrixProvider,
    user: UserId,
    sessions: Arc<dyn SessionSource>,
}

enum Ended {
    /// The stream was dropped.
    Dropped,
    /// The user's session cannot be renewed.
    Fatal(ProviderError),
}

impl SyncLoop {
    async fn run(self, tx: mpsc::Sender<RealtimeSignal>) {
        telemetry::sync_loop(true);
        let ended = self.serve(&tx).await;
        telemetry::sync_loop(false);
        if let Ended::Fatal(error) = ended {
            telemetry::sync_gave_up(&self.user, &error);
        }
    }

    async fn sync(
        &self,
        session: &ProviderSession,
        since: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let client = &self.provider.client;
        let mut url = client.url("_matrix/client/v3/sync", &[]);
        let wait = if since.is_some() {
            self.provider.sync_wait
        } else {
            Duration::ZERO
        };
        {
            let mut pairs = url.query_pairs_mut();
            pairs
                .append_pair("filter", SYNC_FILTER)
                .append_pair("timeout", &wait.as_millis().to_string());
            if let Some(since) = since {
                pairs.append_pair("since", since);
            }
        }
        // The long poll gets its wait on top of the call budget.
        let request = client
            .request(Method::GET, url, Some(session))
            .timeout(wait + self.provider.timeout);
        let response = client.send(request).await?;
        response
            .json()
            .await
            .map_err(|_| ProviderError::BadResponse("a sync answer that is not JSON".into()))
    }

    async fn serve(&self, tx: &mpsc::Sender<RealtimeSignal>) -> Ended {
        let mut since: Option<String> = None;
        let mut rooms: HashMap<RoomId, Known> = HashMap::new();
        let mut connected = false;
        let mut backoff = BACKOFF_MIN;
        let mut session: Option<ProviderSession> = None;
        loop {
            let answer = match &session {
                Some(current) => tokio::select! {
                    answer = self.sync(current, since.as_deref()) => answer,
                    _ = tx.closed() => return Ended::Dropped,
                },
                None => Err(ProviderError::SessionExpired),
            };
            let answer = match answer {
                Ok(answer) => answer,
                Err(err) => {
                    let err = match err {
                        ProviderError::SessionExpired => {
                            let fresh = match &session {
                                Some(rejected) => self.sessions.renew(rejected).await,
                                None => self.sessions.current().await,
                            };
                            match fresh {
                                Ok(fresh) => {
                                    session = Some(fresh);
                                    continue;
                                }
                                Err(
                                    err @ (ProviderError::InvalidCredentials
                                    | ProviderError::SessionExpired),
                                ) => return Ended::Fatal(err),
                                Err(err) => err,
                            }
                        }
                        other => other,
                    };
                    telemetry::sync_retry(&self.user, &err);
                    connected = false;
                    if pause(tx, &mut backoff).await {
                        return Ended::Dropped;
                    }
                    continue;
                }
            };
            let current = session
                .as_ref()
                .expect("a sync answered, so there is a session");
            backoff = BACKOFF_MIN;
            let mut signals = Vec::new();
            if !connected {
                connected = true;
                signals.push(RealtimeSignal::Connected);
            }
            let me = current.user_id.as_str();
            if since.is_none() {
                // The first answer is where the user stands, not news: remember it.
                for (id, room) in joined(&answer) {
                    let mut state = RoomState::default();
                    let last = fold_sync(&self.provider.namespace, &id, room, &mut state);
                    let unread = unread_of(room).unwrap_or(0);
                    rooms.insert(
                        id,
                        Known {
                            state,
                            unread,
                            last,
                            typing: BTreeSet::new(),
                        },
                    );
                }
            } else {
                for (id, room) in joined(&answer) {
                    self.joined_room(current, &mut rooms, id, room, &mut signals)
                        .await;
                }
                for (id, _) in left(&answer) {
                    if let Some(known) = rooms.remove(&id) {
                        let room =
                            known
                                .state
                                .room(&self.provider.namespace, id, me, 0, known.last);
                        signals.push(RealtimeSignal::Event(UserEvent::SubscriptionChanged {
                            method: SubscriptionChange::Removed,
                            room: Box::new(room),
                        }));
                    }
                }
            }
            for signal in signals {
                if tx.send(signal).await.is_err() {
                    return Ended::Dropped;
                }
            }
            since = text(&answer, "next_batch").map(str::to_owned).or(since);
        }
    }

    /// The news of one joined room.
    async fn joined_room(
        &self,
        session: &ProviderSession,
        rooms: &mut HashMap<RoomId, Known>,
        id: RoomId,
        room: &Value,
        signals: &mut Vec<RealtimeSignal>,
    ) {
        let namespace = &self.provider.namespace;
        let me = session.user_id.as_str();
        let inserted = !rooms.contains_key(&id);
        let known = rooms.entry(id.clone()).or_insert_with(|| Known {
            state: RoomState::default(),
            unread: 0,
            last: None,
            typing: BTreeSet::new(),
        });
        let timeline = sync_events(room, "timeline");
        let newest = fold_sync(namespace, &id, room, &mut known.state);
        let mut names = known.state.joined.clone();
        learn_names(&timeline, &mut names);
        let mut changed = inserted;
        for event in &timeline {
            match text(event, "type") {
                Some("m.room.message") => {
                    let message = match edit_target(event) {
                        // An edit arrives as its own event; the contract sends the edited message.
                        Some(target) => match self.provider.event(session, &id, target).await {
                            Ok(original) => {
                                events::edited(namespace, &id, &original, event, &names)
                            }
                            Err(_) => None,
                        },
                        // The message as it was sent: its own edits follow as events.
                        None => {
                            let mut sent = event.clone();
                            if let Some(unsigned) =
                                sent.get_mut("unsigned").and_then(Value::as_object_mut)
                            {
                                unsigned.remove("m.relations");
                            }
                            events::message(namespace, &id, &sent, &names)
                        }
                    };
                    if let Some(message) = message {
                        signals.push(RealtimeSignal::Event(UserEvent::RoomMessage {
                            message: Box::new(message),
                        }));
                    }
                }
                Some("m.room.redaction") => {
                    let redacts = text(event, "redacts")
                        .or_else(|| event.get("content").and_then(|c| text(c, "redacts")))
                        .and_then(|r| MessageId::parse(r).ok());
                    if let Some(message_id) = redacts {
                        signals.push(RealtimeSignal::Event(UserEvent::MessageDeleted {
                            room_id: id.clone(),
                            message_id,
                        }));
                    }
                }
                _ => {}
            }
        }
        if newest.is_some() {
            known.last = newest;
            changed = true;
        }
        if let Some(unread) = unread_of(room) {
            changed |= unread != known.unread;
            known.unread = unread;
        }
        for event in sync_events(room, "ephemeral") {
            if text(&event, "type") != Some("m.typing") {
                continue;
            }
            let now: BTreeSet<String> = event
                .get("content")
                .and_then(|c| c.get("user_ids"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|user| *user != me)
                .map(str::to_owned)
                .collect();
            for (user, typing) in now
                .difference(&known.typing)
                .map(|u| (u, true))
                .chain(known.typing.difference(&now).map(|u| (u, false)))
            {
                signals.push(RealtimeSignal::Event(UserEvent::Typing {
                    room_id: id.clone(),
                    username: naming::localpart_of(user).unwrap_or(user).to_owned(),
                    typing,
                }));
            }
            known.typing = now;
        }
        if changed {
            let view = known
                .state
                .room(namespace, id, me, known.unread, known.last.clone());
            signals.push(RealtimeSignal::Event(UserEvent::SubscriptionChanged {
                method: if inserted {
                    SubscriptionChange::Inserted
                } else {
                    SubscriptionChange::Updated
                },
                room: Box::new(view),
            }));
        }
    }
}

/// Sleeps the backoff (doubling it); `true` when the stream was dropped meanwhile.
async fn pause(tx: &mpsc::Sender<RealtimeSignal>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = tx.closed() => true,
    }
}

fn section<'a>(answer: &'a Value, which: &str) -> impl Iterator<Item = (RoomId, &'a Value)> {
    answer
        .get("rooms")
        .and_then(|r| r.get(which))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(id, room)| Some((RoomId::parse(id.as_str()).ok()?, room)))
}

fn joined(answer: &Value) -> impl Iterator<Item = (RoomId, &Value)> {
    section(answer, "join")
}

fn left(answer: &Value) -> impl Iterator<Item = (RoomId, &Value)> {
    section(answer, "leave")
}

#[async_trait]
impl ProviderRealtime for MatrixProvider {
    async fn connect_realtime(
        &self,
        user: &UserId,
        sessions: Arc<dyn SessionSource>,
    ) -> Result<RealtimeStream, ProviderError> {
        let (tx, rx) = mpsc::channel(SIGNAL_BUFFER);
        let sync = SyncLoop {
            provider: self.clone(),
            user: user.clone(),
            sessions,
        };
        tokio::spawn(sync.run(tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|signal| (signal, rx))
        })))
    }
}
