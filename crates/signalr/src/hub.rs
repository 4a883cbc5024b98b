//! [`Hub`]: connections from negotiate to close, what arrives from the other nodes, and
//! [`Hub::shutdown`]. The connections themselves live in the [`HubLifetimeManager`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backend::{Caller, HubBackend};
use crate::config::HubConfig;
use crate::lifetime::{HubLifetimeManager, Refused};
use crate::protocol::{Frame, HubProtocol};
use crate::replay::ReplayBuffer;
use crate::routing::{is_id_shaped, random_id, resumable_id, route_of, routed_id};
use crate::session;
use crate::telemetry;
use imgate_domain::sync::lock;

/// Inbound items a transport hands to the connection's session task.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Bytes as received: one WebSocket message or one POST body.
    Data(Bytes),
    /// The transport refused a message over the size limit.
    TooLarge,
}

/// Outbound items the session task hands to the transport.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// One whole, framed message that counts in stateful reconnect's sequence (an invocation
    /// or completion), in the connection's protocol; shared with every connection sent the
    /// same.
    Frame(Frame),
    /// One or more records that do not count (handshake answer, ping, Close, Ack, Sequence).
    Control(Frame),
    /// Nothing follows: close the transport once the frames before have been written.
    End,
}

/// The transports this hub speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    WebSockets,
    ServerSentEvents,
    LongPolling,
}

impl Transport {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "websockets",
            Self::ServerSentEvents => "server_sent_events",
            Self::LongPolling => "long_polling",
        }
    }
}

/// Slots of the outbound channel kept free for a final Close message and the end marker,
/// so a full buffer can still be closed politely.
pub(crate) const RESERVED_OUTBOUND: usize = 2;

/// Inbound messages buffered between a transport and its session task; a full buffer makes
/// the transport wait, which pushes back on the client rather than growing memory.
const INBOUND_BUFFER: usize = 16;

/// One connection, from negotiate until it is removed.
pub(crate) struct Connection {
    /// The public connection id (negotiate's `connectionId`).
    pub connection_id: String,
    /// The id the transport requests carry: the secret token (negotiate v1) or the
    /// connection id (v0, skipNegotiation).
    pub key: String,
    /// The authenticated user.
    pub caller: Caller,
    /// Negotiate granted stateful reconnect (`useStatefulReconnect`); it is on once the
    /// handshake asks for protocol version 2 over WebSockets.
    pub resumable: bool,
    transport: Mutex<Option<Transport>>,
    /// The hub protocol, once the handshake chose it.
    protocol: OnceLock<HubProtocol>,
    pub inbound: mpsc::Sender<Inbound>,
    inbound_rx: Mutex<Option<mpsc::Receiver<Inbound>>>,
    outbound_tx: Mutex<Option<mpsc::Sender<Outbound>>>,
    /// Where the lifetime manager queues the messages for this connection: the same channel
    /// as the session's own records, so there is one queue and one slow-consumer rule.
    pub events: mpsc::Sender<Outbound>,
    /// Why the server ended the connection, once it did.
    eviction: OnceLock<Eviction>,
    /// Cancelled when `eviction` is set: the session closes the connection.
    pub evicted: CancellationToken,
    /// The transport side of the outbound channel; a transport holds the lock while it reads.
    pub outbound: Arc<tokio::sync::Mutex<mpsc::Receiver<Outbound>>>,
    /// Everything about this connection must stop now.
    pub closed: CancellationToken,
    /// The transport serving the connection now: cancelled when it goes away (socket closed,
    /// SSE stream dropped, DELETE, end delivered). A stateful reconnect puts a new one here.
    link: Mutex<CancellationToken>,
    /// Told when a transport took the connection over again.
    pub relinked: Notify,
    /// The client ended its transport on purpose (a WebSocket Close), so it is not coming
    /// back to resume.
    pub client_left: AtomicBool,
    /// Stateful reconnect's sent messages, once the handshake turned it on.
    replay: OnceLock<Mutex<ReplayBuffer>>,
    /// `Hub::shutdown` asks the session to close with `allowReconnect`.
    pub shutdown: CancellationToken,
    /// Set once the session task has finished and the connection is unregistered.
    pub finished: CancellationToken,
    /// Milliseconds since the hub's epoch when the client was last heard from.
    last_activity_ms: AtomicU64,
    /// Milliseconds since the hub's epoch when the lifetime manager last queued a message:
    /// the session sends no keep-alive ping while messages flow.
    last_message_ms: AtomicU64,
    /// Long polls waiting right now; a waiting poll is a live client.
    pub polls_pending: AtomicUsize,
    /// Whether a POST (SSE, long polling) is being processed.
    pub post_in_flight: AtomicBool,
    /// Long polling saw the end marker: the next poll answers 204.
    pub poll_ended: AtomicBool,
    /// Ends the pending long poll when a newer one arrives.
    pub poll_preempt: Mutex<Option<oneshot::Sender<()>>>,
    epoch: Instant,
}

