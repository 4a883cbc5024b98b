//! imgate's SignalR-compatible hub on actix-web + actix-ws: the official clients
//! (`@microsoft/signalr`, `signalrcore`, `pysignalr`) connect to `/hub` unchanged and receive
//! every event of their user, on every connection of that user.
//!
//! What it is: negotiate (versions 0 and 1), the WebSocket, Server-Sent Events and Long
//! Polling transports, the JSON hub protocol (handshake, invocations with exactly one
//! completion, keep-alive pings, client timeout, Close with `allowReconnect`), bounded
//! per-connection buffers, and CORS for browsers on listed origins.
//! What it is not: MessagePack, streaming, stateful reconnect, groups, or any chat logic —
//! the app supplies that through [`HubBackend`] and an `EventPublisher`.
//!
//! Main types: [`Hub`] (the connection registry, [`Hub::shutdown`]), [`HubBackend`] (what the
//! app implements), [`HubConfig`] (settings), and [`configure`] (the routes).

pub mod backend;
pub mod config;
mod domain_backend;
mod frames;
mod hub;
pub mod protocol;
mod routes;
mod session;
pub mod telemetry;
mod websocket;

pub use backend::{Caller, HubBackend, HubCall, HubError};
pub use config::HubConfig;
pub use domain_backend::DomainBackend;
pub use hub::Hub;
pub use routes::configure;
