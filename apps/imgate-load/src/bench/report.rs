//! The bench's figures as lines of text: printed as each scenario ends, and appended to a
//! Markdown document under a heading naming the run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::capacity::{Fanout, Idle, Round};
use super::churn::Churn;
use super::ms;
use super::rest::Overhead;

/// Where a run was measured.
pub struct RunInfo {
    /// `make bench` or `make bench-full`, or what the caller says.
    pub label: String,
    /// When it started.
    pub date: String,
    /// The commit measured.
    pub commit: String,
    /// Cores and memory.
    pub machine: String,
}

/// The idle line of one server.
pub fn idle(name: &str, idle: &Idle, held: Duration, load: f64) -> String {
    let per_user = idle
        .kib_per_user
        .map(|kib| format!(", {kib:.1} KiB per online user (hub connection + upstream)"))
        .unwrap_or_default();
    format!(
        "idle {name}: {} connections held {} s: {:.1} KiB RSS per {}connection{per_user}; \
         RSS {:.0} MiB; CPU at idle {:.1} % of a core; load {load:.2}",
        idle.connections,
        held.as_secs(),
        idle.kib_per_connection,
        if idle.kib_per_user.is_some() {
            "further "
        } else {
            ""
        },
        idle.rss_mib,
        idle.idle_cpu * 100.0,
    )
}

fn round(round: &Round) -> String {
    let split = round
        .split
        .map(|split| {
            let moved = if split.exact {
                String::new()
            } else {
                format!(
                    "; upstreams moved between the nodes, {} + {} held after the round, so the \
                     split is by the first holder",
                    split.held_after[0], split.held_after[1]
                )
            };
            format!(
                " (negotiated on the upstream's node: p99 {} ms of {}; negotiated on the other \
                 node and routed: p50 {} ms, p99 {} ms of {}{moved})",
                ms(split.holder.p99_us),
                split.holder.count,
                ms(split.other.p50_us),
                ms(split.other.p99_us),
                split.other.count,
            )
        })
        .unwrap_or_default();
    let redis = round
        .redis_cpu_us_per_delivery
        .map(|us| format!(" + {us:.1} us Redis"))
        .unwrap_or_default();
    format!(
        "{:.0} deliveries/s ({} of {}), p50 {} ms, p99 {} ms, p999 {} ms{split}, {:.1} us CPU \
         per delivery{}{redis}",
        round.achieved,
        round.delivered,
        round.owed,
        ms(round.latency.p50_us),
        ms(round.latency.p99_us),
        ms(round.latency.p999_us),
        round.cpu_us_per_delivery,
        if round.split.is_some() {
            " (nodes together)"
        } else {
            ""
        },
    )
}

/// The fan-out line of one server.
pub fn fanout(name: &str, fanout: &Fanout, bound: Duration, load: f64) -> String {
    let best = fanout
        .best
        .as_ref()
        .map(round)
        .unwrap_or_else(|| "none".into());
    let broke = fanout
        .broke
        .as_ref()
        .map(|r| format!("; broke at {:.0}/s offered: {}", r.offered, round(r)))
        .unwrap_or_default();
    let held = if fanout.upstreams_held.is_empty() {
        String::new()
    } else {
        let counts: Vec<String> = fanout
            .upstreams_held
            .iter()
            .map(ToString::to_string)
            .collect();
        let connections: Vec<String> = fanout
            .hub_connections
            .iter()
            .map(ToString::to_string)
            .collect();
        format!(
            " spread over {} nodes (upstreams held {}, hub connections {})",
            counts.len(),
            counts.join(" + "),
            connections.join(" + ")
        )
    };
    format!(
        "fan-out {name}: {} connections{held}; peak {:.0} deliveries/s; fixed {:.0}/s: {}; \
         highest sustained (p99 <= {} ms): {best}{broke}; load {load:.2}",
        fanout.connections,
        fanout.peak,
        fanout.fixed.offered,
        round(&fanout.fixed),
        bound.as_millis(),
    )
}

/// The ratio line of the gateway's highest sustained and peak rates to the others'.
pub fn ratios(gateway: &Fanout, others: &[(&str, &Fanout)]) -> String {
    let best = |f: &Fanout| f.best.map_or(0.0, |r| r.achieved);
    let ratio = |ours: f64, theirs: f64| {
        if theirs > 0.0 {
            format!("{:.2}", ours / theirs)
        } else {
            "-".into()
        }
    };
    let parts: Vec<String> = others
        .iter()
        .map(|(name, other)| {
            format!(
                "gateway/{name} {} sustained, {} peak",
                ratio(best(gateway), best(other)),
                ratio(gateway.peak, other.peak)
            )
        })
        .collect();
    format!("fan-out ratios: {}", parts.join("; "))
}

