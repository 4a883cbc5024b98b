//! The domain services: use cases built on the ports.

mod admin;
mod chat;
mod session;
mod users;

pub use admin::{AdminAgent, AdminError};
pub use chat::ChatService;
pub use session::{PasswordPolicy, SessionError, SessionService};
pub use users::{UserError, UserService};
