//! The adapter's metrics and log events, in one place.

use imgate_domain::ports::ProviderError;
use serde_json::Value;

/// Counts one REST call in `imgate_upstream_requests_total{provider,outcome}`.
pub(crate) fn request(endpoint: &'static str, result: &Result<Value, ProviderError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(ProviderError::SessionExpired) => "session_expired",
        Err(ProviderError::InvalidCredentials) => "invalid_credentials",
        Err(ProviderError::Forbidden(_)) => "forbidden",
        Err(ProviderError::NotFound(_)) => "not_found",
        Err(ProviderError::Conflict(_)) => "conflict",
        Err(ProviderError::Invalid { .. }) => "invalid",
        Err(ProviderError::RateLimited { .. }) => "rate_limited",
        Err(ProviderError::Unavailable(_)) => "unavailable",
        Err(ProviderError::BadResponse(_)) => "bad_response",
    };
    metrics::counter!("imgate_upstream_requests_total", "provider" => "rocketchat", "outcome" => outcome)
        .increment(1);
    tracing::debug!(endpoint, outcome, "rocketchat call");
}
