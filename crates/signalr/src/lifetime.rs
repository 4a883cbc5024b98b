//! [`HubLifetimeManager`]: every hub connection of this node, grouped by user, and the one way
//! messages reach them — send to a user, to everyone, to one connection, or close a user's
//! connections — here and, through the [`Backplane`], on the other nodes.
//!
//! A message is encoded once per hub protocol ([`Frames`]); every connection that gets it is
//! handed the same immutable buffer. The node that sends delivers to its own connections
//! itself and publishes the same bytes for the others; it never hears itself back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use bytestring::ByteString;
use imgate_domain::ports::{
    Audience, Backplane, BackplaneError, BackplaneMessage, BackplaneReceiver, EventDelivery,
    HostChannel, HostInvocation, MessageStamp, Payload, Presence, ProtocolCode, Reach,
    SubscriptionChange,
};
use imgate_domain::sync::lock;
use imgate_domain::{UserEvent, UserId};
use tokio::sync::mpsc;

use crate::backend::{event_frame, invocation_frame, HubBackend};
use crate::config::HubConfig;
use crate::hub::{Connection, Eviction, Outbound, RESERVED_OUTBOUND};
use crate::protocol::{messagepack, Frame, HubProtocol};

/// The Close text a deleted user's connections get.
pub(crate) const ACCOUNT_DELETED: &str = "the user's account was deleted";

/// One hub message as each protocol encodes it, shared by every connection it goes to.
///
/// The JSON record is written first; the MessagePack one is made from it when a MessagePack
/// connection first needs it, once per node (clones share it), so a node without such
/// connections never pays for it and both protocols always carry the same values.
#[derive(Debug, Clone)]
pub struct Frames {
    /// The JSON hub protocol's record, separator included.
    pub json: ByteString,
    messagepack: Arc<OnceLock<Option<Bytes>>>,
}

impl PartialEq for Frames {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl Eq for Frames {}

impl Frames {
    /// Frames from a JSON invocation record.
    fn from_json(json: ByteString) -> Self {
        Self {
            json,
            messagepack: Arc::default(),
        }
    }

    /// The frames of `event`; `None` for the events that close connections instead.
    pub fn of_event(event: &UserEvent) -> Option<Self> {
        event_frame(event).map(|json| Self::from_json(json.into()))
    }

    /// The frames of a host's invocation.
    pub fn of_invocation(invocation: &HostInvocation) -> Self {
        Self::from_json(invocation_frame(invocation).into())
    }

    /// The record in `protocol`; `None` only if the JSON record could not be re-encoded,
    /// which the hub's own records always can.
    pub(crate) fn frame(&self, protocol: HubProtocol) -> Option<Frame> {
        match protocol {
            HubProtocol::Json => Some(Frame::Text(self.json.clone())),
            HubProtocol::MessagePack => self
                .messagepack
                .get_or_init(|| messagepack::invocation_from_json(self.json.as_bytes()))
                .clone()
                .map(Frame::Binary),
        }
    }

    /// The frames as they cross nodes: the JSON record, from which each node makes its own
    /// MessagePack record when it needs one.
    fn to_wire(&self) -> Vec<(ProtocolCode, Bytes)> {
        vec![(ProtocolCode::JSON, self.json.as_bytes().clone())]
    }

