//! The backplane's metrics and log events, in one place. Labels are low-cardinality: never a
//! user, channel or node id.

use std::time::{Duration, Instant};

/// How often at most an unreadable message is logged; the rest are counted.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Messages written to Redis: `imgate_backplane_published_total`.
pub(crate) fn published(count: usize) {
    metrics::counter!("imgate_backplane_published_total").increment(count as u64);
}

/// A `publish` call refused: `imgate_backplane_publish_failed_total{reason}`. Not logged:
/// the caller decides what a refusal means and logs it once.
pub(crate) fn publish_refused(reason: &'static str) {
    metrics::counter!("imgate_backplane_publish_failed_total", "reason" => reason).increment(1);
}

/// A pipeline of accepted messages failed; they are lost.
pub(crate) fn send_failed(count: usize, error: &dyn std::fmt::Display) {
    metrics::counter!("imgate_backplane_dropped_total", "reason" => "send_failed")
        .increment(count as u64);
    tracing::warn!(
        error = %error,
        messages = count,
        "publishing to the backplane failed; refusing new messages until Redis answers"
    );
}

/// The writer reached Redis again after a failure.
pub(crate) fn writer_back() {
    tracing::info!("publishing to the backplane works again");
}

/// A message from another node handed to the receiver: `imgate_backplane_received_total`.
pub(crate) fn received() {
    metrics::counter!("imgate_backplane_received_total").increment(1);
}

/// A message that arrived but went nowhere, with why: `imgate_backplane_dropped_total{reason}`.
pub(crate) fn dropped(reason: &'static str) {
    metrics::counter!("imgate_backplane_dropped_total", "reason" => reason).increment(1);
}

/// How many users this node is subscribed to: `imgate_backplane_subscribed_users`.
pub(crate) fn subscribed_users(count: usize) {
    metrics::gauge!("imgate_backplane_subscribed_users").set(count as f64);
}

/// The subscriber connection was lost.
pub(crate) fn subscriber_lost(reason: &dyn std::fmt::Display) {
    tracing::warn!(error = %reason, "lost the backplane's subscriber connection; reconnecting");
}

/// The subscriber connection is back, with every subscription renewed.
pub(crate) fn subscriber_back(channels: usize) {
    tracing::info!(channels, "reconnected to the backplane and resubscribed");
}

/// Logs unreadable messages at most once per [`WARN_EVERY`], saying how many went unlogged.
#[derive(Default)]
pub(crate) struct Undecodable {
    last_warned: Option<Instant>,
    unlogged: u64,
}

impl Undecodable {
    /// Counts one unreadable message in `imgate_backplane_dropped_total{reason="undecodable"}`
    /// and logs it unless one was logged lately.
    pub(crate) fn record(&mut self, error: &dyn std::fmt::Display) {
        dropped("undecodable");
        let due = self
            .last_warned
            .is_none_or(|last| last.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                error = %error,
                unlogged_since_last = self.unlogged,
                "dropping an unreadable message from the backplane (a node of another version?)"
            );
            self.last_warned = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
    }
}
