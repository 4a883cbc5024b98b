//! In-process adapters for a single node: [`MemoryTokenCache`] (moka, per-entry TTL),
//! [`MemoryBackplane`] (alone on its [`MemoryBus`], or several nodes in one process for
//! tests), [`MemoryLease`] and [`MemoryPasswordStore`]; and [`TieredTokenCache`], a node's
//! own tier in front of a shared token cache.
//! Nothing here survives a restart or reaches another node; `imgate-redis` is the shared
//! counterpart.

mod backplane;
mod lease;
mod password_store;
mod presence;
mod token_cache;
mod token_tier;

pub use backplane::{MemoryBackplane, MemoryBus};
pub use lease::MemoryLease;
pub use password_store::MemoryPasswordStore;
pub use presence::{MemoryPresence, PresenceBoard};
pub use token_cache::MemoryTokenCache;
pub use token_tier::TieredTokenCache;
