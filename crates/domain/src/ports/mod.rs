//! The ports: what the domain needs from the outside world, as object-safe async traits whose
//! doc comments are their contracts. Adapters live in other crates; `imgate-testkit` holds one
//! contract suite per port that every adapter runs.

pub mod backplane;
pub mod event_delivery;
pub mod health;
pub mod host_channel;
pub mod host_targets;
pub mod lease;
pub mod password_store;
pub mod presence;
pub mod provider;
pub mod token_cache;

pub use backplane::{
    Audience, Backplane, BackplaneError, BackplaneMessage, BackplaneReceiver, Confirmation,
    MessageStamp, Payload, ProtocolCode, SubscriptionChange,
};
pub use event_delivery::{EventDelivery, Reach};
pub use health::HealthCheck;
pub use host_channel::{HostChannel, HostInvocation};
pub use host_targets::{AnyTargets, HostTargets, TargetRefusal};
pub use lease::{Lease, LeaseError, LeaseToken};
pub use password_store::{PasswordStore, PasswordStoreError};
pub use presence::{Presence, PresenceError};
pub use provider::{
    DeploymentCheck, DeploymentReport, Finding, FindingStatus, ImProvider, ProviderAccounts,
    ProviderDeployment, ProviderError, ProviderFiles, ProviderMessages, ProviderRealtime,
    ProviderRooms, RealtimeSignal, RealtimeStream, SessionSource,
};
pub use token_cache::{CacheError, LoginError, LoginFuture, TokenCache};
