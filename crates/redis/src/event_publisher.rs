//! `EventPublisher` on Redis pub/sub: one channel per user (`{prefix}:{user}:events`).
//!
//! `publish` is a `PUBLISH` of the event as JSON on the command connection. Each node has one
//! dedicated subscriber connection, subscribed to the channels of the users with at least one
//! local connection; a reader task hands what arrives to the node's [`LocalFanout`], which does
//! the per-connection buffering and cuts off slow readers. Why per-user channels, and what
//! they cost, is in `docs/redis.md`.
//!
//! `LocalFanout` cannot tell us when a user's last local subscription goes, so unsubscribing
//! is lazy: a sweeper task unsubscribes users without local subscribers when a message for
//! them finds nobody, and every [`SWEEP_EVERY`] for the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use imgate_domain::fanout::LocalFanout;
use imgate_domain::ports::{EventPublisher, EventSubscription, PublishError};
use imgate_domain::{UserEvent, UserId};
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use redis::Msg;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::connection::{CallError, Redis};
use crate::health::RedisHealthCheck;
use crate::keys::Keys;
use crate::{ConnectError, RedisConfig};

/// How often users without local subscribers are unsubscribed, at the latest.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// How often the subscriber connection is pinged, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Reconnection backoff bounds.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// Channels per `SUBSCRIBE` when resubscribing after a reconnect.
const RESUBSCRIBE_BATCH: usize = 500;
/// Users queued for a sweep between two sweeper runs; beyond that the periodic sweep catches up.
const SWEEP_QUEUE: usize = 1024;

