//! `HubConfig`: the hub's settings, a plain serde struct the app nests in its `Settings`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::host_targets::TargetDeclaration;

/// The hub's settings; every field has a default, so an empty section is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// Send a SignalR Ping when nothing was sent for this long (clients give up after 30 s).
    pub keep_alive_interval_ms: u64,
    /// Close a connection when nothing was received for this long (2 × keep-alive, as
    /// Microsoft recommends).
    pub client_timeout_ms: u64,
    /// Close a connection whose handshake has not arrived by then.
    pub handshake_timeout_ms: u64,
    /// How long a negotiated connection id waits for its transport before it is forgotten.
    pub negotiate_timeout_ms: u64,
    /// Outgoing messages queued per connection: the one queue for the user's messages and the
    /// connection's own records. A message for a connection whose queue is full cuts it off
    /// (lagged); the session's own records wait, and it stops reading the client meanwhile.
    pub outbound_buffer: usize,
    /// A connection whose outbound buffer stayed full this long is disconnected: its client
    /// does not read.
    pub slow_client_timeout_ms: u64,
    /// The largest incoming hub message (one record) accepted, in bytes; larger closes the
    /// connection with an error.
    pub max_message_size: usize,
    /// Invocations of one connection waiting to run (they run one at a time, in order); while
    /// this many wait, the hub stops reading from the client.
    pub max_pending_invocations: usize,
    /// Origins allowed to call the hub from a browser (CORS, credentials allowed); exact
    /// matches such as `https://app.example.com`.
    pub cors_origins: Vec<String>,
    /// How long a long-polling request waits for data before it answers empty.
    pub long_poll_timeout_ms: u64,
    /// Hub connections one user may have open on this node; more are refused.
    pub max_connections_per_user: usize,
    /// Hub connections this node holds at most; more are refused.
    pub max_connections: usize,
    /// The largest body of a host push or broadcast, in bytes; larger ones get 413.
    pub max_push_bytes: usize,
    /// The host's targets by name, each with an optional JSON Schema per argument: pushes to
    /// them are checked, and they are listed in the hub's contract (`/asyncapi.json`).
    pub targets: BTreeMap<String, TargetDeclaration>,
    /// Refuse host pushes to targets not declared in `targets`.
    pub strict_targets: bool,
    /// This node's name in the proxy's routing (`[a-z0-9-]`, at most 32; empty: none). When
    /// set, negotiate hands out connection ids that start with the route of the node holding
    /// the user's upstream, and a proxy that maps that prefix to the node (`config/nginx.conf`)
    /// sends the user's connections there.
    pub route: String,
    /// How long a stateful-reconnect connection whose WebSocket dropped waits for the client
    /// to come back with the same connection token, in seconds.
    pub reconnect_window_s: u64,
    /// The most bytes of sent messages a stateful-reconnect connection keeps until the client
    /// acknowledges them; a connection that would keep more is closed, saying so.
    pub stateful_reconnect_buffer_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            keep_alive_interval_ms: 15_000,
            client_timeout_ms: 30_000,
            handshake_timeout_ms: 15_000,
            negotiate_timeout_ms: 30_000,
            outbound_buffer: 512,
            slow_client_timeout_ms: 10_000,
            max_message_size: 32 * 1024,
            max_pending_invocations: 32,
            cors_origins: Vec::new(),
            long_poll_timeout_ms: 90_000,
            max_connections_per_user: 100,
            max_connections: 100_000,
            max_push_bytes: 65_536,
            targets: BTreeMap::new(),
            strict_targets: false,
            route: String::new(),
            reconnect_window_s: 15,
            // ASP.NET Core's default (`StatefulReconnectBufferSize`), and the JS client's.
            stateful_reconnect_buffer_bytes: 100_000,
        }
    }
}

impl HubConfig {
    /// The stateful-reconnect window as a duration.
    pub fn reconnect_window(&self) -> Duration {
        Duration::from_secs(self.reconnect_window_s)
    }

    /// The keep-alive interval as a duration (at least 10 ms).
    pub fn keep_alive_interval(&self) -> Duration {
        Duration::from_millis(self.keep_alive_interval_ms.max(10))
    }

    /// The client timeout as a duration (at least 10 ms).
    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms.max(10))
    }

    /// The handshake timeout as a duration (at least 10 ms).
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.max(10))
    }

    /// The slow-client timeout as a duration (at least 10 ms).
    pub fn slow_client_timeout(&self) -> Duration {
        Duration::from_millis(self.slow_client_timeout_ms.max(10))
    }

    /// The negotiate timeout as a duration (at least 10 ms).
    pub fn negotiate_timeout(&self) -> Duration {
        Duration::from_millis(self.negotiate_timeout_ms.max(10))
    }

    /// The long-poll timeout as a duration (at least 10 ms).
    pub fn long_poll_timeout(&self) -> Duration {
        Duration::from_millis(self.long_poll_timeout_ms.max(10))
    }

    /// Whether `route` is empty or a valid route name.
    pub fn route_valid(&self) -> bool {
        self.route.len() <= 32
            && self
                .route
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    }

    /// Whether a browser origin is on the allow-list.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|allowed| allowed.trim_end_matches('/') == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_gives_the_defaults_and_typos_are_refused() {
        let config: HubConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, HubConfig::default());
        assert_eq!(config.keep_alive_interval(), Duration::from_secs(15));
        assert_eq!(config.client_timeout(), Duration::from_secs(30));
        assert!(serde_json::from_str::<HubConfig>(r#"{"keepalive_ms":1}"#).is_err());
    }

    #[test]
    fn origins_match_exactly() {
        let config = HubConfig {
            cors_origins: vec!["https://app.example.com/".into()],
            ..HubConfig::default()
        };
        assert!(config.origin_allowed("https://app.example.com"));
        assert!(!config.origin_allowed("https://evil.example.com"));
        assert!(!config.origin_allowed("http://app.example.com"));
    }
}
