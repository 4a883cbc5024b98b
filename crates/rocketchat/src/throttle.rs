//! Waiting behind Rocket.Chat's REST limiter, one queue per endpoint.
//!
//! Rocket.Chat counts calls per client IP, route and method in fixed windows and answers 429
//! with `X-RateLimit-Reset` once a window is used up (`docs/rocketchat-wire.md`). Every call
//! of this process comes from one IP, so all users share each endpoint's window. A [`Gate`]
//! per endpoint mirrors what the last answers said about that window: while it is used up,
//! callers queue instead of calling; when it resets, the first in line calls alone, and the
//! others follow as far as the new window has room. A caller never waits past its deadline:
//! it gives up at once, with how long until the reset, when the reset lies beyond it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

/// How long a caller waits when it gives up without knowing the reset (a queue ahead of it
/// whose window is still unknown): a guess, but never zero, so the client does back off.
const UNKNOWN_WAIT: Duration = Duration::from_secs(1);

/// What an allowed answer's `X-RateLimit-*` headers said about its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WindowReport {
    /// `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// `X-RateLimit-Reset` as the server wrote it (epoch ms): the window's identity.
    pub reset_ms: i64,
    /// How long until then, from now.
    pub reset_in: Duration,
}

/// The gates of every endpoint called so far.
#[derive(Default)]
pub(crate) struct Throttle {
    gates: Mutex<HashMap<(Method, &'static str), Arc<Gate>>>,
}

impl Throttle {
    /// The gate of one endpoint and method (Rocket.Chat's bucket, our IP being fixed).
    pub(crate) fn gate(&self, method: &Method, endpoint: &'static str) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .entry((method.clone(), endpoint))
            .or_insert_with(|| Arc::new(Gate::default()))
            .clone()
    }
}

/// One endpoint's window as last reported, and its queue.
#[derive(Default)]
pub(crate) struct Gate {
    window: Mutex<Window>,
    // Held by the caller at the head of the queue while it waits for the reset and while it
    // makes the first call of a window nobody has reported on yet; FIFO, so callers keep
    // their order. Never held by a caller that is not queued.
    turn: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Window {
    /// When the window resets (the server's reset plus nothing: margins are the caller's).
    reset: Option<Instant>,
    /// The server's `X-RateLimit-Reset`, telling one window from the next.
    reset_ms: Option<i64>,
    /// Calls left: what the server last said, less the calls let through since.
    remaining: Option<u32>,
    /// Callers waiting for the turn: while any do, newcomers queue behind them.
    queued: usize,
}

impl Window {
    /// Forgets a window that has reset: the next answer says what the new one holds.
    fn expire(&mut self, now: Instant) {
        if self.reset.is_some_and(|reset| reset <= now) {
            self.reset = None;
            self.reset_ms = None;
            self.remaining = None;
        }
    }

    /// How long until the window lets a call through, if it is used up.
    fn blocked_for(&self, now: Instant) -> Option<Duration> {
        match (self.remaining, self.reset) {
            (Some(0), Some(reset)) if reset > now => Some(reset - now),
            _ => None,
        }
    }

