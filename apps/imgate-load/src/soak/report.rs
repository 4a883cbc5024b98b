//! The soak's samples and its Markdown section: the per-minute table, totals, the delivery
//! check, errors by kind and a verdict computed from the numbers.

use std::fmt::Write as _;
use std::time::Duration;

use crate::procfs::ProcessSample;
use crate::soak::ledger::{Miss, Tally};
use crate::soak::stats::Counters;

/// The heading of the soak's section of `docs/reliability.md`.
pub const HEADING: &str = "## Soak";

/// RSS or descriptors growing more than this between minute 2 and the end is not flat.
const FLAT_PERCENT: f64 = 10.0;

/// What the gateway's `/metrics` said at a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GatewayGauges {
    /// `imgate_hub_connections_open`.
    pub hub_connections: Option<f64>,
    /// `imgate_upstreams_held`.
    pub upstreams_held: Option<f64>,
    /// `imgate_upstream_connections`: provider realtime sockets open.
    pub upstream_sockets: Option<f64>,
}

impl GatewayGauges {
    /// Reads the gauges from Prometheus text.
    pub fn parse(text: &str) -> Self {
        let gauge = |name: &str| {
            text.lines().find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix(' ')?;
                value.trim().parse().ok()
            })
        };
        Self {
            hub_connections: gauge("imgate_hub_connections_open"),
            upstreams_held: gauge("imgate_upstreams_held"),
            upstream_sockets: gauge("imgate_upstream_connections"),
        }
    }
}

/// One sample: the minute (or "after"), the gateway process, and the driver's counters.
#[derive(Debug, Clone)]
pub struct Row {
    /// `0`, `1`, … or `after`.
    pub label: String,
    /// The gateway process, when it could be read.
    pub process: Option<ProcessSample>,
    /// Hub connections the driver holds open.
    pub open_connections: u64,
    /// The gateway's own gauges.
    pub gateway: GatewayGauges,
    /// The driver's counters (cumulative).
    pub counters: Counters,
    /// Delivery check totals (cumulative).
    pub tally: Tally,
}

impl Row {
    /// The one line printed at each sample.
    pub fn line(&self) -> String {
        let process = match &self.process {
            Some(p) => format!(
                "rss {:.1} MiB, fds {}, threads {}",
                mib(p.rss_kib),
                p.fds,
                p.threads
            ),
            None => "gateway process not sampled".into(),
        };
        let c = &self.counters;
        format!(
            "[soak] minute {}: {process}; connections {} (gateway {}), upstreams {}; sent {}, deliveries {}, events {}, reads {}, opened {}, closed {}, closed by deletion {}, users deleted {}; owed {}, missed {}; errors {}",
            self.label,
            self.open_connections,
            gauge(self.gateway.hub_connections),
            gauge(self.gateway.upstreams_held),
            c.messages_sent,
            c.deliveries,
            c.other_events,
            c.reads,
            c.connections_opened,
            c.connections_closed,
            c.closed_by_deletion,
            c.users_deleted,
            self.tally.owed,
            self.tally.missed,
            c.error_total(),
        )
    }
}

/// Everything the section says.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// When it ran (`date -u`).
    pub date: String,
    /// The commit measured.
    pub commit: String,
    /// Where it ran.
    pub machine: String,
    /// The gateway's settings that differ from the defaults, one `key = value` each.
    pub settings: Vec<String>,
    /// The load, one sentence each.
    pub load: Vec<String>,
    /// The samples, minute 0 first, then `after`.
    pub rows: Vec<Row>,
    /// How long a connection must be open before a send to be owed the message.
    pub settle: Duration,
    /// How long after the acknowledgement a delivery is checked.
    pub deadline: Duration,
    /// The first misses of the delivery check, described.
    pub misses: Vec<String>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn gauge(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| format!("{v:.0}"))
}

fn percent(from: f64, to: f64) -> f64 {
    if from == 0.0 {
        0.0
    } else {
        (to - from) / from * 100.0
    }
}

/// Describes a miss for the report.
pub fn describe_miss(miss: &Miss, room: &str, user: &str) -> String {
    format!(
        "message {} in room {room}: not on a connection of {user} open {:.1} s before the send",
        miss.seq,
        miss.open_for.as_secs_f64()
    )
}

