//! Counting deliveries of numbered events, and how long each took, across many connections.
//!
//! An event's text is `bench <round> <sent>`: the round it belongs to and when it was sent,
//! in microseconds since the probe's epoch. Sender and receivers live in this process, so
//! one clock measures both ends.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// What counts the events a receiving connection reads: the [`Probe`] of the fan-outs, or
/// the ledger of host pushes.
pub trait Recorder: Send + Sync + 'static {
    /// The target of the hub invocations that carry the events; other invocations are not
    /// looked at.
    fn hub_target(&self) -> &'static str;

    /// Counts the event in `text` as delivered to connection `connection` now. Returns when
    /// it arrived, microseconds since the recorder's epoch, if it counts; `None` for texts
    /// without an event of the current round. From a hub connection `text` is what
    /// [`crate::signalr::Payload::each_invocation`] hands over: a JSON record whole, of a
    /// MessagePack one the first argument's `text`.
    fn record(&self, connection: usize, text: &str) -> Option<u64>;

    /// Counts `bytes` read from a connection's socket (WebSocket payload), whatever they
    /// carried; recorders that do not report bytes ignore them.
    fn read(&self, _bytes: usize) {}
}

/// Histograms the connections share; a connection records into one by its index, so
/// thousands of them rarely wait on the same lock.
const SHARDS: usize = 64;
/// Latencies above a minute are recorded as a minute.
const HIGHEST_US: u64 = 60_000_000;

/// Deliveries and their latency in the current round, over all connections and per class of
/// connection (e.g. whether it is on the node that holds its user's upstream).
pub struct Probe {
    epoch: Instant,
    round: AtomicU32,
    /// The class of each connection by index; connections beyond it are class 0.
    classes: Vec<usize>,
    /// `SHARDS` histograms per class.
    shards: Vec<Vec<Mutex<Histogram<u64>>>>,
    delivered: AtomicU64,
    /// When the round's last delivery arrived, microseconds since the epoch.
    last_us: AtomicU64,
    /// Deliveries of other rounds (late or repeated events).
    strays: AtomicU64,
    /// WebSocket payload bytes the connections read since the round began.
    bytes: AtomicU64,
}

