//! The domain services: use cases built on the ports.

mod admin;
mod session;

pub use admin::{AdminAgent, AdminError};
pub use session::{PasswordPolicy, SessionError, SessionService};
