//! In-process adapters for a single node: [`MemoryTokenCache`] (moka, per-entry TTL) and
//! [`MemoryEventPublisher`] (local fan-out). Nothing here survives a restart or reaches another
//! node; `imgate-redis` is the shared counterpart.

mod event_publisher;
mod token_cache;

pub use event_publisher::MemoryEventPublisher;
pub use token_cache::MemoryTokenCache;
