//! The bench's figures as lines of text: printed as each scenario ends, and appended to a
//! Markdown document under a heading naming the run.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::capacity::{Fanout, Idle, Round};
use super::churn::Churn;
use super::ms;
use super::msgpack::Compared;
use super::pushes::{self, Phase, Pushes};
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
        format!(
            " spread over {} nodes (upstreams held {}, hub connections {})",
            fanout.upstreams_held.len(),
            per_node(&fanout.upstreams_held),
            per_node(&fanout.hub_connections)
        )
    };
    format!(
        "fan-out {name}: {} connections{held}; peak {:.0} deliveries/s; fixed {:.0}/s: {}; \
         highest sustained (p99 <= {} ms): {best}{broke}; load {load:.2}",
        fanout.connections,
        fanout.peak.achieved,
        fanout.fixed.offered,
        round(&fanout.fixed),
        bound.as_millis(),
    )
}

/// Counts of each node, `a + b`.
fn per_node(counts: &[u64]) -> String {
    let counts: Vec<String> = counts.iter().map(ToString::to_string).collect();
    counts.join(" + ")
}

/// The ratio line of the gateway's highest sustained and peak rates to the others'.
pub fn ratios(gateway: &Fanout, others: &[(&str, &Fanout)]) -> String {
    let best = |f: &Fanout| f.best.map_or(0.0, |r| r.achieved);
    let parts: Vec<String> = others
        .iter()
        .map(|(name, other)| {
            format!(
                "gateway/{name} {} sustained, {} peak",
                ratio(best(gateway), best(other)),
                ratio(gateway.peak.achieved, other.peak.achieved)
            )
        })
        .collect();
    format!("fan-out ratios: {}", parts.join("; "))
}

/// `ours / theirs` with two decimals, `-` when theirs is 0.
fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "-".into()
    }
}

/// The line comparing the gateway's fan-out over MessagePack with JSON: each protocol's
/// deliveries per second, CPU and bytes read per delivery at the fixed rate (latency too) and
/// at the peak, then MessagePack's figures over JSON's.
pub fn msgpack(compared: &Compared, load: f64) -> String {
    let (pack, json) = (&compared.messagepack, &compared.json);
    let fixed = |name: &str, r: &Round| {
        format!(
            "{name} {:.0} deliveries/s ({} of {}), p50 {} ms, p99 {} ms, {:.1} us CPU and {:.0} B \
             per delivery",
            r.achieved,
            r.delivered,
            r.owed,
            ms(r.latency.p50_us),
            ms(r.latency.p99_us),
            r.cpu_us_per_delivery,
            r.bytes_per_delivery,
        )
    };
    let peak = |name: &str, r: &Round| {
        format!(
            "{name} {:.0} deliveries/s ({} of {}), {:.1} us CPU and {:.0} B per delivery",
            r.achieved, r.delivered, r.owed, r.cpu_us_per_delivery, r.bytes_per_delivery,
        )
    };
    format!(
        "fan-out gateway, MessagePack next to JSON ({}): {} connections; fixed {:.0}/s: {}; {}; \
         peak: {}; {}; MessagePack/JSON {} peak, {} CPU and {} bytes per delivery at the fixed \
         rate; load {load:.2}",
        if compared.json_from_capacity {
            "JSON: the capacity scenario's fan-out"
        } else {
            "JSON measured just before"
        },
        pack.connections,
        pack.fixed.offered,
        fixed("MessagePack", &pack.fixed),
        fixed("JSON", &json.fixed),
        peak("MessagePack", &pack.peak),
        peak("JSON", &json.peak),
        ratio(pack.peak.achieved, json.peak.achieved),
        ratio(
            pack.fixed.cpu_us_per_delivery,
            json.fixed.cpu_us_per_delivery
        ),
        ratio(pack.fixed.bytes_per_delivery, json.fixed.bytes_per_delivery),
    )
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

/// `part` of `whole` in per cent, rounded down to three decimals, so that anything short of
/// all never reads as 100 %.
pub fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".into();
    }
    let thousandths = u128::from(part) * 100_000 / u128::from(whole);
    format!("{}.{:03} %", thousandths / 1000, thousandths % 1000)
}

fn push_phase(phase: &Phase) -> String {
    let tally = &phase.tally;
    let refused = if phase.refused.is_empty() {
        String::new()
    } else {
        let kinds: Vec<String> = phase
            .refused
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        format!("; refused: {}", kinds.join(", "))
    };
    let unowed = if tally.unowed > 0 {
        format!(", {} not owed", tally.unowed)
    } else {
        String::new()
    };
    let redis = phase
        .redis_cpu_us_per_push
        .map(|us| format!(" + {us:.1} us Redis"))
        .unwrap_or_default();
    format!(
        "{:.0} pushes/s accepted ({} of {} sent{refused}), {:.0} deliveries/s, {} of {} owed \
         deliveries exactly once ({}; missing {}, duplicates {}, out of order {} across nodes \
         and {} within a node{unowed}), accepted to received p50 {} ms, p99 {} ms ({} read \
         before the 202), sent to received p50 {} ms, p99 {} ms, {:.1} us CPU per push (nodes \
         together){redis}",
        tally.accepted_per_s,
        tally.accepted,
        phase.sent,
        tally.deliveries_per_s,
        tally.exactly_once,
        tally.owed,
        share(tally.exactly_once, tally.owed),
        tally.missing,
        tally.duplicates,
        tally.out_of_order - tally.out_of_order_one_node,
        tally.out_of_order_one_node,
        ms(tally.accepted_to_received.p50_us),
        ms(tally.accepted_to_received.p99_us),
        share(tally.before_accepted, tally.accepted_to_received.count),
        ms(tally.sent_to_received.p50_us),
        ms(tally.sent_to_received.p99_us),
        phase.cpu_us_per_push,
    )
}

