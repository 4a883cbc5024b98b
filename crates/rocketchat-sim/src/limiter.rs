//! Rocket.Chat's REST rate limiter, as `ApiClass.ts` builds it on Meteor's `RateLimiter`.
//!
//! One rule per route and method, each with its own fixed window shared by every client; one
//! counter per client IP inside it. A call first counts, then is checked: the call that takes
//! the counter past the limit, and every later one in the window, is refused (and still
//! counted). A window starts when its rule is created (server start, or a change of the
//! `API_Enable_Rate_Limiter_Limit_*` settings, which rebuilds every rule) and restarts at the
//! first call after it ran out, not at a fixed tick.

use std::collections::HashMap;
use std::sync::Mutex;

/// What the limiter's settings say right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numbers {
    /// `API_Enable_Rate_Limiter_Limit_Calls_Default`.
    pub calls: i64,
    /// `API_Enable_Rate_Limiter_Limit_Time_Default`, in milliseconds.
    pub window_ms: i64,
}

/// The answer for one call: the `X-RateLimit-*` values and whether it may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the call may run.
    pub allowed: bool,
    /// `X-RateLimit-Limit`.
    pub limit: i64,
    /// `X-RateLimit-Remaining`.
    pub remaining: i64,
    /// `X-RateLimit-Reset`: epoch milliseconds when the window ends.
    pub reset_ms: i64,
    /// Milliseconds until then (`timeToReset`).
    pub time_to_reset_ms: i64,
}

/// One route's window and its counters per client.
struct Rule {
    last_reset_ms: i64,
    counters: HashMap<String, i64>,
    refused: u64,
}

struct State {
    /// The numbers the rules were built with; other numbers rebuild them.
    numbers: Option<Numbers>,
    /// When the rules were (re)built: the start of every rule's first window.
    built_ms: i64,
    rules: HashMap<String, Rule>,
}

/// Every route's rule.
pub struct Limiter {
    state: Mutex<State>,
}