    /// The frames another node sent; `None` when none is one this node speaks.
    pub(crate) fn from_wire(frames: Vec<(ProtocolCode, Bytes)>) -> Option<Self> {
        let json = frames
            .into_iter()
            .find(|(protocol, _)| *protocol == ProtocolCode::JSON)?
            .1;
        ByteString::try_from(json).ok().map(Self::from_json)
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The user has `max_connections_per_user` open here.
    #[error("this user already has {0} hub connections open on this node; close one first")]
    UserFull(usize),
    /// The node holds `max_connections`.
    #[error("this node holds its maximum of {0} hub connections; try again later")]
    NodeFull(usize),
}

/// One user's connections on this node.
#[derive(Default)]
struct UserConnections {
    /// Negotiated and not yet removed, counted against the per-user limit.
    negotiated: usize,
    /// Those past the handshake: they receive the user's messages.
    members: Vec<Arc<Connection>>,
}

/// Connections by the id transports send, by connection id, and by user.
#[derive(Default)]
struct Registry {
    by_key: HashMap<String, Arc<Connection>>,
    by_id: HashMap<String, Arc<Connection>>,
    users: HashMap<UserId, UserConnections>,
}

/// The node's hub connections and the backplane to the other nodes.
///
/// The registry's lock is a `std` mutex held only for map edits and non-blocking sends, never
/// across an `.await`. A user's first member and last leaving are decided under it, and so
/// are what follows from them (the backplane subscription, the upstream's start or grace
/// period), so those happen in the order the connections came and went.
pub struct HubLifetimeManager {
    registry: Mutex<Registry>,
    backplane: Arc<dyn Backplane>,
    /// Told each user's count of connections here whenever it changes.
    presence: Arc<dyn Presence>,
    recent: Mutex<RecentFrames>,
    /// What other nodes sent users whose messages this node is recovering from history.
    held: Mutex<HashMap<UserId, VecDeque<Received>>>,
    /// Asked whether a room message from another node is new here, told when the backplane
    /// resumes. Weak: the backend's services hold this manager.
    backend: OnceLock<Weak<dyn HubBackend>>,
}

/// A message another node sent a user, kept back during a recovery.
struct Received {
    /// The room message it carries, if any.
    stamp: Option<MessageStamp>,
    frames: Frames,
    /// Whether it is a host's invocation, counted as such when delivered.
    host: bool,
}

/// Counts the connections a host's invocation was handed to, on whichever node.
fn count_host_deliveries(handed: usize) {
    metrics::counter!("imgate_host_push_deliveries_total").increment(handed as u64);
}

/// Messages kept back per user during a recovery from history, at most. A recovery takes a
/// few provider calls; a user sent more than this meanwhile loses the oldest of them rather
/// than the node its memory.
const HELD_PER_USER: usize = 4096;

/// Room messages encoded lately, by revision: a message in a room goes to every member's
/// upstream, and each hands it over, but its frames are the same bytes for all of them.
#[derive(Default)]
struct RecentFrames {
    frames: HashMap<MessageStamp, Frames>,
    order: VecDeque<MessageStamp>,
}

/// Room messages whose frames are kept for the members that hand them over next.
const RECENT_FRAMES: usize = 1024;

impl RecentFrames {
    /// The frames of the message `stamp` names, encoded by `encode` the first time.
    fn get_or(
        &mut self,
        stamp: &MessageStamp,
        encode: impl FnOnce() -> Option<Frames>,
    ) -> Option<Frames> {
        if let Some(frames) = self.frames.get(stamp) {
            return Some(frames.clone());
        }
        let frames = encode()?;
        if self.order.len() == RECENT_FRAMES {
            if let Some(oldest) = self.order.pop_front() {
                self.frames.remove(&oldest);
            }
        }
        self.order.push_back(stamp.clone());
        self.frames.insert(stamp.clone(), frames.clone());
        Some(frames)
    }
}

impl HubLifetimeManager {
    /// A manager reaching the other nodes through `backplane`, keeping `presence` told.
    pub fn new(backplane: Arc<dyn Backplane>, presence: Arc<dyn Presence>) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::default(),
            backplane,
            presence,
            recent: Mutex::default(),
            held: Mutex::default(),
            backend: OnceLock::new(),
        })
    }

    /// Starts receiving from the other nodes, asking `backend` about what arrives.
    pub(crate) fn attach(self: &Arc<Self>, backend: Weak<dyn HubBackend>) {
        if self.backend.set(backend).is_ok() {
            let receiver: Arc<dyn BackplaneReceiver> = self.clone();
            self.backplane.attach(Arc::downgrade(&receiver));
        }
    }

    fn backend(&self) -> Option<Arc<dyn HubBackend>> {
        self.backend.get().and_then(Weak::upgrade)
    }

    /// Delivers here what another node sent `user`, unless it is a room message this node's
    /// connections were handed already (a takeover, a recovery from history).
    fn deliver_received(&self, user: &UserId, received: &Received) {
        if let (Some(stamp), Some(backend)) = (&received.stamp, self.backend()) {
            if !backend.first_delivery(user, stamp) {
                return;
            }
        }
        let handed = self.send_user_here(user, &received.frames);
        if received.host {
            count_host_deliveries(handed);
        }
    }

    /// Delivers what another node sent `user`, or keeps it back while a recovery runs.
    fn receive_for(
        &self,
        user: &UserId,
        stamp: Option<MessageStamp>,
        frames: Vec<(ProtocolCode, Bytes)>,
        host: bool,
    ) {
        let Some(frames) = Frames::from_wire(frames) else {
            return;
        };
        let received = Received {
            stamp,
            frames,
            host,
        };
        if let Some(held) = lock(&self.held).get_mut(user) {
            if held.len() == HELD_PER_USER {
                held.pop_front();
            }
            held.push_back(received);
            return;
        }
        self.deliver_received(user, &received);
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Sends `frames` to every connection of `user` on this node and the others.
    pub fn send_user(&self, user: &UserId, frames: &Frames, stamp: Option<MessageStamp>) {
        self.send_user_here(user, frames);
        self.publish(BackplaneMessage {
            audience: Audience::User(user.clone()),
            payload: Payload::Frames {
                stamp,
                frames: frames.to_wire(),
            },
        });
    }

    /// Sends `frames` to every connection on every node.
    pub fn send_all(&self, frames: &Frames) {
        self.send_all_here(frames);
        self.publish(BackplaneMessage {
            audience: Audience::All,
            payload: Payload::Frames {
                stamp: None,
                frames: frames.to_wire(),
            },
        });
    }

    /// Sends `frames` to the connection of `connection_id`, if it is on this node.
    pub fn send_connection(&self, connection_id: &str, frames: &Frames) -> bool {
        match self.lock().by_id.get(connection_id) {
            Some(connection) => {
                push(connection, frames);
                true
            }
            None => false,
        }
    }

    /// Closes every connection of `user` on every node with a Close record carrying `reason`
    /// and no `allowReconnect`; this node's close even when the others cannot be told.
    pub fn close_user(&self, user: &UserId, reason: &str) -> Result<(), BackplaneError> {
        self.close_user_here(user, reason);
        self.backplane.publish(&BackplaneMessage {
            audience: Audience::User(user.clone()),
            payload: Payload::Close {
                reason: reason.to_owned(),
            },
        })
    }

    /// How many connections past the handshake `user` has on this node.
    pub fn user_connections(&self, user: &UserId) -> usize {
        self.lock().users.get(user).map_or(0, |u| u.members.len())
    }

    /// How many users have a connection past the handshake on this node.
    pub fn online_users(&self) -> usize {
        self.lock()
            .users
            .values()
            .filter(|u| !u.members.is_empty())
            .count()
    }

    fn publish(&self, message: BackplaneMessage) {
        if let Err(error) = self.backplane.publish(&message) {
            // This node's connections have it; the others recover from history, see
            // `UpstreamService::backplane_resumed`.
            tracing::debug!(error = %error, "a hub message did not reach the other nodes");
        }
    }

    /// Hands `frames` to `user`'s connections on this node; says to how many.
    pub(crate) fn send_user_here(&self, user: &UserId, frames: &Frames) -> usize {
        self.lock()
            .users
            .get(user)
            .map_or(0, |connections| hand(connections, frames))
    }

    /// Hands `frames` to every connection on this node; says to how many.
    pub(crate) fn send_all_here(&self, frames: &Frames) -> usize {
        self.lock()
            .users
            .values()
            .map(|connections| hand(connections, frames))
            .sum()
    }

    pub(crate) fn close_user_here(&self, user: &UserId, reason: &str) {
        if let Some(connections) = self.lock().users.get(user) {
            for connection in &connections.members {
                connection.evict(Eviction::Closed(reason.to_owned()));
            }
        }
    }

    /// Adds a negotiated connection unless its user or the node is at the limit.
    pub(crate) fn insert(
        &self,
        connection: Arc<Connection>,
        config: &HubConfig,
    ) -> Result<(), Refused> {
        let mut registry = self.lock();
        if registry.by_key.len() >= config.max_connections {
            return Err(Refused::NodeFull(config.max_connections));
        }
        let user = registry
            .users
            .entry(connection.caller.user.clone())
            .or_default();
        if user.negotiated >= config.max_connections_per_user {
            return Err(Refused::UserFull(config.max_connections_per_user));
        }
        user.negotiated += 1;
        registry
            .by_id
            .insert(connection.connection_id.clone(), connection.clone());
        registry.by_key.insert(connection.key.clone(), connection);
        Ok(())
    }

    /// The connection transports address as `key`.
    pub(crate) fn find(&self, key: &str) -> Option<Arc<Connection>> {
        self.lock().by_key.get(key).cloned()
    }

    /// Every connection, for shutdown.
    pub(crate) fn all(&self) -> Vec<Arc<Connection>> {
        self.lock().by_key.values().cloned().collect()
    }

    /// How many connections whose transport has started.
    pub(crate) fn started(&self) -> usize {
        self.lock()
            .by_key
            .values()
            .filter(|c| c.transport().is_some())
            .count()
    }

    /// Removes `connection` if it is still the one registered under its key; `false` when
    /// it was gone already.
    pub(crate) fn remove(&self, connection: &Connection) -> bool {
        let mut registry = self.lock();
        let registered = registry
            .by_key
            .get(&connection.key)
            .is_some_and(|c| std::ptr::eq(Arc::as_ptr(c), connection));
        if !registered {
            return false;
        }
        registry.by_key.remove(&connection.key);
        registry.by_id.remove(&connection.connection_id);
        let user = &connection.caller.user;
        if let Some(entry) = registry.users.get_mut(user) {
            entry.negotiated = entry.negotiated.saturating_sub(1);
            if entry.negotiated == 0 && entry.members.is_empty() {
                registry.users.remove(user);
            }
        }
        true
    }

    /// Whether `user` has a connection past the handshake here.
    pub(crate) fn has_members(&self, user: &UserId) -> bool {
        self.user_connections(user) > 0
    }

    /// Makes `connection` a receiver of its user's messages: queues `first_frame` (the
    /// handshake answer) before anything else can reach it, and, for the user's first
    /// member, subscribes to the user on the backplane and runs `on_first`.
    pub(crate) fn join(
        &self,
        connection: &Arc<Connection>,
        first_frame: Frame,
        on_first: impl FnOnce(&UserId),
    ) {
        let mut registry = self.lock();
        // The channel is fresh, so the first frame always fits.
        let _ = connection.events.try_send(Outbound::Control(first_frame));
        let user = &connection.caller.user;
        let entry = registry.users.entry(user.clone()).or_default();
        entry.members.push(connection.clone());
        self.presence.set(user, entry.members.len());
        if entry.members.len() == 1 {
            // Queued now, so it takes effect after any unsubscribe of a leaving last member;
            // usually the handshake subscribed already and this changes nothing.
            drop(self.backplane.subscribe(user));
            on_first(user);
        }
    }

    /// Stops `connection` receiving; for the user's last member, unsubscribes from the user
    /// on the backplane and runs `on_last`.
    pub(crate) fn leave(&self, connection: &Connection, on_last: impl FnOnce(&UserId)) {
        let mut registry = self.lock();
        let user = &connection.caller.user;
        let Some(entry) = registry.users.get_mut(user) else {
            return;
        };
        let before = entry.members.len();
        entry
            .members
            .retain(|c| !std::ptr::eq(Arc::as_ptr(c), connection));
        let after = entry.members.len();
        if after < before {
            self.presence.set(user, after);
        }
        if before > 0 && entry.members.is_empty() {
            if entry.negotiated == 0 {
                registry.users.remove(user);
            }
            drop(self.backplane.unsubscribe(user));
            on_last(user);
        }
    }

    /// Subscribes to `user` on the backplane; the future resolves once that is in effect.
    pub(crate) fn subscribe(&self, user: &UserId) -> SubscriptionChange {
        self.backplane.subscribe(user)
    }
}

