//! `HealthCheck`: one dependency's readiness, for `/readyz`.

use async_trait::async_trait;

/// Whether one dependency (the provider, Redis, the admin agent) is usable right now.
///
/// Contract: `check` and `warnings` answer within the caller's timeout and never panic; `Err`
/// and warnings carry short texts fit for an operator (no secrets).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short stable name, e.g. `provider`.
    fn name(&self) -> &'static str;
    /// `Ok(())` when usable, otherwise why not.
    async fn check(&self) -> Result<(), String>;
    /// Things that leave the dependency usable but that an operator should act on, as
    /// (stable `snake_case` name, message); they never make it unready. None by default.
    async fn warnings(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
