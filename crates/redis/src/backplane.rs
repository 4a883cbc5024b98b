//! `Backplane` on Redis pub/sub: a channel per user (`{prefix}:{<user>}:events`) and one to
//! every node (`{prefix}:all`). What goes on a channel is exactly the bytes of
//! [`wire::encode`], carrying the publishing node's id.
//!
//! Two tasks own the Redis side. The writer takes what `publish` queued and sends it as
//! pipelines of `PUBLISH`, so `publish` never waits for Redis. The subscriber owns the pub/sub
//! connection: it applies subscription changes in the order they were made, reads what
//! arrives and hands it to the receiver, pings the connection, and replaces it when it fails.
//! Why per-user channels, and what they cost, is in `docs/redis.md`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use imgate_domain::ports::backplane::wire;
use imgate_domain::ports::{
    Audience, Backplane, BackplaneError, BackplaneMessage, BackplaneReceiver, Confirmation,
    Payload, SubscriptionChange,
};
use imgate_domain::UserId;
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use redis::Msg;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::connection::{CallError, Redis};
use crate::health::RedisHealthCheck;
use crate::keys::Keys;
use crate::telemetry::{self, Undecodable};
use crate::{ConnectError, RedisConfig};

/// Messages accepted by `publish` and not yet written. Normally the writer empties it within
/// a round trip; it fills only when Redis is slow, and then `publish` refuses rather than
/// let memory grow or callers wait. 10 000 covers a burst to every user of a busy node.
const PUBLISH_QUEUE: usize = 10_000;
/// `PUBLISH` commands per pipeline: large enough that a burst costs few round trips, small
/// enough that one write stays well under the command timeout.
const PUBLISH_BATCH: usize = 500;
/// Channels per `SUBSCRIBE`/`UNSUBSCRIBE`, for queued changes and for resubscribing.
const SUBSCRIBE_BATCH: usize = 500;
/// How often the subscriber connection is pinged, to notice a connection that died silently.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Reconnection backoff bounds.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Carries hub messages between the nodes sharing a Redis and a prefix.
///
/// `publish` queues the encoded message for the writer task and fails with `Unavailable` when
/// the queue is full or the writer knows Redis is not answering (it failed to write, the
/// subscriber connection was lost, or Redis never answered yet); it never waits. A pipeline
/// that fails loses the messages in it; the rest of the queue waits for Redis to answer.
/// `publish_confirmed` resolves when Redis answered its `PUBLISH` (or the pipeline failed).
///
/// A subscription change is queued when it is called and resolves once Redis confirmed it.
/// While the subscriber connection is down, a subscribe resolves to `Unavailable`, but is kept
/// and applied on reconnecting, as are all others; the receiver then gets `resumed`.
///
/// Dropping it, or [`shutdown`](Self::shutdown), stops its tasks and closes its connections;
/// messages still queued are not sent.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    changes: mpsc::UnboundedSender<Change>,
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

struct Shared {
    redis: Redis,
    keys: Keys,
    /// `{prefix}:all`, made once since every broadcast uses it.
    all_channel: String,
    /// This node's id: the origin of what it publishes, and what it ignores on receipt.
    node_id: String,
    receiver: OnceLock<Weak<dyn BackplaneReceiver>>,
    /// Whether `publish` accepts messages; false while Redis is known not to answer.
    writable: AtomicBool,
    /// Wakes the writer to check Redis after `writable` was cleared by the subscriber.
    check_writer: Notify,
}

/// One message for the writer.
struct Outgoing {
    channel: String,
    payload: Bytes,
    /// Told once Redis answered the message's `PUBLISH` (Redis has ordered it), or failed.
    confirm: Option<oneshot::Sender<Result<(), BackplaneError>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Subscribe,
    Unsubscribe,
}

/// One subscription change for the subscriber task, and where to say it is in effect.
struct Change {
    direction: Direction,
    user: UserId,
    done: oneshot::Sender<Result<(), BackplaneError>>,
}

fn unavailable(reason: impl std::fmt::Display) -> BackplaneError {
    BackplaneError::Unavailable(reason.to_string())
}

