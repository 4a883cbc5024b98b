//! `Presence`: how many hub connections a user has, counted over every node.

use async_trait::async_trait;

use crate::ids::UserId;

/// Presence could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    /// The shared store cannot be reached now.
    #[error("presence is unavailable: {0}")]
    Unavailable(String),
}

/// Each node's count of its users' hub connections, and their sum over the live nodes.
///
/// Contract (checked by `imgate_testkit::presence::run_all`):
/// - `connections` is the sum of what every live node last `set` for the user; 0 for a user
///   no node set, or whose nodes all set 0.
/// - `set` never waits: the changes of one node are applied in call order, soon after the call.
/// - A node that stops (its handle dropped, or the process killed) stops counting, at the
///   latest once the adapter's liveness time has passed.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Records that this node has `connections` hub connections of `user` (0: none).
    fn set(&self, user: &UserId, connections: usize);
    /// How many hub connections `user` has over every live node.
    async fn connections(&self, user: &UserId) -> Result<usize, PresenceError>;
}
