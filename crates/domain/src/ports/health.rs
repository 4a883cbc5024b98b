//! `HealthCheck`: one dependency's readiness, for `/readyz`.

use async_trait::async_trait;

/// Whether one dependency (the provider, Redis, the admin agent) is usable right now.
///
/// Contract: `check` answers within the caller's timeout and never panics; `Err` carries a
/// short reason fit for an operator (no secrets).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short stable name, e.g. `provider`.
    fn name(&self) -> &'static str;
    /// `Ok(())` when usable, otherwise why not.
    async fn check(&self) -> Result<(), String>;
}