/// What a round measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Deliveries counted.
    pub count: u64,
    /// Median, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    /// A probe in round 0, which counts nothing until [`Self::begin`].
    pub fn new() -> Self {
        Self::classified(Vec::new())
    }

    /// A probe that also keeps the latency of each class apart: connection `i` is of class
    /// `classes[i]`.
    pub fn classified(classes: Vec<usize>) -> Self {
        let count = classes.iter().max().map_or(1, |max| max + 1);
        let histogram = || Mutex::new(histogram());
        Self {
            epoch: Instant::now(),
            round: AtomicU32::new(0),
            classes,
            shards: (0..count)
                .map(|_| (0..SHARDS).map(|_| histogram()).collect())
                .collect(),
            delivered: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            strays: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The text of an event of `round` sent now.
    pub fn event(&self, round: u32) -> String {
        format!("bench {round} {}", self.now_us())
    }

    /// Starts counting `round` afresh.
    pub fn begin(&self, round: u32) {
        for shard in self.shards.iter().flatten() {
            lock(shard).reset();
        }
        self.delivered.store(0, Ordering::SeqCst);
        self.last_us.store(0, Ordering::SeqCst);
        self.strays.store(0, Ordering::SeqCst);
        self.bytes.store(0, Ordering::SeqCst);
        self.round.store(round, Ordering::SeqCst);
    }

    /// Counts the event in `text` (anything around it is ignored) as delivered to connection
    /// `connection` now. Returns when it arrived, microseconds since the epoch, if it belongs to
    /// the current round; texts without an event count for nothing.
    pub fn record(&self, connection: usize, text: &str) -> Option<u64> {
        let (round, sent) = parse_event(text)?;
        if round != self.round.load(Ordering::Relaxed) {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let now = self.now_us();
        let class = self.classes.get(connection).copied().unwrap_or(0);
        lock(&self.shards[class][connection % SHARDS])
            .saturating_record(now.saturating_sub(sent).max(1));
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_us.fetch_max(now, Ordering::Relaxed);
        Some(now)
    }

    /// Deliveries in the current round so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Deliveries of events from other rounds since the current one began.
    pub fn strays(&self) -> u64 {
        self.strays.load(Ordering::Relaxed)
    }

    /// WebSocket payload bytes the connections read since the round began: every message,
    /// whatever it carried.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When the round's last delivery arrived, since the epoch.
    pub fn last_delivery(&self) -> Duration {
        Duration::from_micros(self.last_us.load(Ordering::Relaxed))
    }

    /// Waits until `expected` deliveries arrived or `patience` passed since the last one did.
    pub async fn settle(&self, expected: u64, patience: Duration) {
        settle(|| self.delivered(), expected, patience).await;
    }

    /// The current round's latency figures.
    pub fn latency(&self) -> Latency {
        summarize(self.shards.iter().flatten())
    }

    /// The current round's latency figures of the connections of `class` (none if there is no
    /// such class).
    pub fn latency_of(&self, class: usize) -> Latency {
        summarize(self.shards.get(class).into_iter().flatten())
    }
}

impl Recorder for Probe {
    fn hub_target(&self) -> &'static str {
        "getRoomMessageNotification"
    }

    fn record(&self, connection: usize, text: &str) -> Option<u64> {
        Probe::record(self, connection, text)
    }

    fn read(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Waits until `delivered()` reaches `expected` or `patience` passed since it last grew.
pub async fn settle(delivered: impl Fn() -> u64, expected: u64, patience: Duration) {
    let mut seen = delivered();
    let mut quiet_since = Instant::now();
    while seen < expected && quiet_since.elapsed() < patience {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = delivered();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
}

/// An empty latency histogram, microseconds from 1 us to a minute.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_US, 3)
        .expect("1 us to 60 s at 3 significant figures are valid bounds")
}

impl Latency {
    /// The figures of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

fn summarize<'a>(shards: impl Iterator<Item = &'a Mutex<Histogram<u64>>>) -> Latency {
    let mut all = histogram();
    for shard in shards {
        all.add(&*lock(shard))
            .expect("histograms with the same bounds add up");
    }
    Latency::of(&all)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A histogram stays usable whatever panicked while it was held.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(round, sent)` of the first `bench <round> <sent>` in `text`.
pub fn parse_event(text: &str) -> Option<(u32, u64)> {
    let rest = &text[text.find("bench ")? + "bench ".len()..];
    let (round, rest) = leading_number(rest)?;
    let (sent, _) = leading_number(rest.strip_prefix(' ')?)?;
    Some((u32::try_from(round).ok()?, sent))
}

fn leading_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_found_inside_any_envelope() {
        assert_eq!(parse_event("bench 3 1234"), Some((3, 1234)));
        assert_eq!(
            parse_event(r#"{"type":1,"arguments":[{"text":"bench 12 99"}]}"#),
            Some((12, 99))
        );
        assert_eq!(parse_event(r#"42["event","bench 1 5"]"#), Some((1, 5)));
        assert_eq!(parse_event("bench x 5"), None);
        assert_eq!(parse_event("bench 1"), None);
        assert_eq!(parse_event("nothing here"), None);
    }

    #[test]
    fn only_the_current_round_is_counted() {
        let probe = Probe::new();
        probe.begin(2);
        assert!(probe.record(0, &probe.event(2)).is_some());
        assert!(probe.record(1, &probe.event(2)).is_some());
        assert!(probe.record(1, &probe.event(1)).is_none());
        assert!(probe.record(1, "no event").is_none());
        assert_eq!((probe.delivered(), probe.strays()), (2, 1));
        assert_eq!(probe.latency().count, 2);
        probe.begin(3);
        assert_eq!((probe.delivered(), probe.latency().count), (0, 0));
    }

    #[test]
    fn classes_split_the_latency_and_add_up_to_it() {
        let probe = Probe::classified(vec![0, 1, 1]);
        probe.begin(1);
        for connection in 0..4 {
            let sent = probe.now_us().saturating_sub(5_000);
            assert!(probe
                .record(connection, &format!("bench 1 {sent}"))
                .is_some());
        }
        // Connection 3 has no class of its own: it counts as class 0.
        assert_eq!(probe.latency_of(0).count, 2);
        assert_eq!(probe.latency_of(1).count, 2);
        assert_eq!(probe.latency_of(2).count, 0);
        assert_eq!(probe.latency().count, 4);
        assert!(probe.latency_of(1).p50_us >= 5_000);
        probe.begin(2);
        assert_eq!(probe.latency_of(1).count, 0);
    }
}
