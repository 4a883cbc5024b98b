//! `EventDelivery`: hands a user's events to that user's live connections.

use crate::event::UserEvent;
use crate::ids::UserId;

/// How far an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every connection of the user on every node: what the node holding the upstream sends.
    AllNodes,
    /// This node's connections only: what a node recovers for them by itself.
    ThisNode,
}

/// Sends events to users' live connections; the hub implements it.
///
/// Contract:
/// - Every connection of `user` within `reach` gets `event` once, in the order of the calls
///   for that user; [`UserEvent::AccountDeleted`] closes them instead.
/// - Between `hold` and `release`, what other nodes send the user waits; this node's own
///   deliveries go out at once.
/// - It never waits: a connection that cannot take an event now is cut off rather than
///   slowing the caller or the user's other connections.
pub trait EventDelivery: Send + Sync {
    /// Sends `event` to `user`'s connections within `reach`.
    fn deliver(&self, user: &UserId, event: &UserEvent, reach: Reach);
    /// Keeps back what other nodes send `user` until [`EventDelivery::release`]: this node is
    /// recovering the user's messages from history, and those are older.
    fn hold(&self, user: &UserId);
    /// Sends what [`EventDelivery::hold`] kept back, in order, but for the room messages the
    /// recovery delivered already.
    fn release(&self, user: &UserId);
}