/// The verdict: RSS and descriptors between minute 2 (or the first minute there is) and
/// the last minute, what was left after the load stopped, and the delivery check.
pub fn verdict(rows: &[Row]) -> String {
    let minutes: Vec<&Row> = rows
        .iter()
        .filter(|r| r.label != "after" && r.process.is_some())
        .collect();
    let (Some(first), Some(last)) = (
        minutes.iter().find(|r| r.label == "2").or(minutes.first()),
        minutes.last(),
    ) else {
        return "no samples of the gateway process: no verdict".into();
    };
    let (Some(a), Some(b)) = (first.process, last.process) else {
        return "no samples of the gateway process: no verdict".into();
    };
    let rss = percent(a.rss_kib as f64, b.rss_kib as f64);
    let fds = percent(a.fds as f64, b.fds as f64);
    let flat = rss <= FLAT_PERCENT && fds <= FLAT_PERCENT;
    let mut text = format!(
        "**{}**: RSS {:.1} → {:.1} MiB from minute {} to minute {} ({rss:+.1} %), descriptors {} → {} ({fds:+.1} %); flat means both within +{FLAT_PERCENT:.0} %.",
        if flat { "Flat" } else { "Not flat" },
        mib(a.rss_kib),
        mib(b.rss_kib),
        first.label,
        last.label,
        a.fds,
        b.fds,
    );
    if let (Some(after), Some(zero)) = (
        rows.iter().find(|r| r.label == "after"),
        rows.iter().find(|r| r.label == "0"),
    ) {
        if let (Some(p), Some(p0)) = (after.process, zero.process) {
            let _ = write!(
                text,
                " After the load stopped: {} hub connections, {} upstreams held, {} descriptors ({} before the load).",
                gauge(after.gateway.hub_connections),
                gauge(after.gateway.upstreams_held),
                p.fds,
                p0.fds,
            );
        }
    }
    if let Some(end) = rows.last() {
        let _ = write!(
            text,
            " Deliveries owed {}, missed {}, duplicated {}, to non-members {}; errors {}.",
            end.tally.owed,
            end.tally.missed,
            end.tally.duplicates,
            end.tally.foreign,
            end.counters.error_total()
        );
    }
    text
}