/// Hands `frames` to each of `connections`; says to how many.
fn hand(connections: &UserConnections, frames: &Frames) -> usize {
    for connection in &connections.members {
        push(connection, frames);
    }
    connections.members.len()
}

/// Hands `frames` to one connection without waiting; a connection whose queue is full is
/// cut off, so one client that stops reading holds bounded memory and delays nobody.
fn push(connection: &Connection, frames: &Frames) {
    // The last slots stay free for the Close record and the end marker.
    if connection.events.capacity() <= RESERVED_OUTBOUND {
        connection.evict(Eviction::Lagged);
        return;
    }
    let Some(frame) = frames.frame(connection.protocol()) else {
        tracing::warn!("a hub message could not be encoded for the connection's protocol");
        return;
    };
    match connection.events.try_send(Outbound::Frame(frame)) {
        Ok(()) => connection.message_queued(),
        Err(mpsc::error::TrySendError::Full(_)) => connection.evict(Eviction::Lagged),
        // The session ended; it leaves the registry in a moment.
        Err(mpsc::error::TrySendError::Closed(_)) => {}
    }
}

impl EventDelivery for HubLifetimeManager {
    fn hold(&self, user: &UserId) {
        lock(&self.held).entry(user.clone()).or_default();
    }

    fn release(&self, user: &UserId) {
        let held = lock(&self.held).remove(user).unwrap_or_default();
        for received in held {
            self.deliver_received(user, &received);
        }
    }