impl Limiter {
    /// Rules built at `now_ms` (the server's start).
    pub fn new(now_ms: i64) -> Self {
        Self {
            state: Mutex::new(State {
                numbers: None,
                built_ms: now_ms,
                rules: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the settings' current numbers; different ones rebuild every rule at `now_ms`, as
    /// the server's watch on those settings does.
    pub fn sync(&self, numbers: Numbers, now_ms: i64) {
        Self::sync_locked(&mut self.lock(), numbers, now_ms);
    }

    fn sync_locked(state: &mut State, numbers: Numbers, now_ms: i64) {
        if state.numbers != Some(numbers) {
            if state.numbers.is_some() {
                state.rules.clear();
                state.built_ms = now_ms;
            }
            state.numbers = Some(numbers);
        }
    }

    /// Rebuilds every rule at `now_ms` whatever the numbers, e.g. when a test turns the
    /// limiter on.
    pub fn rebuild(&self, now_ms: i64) {
        let mut state = self.lock();
        state.rules.clear();
        state.built_ms = now_ms;
    }

    /// Counts a call of `route` from `ip` and says whether it may run. `None` when the
    /// numbers disable the rules (zero calls or a zero window, as the real server skips them).
    pub fn hit(&self, route: &str, ip: &str, numbers: Numbers, now_ms: i64) -> Option<Verdict> {
        let mut state = self.lock();
        Self::sync_locked(&mut state, numbers, now_ms);
        if numbers.calls <= 0 || numbers.window_ms <= 0 {
            return None;
        }
        let built = state.built_ms;
        let rule = state.rules.entry(route.to_owned()).or_insert_with(|| Rule {
            last_reset_ms: built,
            counters: HashMap::new(),
            refused: 0,
        });
        // Meteor's `increment`: a window that ran out restarts now, with every counter at 0.
        if now_ms - rule.last_reset_ms > numbers.window_ms {
            rule.last_reset_ms = now_ms;
            rule.counters.clear();
        }
        let count = rule.counters.entry(ip.to_owned()).or_insert(0);
        *count += 1;
        let count = *count;
        // Meteor's `check`, right after: the counter may reach the limit, not pass it.
        let time_to_reset_ms = numbers.window_ms - (now_ms - rule.last_reset_ms);
        let allowed = count <= numbers.calls;
        if !allowed {
            rule.refused += 1;
        }
        Some(Verdict {
            allowed,
            limit: numbers.calls,
            remaining: if allowed { numbers.calls - count } else { 0 },
            reset_ms: now_ms + time_to_reset_ms,
            time_to_reset_ms,
        })
    }

    /// When the current window of `route` ends (epoch ms), if one is running at `now_ms`.
    pub fn reset_of(&self, route: &str, now_ms: i64) -> Option<i64> {
        let state = self.lock();
        let window = state.numbers?.window_ms;
        let start = state
            .rules
            .get(route)
            .map_or(state.built_ms, |r| r.last_reset_ms);
        (now_ms - start <= window).then_some(start + window)
    }

    /// How many calls of `route` were refused since the rules were built.
    pub fn refused(&self, route: &str) -> u64 {
        self.lock().rules.get(route).map_or(0, |r| r.refused)
    }
}

/// The rule key of a route and method (`getFullRouteName`: path and lower-case method).
pub fn route_key(endpoint: &str, method: &str) -> String {
    format!("/api/v1/{endpoint}{}", method.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_PER_MINUTE: Numbers = Numbers {
        calls: 10,
        window_ms: 60_000,
    };

    #[test]
    fn the_eleventh_call_in_a_window_is_refused_until_it_restarts() {
        let limiter = Limiter::new(0);
        let route = route_key("chat.sendMessage", "POST");
        limiter.hit(&route, "10.0.0.1", TEN_PER_MINUTE, 0);
        for i in 1..10 {
            let v = limiter
                .hit(&route, "10.0.0.1", TEN_PER_MINUTE, 1_000)
                .unwrap();
            assert!(v.allowed);
            assert_eq!(v.remaining, 9 - i);
        }
        let refused = limiter
            .hit(&route, "10.0.0.1", TEN_PER_MINUTE, 30_000)
            .unwrap();
        assert!(!refused.allowed);
        assert_eq!((refused.remaining, refused.reset_ms), (0, 60_000));
        assert_eq!(refused.time_to_reset_ms, 30_000);
        // At the reset instant the window has not run out yet; just after, it restarts.
        assert!(
            !limiter
                .hit(&route, "10.0.0.1", TEN_PER_MINUTE, 60_000)
                .unwrap()
                .allowed
        );
        let fresh = limiter
            .hit(&route, "10.0.0.1", TEN_PER_MINUTE, 60_001)
            .unwrap();
        assert!(fresh.allowed);
        assert_eq!((fresh.remaining, fresh.reset_ms), (9, 120_001));
        assert_eq!(limiter.refused(&route), 2);
    }

    #[test]
    fn clients_count_apart_but_share_the_route_window() {
        let limiter = Limiter::new(0);
        let route = route_key("me", "GET");
        let one = Numbers {
            calls: 1,
            window_ms: 1_000,
        };
        assert!(limiter.hit(&route, "a", one, 100).unwrap().allowed);
        assert!(!limiter.hit(&route, "a", one, 200).unwrap().allowed);
        let b = limiter.hit(&route, "b", one, 700).unwrap();
        assert!(b.allowed);
        assert_eq!(
            b.reset_ms, 1_000,
            "b's window is the route's, begun at start"
        );
        assert!(
            limiter
                .hit(&route_key("me", "POST"), "a", one, 200)
                .unwrap()
                .allowed,
            "another method is another rule"
        );
        assert_eq!(limiter.reset_of(&route, 900), Some(1_000));
        assert_eq!(limiter.reset_of(&route, 1_500), None);
    }

    #[test]
    fn new_numbers_rebuild_the_rules_and_zero_disables_them() {
        let limiter = Limiter::new(0);
        let route = route_key("me", "GET");
        let one = Numbers {
            calls: 1,
            window_ms: 60_000,
        };
        limiter.hit(&route, "a", one, 0);
        assert!(!limiter.hit(&route, "a", one, 10).unwrap().allowed);
        let two = Numbers { calls: 2, ..one };
        let v = limiter.hit(&route, "a", two, 20).unwrap();
        assert!(v.allowed);
        assert_eq!(
            v.reset_ms, 60_020,
            "the rebuilt rule's window starts at the change"
        );
        let off = Numbers { calls: 0, ..one };
        assert_eq!(limiter.hit(&route, "a", off, 30), None);
    }
}