    fn take_one(&mut self) {
        if let Some(remaining) = &mut self.remaining {
            *remaining = remaining.saturating_sub(1);
        }
    }
}

/// Leave to make one call; hold it until the answer has been reported to the gate.
pub(crate) struct Pass<'a> {
    // Kept by the head of the queue while it makes the first call of an unknown window, so
    // that the callers behind it learn from its answer instead of all calling at once.
    _turn: Option<tokio::sync::MutexGuard<'a, ()>>,
    /// Whether the caller had to queue.
    pub queued: bool,
}

impl Gate {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a call may go, or gives up with how long until the window resets when that
    /// lies past `deadline`.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Pass<'_>, Duration> {
        {
            let now = Instant::now();
            let mut window = self.window();
            window.expire(now);
            match window.blocked_for(now) {
                None if window.queued == 0 => {
                    window.take_one();
                    return Ok(Pass {
                        _turn: None,
                        queued: false,
                    });
                }
                Some(wait) if now + wait > deadline => return Err(wait),
                _ => window.queued += 1,
            }
        }
        let turn = tokio::time::timeout_at(deadline, self.turn.lock()).await;
        let turn = {
            let mut window = self.window();
            window.queued -= 1;
            match turn {
                Ok(turn) => turn,
                Err(_) => {
                    let now = Instant::now();
                    window.expire(now);
                    return Err(window.blocked_for(now).unwrap_or(UNKNOWN_WAIT));
                }
            }
        };
        loop {
            let now = Instant::now();
            let wait = {
                let mut window = self.window();
                window.expire(now);
                match window.blocked_for(now) {
                    None => {
                        // A window with room known lets us go and the next in line right after;
                        // an unknown one keeps the turn until our answer tells the others.
                        let known = window.remaining.is_some();
                        window.take_one();
                        return Ok(Pass {
                            _turn: (!known).then_some(turn),
                            queued: true,
                        });
                    }
                    Some(wait) => wait,
                }
            };
            if now + wait > deadline {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes in what an allowed answer said about the window.
    pub(crate) fn observe(&self, report: WindowReport) {
        let now = Instant::now();
        let mut window = self.window();
        window.expire(now);
        if window.reset_ms == Some(report.reset_ms) {
            // Answers overtake each other: the lowest count is the latest, and calls we let
            // through since are not in it yet.
            window.remaining = Some(
                window
                    .remaining
                    .map_or(report.remaining, |left| left.min(report.remaining)),
            );
        } else {
            window.remaining = Some(report.remaining);
            window.reset_ms = Some(report.reset_ms);
        }
        window.reset = Some(now + report.reset_in);
    }

    /// Takes in a refusal: the window is used up for `reset_in` more; `reset_ms` names it.
    /// Returns whether this told the gate something new (the first refusal of a window).
    pub(crate) fn refused(&self, reset_in: Duration, reset_ms: Option<i64>) -> bool {
        let now = Instant::now();
        let mut window = self.window();
        window.expire(now);
        let news = window.remaining != Some(0) || window.reset_ms != reset_ms;
        window.remaining = Some(0);
        window.reset_ms = reset_ms;
        window.reset = Some(now + reset_in);
        news
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn report(remaining: u32, reset_ms: i64, reset_in: Duration) -> WindowReport {
        WindowReport {
            remaining,
            reset_ms,
            reset_in,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_or_roomy_window_lets_calls_through_at_once() {
        let gate = Gate::default();
        let deadline = Instant::now() + SECOND;
        for _ in 0..3 {
            let pass = gate.admit(deadline).await.unwrap();
            assert!(!pass.queued);
        }
        gate.observe(report(2, 1, 10 * SECOND));
        assert!(gate.admit(deadline).await.is_ok());
        assert!(gate.admit(deadline).await.is_ok());
        assert_eq!(
            gate.admit(deadline).await.err(),
            Some(10 * SECOND),
            "the third call of two left waits for the reset, past the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_queues_callers_until_the_reset_within_their_budget() {
        let gate = Arc::new(Gate::default());
        assert!(gate.refused(2 * SECOND, Some(7)));
        assert!(!gate.refused(2 * SECOND, Some(7)), "the same window again");
        let started = Instant::now();
        let short = gate.admit(started + SECOND).await;
        assert_eq!(short.err(), Some(2 * SECOND), "gives up at once");
        assert_eq!(Instant::now(), started);

        let pass = gate.admit(started + 3 * SECOND).await.unwrap();
        assert!(pass.queued);
        assert_eq!(Instant::now(), started + 2 * SECOND, "waited for the reset");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_reset_one_caller_probes_and_the_others_follow_its_answer() {
        let gate = Arc::new(Gate::default());
        gate.refused(SECOND, Some(1));
        let deadline = Instant::now() + 120 * SECOND;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for caller in 0..4 {
            let gate = gate.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let pass = gate.admit(deadline).await;
                tx.send((caller, pass.is_ok(), Instant::now())).unwrap();
                // The probe's answer: a new window with room for two more.
                if caller == 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    gate.observe(report(2, 2, 60 * SECOND));
                }
                drop(pass);
            });
            tokio::task::yield_now().await;
        }
        let (first, ok, at) = rx.recv().await.unwrap();
        assert_eq!((first, ok), (0, true));
        let probe_at = at;
        let mut followers = Vec::new();
        for _ in 0..2 {
            let (caller, ok, at) = rx.recv().await.unwrap();
            assert!(ok);
            assert!(
                at >= probe_at + Duration::from_millis(100),
                "after the probe's answer"
            );
            followers.push(caller);
        }
        assert_eq!(followers, [1, 2], "in order");
        let (last, ok, at) = rx.recv().await.unwrap();
        assert_eq!(last, 3);
        assert!(ok, "the fourth waits for the next window within its budget");
        assert!(at >= probe_at + 60 * SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_behind_a_long_queue_gives_up_at_its_deadline() {
        let gate = Arc::new(Gate::default());
        gate.refused(5 * SECOND, None);
        let head = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let pass = gate.admit(Instant::now() + 10 * SECOND).await;
                assert!(pass.is_ok());
                // Holds the turn without reporting: the window stays unknown.
                tokio::time::sleep(20 * SECOND).await;
                drop(pass);
            })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        let behind = gate.admit(started + 6 * SECOND).await;
        assert_eq!(behind.err(), Some(UNKNOWN_WAIT));
        assert_eq!(Instant::now(), started + 6 * SECOND);
        head.abort();
    }
}
