//! The domain services: use cases built on the ports.

mod admin;
mod session;
mod users;

pub use admin::{AdminAgent, AdminError};
pub use session::{PasswordPolicy, SessionError, SessionService};
pub use users::{UserError, UserService};
