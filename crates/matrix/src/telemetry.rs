//! The adapter's metrics and log events, in one place. Names and labels are those of the
//! Rocket.Chat adapter with `provider="matrix"`, so one dashboard serves both.

use imgate_domain::ports::ProviderError;
use imgate_domain::UserId;

/// Counts one homeserver call in `imgate_upstream_requests_total{provider,outcome}`.
pub(crate) fn request<T>(result: &Result<T, ProviderError>) {
    let outcome = result
        .as_ref()
        .map_or_else(ProviderError::outcome, |_| "ok");
    metrics::counter!("imgate_upstream_requests_total", "provider" => "matrix", "outcome" => outcome)
        .increment(1);
}

/// A user's `/sync` loop started (`true`) or ended: `imgate_upstream_connections`.
pub(crate) fn sync_loop(running: bool) {
    let gauge = metrics::gauge!("imgate_upstream_connections", "provider" => "matrix");
    if running {
        gauge.increment(1.0);
    } else {
        gauge.decrement(1.0);
    }
}

/// A `/sync` poll failed; the loop backs off and polls again from the same position.
pub(crate) fn sync_retry(user: &UserId, error: &ProviderError) {
    metrics::counter!("imgate_upstream_reconnects_total", "provider" => "matrix").increment(1);
    tracing::info!(user = %user, error = %error, "matrix sync failed, retrying");
}

/// The loop ended because the user's session cannot be renewed.
pub(crate) fn sync_gave_up(user: &UserId, error: &ProviderError) {
    tracing::warn!(user = %user, error = %error, "matrix sync gives up: the user cannot log in");
}