/// Why the server ends a connection from outside its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eviction {
    /// Its queue was full: the client does not read fast enough.
    Lagged,
    /// Stateful reconnect's buffer was full: the client does not acknowledge what it got.
    Unacknowledged,
    /// Closed for good, with this text (say, the account was deleted).
    Closed(String),
}

impl Connection {
    /// Ends the connection for `why`; the first reason stands.
    pub fn evict(&self, why: Eviction) {
        if self.eviction.set(why).is_ok() {
            self.evicted.cancel();
        }
    }

    /// Why the connection was evicted, if it was.
    pub fn eviction(&self) -> Option<&Eviction> {
        self.eviction.get()
    }

    /// Records that the client was heard from.
    pub fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(now, Ordering::Relaxed);
    }

    /// Records that a message was queued for the client.
    pub fn message_queued(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_message_ms.store(now, Ordering::Relaxed);
    }

    /// When a message was last queued for the client, if ever.
    pub fn last_message_at(&self) -> Option<tokio::time::Instant> {
        match self.last_message_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(tokio::time::Instant::from_std(
                self.epoch + Duration::from_millis(ms),
            )),
        }
    }

    /// How long since the client was last heard from.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// The hub protocol the handshake chose; JSON before it.
    pub fn protocol(&self) -> HubProtocol {
        self.protocol.get().copied().unwrap_or(HubProtocol::Json)
    }

    /// Fixes the hub protocol; the handshake does this once, before the connection joins.
    pub fn set_protocol(&self, protocol: HubProtocol) {
        let _ = self.protocol.set(protocol);
    }

    /// The current transport's token: cancelled once it is gone.
    pub fn link(&self) -> CancellationToken {
        lock(&self.link).clone()
    }

    /// Ends the current transport.
    pub fn end_transport(&self) {
        lock(&self.link).cancel();
    }

    /// Turns stateful reconnect on, keeping up to `limit` bytes of sent messages.
    pub fn enable_replay(&self, limit: usize) {
        let _ = self.replay.set(Mutex::new(ReplayBuffer::new(limit)));
    }

    /// Stateful reconnect's sent messages; `None` when it is off.
    pub fn replay(&self) -> Option<&Mutex<ReplayBuffer>> {
        self.replay.get()
    }

    /// The transport in use, once one connected.
    pub fn transport(&self) -> Option<Transport> {
        *lock(&self.transport)
    }
}

/// Why a transport could not start on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartError {
    /// Another transport already serves this id.
    AlreadyConnected,
}

/// The SignalR hub: negotiates connections, runs one session task per connection, and
/// closes them all on [`Hub::shutdown`].
pub struct Hub {
    pub(crate) config: HubConfig,
    pub(crate) manager: Arc<HubLifetimeManager>,
    pub(crate) backend: Arc<dyn HubBackend>,
    /// Ids of connections that ended here lately: a request naming one gets 404 (the client
    /// then reconnects at once) rather than being adopted as a new connection.
    ended: moka::sync::Cache<String, ()>,
    epoch: Instant,
}

/// How long an ended connection's id is remembered; clients notice an end within seconds.
const ENDED_MEMORY: Duration = Duration::from_secs(600);
/// At most this many ended ids are remembered (about 100 bytes each).
const ENDED_CAPACITY: u64 = 100_000;

