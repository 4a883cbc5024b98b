//! Lease ownership: compete for a user's lease, hold the upstream while this node owns it,
//! stand by while another node does, and recover from history what the backplane lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::pump::Pump;
use super::Ownership;
use crate::ids::UserId;
use crate::ports::{Lease, LeaseToken, Reach};

/// Added to a lease's remaining time before a standby tries for it, so it finds it expired.
const STANDBY_SLACK: Duration = Duration::from_millis(20);
/// A recovery from history that fails is tried again after this, then twice as long, …
const RECOVER_RETRY: Duration = Duration::from_millis(250);
/// … this many times in all (some 16 s).
const RECOVER_TRIES: u32 = 7;
/// How soon a failed lease renewal is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);

/// Competes for a user's lease and holds the upstream while it owns it.
pub(super) struct Owner {
    pub(super) ownership: Ownership,
    pub(super) user: UserId,
    pub(super) recover: Arc<Notify>,
    pub(super) pump: Pump,
}

/// Why holding the upstream stopped.
enum Held {
    /// The node no longer wants it (no connections, shutdown, user deleted).
    Cancelled,
    /// Another node has the lease now, or the lease store failed.
    Lost,
    /// The upstream ended by itself: the user cannot be logged in.
    Ended,
}

impl Owner {
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let Ownership { lease, node, ttl } = self.ownership.clone();
        loop {
            let acquired = tokio::select! {
                _ = cancel.cancelled() => return,
                acquired = lease.acquire(&self.user, &node, ttl) => acquired,
            };
            match acquired {
                Ok(Some(token)) => {
                    tracing::debug!(user = %self.user, fence = token.fence, "holding the upstream");
                    metrics::gauge!("imgate_upstreams_held").increment(1.0);
                    let held = self.hold(&*lease, &token, ttl, &cancel).await;
                    metrics::gauge!("imgate_upstreams_held").decrement(1.0);
                    if !matches!(held, Held::Lost) {
                        if let Err(error) = lease.release(&self.user, &token).await {
                            tracing::warn!(user = %self.user, error = %error, "could not release the lease");
                        }
                    }
                    match held {
                        Held::Cancelled | Held::Ended => return,
                        Held::Lost => {
                            // A store that restarted empty forgot the lease rather than gave
                            // it to another node: ask again at once before standing by.
                            tracing::info!(user = %self.user, "upstream lease lost");
                            continue;
                        }
                    }
                }
                // Another node holds it; its events reach this node's connections through the
                // backplane, and the hub notes each message as it goes by (`observe`), so
                // that if that node dies, the takeover fills exactly what it did not deliver.
                // Try again in case it does.
                Ok(None) => self.pump.watch_from_now(),
                Err(error) => {
                    tracing::warn!(user = %self.user, error = %error, "lease store failed")
                }
            }
            let pause = tokio::time::sleep(self.standby_pause(&*lease, ttl).await);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = &mut pause => break,
                    _ = self.recover.notified() => self.recover(&cancel).await,
                }
            }
        }
    }

    /// Delivers to this node's connections, from history, what the holder sent while the
    /// backplane was down; tries again while the provider or the session store (likely just
    /// back itself) cannot answer.
    async fn recover(&self, cancel: &CancellationToken) {
        let Some(since) = self.pump.last_event() else {
            return;
        };
        // What the holder sends meanwhile is newer: it waits, so the connections get
        // everything in order.
        self.pump.delivery.hold(&self.user);
        let mut wait = RECOVER_RETRY;
        for _ in 0..RECOVER_TRIES {
            if self.pump.fill_gap(since, Reach::ThisNode).await {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            wait *= 2;
        }
        self.pump.delivery.release(&self.user);
    }

    /// How long to wait before trying for the lease again: until the holder's lease runs out
    /// (a dead holder's users move on at once), at most half a lease.
    async fn standby_pause(&self, lease: &dyn Lease, ttl: Duration) -> Duration {
        match lease.expires_in(&self.user).await {
            Ok(Some(left)) => (left + STANDBY_SLACK).min(ttl / 2),
            Ok(None) | Err(_) => ttl / 2,
        }
    }

    /// Runs the upstream while renewing the lease; stops at once when the lease is lost.
    async fn hold(
        &mut self,
        lease: &dyn Lease,
        token: &LeaseToken,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Held {
        let renew = async {
            // The lease is ours until this, whatever the store says meanwhile: a store that
            // is down for a moment (Redis restarting) must not take the upstream away.
            let mut ours_until = tokio::time::Instant::now() + ttl;
            let mut wait = ttl / 3;
            loop {
                tokio::time::sleep(wait).await;
                match lease.renew(&self.user, token, ttl).await {
                    Ok(true) => {
                        ours_until = tokio::time::Instant::now() + ttl;
                        wait = ttl / 3;
                    }
                    Ok(false) => return,
                    Err(error) => {
                        wait = RENEW_RETRY.min(ttl / 3);
                        // Another node may take it once it has run out.
                        if tokio::time::Instant::now() + wait + STANDBY_SLACK >= ours_until {
                            tracing::warn!(user = %self.user, error = %error, "cannot renew the lease before it runs out");
                            return;
                        }
                        tracing::debug!(user = %self.user, error = %error, "cannot renew the lease; trying again");
                    }
                }
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => Held::Cancelled,
            _ = renew => Held::Lost,
            _ = self.pump.run() => Held::Ended,
        }
    }
}