/// The host pushes line.
pub fn pushes(pushes: &Pushes, load: f64) -> String {
    let offered = pushes.paced.offered.unwrap_or(0.0);
    format!(
        "{}: {} users with {} hub connections each, every user on both nodes (hub connections \
         {}), one push per request to one user through either node; paced {offered:.0}/s \
         offered: {}; flat out, {} in flight: {}; load {load:.2}",
        pushes::NAME,
        pushes.users,
        pushes.per_user,
        per_node(&pushes.hub_connections),
        push_phase(&pushes.paced),
        pushes.in_flight,
        push_phase(&pushes.flat_out),
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
            bytes_per_delivery: 240.0,
            split,
        };
        Fanout {
            connections: 200,
            fixed,
            best: None,
            broke: None,
            peak: fixed,
            hub_connections: held.iter().map(|h| h * 5).collect(),
            upstreams_held: held,
        }
    }

    #[test]
    fn shares_never_round_up_to_all() {
        assert_eq!(share(5000, 5000), "100.000 %");
        assert_eq!(share(999_999, 1_000_000), "99.999 %");
        assert_eq!(share(1, 3), "33.333 %");
        assert_eq!(share(0, 7), "0.000 %");
        assert_eq!(share(0, 0), "-");
    }

    #[test]
    fn the_pushes_line_names_both_phases_counts_and_latencies() {
        use super::super::pushes::Tally;
        let tally = Tally {
            accepted: 1000,
            owed: 5000,
            exactly_once: 4998,
            missing: 1,
            duplicates: 1,
            unowed: 0,
            out_of_order: 7,
            out_of_order_one_node: 1,
            before_accepted: 50,
            accepted_to_received: latency(1, 4, 5000),
            sent_to_received: latency(2, 6, 5000),
            accepted_per_s: 1000.0,
            deliveries_per_s: 4999.0,
        };
        let paced = Phase {
            offered: Some(1000.0),
            sent: 1000,
            refused: Default::default(),
            tally,
            cpu_us_per_push: 40.0,
            redis_cpu_us_per_push: Some(2.5),
        };
        let flat_out = Phase {
            offered: None,
            sent: 1002,
            refused: [("transport_timeout".to_owned(), 2)].into(),
            tally: Tally { unowed: 3, ..tally },
            redis_cpu_us_per_push: None,
            ..paced.clone()
        };
        let line = super::pushes(
            &Pushes {
                users: 40,
                per_user: 5,
                hub_connections: vec![100, 100],
                in_flight: 64,
                paced,
                flat_out,
            },
            1.0,
        );
        assert_eq!(
            line,
            "host pushes, two nodes + Redis: 40 users with 5 hub connections each, every user on \
             both nodes (hub connections 100 + 100), one push per request to one user through \
             either node; paced 1000/s offered: 1000 pushes/s accepted (1000 of 1000 sent), 4999 \
             deliveries/s, 4998 of 5000 owed deliveries exactly once (99.960 %; missing 1, \
             duplicates 1, out of order 6 across nodes and 1 within a node), accepted to \
             received p50 1.00 ms, p99 4.00 ms (1.000 % read before the 202), sent to received \
             p50 2.00 ms, p99 6.00 ms, 40.0 us CPU per push (nodes together) + 2.5 us Redis; \
             flat out, 64 in flight: 1000 pushes/s accepted (1000 of 1002 sent; refused: \
             transport_timeout 2), 4999 deliveries/s, 4998 of 5000 owed deliveries exactly once \
             (99.960 %; missing 1, duplicates 1, out of order 6 across nodes and 1 within a node, \
             3 not owed), accepted to received p50 1.00 ms, p99 4.00 ms (1.000 % read before \
             the 202), sent to received p50 2.00 ms, p99 6.00 ms, 40.0 us CPU per push (nodes \
             together); load 1.00"
        );
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
    fn the_messagepack_line_puts_both_protocols_side_by_side() {
        let json = fanout(None, None, Vec::new());
        let mut messagepack = json.clone();
        messagepack.fixed.cpu_us_per_delivery = 10.0;
        messagepack.fixed.bytes_per_delivery = 180.0;
        messagepack.peak.achieved = 990.0;
        let compared = Compared {
            messagepack,
            json,
            json_from_capacity: true,
        };
        assert_eq!(
            super::msgpack(&compared, 1.0),
            "fan-out gateway, MessagePack next to JSON (JSON: the capacity scenario's fan-out): \
             200 connections; fixed 1000/s: MessagePack 900 deliveries/s (5000 of 5000), p50 \
             3.00 ms, p99 9.00 ms, 10.0 us CPU and 180 B per delivery; JSON 900 deliveries/s \
             (5000 of 5000), p50 3.00 ms, p99 9.00 ms, 12.5 us CPU and 240 B per delivery; \
             peak: MessagePack 990 deliveries/s (5000 of 5000), 12.5 us CPU and 240 B per \
             delivery; JSON 900 deliveries/s (5000 of 5000), 12.5 us CPU and 240 B per \
             delivery; MessagePack/JSON 1.10 peak, 0.80 CPU and 0.75 bytes per delivery at the \
             fixed rate; load 1.00"
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
