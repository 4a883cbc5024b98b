//! imgate's SignalR-compatible hub on actix-web + actix-ws: the official clients
//! (`@microsoft/signalr`, `signalrcore`, `pysignalr`) connect to `/hub` unchanged and receive
//! every event of their user, on every connection of that user, on every node.
//!
//! What it is: negotiate (versions 0 and 1), the WebSocket, Server-Sent Events and Long
//! Polling transports, the JSON and MessagePack hub protocols (handshake, invocations with
//! exactly one completion, keep-alive pings, client timeout, Close with `allowReconnect`),
//! bounded per-connection buffers, and CORS for browsers on listed origins.
//! What it is not: streaming, stateful reconnect, groups, or any chat logic —
//! the app supplies that through [`HubBackend`].
//!
//! Main types: [`HubLifetimeManager`] (the node's connections by user; send to a user, to
//! everyone, to a connection; close a user's connections; the `EventDelivery` the domain
//! sends events to; the backplane to the other nodes), [`Hub`] (negotiate to close,
//! [`Hub::shutdown`]), [`HubBackend`] (what the app implements), [`HubConfig`] (settings),
//! [`DeclaredTargets`] (the host's declared targets), and [`configure`] (the routes).

pub mod backend;
pub mod config;
mod contract;
mod domain_backend;
mod host_targets;
mod hub;
mod lifetime;
pub mod protocol;
mod replay;
mod routes;
mod routing;
mod session;
pub mod telemetry;
mod websocket;

pub use backend::{Caller, HubBackend, HubCall, HubError, CHAT_TARGETS};
pub use config::HubConfig;
pub use domain_backend::DomainBackend;
pub use host_targets::{DeclarationError, DeclaredTargets, TargetDeclaration};
pub use hub::Hub;
pub use lifetime::{Frames, HubLifetimeManager};
pub use routes::configure;
pub use routing::node_id;