/// The REST line.
pub fn rest(overheads: &[Overhead], in_flight: usize, load: f64) -> String {
    let parts: Vec<String> = overheads
        .iter()
        .map(|o| {
            format!(
                "{}: p50 {} ms vs {} ms direct (+{} ms), p99 {} vs {} ms (+{} ms), \
                 {:.0}/s vs {:.0}/s with {in_flight} in flight ({:.2} of direct)",
                o.name,
                ms(o.gateway.p50_us),
                ms(o.direct.p50_us),
                ms(o.gateway.p50_us.saturating_sub(o.direct.p50_us)),
                ms(o.gateway.p99_us),
                ms(o.direct.p99_us),
                ms(o.gateway.p99_us.saturating_sub(o.direct.p99_us)),
                o.gateway.per_s,
                o.direct.per_s,
                o.gateway.per_s / o.direct.per_s.max(f64::MIN_POSITIVE),
            )
        })
        .collect();
    format!("rest: {}; load {load:.2}", parts.join("; "))
}

/// The churn line.
pub fn churn(churn: &Churn, load: f64) -> String {
    let rate = |d: Duration| churn.users as f64 / d.as_secs_f64().max(0.001);
    format!(
        "login churn: {} users online in {:.2} s ({:.0} users/s, cache miss to first live event), \
         offline in {:.2} s ({:.0} users/s, upstreams closed, grace period not counted); load {load:.2}",
        churn.users,
        churn.online.as_secs_f64(),
        rate(churn.online),
        churn.offline.as_secs_f64(),
        rate(churn.offline),
    )
}

/// Appends the run's lines to the document at `path` (created when missing).
pub async fn append(path: &Path, run: &RunInfo, lines: &[String]) -> anyhow::Result<()> {
    let mut doc = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".into(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    doc.push_str(&section(run, lines));
    tokio::fs::write(path, doc)
        .await
        .with_context(|| format!("writing {}", path.display()))
}

fn section(run: &RunInfo, lines: &[String]) -> String {
    let mut text = format!(
        "\n### {}, {}, commit {}, {}\n\n",
        run.label, run.date, run.commit, run.machine
    );
    for line in lines {
        text.push_str(&format!("- {line}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::capacity::Split;
    use super::super::probe::Latency;
    use super::*;

    fn latency(p50_ms: u64, p99_ms: u64, count: u64) -> Latency {
        Latency {
            count,
            p50_us: p50_ms * 1000,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000,
            max_us: p99_ms * 1000,
        }
    }

    fn fanout(split: Option<Split>, redis: Option<f64>, held: Vec<u64>) -> Fanout {
        let fixed = Round {
            offered: 1000.0,
            achieved: 900.0,
            owed: 5000,
            delivered: 5000,
            latency: latency(3, 9, 5000),
            cpu_us_per_delivery: 12.5,
            redis_cpu_us_per_delivery: redis,
            split,
        };
        Fanout {
            connections: 200,
            fixed,
            best: None,
            broke: None,
            peak: 900.0,
            hub_connections: held.iter().map(|h| h * 5).collect(),
            upstreams_held: held,
        }
    }

    #[test]
    fn a_single_servers_line_is_as_before() {
        let line = super::fanout(
            "gateway",
            &fanout(None, None, Vec::new()),
            Duration::from_millis(50),
            1.0,
        );
        assert_eq!(
            line,
            "fan-out gateway: 200 connections; peak 900 deliveries/s; fixed 1000/s: 900 \
             deliveries/s (5000 of 5000), p50 3.00 ms, p99 9.00 ms, p999 9.00 ms, 12.5 us CPU \
             per delivery; highest sustained (p99 <= 50 ms): none; load 1.00"
        );
    }

    #[test]
    fn the_nodes_line_tells_routed_latency_redis_cpu_upstreams_and_connections_apart() {
        let split = Split {
            holder: latency(2, 7, 3000),
            other: latency(4, 11, 2000),
            held_after: [20, 20],
            exact: true,
        };
        let line = super::fanout(
            "gateway on two nodes + Redis",
            &fanout(Some(split), Some(1.5), vec![20, 20]),
            Duration::from_millis(50),
            1.0,
        );
        assert!(
            line.starts_with(
                "fan-out gateway on two nodes + Redis: 200 connections spread over 2 nodes \
                 (upstreams held 20 + 20, hub connections 100 + 100); peak 900 deliveries/s;"
            ),
            "{line}"
        );
        assert!(
            line.contains(
                "p99 9.00 ms, p999 9.00 ms (negotiated on the upstream's node: p99 7.00 ms of \
                 3000; negotiated on the other node and routed: p50 4.00 ms, p99 11.00 ms of \
                 2000), 12.5 us CPU per delivery \
                 (nodes together) + 1.5 us Redis;"
            ),
            "{line}"
        );
        let moved = Split {
            exact: false,
            held_after: [31, 9],
            ..split
        };
        let line = super::fanout(
            "gateway on two nodes + Redis",
            &fanout(Some(moved), None, vec![31, 9]),
            Duration::from_millis(50),
            1.0,
        );
        assert!(
            line.contains(
                "of 2000; upstreams moved between the nodes, 31 + 9 held after the round, so the \
                 split is by the first holder), 12.5 us CPU per delivery (nodes together);"
            ),
            "{line}"
        );
    }
}