/// Publishes through Redis and feeds this node's connections from it.
///
/// Dropping it stops its tasks and closes its subscriber connection.
pub struct RedisEventPublisher {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

struct Shared {
    redis: Redis,
    keys: Keys,
    fanout: LocalFanout,
    /// The live subscriber connection's command half; `None` while reconnecting.
    sink: Mutex<Option<PubSubSink>>,
    /// Users whose channel this node subscribes (or is subscribing) to.
    channels: Mutex<HashMap<UserId, Arc<tokio::sync::Mutex<Channel>>>>,
    sweep: mpsc::Sender<UserId>,
}

/// One user's channel on this node. Its async lock orders `SUBSCRIBE` and `UNSUBSCRIBE` for
/// that user, so a sweep cannot undo a subscription that is being made.
#[derive(Default)]
struct Channel {
    subscribed: bool,
    /// Swept and out of the map; a caller that still got hold of it must look again.
    removed: bool,
}

impl RedisEventPublisher {
    /// A publisher on the Redis of `config`; each local subscriber buffers at most `buffer`
    /// events. Fails only on an invalid URL.
    ///
    /// When Redis answers, returns once the subscriber connection is up, so `subscribe` works
    /// right away. When it does not (within the command timeout), returns anyway: `publish`
    /// and `subscribe` fail with `Unavailable` until the subscriber connection, retried in the
    /// background, is up.
    pub async fn connect(config: &RedisConfig, buffer: usize) -> Result<Self, ConnectError> {
        let redis = Redis::connect(config)?;
        let first = match open_pubsub(&redis).await {
            Ok(pubsub) => Some(pubsub.split()),
            Err(error) => {
                // The caller (the app) reports an unreachable Redis once; the reader retries.
                tracing::debug!(error = %error, "backplane not reachable yet");
                None
            }
        };
        let (sweep, sweep_rx) = mpsc::channel(SWEEP_QUEUE);
        let shared = Arc::new(Shared {
            redis,
            keys: Keys::new(&config.prefix),
            fanout: LocalFanout::new(buffer),
            sink: Mutex::new(first.as_ref().map(|(sink, _)| sink.clone())),
            channels: Mutex::default(),
            sweep,
        });
        let cancel = CancellationToken::new();
        tokio::spawn(read_loop(shared.clone(), first, cancel.clone()));
        tokio::spawn(sweep_loop(shared.clone(), sweep_rx, cancel.clone()));
        Ok(Self {
            shared,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }

    /// The local subscriber registry, for metrics.
    pub fn fanout(&self) -> &LocalFanout {
        &self.shared.fanout
    }

    /// A health check sharing this publisher's command connection.
    pub fn health_check(&self) -> RedisHealthCheck {
        RedisHealthCheck::from_connection(self.shared.redis.clone())
    }

    /// Stops the tasks, closes the subscriber connection and ends every local feed.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        self.shared.fanout.close_all();
    }
}

async fn open_pubsub(redis: &Redis) -> Result<PubSub, CallError> {
    tokio::time::timeout(redis.timeout(), redis.client().get_async_pubsub())
        .await
        .map_err(|_| CallError::Timeout(redis.timeout()))?
        .map_err(CallError::from)
}

fn unavailable(err: impl std::fmt::Display) -> PublishError {
    PublishError::Unavailable(err.to_string())
}

impl Shared {
    fn channels(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<UserId, Arc<tokio::sync::Mutex<Channel>>>> {
        // Every edit of the map is one call, so a poisoned lock still holds a consistent map.
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sink(&self) -> Option<PubSubSink> {
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_sink(&self, sink: Option<PubSubSink>) {
        *self.sink.lock().unwrap_or_else(PoisonError::into_inner) = sink;
    }

    async fn subscribe_channel(&self, channel: String) -> Result<(), PublishError> {
        let mut sink = self
            .sink()
            .ok_or_else(|| unavailable("reconnecting to the backplane"))?;
        tokio::time::timeout(self.redis.timeout(), sink.subscribe(channel))
            .await
            .map_err(|_| unavailable(CallError::Timeout(self.redis.timeout())))?
            .map_err(unavailable)
    }

    /// Unsubscribes `user` if this node has no local subscriber of theirs.
    ///
    /// Runs under the user's channel lock, which it creates if need be: a message for a user
    /// this node no longer tracks (say, subscribed again by a reconnect racing a sweep) also
    /// ends here and gets unsubscribed.
    async fn sweep_user(&self, user: &UserId) {
        let entry = self.channels().entry(user.clone()).or_default().clone();
        let mut channel = entry.lock().await;
        if channel.removed || self.fanout.subscriber_count(user) > 0 {
            return;
        }
        // Without a connection there is nothing to unsubscribe: the next one subscribes only
        // the users still in the map.
        if let Some(mut sink) = self.sink() {
            let unsubscribed = tokio::time::timeout(
                self.redis.timeout(),
                sink.unsubscribe(self.keys.events(user)),
            )
            .await;
            if !matches!(unsubscribed, Ok(Ok(()))) {
                // Keep the entry, so the next periodic sweep tries again.
                tracing::debug!(user = %user, "unsubscribe failed; retrying at the next sweep");
                return;
            }
        }
        channel.subscribed = false;
        channel.removed = true;
        let mut channels = self.channels();
        if channels
            .get(user)
            .is_some_and(|current| Arc::ptr_eq(current, &entry))
        {
            channels.remove(user);
        }
    }

    fn handle(&self, message: &Msg) {
        let Some(user) = self.keys.user_of_channel(message.get_channel_name()) else {
            return;
        };
        let event = match message
            .get_payload::<String>()
            .map_err(|err| err.to_string())
            .and_then(|raw| serde_json::from_str::<UserEvent>(&raw).map_err(|err| err.to_string()))
        {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(user = %user, error = %error, "dropping an unreadable event from the backplane");
                return;
            }
        };
        if self.fanout.deliver(&user, Arc::new(event)) == 0 {
            // Nobody here listens any more: unsubscribe soon. A full queue is fine, the
            // periodic sweep catches up.
            let _ = self.sweep.try_send(user);
        }
    }

    /// Subscribes the fresh connection to every channel this node needs.
    async fn resubscribe(&self, sink: &mut PubSubSink) -> Result<usize, CallError> {
        let users: Vec<UserId> = self.channels().keys().cloned().collect();
        for batch in users.chunks(RESUBSCRIBE_BATCH) {
            let names: Vec<String> = batch.iter().map(|user| self.keys.events(user)).collect();
            tokio::time::timeout(self.redis.timeout(), sink.subscribe(names))
                .await
                .map_err(|_| CallError::Timeout(self.redis.timeout()))??;
        }
        Ok(users.len())
    }
}

/// Owns the subscriber connection: reads it, pings it, and replaces it when it fails.
///
/// `first` is the connection `connect` opened, or `None` when Redis did not answer then.
async fn read_loop(
    shared: Arc<Shared>,
    first: Option<(PubSubSink, PubSubStream)>,
    cancel: CancellationToken,
) {
    let mut next = first;
    let mut retry = FIRST_RETRY;
    loop {
        let (mut sink, mut stream) = match next.take() {
            // `connect` published the first sink already, with nothing to resubscribe yet.
            Some(first) => first,
            None => {
                let opened = tokio::select! {
                    _ = cancel.cancelled() => return,
                    opened = open_pubsub(&shared.redis) => opened,
                };
                let (mut sink, stream) = match opened {
                    Ok(pubsub) => pubsub.split(),
                    Err(err) => {
                        // The outage was warned about once, when the connection was lost
                        // (or by the app at start-up); not again at every retry.
                        tracing::debug!(error = %err, "cannot reach the backplane; retrying");
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(jittered(retry)) => {}
                        }
                        retry = (retry * 2).min(LONGEST_RETRY);
                        continue;
                    }
                };
                // The sink is published before the channel list is read, so a subscribe
                // running meanwhile is either in that list or made on this connection.
                shared.set_sink(Some(sink.clone()));
                match shared.resubscribe(&mut sink).await {
                    Ok(count) => {
                        tracing::info!(
                            channels = count,
                            "reconnected and resubscribed to the backplane"
                        );
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "resubscribing failed; reconnecting");
                        shared.set_sink(None);
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(jittered(retry)) => {}
                        }
                        retry = (retry * 2).min(LONGEST_RETRY);
                        continue;
                    }
                }
                (sink, stream)
            }
        };
        retry = FIRST_RETRY;
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    shared.set_sink(None);
                    return;
                }
                message = stream.next() => match message {
                    Some(message) => shared.handle(&message),
                    None => break,
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(shared.redis.timeout(), sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        break;
                    }
                }
            }
        }
        // Events published until the new connection is subscribed are lost (pub/sub keeps
        // nothing), so the local feeds end: their connections close with `allowReconnect`,
        // and the clients reconnect and read what they missed rather than silently miss it.
        shared.set_sink(None);
        shared.fanout.close_all();
        tracing::warn!("lost the backplane connection; local feeds ended; reconnecting");
    }
}