impl Hub {
    /// A hub whose connections `manager` keeps, and that calls `backend` for connection
    /// lifecycle and hub methods; the manager asks `backend` about what other nodes send.
    pub fn new(
        config: HubConfig,
        manager: Arc<HubLifetimeManager>,
        backend: Arc<dyn HubBackend>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            config,
            manager,
            backend,
            ended: moka::sync::Cache::builder()
                .max_capacity(ENDED_CAPACITY)
                .time_to_live(ENDED_MEMORY)
                .build(),
            epoch: Instant::now(),
        });
        hub.manager.attach(Arc::downgrade(&hub.backend));
        hub
    }

    /// The node's connections.
    pub fn manager(&self) -> &Arc<HubLifetimeManager> {
        &self.manager
    }

    /// The settings in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// Connections whose transport has started and that have not ended yet.
    pub fn open_connections(&self) -> usize {
        self.manager.started()
    }

    /// Closes every open connection with a Close message carrying `allowReconnect: true`
    /// (clients with automatic reconnect come back, to this node or another), and waits up
    /// to `timeout` for them to end.
    ///
    /// New connections are still accepted: stop the HTTP server from accepting first (for
    /// actix, `ServerHandle::stop(true)` stops the listeners at once), then call this, so
    /// the graceful drain is not held up by long-lived hub connections.
    pub async fn shutdown(&self, timeout: Duration) {
        let connections = self.manager.all();
        tracing::info!(
            connections = connections.len(),
            "closing hub connections for shutdown"
        );
        for connection in &connections {
            if connection.transport().is_none() {
                // Negotiated but never connected: nothing to tell anyone.
                self.remove(connection);
                connection.closed.cancel();
                connection.finished.cancel();
            } else {
                connection.shutdown.cancel();
            }
        }
        let all_finished =
            futures::future::join_all(connections.iter().map(|c| c.finished.cancelled()));
        if tokio::time::timeout(timeout, all_finished).await.is_err() {
            tracing::warn!("hub connections still open after the shutdown timeout");
            for connection in &connections {
                connection.closed.cancel();
            }
        }
    }

    /// Registers a new connection of `caller`; with `separate_token`, transports address it
    /// by a secret token (negotiate v1), otherwise by its connection id. A `resumable` one
    /// (stateful reconnect) gets an id no other node takes over, so a reconnect that lands
    /// elsewhere finds no connection rather than a fresh one.
    pub(crate) fn create(
        self: &Arc<Self>,
        caller: Caller,
        separate_token: bool,
        resumable: bool,
    ) -> Result<Arc<Connection>, Refused> {
        let route = self.own_route();
        let id = || {
            if resumable {
                resumable_id(route)
            } else {
                routed_id(route)
            }
        };
        let (connection_id, key) = if separate_token {
            (random_id(), id())
        } else {
            let id = id();
            (id.clone(), id)
        };
        let connection = self.new_connection(caller, connection_id, key, resumable);
        self.manager.insert(connection.clone(), &self.config)?;
        Ok(connection)
    }

    /// This node's route, when it has one.
    pub(crate) fn own_route(&self) -> Option<&str> {
        Some(self.config.route.as_str()).filter(|route| !route.is_empty())
    }

    /// The route of the node holding `user`'s upstream, when routing is on and that is
    /// another node: the user's connections belong there.
    pub(crate) async fn route_elsewhere(&self, user: &imgate_domain::UserId) -> Option<String> {
        let own = self.own_route()?;
        let node = self.backend.upstream_node(user).await?;
        route_of(&node)
            .filter(|route| *route != own)
            .map(str::to_owned)
    }

    /// Takes over a connection another node negotiated: a transport arrived here with an id
    /// this hub has never seen. Behind a proxy that routes by the `id` query (so every request
    /// of one connection reaches one node), negotiate may have gone to a different node; the
    /// transport request is authenticated on its own, so the caller is known. Returns `None`
    /// for ids that are not shaped like the ones hubs hand out.
    pub(crate) fn adopt(
        self: &Arc<Self>,
        caller: Caller,
        key: &str,
    ) -> Result<Option<Arc<Connection>>, Refused> {
        if !is_id_shaped(key) || self.ended.contains_key(key) {
            return Ok(None);
        }
        if let Some(existing) = self.manager.find(key) {
            return Ok(Some(existing));
        }
        let connection = self.new_connection(caller, random_id(), key.to_owned(), false);
        if let Err(refused) = self.manager.insert(connection.clone(), &self.config) {
            // Two requests adopting one id at once: the other one registered it.
            return match self.manager.find(key) {
                Some(existing) => Ok(Some(existing)),
                None => Err(refused),
            };
        }
        // Started by the caller at once; if its upgrade fails, it must not linger.
        self.expire_unless_started(&connection);
        tracing::debug!(connection_id = %connection.connection_id, "adopted a connection negotiated elsewhere");
        Ok(Some(connection))
    }

    fn new_connection(
        &self,
        caller: Caller,
        connection_id: String,
        key: String,
        resumable: bool,
    ) -> Arc<Connection> {
        let (inbound, inbound_rx) = mpsc::channel(INBOUND_BUFFER);
        let (outbound_tx, outbound_rx) =
            mpsc::channel(self.config.outbound_buffer.max(1) + RESERVED_OUTBOUND);
        let events = outbound_tx.clone();
        let connection = Arc::new(Connection {
            connection_id,
            key,
            caller,
            resumable,
            transport: Mutex::new(None),
            protocol: OnceLock::new(),
            inbound,
            inbound_rx: Mutex::new(Some(inbound_rx)),
            outbound_tx: Mutex::new(Some(outbound_tx)),
            events,
            eviction: OnceLock::new(),
            evicted: CancellationToken::new(),
            outbound: Arc::new(tokio::sync::Mutex::new(outbound_rx)),
            closed: CancellationToken::new(),
            link: Mutex::new(CancellationToken::new()),
            relinked: Notify::new(),
            client_left: AtomicBool::new(false),
            replay: OnceLock::new(),
            shutdown: CancellationToken::new(),
            finished: CancellationToken::new(),
            last_activity_ms: AtomicU64::new(0),
            last_message_ms: AtomicU64::new(0),
            polls_pending: AtomicUsize::new(0),
            post_in_flight: AtomicBool::new(false),
            poll_ended: AtomicBool::new(false),
            poll_preempt: Mutex::new(None),
            epoch: self.epoch,
        });
        connection.touch();
        connection
    }

    /// Forgets a negotiated connection whose transport did not come in time.
    pub(crate) fn expire_unless_started(self: &Arc<Self>, connection: &Arc<Connection>) {
        let hub = Arc::downgrade(self);
        let connection = connection.clone();
        let wait = self.config.negotiate_timeout();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = connection.closed.cancelled() => return,
            }
            if connection.transport().is_none() {
                if let Some(hub) = hub.upgrade() {
                    hub.remove(&connection);
                }
                connection.closed.cancel();
                connection.finished.cancel();
                tracing::debug!(connection_id = %connection.connection_id, "negotiated connection never connected");
            }
        });
    }

    /// The connection transports address as `key`.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Connection>> {
        self.manager.find(key)
    }

    pub(crate) fn remove(&self, connection: &Connection) {
        if self.manager.remove(connection) {
            self.ended.insert(connection.key.clone(), ());
        }
    }

    /// Hands a stateful-reconnect connection to a new WebSocket with the same token: the one
    /// before, if the hub has not noticed it is gone yet, is ended. The session keeps running;
    /// the new transport first sends what the client has not acknowledged.
    pub(crate) fn reattach(&self, connection: &Connection) -> Result<(), StartError> {
        if connection.replay().is_none()
            || connection.transport() != Some(Transport::WebSockets)
            || connection.closed.is_cancelled()
        {
            return Err(StartError::AlreadyConnected);
        }
        {
            let mut link = lock(&connection.link);
            link.cancel();
            *link = CancellationToken::new();
        }
        connection.client_left.store(false, Ordering::Release);
        connection.touch();
        connection.relinked.notify_one();
        telemetry::resumed();
        tracing::debug!(connection_id = %connection.connection_id, "hub connection resumed on a new WebSocket");
        Ok(())
    }

    /// Binds `transport` to the connection and starts its session task.
    pub(crate) fn start(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        transport: Transport,
    ) -> Result<(), StartError> {
        {
            let mut slot = lock(&connection.transport);
            if slot.is_some() {
                return Err(StartError::AlreadyConnected);
            }
            *slot = Some(transport);
        }
        let inbound = lock(&connection.inbound_rx).take();
        let outbound = lock(&connection.outbound_tx).take();
        let (Some(inbound), Some(outbound)) = (inbound, outbound) else {
            // Only `start` takes them, and the transport slot above lets it run once.
            return Err(StartError::AlreadyConnected);
        };
        connection.touch();
        let span = tracing::info_span!(
            "hub_connection",
            connection_id = %connection.connection_id,
            user = %connection.caller.user,
            transport = transport.name(),
        );
        tokio::spawn(
            session::run(
                self.clone(),
                connection.clone(),
                transport,
                inbound,
                outbound,
            )
            .instrument(span),
        );
        Ok(())
    }
}
