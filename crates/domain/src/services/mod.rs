//! The domain services: use cases built on the ports.

mod admin;
mod chat;
mod host_realtime;
mod session;
mod upstream;
mod users;

pub use admin::{AdminAgent, AdminError};
pub use chat::ChatService;
pub use host_realtime::{
    push_refused, target_name_problem, HostRealtime, HostRealtimeError, UserPresence,
    CLOSED_BY_HOST,
};
pub use session::{PasswordPolicy, SessionError, SessionService, UserSessions};
pub use upstream::{Ownership, UpstreamService};
pub use users::{UserError, UserService};