    fn deliver(&self, user: &UserId, event: &UserEvent, reach: Reach) {
        let stamp = match event {
            UserEvent::RoomMessage { message } => Some(MessageStamp::of(message)),
            _ => None,
        };
        let frames = match &stamp {
            Some(stamp) => lock(&self.recent).get_or(stamp, || Frames::of_event(event)),
            None => Frames::of_event(event),
        };
        let Some(frames) = frames else {
            // Only `AccountDeleted` has no frame: it ends the connections instead.
            match reach {
                Reach::AllNodes => {
                    if let Err(error) = self.close_user(user, ACCOUNT_DELETED) {
                        // The other nodes' connections end when their upstream finds the
                        // account gone.
                        tracing::debug!(error = %error, "a close did not reach the other nodes");
                    }
                }
                Reach::ThisNode => self.close_user_here(user, ACCOUNT_DELETED),
            }
            return;
        };
        match reach {
            Reach::AllNodes => self.send_user(user, &frames, stamp),
            Reach::ThisNode => {
                self.send_user_here(user, &frames);
            }
        }
    }
}

#[async_trait]
impl HostChannel for HubLifetimeManager {
    /// Publishes the invocation and resolves once the backplane has ordered it. Every node,
    /// this one too, hands it to its connections as it comes back from the backplane, so all
    /// of them see a user's invocations in that one order.
    async fn send(
        &self,
        audience: &Audience,
        invocation: &HostInvocation,
    ) -> Result<(), BackplaneError> {
        let message = BackplaneMessage {
            audience: audience.clone(),
            payload: Payload::Host {
                frames: Frames::of_invocation(invocation).to_wire(),
            },
        };
        self.backplane.publish_confirmed(&message).await
    }

