//! The hub's metric and log events in one place.

use metrics::{counter, gauge};

/// Why a connection ended; the label of `imgate_hub_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent Close or closed its transport.
    ClientClosed,
    /// Nothing was received for the client timeout.
    ClientTimeout,
    /// No valid handshake arrived in time, or it was refused.
    HandshakeFailed,
    /// The outbound buffer filled: the client does not read.
    SlowClient,
    /// The connection's queue was full when a message for it came: it fell behind.
    Lagged,
    /// A message over the size limit.
    MessageTooLarge,
    /// Bytes that are not a message of the connection's hub protocol.
    ProtocolError,
    /// `Hub::shutdown`.
    Shutdown,
    /// The backend refused the connection.
    BackendError,
    /// The JWT the connection was opened with expired.
    TokenExpired,
    /// The server closed it for good: the user's account was deleted, or the host asked.
    ClosedByServer,
    /// Its WebSocket dropped and no new one came within the stateful-reconnect window.
    ReconnectTimeout,
    /// Stateful reconnect's buffer filled: the client does not acknowledge what it got.
    Unacknowledged,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ClientClosed => "client_closed",
            Self::ClientTimeout => "client_timeout",
            Self::HandshakeFailed => "handshake_failed",
            Self::SlowClient => "slow_client",
            Self::Lagged => "lagged",
            Self::MessageTooLarge => "message_too_large",
            Self::ProtocolError => "protocol_error",
            Self::Shutdown => "shutdown",
            Self::BackendError => "backend_error",
            Self::TokenExpired => "token_expired",
            Self::ClosedByServer => "closed_by_server",
            Self::ReconnectTimeout => "reconnect_timeout",
            Self::Unacknowledged => "unacknowledged",
        }
    }
}

/// A transport started for a connection.
pub(crate) fn connection_opened(transport: &'static str) {
    counter!("imgate_hub_connections_opened_total", "transport" => transport).increment(1);
    gauge!("imgate_hub_connections_open").increment(1.0);
}

/// A connection's handshake chose `protocol` (`json` or `messagepack`).
pub(crate) fn handshake_done(protocol: &'static str) {
    counter!("imgate_hub_handshakes_total", "protocol" => protocol).increment(1);
}

/// A stateful-reconnect connection went on over a new WebSocket.
pub(crate) fn resumed() {
    counter!("imgate_hub_reconnects_total").increment(1);
}

/// A connection whose transport had started ended.
pub(crate) fn connection_closed(reason: CloseReason) {
    counter!("imgate_hub_connections_closed_total", "reason" => reason.label()).increment(1);
    gauge!("imgate_hub_connections_open").decrement(1.0);
}

/// An invocation finished.
pub(crate) fn invocation(method: &'static str, outcome: &'static str) {
    counter!("imgate_hub_invocations_total", "method" => method, "outcome" => outcome).increment(1);
}

/// A new connection was refused at a limit.
pub(crate) fn connection_refused(refused: crate::lifetime::Refused) {
    let limit = match refused {
        crate::lifetime::Refused::UserFull(_) => "per_user",
        crate::lifetime::Refused::NodeFull(_) => "per_node",
    };
    counter!("imgate_hub_connections_refused_total", "limit" => limit).increment(1);
    tracing::info!(error = %refused, "hub connection refused");
}