impl RedisBackplane {
    /// The backplane of node `node_id` on the Redis of `config`; fails only on an invalid URL.
    ///
    /// `node_id` must differ between the nodes sharing the prefix: messages carrying this
    /// node's id are taken for its own and ignored. When Redis answers, returns once the
    /// subscriber connection listens to `{prefix}:all` and a `PING` went through, so messages
    /// flow right away. When it does not (within the command timeout), returns anyway; calls
    /// fail with `Unavailable` until Redis answers, retried in the background.
    pub async fn connect(config: &RedisConfig, node_id: &str) -> Result<Self, ConnectError> {
        let redis = Redis::connect(config)?;
        let keys = Keys::new(&config.prefix);
        let all_channel = keys.all_channel();
        let (first, ping) = tokio::join!(open_subscribed(&redis, &all_channel), ping(&redis));
        let first = match first {
            Ok(connection) => Some(connection),
            Err(error) => {
                // The caller (the app) reports an unreachable Redis once; the task retries.
                tracing::debug!(error = %error, "backplane not reachable yet");
                None
            }
        };
        let shared = Arc::new(Shared {
            redis,
            keys,
            all_channel,
            node_id: node_id.to_owned(),
            receiver: OnceLock::new(),
            writable: AtomicBool::new(ping.is_ok()),
            check_writer: Notify::new(),
        });
        let (outgoing, queue) = mpsc::channel(PUBLISH_QUEUE);
        // Unbounded: a change must be queued at the call, or calls would take effect out of
        // order, and refusing one would leave the caller unsure what holds. Each change is a
        // user's first or last connection on this node coming or going, and the task takes
        // them as fast as they come when Redis is down, so the queue stays short.
        let (changes, change_queue) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(write_loop(shared.clone(), queue, cancel.clone()));
        tokio::spawn(subscribe_loop(
            shared.clone(),
            first,
            change_queue,
            cancel.clone(),
        ));
        Ok(Self {
            shared,
            outgoing,
            changes,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        })
    }

    /// A health check sharing this backplane's command connection.
    pub fn health_check(&self) -> RedisHealthCheck {
        RedisHealthCheck::from_connection(self.shared.redis.clone())
    }

    /// Stops the tasks and closes the subscriber connection; later calls fail with
    /// `Unavailable`.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Queues `message` for the writer, which tells `confirm` how its `PUBLISH` went.
    fn enqueue(
        &self,
        message: &BackplaneMessage,
        confirm: Option<oneshot::Sender<Result<(), BackplaneError>>>,
    ) -> Result<(), BackplaneError> {
        if !self.shared.writable.load(Ordering::Acquire) {
            telemetry::publish_refused("unavailable");
            return Err(unavailable("redis is not answering"));
        }
        let channel = match &message.audience {
            Audience::All => self.shared.all_channel.clone(),
            Audience::User(user) => self.shared.keys.user_channel(user),
        };
        let payload = wire::encode(&self.shared.node_id, message);
        let outgoing = Outgoing {
            channel,
            payload,
            confirm,
        };
        match self.outgoing.try_send(outgoing) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                telemetry::publish_refused("queue_full");
                Err(unavailable("the backplane's publish queue is full"))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                telemetry::publish_refused("unavailable");
                Err(unavailable("the backplane is shut down"))
            }
        }
    }

    fn change(&self, direction: Direction, user: &UserId) -> SubscriptionChange {
        let (done, outcome) = oneshot::channel();
        let change = Change {
            direction,
            user: user.clone(),
            done,
        };
        if self.changes.send(change).is_err() {
            return futures::future::ready(Err(unavailable("the backplane is shut down"))).boxed();
        }
        async move {
            outcome
                .await
                .unwrap_or_else(|_| Err(unavailable("the backplane is shut down")))
        }
        .boxed()
    }
}

impl Backplane for RedisBackplane {
    /// Sets the receiver; later calls are ignored. Messages arriving before it are dropped.
    fn attach(&self, receiver: Weak<dyn BackplaneReceiver>) {
        if self.shared.receiver.set(receiver).is_err() {
            tracing::warn!("backplane attached twice; keeping the first receiver");
        }
    }

    fn publish(&self, message: &BackplaneMessage) -> Result<(), BackplaneError> {
        self.enqueue(message, None)
    }

    /// Resolves once Redis answered the `PUBLISH`: Redis runs commands one at a time, so a
    /// message published after that, by any node, reaches every subscriber after this one.
    fn publish_confirmed(&self, message: &BackplaneMessage) -> Confirmation {
        let (confirm, confirmed) = oneshot::channel();
        if let Err(error) = self.enqueue(message, Some(confirm)) {
            return futures::future::ready(Err(error)).boxed();
        }
        async move {
            confirmed
                .await
                .unwrap_or_else(|_| Err(unavailable("the backplane is shut down")))
        }
        .boxed()
    }

