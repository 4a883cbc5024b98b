//! The adapter's metrics and log events, in one place.

use imgate_domain::ports::ProviderError;
use serde_json::Value;

/// Counts one REST call in `imgate_upstream_requests_total{provider,outcome}`.
pub(crate) fn request(endpoint: &'static str, result: &Result<Value, ProviderError>) {
    let outcome = result
        .as_ref()
        .map_or_else(ProviderError::outcome, |_| "ok");
    metrics::counter!("imgate_upstream_requests_total", "provider" => "rocketchat", "outcome" => outcome)
        .increment(1);
    tracing::debug!(endpoint, outcome, "rocketchat call");
}

/// A call met Rocket.Chat's limiter: the first refusal of a window, so logged once per window
/// and endpoint, not once per waiting caller.
pub(crate) fn rate_limit_met(endpoint: &'static str, resets_in: std::time::Duration) {
    tracing::info!(
        endpoint,
        resets_in_ms = resets_in.as_millis() as u64,
        "Rocket.Chat rate limit reached; calls to this endpoint queue until it resets"
    );
}

/// A call waited its turn behind the limiter and then went.
pub(crate) fn rate_limit_queued(endpoint: &'static str) {
    metrics::counter!("imgate_upstream_rate_limited_total", "provider" => "rocketchat", "outcome" => "queued")
        .increment(1);
    tracing::debug!(endpoint, "call queued behind the rate limit");
}

/// A call gave up: the limiter resets later than it may wait.
pub(crate) fn rate_limit_gave_up(endpoint: &'static str, retry_after: std::time::Duration) {
    metrics::counter!("imgate_upstream_rate_limited_total", "provider" => "rocketchat", "outcome" => "gave_up")
        .increment(1);
    tracing::debug!(
        endpoint,
        retry_after_ms = retry_after.as_millis() as u64,
        "rate limited past the wait budget"
    );
}

/// Counts one upstream document decoded, in
/// `imgate_upstream_frames_decoded_total{provider,kind}`: a frame read from the node-wide cache
/// is not counted again, so a message shared by a room's members counts once.
pub(crate) fn document_decoded(kind: crate::decoded_frames::DecodedKind) {
    metrics::counter!("imgate_upstream_frames_decoded_total", "provider" => "rocketchat", "kind" => kind.label())
        .increment(1);
}

/// Counts one upstream frame the gateway has no use for, in
/// `imgate_upstream_frames_ignored_total{provider}`.
pub(crate) fn frame_ignored() {
    metrics::counter!("imgate_upstream_frames_ignored_total", "provider" => "rocketchat")
        .increment(1);
}