    fn close(&self, user: &UserId, reason: &str) -> Result<(), BackplaneError> {
        self.close_user(user, reason)
    }
}

impl BackplaneReceiver for HubLifetimeManager {
    fn receive(&self, message: BackplaneMessage) {
        match (message.audience, message.payload) {
            (Audience::User(user), Payload::Frames { stamp, frames }) => {
                self.receive_for(&user, stamp, frames, false);
            }
            (Audience::User(user), Payload::Host { frames }) => {
                self.receive_for(&user, None, frames, true);
            }
            (Audience::All, Payload::Frames { frames, .. }) => {
                if let Some(frames) = Frames::from_wire(frames) {
                    self.send_all_here(&frames);
                }
            }
            (Audience::All, Payload::Host { frames }) => {
                if let Some(frames) = Frames::from_wire(frames) {
                    count_host_deliveries(self.send_all_here(&frames));
                }
            }
            (Audience::User(user), Payload::Close { reason }) => {
                self.close_user_here(&user, &reason);
            }
            (Audience::All, Payload::Close { reason }) => {
                // No operation sends this; a newer node might. Closing every connection on
                // the word of another node is not something to guess at.
                tracing::warn!(reason = %reason, "ignoring a request from another node to close every connection");
            }
        }
    }

    fn resumed(&self) {
        if let Some(backend) = self.backend() {
            backend.backplane_resumed();
        }
    }
}