    fn subscribe(&self, user: &UserId) -> SubscriptionChange {
        self.change(Direction::Subscribe, user)
    }

    fn unsubscribe(&self, user: &UserId) -> SubscriptionChange {
        self.change(Direction::Unsubscribe, user)
    }
}

impl Shared {
    fn receiver(&self) -> Option<Arc<dyn BackplaneReceiver>> {
        self.receiver.get()?.upgrade()
    }

    /// Tells the writer that Redis may be gone, so `publish` refuses until it answers again.
    fn suspect_writer(&self) {
        self.writable.store(false, Ordering::Release);
        self.check_writer.notify_one();
    }

    /// Hands a message from the subscriber connection to the receiver, unless it is this
    /// node's own (but for a host's invocation), unreadable, or for a user this node no
    /// longer wants.
    fn handle(&self, message: &Msg, subscriptions: &mut Subscriptions) {
        let bytes = Bytes::copy_from_slice(message.get_payload_bytes());
        let (origin, message) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(error) => {
                subscriptions.undecodable.record(&error);
                return;
            }
        };
        if origin == self.node_id && !matches!(message.payload, Payload::Host { .. }) {
            // Its own message, echoed because this node listens to the same channel; the
            // publishing node delivered it locally already. A host's invocation is the
            // exception: every node hands those over as Redis ordered them, this one too.
            return;
        }
        if let Audience::User(user) = &message.audience {
            // Published before an unsubscribe took effect in Redis: no longer wanted here.
            if !subscriptions.wanted.contains(user) {
                telemetry::dropped("unsubscribed");
                return;
            }
        }
        let Some(receiver) = self.receiver() else {
            telemetry::dropped("no_receiver");
            return;
        };
        telemetry::received();
        receiver.receive(message);
    }
}

async fn ping(redis: &Redis) -> Result<(), CallError> {
    redis.query::<String>(&redis::cmd("PING")).await.map(drop)
}

async fn open_pubsub(redis: &Redis) -> Result<PubSub, CallError> {
    tokio::time::timeout(redis.timeout(), redis.client().get_async_pubsub())
        .await
        .map_err(|_| CallError::Timeout(redis.timeout()))?
        .map_err(CallError::from)
}

/// A subscriber connection listening to `all_channel`.
async fn open_subscribed(
    redis: &Redis,
    all_channel: &str,
) -> Result<(PubSubSink, PubSubStream), CallError> {
    let (mut sink, stream) = open_pubsub(redis).await?.split();
    tokio::time::timeout(redis.timeout(), sink.subscribe(all_channel))
        .await
        .map_err(|_| CallError::Timeout(redis.timeout()))??;
    Ok((sink, stream))
}

