//! In-process adapters for a single node: [`MemoryTokenCache`] (moka, per-entry TTL),
//! [`MemoryEventPublisher`] (local fan-out), [`MemoryLease`] and [`MemoryPasswordStore`].
//! Nothing here survives a restart or reaches another node; `imgate-redis` is the shared
//! counterpart.

mod event_publisher;
mod lease;
mod password_store;
mod token_cache;

pub use event_publisher::MemoryEventPublisher;
pub use lease::MemoryLease;
pub use password_store::MemoryPasswordStore;
pub use token_cache::MemoryTokenCache;
