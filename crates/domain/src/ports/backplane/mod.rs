//! `Backplane`: moves hub messages, already encoded, between the nodes that share it.
//!
//! A node delivers to its own connections itself; the backplane carries a message only to the
//! other nodes, except a host's invocation, which every node, the publisher too, takes from
//! the backplane so that all hand them over in one order. What crosses is [`wire`]'s versioned format, never the domain's serde types,
//! so a rolling upgrade cannot silently change it.

pub mod wire;

use std::sync::Weak;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::ids::{MessageId, UserId};
use crate::model::Message;

/// The backplane failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackplaneError {
    /// The other nodes cannot be reached now.
    #[error("the backplane is unavailable: {0}")]
    Unavailable(String),
}

/// Who a backplane message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every connection of one user, on the nodes subscribed to that user.
    User(UserId),
    /// Every connection on every node.
    All,
}

/// A hub protocol's name for the frames of [`Payload::Frames`], as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolCode(pub u8);

impl ProtocolCode {
    /// The JSON hub protocol: UTF-8 text records ending in 0x1E.
    pub const JSON: Self = Self(1);
    /// The MessagePack hub protocol: length-prefixed binary records.
    pub const MESSAGEPACK: Self = Self(2);
}

/// Which revision of which message a delivery carries, so repeats can be dropped anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageStamp {
    /// The message.
    pub id: MessageId,
    /// Its last edit; an edit is a new revision.
    pub edited_at: Option<DateTime<Utc>>,
    /// When this revision was made (the edit, else the creation): where a gap fill starts.
    pub at: DateTime<Utc>,
}

impl MessageStamp {
    /// The stamp of `message` as it is now.
    pub fn of(message: &Message) -> Self {
        Self {
            id: message.id.clone(),
            edited_at: message.edited_at,
            at: message.edited_at.unwrap_or(message.created_at),
        }
    }

    /// The part that makes two deliveries the same (see [`Message::revision`]).
    pub fn revision(&self) -> (&MessageId, Option<DateTime<Utc>>) {
        (&self.id, self.edited_at)
    }
}

/// What a backplane message asks the receiving nodes to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Send these frames, one per hub protocol, to the audience's connections.
    Frames {
        /// Set for room messages: the revision, so a node drops one it delivered already.
        stamp: Option<MessageStamp>,
        /// The encoded message per protocol; a node uses the one each connection speaks.
        frames: Vec<(ProtocolCode, Bytes)>,
    },
    /// A host's invocation: sent as [`Payload::Frames`] without a stamp is, and counted as the
    /// host's deliveries. It also reaches the publishing node, in the backplane's order.
    Host {
        /// The encoded invocation per protocol.
        frames: Vec<(ProtocolCode, Bytes)>,
    },
    /// Close the audience's connections for good (no reconnect), telling them why.
    Close {
        /// The text of the Close record.
        reason: String,
    },
}

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackplaneMessage {
    /// Whose connections it is for.
    pub audience: Audience,
    /// What to do with them.
    pub payload: Payload,
}

/// What a node does with the messages the nodes publish.
pub trait BackplaneReceiver: Send + Sync {
    /// A message another node published for an audience this node is subscribed to, or a
    /// host's invocation this node published.
    fn receive(&self, message: BackplaneMessage);
    /// The link to the other nodes was lost and is back, with every subscription renewed;
    /// what they published meanwhile did not arrive.
    fn resumed(&self);
}

/// Carries hub messages between nodes.
///
/// Contract (checked by `imgate_testkit::backplane::run_all`):
/// - A message published to a user reaches, once and in publication order, every other node
///   subscribed to that user, as it was published; nodes not subscribed get nothing, and the
///   publishing node does not get it back.
/// - A message published to [`Audience::All`] reaches every other node, subscribed or not.
/// - A host's invocation ([`Payload::Host`]) also reaches the publishing node, under the same
///   rule of audience, so every node receives host invocations in one order: the backplane's.
/// - `publish_confirmed` resolves once the backplane holds the message in that order: a
///   message published after it resolved, by any node, reaches every node after it. When that
///   cannot be known it fails with `Unavailable` (and the message may have gone out).
/// - After `unsubscribe` a node gets nothing more for that user; subscribing twice, or
///   unsubscribing a user never subscribed, is `Ok(())`.
/// - Subscriptions take effect in the order of the calls, whenever their futures are awaited:
///   the call itself queues the change.
/// - `publish` never waits for the network; it fails with `Unavailable` when the message
///   cannot be sent now, and then nothing of it is sent.
pub trait Backplane: Send + Sync {
    /// Sets where messages from other nodes go; call it once, before the first subscribe.
    fn attach(&self, receiver: Weak<dyn BackplaneReceiver>);
    /// Sends `message` to the other nodes without waiting.
    fn publish(&self, message: &BackplaneMessage) -> Result<(), BackplaneError>;
    /// Sends `message` as `publish` does; resolves once the backplane has ordered it.
    fn publish_confirmed(&self, message: &BackplaneMessage) -> Confirmation;
    /// Starts receiving `user`'s messages; the future resolves once that is in effect.
    fn subscribe(&self, user: &UserId) -> SubscriptionChange;
    /// Stops receiving `user`'s messages; the future resolves once that is in effect.
    fn unsubscribe(&self, user: &UserId) -> SubscriptionChange;
}

/// A published message, resolving once the backplane has ordered it (or failed).
pub type Confirmation = futures::future::BoxFuture<'static, Result<(), BackplaneError>>;

/// A queued subscription change, resolving once it is in effect (or failed).
pub type SubscriptionChange = futures::future::BoxFuture<'static, Result<(), BackplaneError>>;
