//! Fault knobs tests turn from the library API: broken REST answers, delays, frozen or
//! silent DDP sockets.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// What a faulty REST answer looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestFaultKind {
    /// HTTP 500 with Rocket.Chat's `{"success":false,"error":"Internal server error"}`.
    InternalError,
    /// HTTP 200 with a body that is not JSON (a proxy error page, say).
    Garbage,
    /// HTTP 429 with the limiter's body and `X-RateLimit-*` headers.
    TooManyRequests,
    /// HTTP 502 with an HTML body, as a reverse proxy in front of a dead server answers.
    BadGateway,
    /// The connection closes without any answer (the request was read), as a crashing server's would.
    Disconnect,
    /// HTTP 200 `application/json` whose body stops half-way, as when a server dies mid-write.
    Truncated,
}

/// One REST fault rule: which requests it hits and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestFault {
    /// The answer to give.
    pub kind: RestFaultKind,
    /// Only paths containing this text (e.g. `chat.sendMessage`); `None` for every path.
    pub path_contains: Option<String>,
    /// How many requests to hit before the rule expires; `None` for until cleared.
    pub times: Option<u32>,
}

impl RestFault {
    /// A rule hitting every request until cleared.
    pub fn always(kind: RestFaultKind) -> Self {
        RestFault {
            kind,
            path_contains: None,
            times: None,
        }
    }

    /// Restricts the rule to paths containing `text`.
    pub fn on_path(mut self, text: &str) -> Self {
        self.path_contains = Some(text.to_string());
        self
    }

    /// Expires the rule after `n` hits.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

#[derive(Default)]
struct FaultState {
    rest: Vec<RestFault>,
    delay: Option<Duration>,
    frozen: HashSet<String>,
    silent: HashSet<String>,
}

/// Shared fault state; cheap to check when nothing is injected.
#[derive(Default)]
pub struct Faults {
    /// Fast path: false while no fault of any kind is set.
    any: AtomicBool,
    inner: Mutex<FaultState>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self, st: &FaultState) {
        let any = !st.rest.is_empty()
            || st.delay.is_some()
            || !st.frozen.is_empty()
            || !st.silent.is_empty();
        self.any.store(any, Ordering::Release);
    }

    fn quick(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Adds a REST fault rule (rules are tried in the order added).
    pub fn add_rest(&self, fault: RestFault) {
        let mut st = self.lock();
        st.rest.push(fault);
        self.refresh(&st);
    }

    /// Removes every REST rule and the delay.
    pub fn clear_rest(&self) {
        let mut st = self.lock();
        st.rest.clear();
        st.delay = None;
        self.refresh(&st);
    }

    /// The fault for this request path, consuming one hit of its rule.
    pub fn take_rest(&self, path: &str) -> Option<RestFaultKind> {
        if !self.quick() {
            return None;
        }
        let mut st = self.lock();
        let idx = st
            .rest
            .iter()
            .position(|f| f.path_contains.as_deref().is_none_or(|p| path.contains(p)))?;
        let kind = st.rest[idx].kind.clone();
        if let Some(n) = st.rest[idx].times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.rest.remove(idx);
            }
        }
        self.refresh(&st);
        Some(kind)
    }

    /// Sets the delay added before every REST answer and DDP method result.
    pub fn set_delay(&self, delay: Option<Duration>) {
        let mut st = self.lock();
        st.delay = delay;
        self.refresh(&st);
    }

    /// The current answer delay.
    pub fn delay(&self) -> Option<Duration> {
        if !self.quick() {
            return None;
        }
        self.lock().delay
    }

    /// Freezes (or thaws) every DDP socket of a user: nothing is read or written, the socket stays open.
    pub fn set_frozen(&self, user_id: &str, frozen: bool) {
        let mut st = self.lock();
        if frozen {
            st.frozen.insert(user_id.to_string());
        } else {
            st.frozen.remove(user_id);
        }
        self.refresh(&st);
    }

    /// Whether a user's sockets are frozen.
    pub fn is_frozen(&self, user_id: &str) -> bool {
        self.quick() && self.lock().frozen.contains(user_id)
    }

    /// Makes the server stop answering (and sending) pings on a user's sockets.
    pub fn set_silent(&self, user_id: &str, silent: bool) {
        let mut st = self.lock();
        if silent {
            st.silent.insert(user_id.to_string());
        } else {
            st.silent.remove(user_id);
        }
        self.refresh(&st);
    }

    /// Whether pings are ignored for this user.
    pub fn is_silent(&self, user_id: &str) -> bool {
        self.quick() && self.lock().silent.contains(user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_expires_after_its_hits_and_filters_by_path() {
        let f = Faults::default();
        assert_eq!(f.take_rest("/api/v1/me"), None);
        f.add_rest(
            RestFault::always(RestFaultKind::InternalError)
                .on_path("chat.")
                .times(2),
        );
        assert_eq!(f.take_rest("/api/v1/me"), None);
        assert_eq!(
            f.take_rest("/api/v1/chat.sendMessage"),
            Some(RestFaultKind::InternalError)
        );
        assert_eq!(
            f.take_rest("/api/v1/chat.sendMessage"),
            Some(RestFaultKind::InternalError)
        );
        assert_eq!(f.take_rest("/api/v1/chat.sendMessage"), None);
    }
}