/// Unsubscribes users who have no local subscriber any more.
async fn sweep_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<UserId>,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(user) = queue.recv() => shared.sweep_user(&user).await,
            _ = every.tick() => {
                let idle: Vec<UserId> = shared
                    .channels()
                    .keys()
                    .filter(|user| shared.fanout.subscriber_count(user) == 0)
                    .cloned()
                    .collect();
                for user in idle {
                    shared.sweep_user(&user).await;
                }
            }
        }
    }
}

/// `base` plus up to half of it again, so nodes that lost Redis together do not retry together.
fn jittered(base: Duration) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos()),
    );
    base + base.mul_f64((nanos % 1000) as f64 / 2000.0)
}

#[async_trait]
impl EventPublisher for RedisEventPublisher {
    #[tracing::instrument(skip(self, event), fields(user = %user))]
    async fn publish(&self, user: &UserId, event: &UserEvent) -> Result<(), PublishError> {
        let json = serde_json::to_string(event).map_err(unavailable)?;
        self.shared
            .redis
            .query::<i64>(
                redis::cmd("PUBLISH")
                    .arg(self.shared.keys.events(user))
                    .arg(json),
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    #[tracing::instrument(skip(self), fields(user = %user))]
    async fn subscribe(&self, user: &UserId) -> Result<EventSubscription, PublishError> {
        loop {
            let entry = self
                .shared
                .channels()
                .entry(user.clone())
                .or_default()
                .clone();
            let mut channel = entry.lock().await;
            if channel.removed {
                continue;
            }
            // Registered before SUBSCRIBE, so nothing published after we return is missed.
            let subscription = self.shared.fanout.subscribe(user);
            if !channel.subscribed {
                self.shared
                    .subscribe_channel(self.shared.keys.events(user))
                    .await?;
                channel.subscribed = true;
            }
            return Ok(subscription);
        }
    }
}