/// The Markdown section, starting with [`HEADING`].
pub fn render(report: &SoakReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "Written by `make soak` (`scripts/soak.sh` runs the release `imgate` in front of the release \
         `rocketchat-sim` on loopback and drives it with `imgate-load soak`); re-running replaces \
         this section.\n"
    );
    let _ = writeln!(s, "- Run: {}, commit `{}`", report.date, report.commit);
    let _ = writeln!(
        s,
        "- Machine: {} (the sim and the driver share it with the gateway)",
        report.machine
    );
    if !report.settings.is_empty() {
        let _ = writeln!(s, "- Gateway settings besides the defaults: {}", {
            let quoted: Vec<String> = report.settings.iter().map(|x| format!("`{x}`")).collect();
            quoted.join(", ")
        });
    }
    for line in &report.load {
        let _ = writeln!(s, "- {line}");
    }
    let _ = writeln!(s, "\n{}\n", verdict(&report.rows));
    let _ = writeln!(
        s,
        "Per minute (the gateway process from `/proc`; connections and upstreams from its `/metrics`; \
         counters cumulative; \"after\": all connections closed and the grace period over):\n"
    );
    let _ = writeln!(
        s,
        "| minute | RSS MiB | fds | threads | hub connections | upstreams | messages sent | deliveries | missed | errors |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for row in &report.rows {
        let (rss, fds, threads) = match row.process {
            Some(p) => (
                format!("{:.1}", mib(p.rss_kib)),
                p.fds.to_string(),
                p.threads.to_string(),
            ),
            None => ("–".into(), "–".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} | {rss} | {fds} | {threads} | {} | {} | {} | {} | {} | {} |",
            row.label,
            gauge(row.gateway.hub_connections),
            gauge(row.gateway.upstreams_held),
            row.counters.messages_sent,
            row.counters.deliveries,
            row.tally.missed,
            row.counters.error_total(),
        );
    }
    if let Some(end) = report.rows.last() {
        let c = &end.counters;
        let t = &end.tally;
        let _ = writeln!(
            s,
            "\nTotals: {} messages sent, {} deliveries of them received, {} other hub events, {} reads; \
             {} hub connections opened, {} closed by the driver, {} closed by the gateway when their user was \
             deleted; {} users deleted and {} created again.\n",
            c.messages_sent,
            c.deliveries,
            c.other_events,
            c.reads,
            c.connections_opened,
            c.connections_closed,
            c.closed_by_deletion,
            c.users_deleted,
            c.users_recreated,
        );
        let _ = writeln!(
            s,
            "Delivery check: a message is owed to every connection of a room member that was open from {} s \
             before the send (the upstream opens in the background after a user's first connection) until \
             {} s after the gateway acknowledged it; connections that close earlier owe nothing. {} messages \
             checked, {} deliveries owed, {} arrived in time, {} missed, {} late, {} duplicated, {} to \
             connections of non-members.\n",
            report.settle.as_secs_f64(),
            report.deadline.as_secs_f64(),
            t.checked, t.owed, t.delivered, t.missed, t.late, t.duplicates, t.foreign,
        );
        if c.errors.is_empty() {
            let _ = writeln!(s, "Errors: none.");
        } else {
            let _ = writeln!(s, "Errors by kind:\n\n| kind | count |\n|---|---|");
            for (kind, count) in &c.errors {
                let _ = writeln!(s, "| `{kind}` | {count} |");
            }
        }
        if !report.misses.is_empty() {
            let _ = writeln!(s, "\nFirst misses:\n");
            for miss in &report.misses {
                let _ = writeln!(s, "- {miss}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, rss_mib: u64, fds: u64) -> Row {
        Row {
            label: label.into(),
            process: Some(ProcessSample {
                rss_kib: rss_mib * 1024,
                fds,
                threads: 4,
            }),
            open_connections: 0,
            gateway: GatewayGauges::default(),
            counters: Counters::default(),
            tally: Tally::default(),
        }
    }

    #[test]
    fn the_verdict_compares_minute_two_with_the_last_minute() {
        let rows = [
            row("0", 10, 50),
            row("1", 40, 500),
            row("2", 50, 600),
            row("3", 54, 610),
        ];
        let text = verdict(&rows);
        assert!(text.starts_with("**Flat**"), "{text}");
        assert!(
            text.contains("50.0 → 54.0 MiB from minute 2 to minute 3 (+8.0 %)"),
            "{text}"
        );
        let rows = [row("2", 50, 600), row("3", 56, 610)];
        assert!(verdict(&rows).starts_with("**Not flat**"));
        let rows = [row("2", 50, 600), row("3", 50, 700)];
        assert!(verdict(&rows).starts_with("**Not flat**"));
    }

    #[test]
    fn gauges_are_read_from_prometheus_text() {
        let text = "# TYPE imgate_hub_connections_open gauge\nimgate_hub_connections_open 412\nimgate_upstreams_held 150\nimgate_upstreams_held_other 9\n";
        let gauges = GatewayGauges::parse(text);
        assert_eq!(gauges.hub_connections, Some(412.0));
        assert_eq!(gauges.upstreams_held, Some(150.0));
        assert_eq!(gauges.upstream_sockets, None);
    }

    #[test]
    fn the_section_starts_with_its_heading_and_lists_errors() {
        let mut end = row("after", 50, 60);
        end.counters
            .errors
            .insert("http_503_provider_unavailable".into(), 2);
        let report = SoakReport {
            date: "today".into(),
            commit: "abc1234".into(),
            machine: "2 cores".into(),
            settings: vec!["realtime.grace_s = 2".into()],
            load: vec!["some load".into()],
            rows: vec![row("0", 10, 50), row("2", 50, 600), end],
            settle: Duration::from_secs(5),
            deadline: Duration::from_secs(10),
            misses: Vec::new(),
        };
        let text = render(&report);
        assert!(text.starts_with("## Soak\n"));
        assert!(text.contains("| `http_503_provider_unavailable` | 2 |"));
        assert!(text.contains("| 2 | 50.0 | 600 | 4 |"));
    }
}
