//! Per-user request rate limit on the end-user REST API: one user's runaway client must not
//! use up the provider's capacity (and its own rate limit) for everybody.
//!
//! Counted per node: with N nodes behind a balancer a user gets up to N times the rate.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use imgate_domain::UserId;

use crate::error::ApiError;

/// How often (in checks) idle users' buckets are dropped, so memory follows active users.
const SWEEP_EVERY: u64 = 10_000;

/// A token bucket per user.
pub struct UserRateLimit {
    limiter: DefaultKeyedRateLimiter<UserId>,
    checks: AtomicU64,
}

impl UserRateLimit {
    /// `per_second` requests per second on average, bursts up to `burst`; `None` when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            checks: AtomicU64::new(0),
        })
    }

    /// Counts one request of `user`; past the limit, `rate_limited` with when to retry.
    pub fn check(&self, user: &UserId) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(user).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::RateLimited {
                message: "too many requests from this user; slow down".into(),
                retry_after: wait.max(Duration::from_millis(1)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_user_waits_and_others_do_not() {
        let limit = UserRateLimit::new(1, 3).unwrap();
        let alice = UserId::parse("alice").unwrap();
        for _ in 0..3 {
            limit.check(&alice).unwrap();
        }
        match limit.check(&alice) {
            Err(ApiError::RateLimited { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}")
            }
            other => panic!("{other:?}"),
        }
        limit.check(&UserId::parse("bob").unwrap()).unwrap();
        assert!(UserRateLimit::new(0, 10).is_none(), "0 means no limit");
    }
}