/// Sends what `publish` queued, a pipeline at a time, and watches whether Redis answers.
async fn write_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Outgoing>,
    cancel: CancellationToken,
) {
    let mut retry = FIRST_RETRY;
    // Whether the writer itself saw Redis fail, so getting through again is worth a log line.
    let mut failed = false;
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    loop {
        if !shared.writable.load(Ordering::Acquire) {
            // `publish` refuses meanwhile; what it queued before waits for Redis to answer.
            let answered = tokio::select! {
                _ = cancel.cancelled() => return,
                answered = ping(&shared.redis) => answered,
            };
            match answered {
                Ok(()) => {
                    retry = FIRST_RETRY;
                    shared.writable.store(true, Ordering::Release);
                    if std::mem::take(&mut failed) {
                        telemetry::writer_back();
                    }
                }
                Err(error) => {
                    tracing::debug!(error = %error, "backplane writer cannot reach Redis; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(jittered(retry)) => {}
                    }
                    retry = (retry * 2).min(LONGEST_RETRY);
                }
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.check_writer.notified() => continue,
            received = queue.recv_many(&mut batch, PUBLISH_BATCH) => if received == 0 {
                // Every sender is gone: the backplane was dropped.
                return;
            },
        }
        let mut pipe = redis::pipe();
        for message in &batch {
            pipe.cmd("PUBLISH")
                .arg(&message.channel)
                .arg(&message.payload[..])
                .ignore();
        }
        let count = batch.len();
        let confirms: Vec<_> = batch
            .drain(..)
            .filter_map(|message| message.confirm)
            .collect();
        let outcome = shared.redis.pipeline::<()>(&pipe).await;
        match &outcome {
            Ok(()) => telemetry::published(count),
            Err(error) => {
                telemetry::send_failed(count, error);
                failed = true;
                shared.writable.store(false, Ordering::Release);
            }
        }
        for confirm in confirms {
            // The caller may have stopped waiting; nothing is owed to it then.
            let _ = confirm.send(
                outcome
                    .as_ref()
                    .copied()
                    .map_err(|error| unavailable(format!("PUBLISH failed: {error}"))),
            );
        }
    }
}

/// The subscriber task's state, which outlives its connections.
#[derive(Default)]
struct Subscriptions {
    /// The users this node wants messages of, after every change taken from the queue.
    wanted: HashSet<UserId>,
    /// A change taken from the queue but not yet applied: it ended the previous batch.
    carried: Option<Change>,
    undecodable: Undecodable,
}

impl Subscriptions {
    /// The next change to apply: the carried one, else the next queued; `None` once the
    /// backplane is dropped.
    async fn next_change(&mut self, queue: &mut mpsc::UnboundedReceiver<Change>) -> Option<Change> {
        if let Some(change) = self.carried.take() {
            return Some(change);
        }
        queue.recv().await
    }

    /// `first` and the changes queued right behind it in the same direction, so they go in
    /// one command; a change in the other direction is carried to the next batch.
    fn batch(&mut self, first: Change, queue: &mut mpsc::UnboundedReceiver<Change>) -> Vec<Change> {
        let direction = first.direction;
        let mut batch = vec![first];
        while batch.len() < SUBSCRIBE_BATCH {
            match queue.try_recv() {
                Ok(change) if change.direction == direction => batch.push(change),
                Ok(change) => {
                    self.carried = Some(change);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Records `batch` in the wanted set; returns the channels whose state changes.
    fn record(&mut self, keys: &Keys, batch: &[Change]) -> Vec<String> {
        let mut channels = Vec::new();
        for change in batch {
            let changed = match change.direction {
                Direction::Subscribe => self.wanted.insert(change.user.clone()),
                Direction::Unsubscribe => self.wanted.remove(&change.user),
            };
            if changed {
                channels.push(keys.user_channel(&change.user));
            }
        }
        telemetry::subscribed_users(self.wanted.len());
        channels
    }

    /// Applies a change while there is no connection: the next one is made with the wanted
    /// set. An unsubscribe is in effect at once; a subscribe only after reconnecting.
    fn apply_offline(&mut self, keys: &Keys, change: Change) {
        let direction = change.direction;
        let outcome = match direction {
            Direction::Subscribe => Err(unavailable("the backplane is reconnecting to Redis")),
            Direction::Unsubscribe => Ok(()),
        };
        self.record(keys, std::slice::from_ref(&change));
        let _ = change.done.send(outcome);
    }

    /// Applies `batch` on the live connection and acknowledges each change once Redis has;
    /// an error means the connection is no longer usable.
    async fn apply(
        &mut self,
        shared: &Shared,
        sink: &mut PubSubSink,
        batch: Vec<Change>,
    ) -> Result<(), CallError> {
        let Some(direction) = batch.first().map(|change| change.direction) else {
            return Ok(());
        };
        let channels = self.record(&shared.keys, &batch);
        let timeout = shared.redis.timeout();
        let applied = if channels.is_empty() {
            Ok(())
        } else {
            let command = async {
                match direction {
                    Direction::Subscribe => sink.subscribe(channels).await,
                    Direction::Unsubscribe => sink.unsubscribe(channels).await,
                }
            };
            match tokio::time::timeout(timeout, command).await {
                Ok(applied) => applied.map_err(CallError::from),
                Err(_) => Err(CallError::Timeout(timeout)),
            }
        };
        let outcome = match (&applied, direction) {
            (Ok(()), _) | (Err(_), Direction::Unsubscribe) => Ok(()),
            (Err(error), Direction::Subscribe) => Err(unavailable(error)),
        };
        for change in batch {
            let _ = change.done.send(outcome.clone());
        }
        applied
    }
}

/// Why the subscriber stopped serving a connection.
enum Ended {
    /// Shut down, or the backplane was dropped.
    Stopped,
    /// The connection failed; make a new one.
    Lost(CallError),
}

/// Owns the subscriber connection: applies subscription changes, reads, pings, and replaces
/// the connection when it fails.
///
/// `first` is the connection `connect` opened, or `None` when Redis did not answer then.
async fn subscribe_loop(
    shared: Arc<Shared>,
    first: Option<(PubSubSink, PubSubStream)>,
    mut queue: mpsc::UnboundedReceiver<Change>,
    cancel: CancellationToken,
) {
    let mut subscriptions = Subscriptions::default();
    let mut next = first;
    loop {
        let (sink, stream) = match next.take() {
            Some(connection) => connection,
            None => {
                let Some(connection) =
                    reconnect(&shared, &mut subscriptions, &mut queue, &cancel).await
                else {
                    return;
                };
                // Whatever was published while this node was not listening is lost to it.
                if let Some(receiver) = shared.receiver() {
                    receiver.resumed();
                }
                connection
            }
        };
        match serve(
            &shared,
            &mut subscriptions,
            sink,
            stream,
            &mut queue,
            &cancel,
        )
        .await
        {
            Ended::Stopped => return,
            Ended::Lost(error) => {
                telemetry::subscriber_lost(&error);
                // The command connection most likely went with it; `publish` refuses until
                // the writer has checked, rather than accept messages that cannot be sent.
                shared.suspect_writer();
            }
        }
    }
}

/// Reads and keeps one live connection until it fails or the backplane stops.
async fn serve(
    shared: &Shared,
    subscriptions: &mut Subscriptions,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    queue: &mut mpsc::UnboundedReceiver<Change>,
    cancel: &CancellationToken,
) -> Ended {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ended::Stopped,
            message = stream.next() => match message {
                Some(message) => shared.handle(&message, subscriptions),
                None => {
                    return Ended::Lost(CallError::NotConnected("the connection closed".into()))
                }
            },
            change = subscriptions.next_change(queue) => {
                let Some(first) = change else { return Ended::Stopped };
                let batch = subscriptions.batch(first, queue);
                if let Err(error) = subscriptions.apply(shared, &mut sink, batch).await {
                    return Ended::Lost(error);
                }
            }
            _ = ping.tick() => {
                let timeout = shared.redis.timeout();
                match tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => return Ended::Lost(error.into()),
                    Err(_) => return Ended::Lost(CallError::Timeout(timeout)),
                }
            }
        }
    }
}

/// Makes a new subscriber connection and subscribes it to everything wanted, retrying with
/// backoff; changes made meanwhile are applied to the wanted set. `None` once stopped.
async fn reconnect(
    shared: &Shared,
    subscriptions: &mut Subscriptions,
    queue: &mut mpsc::UnboundedReceiver<Change>,
    cancel: &CancellationToken,
) -> Option<(PubSubSink, PubSubStream)> {
    let mut retry = FIRST_RETRY;
    loop {
        let opened = offline(
            open_pubsub(&shared.redis),
            shared,
            subscriptions,
            queue,
            cancel,
        )
        .await?;
        match opened {
            Ok(pubsub) => {
                let (mut sink, stream) = pubsub.split();
                // Changes queued meanwhile wait: they apply on this connection after it.
                match resubscribe(shared, &subscriptions.wanted, &mut sink).await {
                    Ok(channels) => {
                        telemetry::subscriber_back(channels);
                        return Some((sink, stream));
                    }
                    Err(error) => {
                        tracing::debug!(error = %error, "resubscribing to the backplane failed; retrying");
                    }
                }
            }
            // The loss was logged once already; not again at every attempt.
            Err(error) => {
                tracing::debug!(error = %error, "cannot reach the backplane; retrying");
            }
        }
        offline(
            tokio::time::sleep(jittered(retry)),
            shared,
            subscriptions,
            queue,
            cancel,
        )
        .await?;
        retry = (retry * 2).min(LONGEST_RETRY);
    }
}

/// Runs `work` while taking subscription changes without a connection; `None` once stopped.
async fn offline<T>(
    work: impl Future<Output = T>,
    shared: &Shared,
    subscriptions: &mut Subscriptions,
    queue: &mut mpsc::UnboundedReceiver<Change>,
    cancel: &CancellationToken,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            done = &mut work => return Some(done),
            change = subscriptions.next_change(queue) => {
                let change = change?;
                subscriptions.apply_offline(&shared.keys, change);
            }
        }
    }
}

/// Subscribes a fresh connection to the all-channel and every wanted user's channel.
async fn resubscribe(
    shared: &Shared,
    wanted: &HashSet<UserId>,
    sink: &mut PubSubSink,
) -> Result<usize, CallError> {
    let channels: Vec<String> = std::iter::once(shared.all_channel.clone())
        .chain(wanted.iter().map(|user| shared.keys.user_channel(user)))
        .collect();
    let timeout = shared.redis.timeout();
    for batch in channels.chunks(SUBSCRIBE_BATCH) {
        tokio::time::timeout(timeout, sink.subscribe(batch))
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
    }
    Ok(channels.len())
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
