//! `HostChannel`: the host back end's own messages to users' hub connections, on every node.

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::backplane::{Audience, BackplaneError};
use crate::ids::UserId;

/// A client invocation the host asks for: `target(...arguments)`.
#[derive(Debug, Clone)]
pub struct HostInvocation {
    /// The client method's name.
    pub target: String,
    /// The arguments, a JSON array exactly as the host sent it.
    pub arguments: Box<RawValue>,
}

/// Sends host invocations to hub connections and closes them; the hub implements it.
///
/// Contract:
/// - `send` hands `invocation` to every connection of the audience on every node, once. It
///   resolves once the invocation is ordered: every connection gets a user's invocations in
///   the order their `send`s resolved, whichever node they were sent on (those sent
///   concurrently, in some one order). When the other nodes cannot be reached it fails, and
///   nothing is claimed sent.
/// - `close` closes every connection of the user on every node for good, with `reason` in
///   the Close record; this node's connections close even when the others cannot be told. It
///   does not wait for the network.
#[async_trait]
pub trait HostChannel: Send + Sync {
    /// Sends `invocation` to `audience`'s connections on every node.
    async fn send(
        &self,
        audience: &Audience,
        invocation: &HostInvocation,
    ) -> Result<(), BackplaneError>;
    /// Closes `user`'s connections on every node, telling them `reason`.
    fn close(&self, user: &UserId, reason: &str) -> Result<(), BackplaneError>;
}
