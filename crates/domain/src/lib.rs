//! imgate's domain: the types a host application sees, the ports the gateway needs from the
//! outside world, and the services that combine them.
//!
//! This crate knows nothing of HTTP, websockets, Redis or any chat provider's wire format;
//! adapters implement [`ports`] and the app wires them in. Main types: [`model`] (users,
//! rooms, messages), [`event::UserEvent`] (what a user's connections receive),
//! [`services::SessionService`] (a user's provider session, one login at a time) and
//! [`services::AdminAgent`] (the provider admin account); [`ClientError`] says what any of
//! their errors means to a client, for REST and the hub alike.

pub mod client_error;
pub mod event;
pub mod id_escaping;
pub mod ids;
pub mod model;
pub mod ports;
pub mod services;
pub mod sync;

pub use client_error::ClientError;
pub use event::UserEvent;
pub use ids::{AuthToken, FileId, MessageId, Password, ProviderUserId, RoomId, UserId};
