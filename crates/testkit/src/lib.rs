//! Contract test suites, one per port, that every adapter of that port runs unchanged, plus a
//! scripted provider for testing the domain services, the official SignalR clients and a TCP
//! proxy that cuts connections. Only ever a dev-dependency.
//!
//! Each suite is a generic async function taking a factory; its cases take `&dyn Port`, which
//! also proves the port is object safe.

pub mod backplane;
pub mod blip;
pub mod hub_client;
pub mod lease;
pub mod password_store;
pub mod presence;
pub mod scripted_provider;
pub mod token_cache;

use std::future::Future;
use std::time::Duration;

/// How long a suite waits for something that should happen at once before failing.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}

/// A user id for tests; panics on an invalid literal, which is a bug in the test.
pub fn user(id: &str) -> imgate_domain::UserId {
    imgate_domain::UserId::parse(id).expect("test user ids are valid")
}
