//! Host pushes over two gateway nodes sharing Redis, as a host back end would measure them:
//! `POST /api/v1/hub/users/{userId}` to one online user at a time, through either node, and
//! what reaches each of that user's hub connections.
//!
//! The fan-out users' connections are placed as in [`super::nodes`]
//! ([`super::nodes::node_of`]: every user on both nodes), but each transport stays on the
//! node that negotiated, as without the proxy's routing, so every push travels through Redis
//! to both nodes. Push `seq` goes to the
//! user and through the node [`push_route`] gives it: the users in turn, each user's pushes
//! alternating between the nodes. Its arguments are `[phase, seq, sent]`, `sent` in
//! microseconds since the [`Ledger`]'s epoch (one process sends and receives, so one clock
//! measures both ends).
//!
//! Two phases, each for the round length: **paced**, pushes started at a fixed rate (open
//! loop, at most `push_in_flight` requests outstanding, so a gateway that cannot keep up shows
//! as fewer accepted than offered), for the latency at a known load; and **flat out**,
//! `push_in_flight` requests outstanding all the time, for the most the nodes accept. Each
//! phase counts the 202s, every connection's receipts against what it was owed (the pushes
//! accepted for its user), and the latency from the 202 read (accepted) to the receipt.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::capacity::{self, Server, SETTLE_PATIENCE};
use super::probe::{self, histogram, lock, Latency, Recorder};
use super::Bench;
use crate::api::GatewayApi;
use crate::procfs;

/// The scenario's name in the report.
pub const NAME: &str = "host pushes, two nodes + Redis";

/// The client method the pushes invoke.
pub const TARGET: &str = "benchPush";

/// How long the warm-up may take until a push reaches every connection.
const WARM_UP: Duration = Duration::from_secs(120);

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct Pushes {
    /// Users pushed to.
    pub users: usize,
    /// Hub connections of each.
    pub per_user: usize,
    /// Hub connections each node served once all were open.
    pub hub_connections: Vec<u64>,
    /// Requests outstanding at most.
    pub in_flight: usize,
    /// Pushes started at a fixed rate.
    pub paced: Phase,
    /// Pushes with `in_flight` requests outstanding all the time.
    pub flat_out: Phase,
}

/// One phase of pushes.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Pushes per second asked for; `None` when flat out.
    pub offered: Option<f64>,
    /// Pushes sent.
    pub sent: u64,
    /// Pushes refused or failed, by kind ([`crate::api::ApiError::kind`]).
    pub refused: BTreeMap<String, u64>,
    /// Receipts against what was owed, and their latency.
    pub tally: Tally,
    /// CPU time of both nodes per accepted push, microseconds.
    pub cpu_us_per_push: f64,
    /// CPU time of Redis per accepted push, when it runs on this machine.
    pub redis_cpu_us_per_push: Option<f64>,
}

/// One push as the driver sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push {
    /// The user (index into the bench's users) it is for.
    pub user: usize,
    /// The node (index) it was sent through.
    pub node: usize,
    /// When it was sent, microseconds since the ledger's epoch.
    pub sent_us: u64,
    /// When its 202 was read, if it was accepted.
    pub accepted_us: Option<u64>,
}

/// One push read on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// Its sequence number.
    pub seq: u64,
    /// The send time its arguments carry.
    pub sent_us: u64,
    /// When the connection read it.
    pub received_us: u64,
}

/// Receipts against what was owed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    /// Pushes accepted (202).
    pub accepted: u64,
    /// Deliveries owed: each accepted push once on each connection of its user.
    pub owed: u64,
    /// Owed deliveries that arrived exactly once.
    pub exactly_once: u64,
    /// Owed deliveries that never arrived.
    pub missing: u64,
    /// Copies beyond the first of owed deliveries.
    pub duplicates: u64,
    /// Receipts of pushes the connection was not owed (not accepted, or for another user).
    pub unowed: u64,
    /// Receipts that came after a push that was sent only once they had been accepted,
    /// against the order the gateway promises per user.
    pub out_of_order: u64,
    /// Those of them where both pushes went through the same node.
    pub out_of_order_one_node: u64,
    /// Receipts read before their push's 202, whose latency from accepted counts as 0.
    pub before_accepted: u64,
    /// Owed receipts: latency from the 202 read to the receipt.
    pub accepted_to_received: Latency,
    /// Owed receipts: latency from the send time the push carries to the receipt.
    pub sent_to_received: Latency,
    /// Accepted pushes per second, from the first send to the last 202.
    pub accepted_per_s: f64,
    /// Owed receipts per second, from the first send to the last of them.
    pub deliveries_per_s: f64,
}

/// The user (index) and the node (index) of push `seq`: the users in turn, and each user's
/// pushes alternating between the nodes, so every node takes its share of every user's.
pub fn push_route(seq: u64, users: usize, nodes: usize) -> (usize, usize) {
    let users = users.max(1) as u64;
    let user = seq % users;
    let node = (seq / users + user) % nodes.max(1) as u64;
    (user as usize, node as usize)
}

/// The arguments of push `seq` of `phase`, sent at `sent_us`.
pub fn push_arguments(phase: u32, seq: u64, sent_us: u64) -> String {
    format!("[{phase},{seq},{sent_us}]")
}

/// `(phase, seq, sent_us)` of the push in a hub record: the first three numbers of its
/// `"arguments"`.
pub fn parse_push(record: &str) -> Option<(u32, u64, u64)> {
    let start = record.find("\"arguments\":[")? + "\"arguments\":[".len();
    let mut numbers = record[start..]
        .split([',', ']'])
        .take(3)
        .map(|number| number.trim().parse::<u64>().ok());
    let phase = u32::try_from(numbers.next()??).ok()?;
    Some((phase, numbers.next()??, numbers.next()??))
}

/// Counts the `receipts` of each connection (connection `c` is of user `c / per_user`)
/// against the `pushes` (indexed by sequence number) owed to it.
pub fn tally(pushes: &[Push], receipts: &[Vec<Receipt>], per_user: usize) -> Tally {
    let per_user = per_user.max(1);
    let mut owed_to: Vec<Vec<u64>> = Vec::new();
    let mut tally = Tally::default();
    let mut last_accepted = 0;
    for (seq, push) in pushes.iter().enumerate() {
        if let Some(at) = push.accepted_us {
            if owed_to.len() <= push.user {
                owed_to.resize_with(push.user + 1, Vec::new);
            }
            owed_to[push.user].push(seq as u64);
            tally.accepted += 1;
            last_accepted = last_accepted.max(at);
        }
    }
    let first_sent = pushes.iter().map(|push| push.sent_us).min().unwrap_or(0);
    let (mut from_accepted, mut from_sent) = (histogram(), histogram());
    let mut copies = vec![0u32; pushes.len()];
    let mut last_received = 0;
    for (connection, got) in receipts.iter().enumerate() {
        let user = connection / per_user;
        // The latest send among the receipts read so far, by the node the push went
        // through: a push accepted before another was sent must have come first.
        let mut latest_sent: Vec<u64> = Vec::new();
        for receipt in got {
            let owed = pushes
                .get(receipt.seq as usize)
                .filter(|push| push.user == user)
                .and_then(|push| Some((push.node, push.sent_us, push.accepted_us?)));
            let Some((node, sent_us, accepted_us)) = owed else {
                tally.unowed += 1;
                continue;
            };
            copies[receipt.seq as usize] += 1;
            if latest_sent.len() <= node {
                latest_sent.resize(node + 1, 0);
            }
            if latest_sent.iter().any(|&latest| accepted_us < latest) {
                tally.out_of_order += 1;
                if accepted_us < latest_sent[node] {
                    tally.out_of_order_one_node += 1;
                }
            }
            latest_sent[node] = latest_sent[node].max(sent_us);
            if receipt.received_us < accepted_us {
                tally.before_accepted += 1;
            }
            from_accepted.saturating_record(receipt.received_us.saturating_sub(accepted_us).max(1));
            from_sent.saturating_record(receipt.received_us.saturating_sub(receipt.sent_us).max(1));
            last_received = last_received.max(receipt.received_us);
        }
        for &seq in owed_to.get(user).into_iter().flatten() {
            match std::mem::take(&mut copies[seq as usize]) {
                0 => tally.missing += 1,
                1 => tally.exactly_once += 1,
                n => tally.duplicates += u64::from(n - 1),
            }
            tally.owed += 1;
        }
    }
    let rate = |count: u64, until: u64| {
        let span = until.saturating_sub(first_sent) as f64 / 1e6;
        if span > 0.0 {
            count as f64 / span
        } else {
            0.0
        }
    };
    tally.accepted_per_s = rate(tally.accepted, last_accepted);
    tally.deliveries_per_s = rate(from_sent.len(), last_received);
    tally.accepted_to_received = Latency::of(&from_accepted);
    tally.sent_to_received = Latency::of(&from_sent);
    tally
}

/// The pushes of the current phase and every connection's receipts of them.
pub struct Ledger {
    epoch: Instant,
    phase: AtomicU32,
    per_user: usize,
    /// Indexed by sequence number; the driver appends, the requests' tasks mark 202s.
    pushes: Mutex<Vec<Push>>,
    /// One list per connection, in the order it read them.
    receipts: Vec<Mutex<Vec<Receipt>>>,
    received: AtomicU64,
}

impl Ledger {
    /// A ledger for `connections` connections of `per_user` each, in phase 0, which counts
    /// nothing until [`Self::begin`].
    pub fn new(connections: usize, per_user: usize) -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU32::new(0),
            per_user,
            pushes: Mutex::new(Vec::new()),
            receipts: (0..connections).map(|_| Mutex::new(Vec::new())).collect(),
            received: AtomicU64::new(0),
        }
    }

    /// Microseconds since the epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Starts `phase` afresh.
    pub fn begin(&self, phase: u32) {
        // The phase first: a connection checks it under its own lock, so whatever it records
        // after its list was cleared is of the new phase.
        self.phase.store(phase, Ordering::SeqCst);
        for receipts in &self.receipts {
            lock(receipts).clear();
        }
        lock(&self.pushes).clear();
        self.received.store(0, Ordering::SeqCst);
    }

    /// Records a push to `user` through `node` sent now; its sequence number and send time.
    pub fn send(&self, user: usize, node: usize) -> (u64, u64) {
        let sent_us = self.now_us();
        let mut pushes = lock(&self.pushes);
        pushes.push(Push {
            user,
            node,
            sent_us,
            accepted_us: None,
        });
        ((pushes.len() - 1) as u64, sent_us)
    }

    /// Records that push `seq`'s 202 was read now.
    pub fn accepted(&self, seq: u64) {
        let now = self.now_us();
        if let Some(push) = lock(&self.pushes).get_mut(seq as usize) {
            push.accepted_us = Some(now);
        }
    }

    /// Pushes accepted so far in this phase.
    pub fn accepted_count(&self) -> u64 {
        lock(&self.pushes)
            .iter()
            .filter(|push| push.accepted_us.is_some())
            .count() as u64
    }

    /// Receipts of this phase so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The phase's receipts against what was owed.
    pub fn tally(&self) -> Tally {
        let pushes = lock(&self.pushes).clone();
        let receipts: Vec<Vec<Receipt>> = self.receipts.iter().map(|r| lock(r).clone()).collect();
        tally(&pushes, &receipts, self.per_user)
    }
}

impl Recorder for Ledger {
    fn hub_target(&self) -> &'static str {
        TARGET
    }

    fn record(&self, connection: usize, text: &str) -> Option<u64> {
        let (phase, seq, sent_us) = parse_push(text)?;
        let mut receipts = lock(self.receipts.get(connection)?);
        if phase != self.phase.load(Ordering::SeqCst) {
            return None;
        }
        let received_us = self.now_us();
        receipts.push(Receipt {
            seq,
            sent_us,
            received_us,
        });
        self.received.fetch_add(1, Ordering::Relaxed);
        Some(received_us)
    }
}

/// How a phase sends.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// `count` pushes as fast as `in_flight` allows.
    Count(u64),
    /// Pushes started at this rate per second for the round length.
    Rate(f64),
    /// Pushes as fast as `in_flight` allows for the round length.
    FlatOut,
}

/// Runs the pushes against the bench's two nodes.
pub async fn run(bench: &Bench) -> anyhow::Result<Pushes> {
    let nodes = bench.nodes.len();
    let (users, per_user, keep) = super::nodes::set_up(bench).await?;
    let ledger = Arc::new(Ledger::new(keep, per_user));
    let tracker = TaskTracker::new();
    let mut stops: Vec<Option<CancellationToken>> = vec![None; keep];
    let indices: Vec<usize> = (0..keep).collect();
    println!("[bench] {NAME}: opening {keep} connections of {users} users over {nodes} nodes");
    let server = Server::Nodes { routed: false };
    let opened = capacity::open_into(bench, &server, &indices, &ledger, &tracker, &mut stops).await;
    let measured = match opened {
        Ok(()) => measure(bench, &ledger, users).await,
        Err(err) => Err(err),
    };
    let connections = super::nodes::connections_per_node(bench).await?;
    super::nodes::close(bench, &stops, &tracker).await?;
    let (paced, flat_out) = measured?;
    Ok(Pushes {
        users,
        per_user,
        hub_connections: connections,
        in_flight: bench.config.push_in_flight,
        paced,
        flat_out,
    })
}

/// Warms up until a push reaches every connection, then runs the two phases.
async fn measure(
    bench: &Bench,
    ledger: &Arc<Ledger>,
    users: usize,
) -> anyhow::Result<(Phase, Phase)> {
    let config = &bench.config;
    let mut id = 1;
    let warm_until = Instant::now() + WARM_UP;
    loop {
        let warm = phase(bench, ledger, id, users, Pace::Count(users as u64)).await?;
        id += 1;
        if warm.tally.owed > 0 && warm.tally.exactly_once == warm.tally.owed {
            break;
        }
        if Instant::now() > warm_until {
            bail!(
                "a warm-up push per user reached {} of {} connections ({} of {} pushes accepted)",
                warm.tally.exactly_once,
                warm.tally.owed,
                warm.tally.accepted,
                warm.sent
            );
        }
    }
    let paced = phase(bench, ledger, id, users, Pace::Rate(config.push_rate)).await?;
    println!("[bench]   paced {:.0}/s: {paced:?}", config.push_rate);
    let flat_out = phase(bench, ledger, id + 1, users, Pace::FlatOut).await?;
    println!(
        "[bench]   flat out, {} in flight: {flat_out:?}",
        config.push_in_flight
    );
    Ok((paced, flat_out))
}

/// Sends one phase's pushes to the first `users` users and waits for their receipts.
async fn phase(
    bench: &Bench,
    ledger: &Arc<Ledger>,
    id: u32,
    users: usize,
    pace: Pace,
) -> anyhow::Result<Phase> {
    let config = &bench.config;
    let pids: Vec<u32> = bench.nodes.iter().map(|(_, pid)| *pid).collect();
    let nodes: Vec<GatewayApi> = bench.nodes.iter().map(|(node, _)| node.clone()).collect();
    ledger.begin(id);
    let cpu = capacity::cpu_time(&pids).await?;
    let redis_cpu = match config.redis_pid {
        Some(pid) => Some(procfs::cpu_time(pid).await?),
        None => None,
    };
    let in_flight = Arc::new(Semaphore::new(config.push_in_flight.max(1)));
    let refused: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let requests = TaskTracker::new();
    let start = tokio::time::Instant::now();
    let end = start + config.round;
    let mut at = start;
    let mut sent = 0u64;
    loop {
        match pace {
            Pace::Count(count) if sent >= count => break,
            Pace::Rate(rate) => {
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at).await;
                at += Duration::from_secs_f64(1.0 / rate.max(0.001));
            }
            Pace::FlatOut if tokio::time::Instant::now() >= end => break,
            _ => {}
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (user, node) = push_route(sent, users, nodes.len());
        let (seq, sent_us) = ledger.send(user, node);
        sent += 1;
        let (ledger, refused, node) = (ledger.clone(), refused.clone(), nodes[node].clone());
        let user_id = bench.users[user].clone();
        requests.spawn(async move {
            let arguments = push_arguments(id, seq, sent_us);
            match node.push_to_user(&user_id, TARGET, &arguments).await {
                Ok(()) => ledger.accepted(seq),
                Err(err) => *lock(&refused).entry(err.kind()).or_default() += 1,
            }
            drop(permit);
        });
    }
    requests.close();
    requests.wait().await;
    let owed = ledger.accepted_count() * ledger.per_user as u64;
    let patience = match pace {
        Pace::Count(_) => Duration::from_secs(1),
        _ => SETTLE_PATIENCE,
    };
    probe::settle(|| ledger.received(), owed, patience).await;
    let tally = ledger.tally();
    let cpu = capacity::cpu_time(&pids).await? - cpu;
    let redis_cpu = match (config.redis_pid, redis_cpu) {
        (Some(pid), Some(before)) => Some(procfs::cpu_time(pid).await? - before),
        _ => None,
    };
    let per_push = |cpu: Duration| cpu.as_secs_f64() * 1e6 / tally.accepted.max(1) as f64;
    let refused = std::mem::take(&mut *lock(&refused));
    Ok(Phase {
        offered: match pace {
            Pace::Rate(rate) => Some(rate),
            Pace::Count(_) | Pace::FlatOut => None,
        },
        sent,
        refused,
        tally,
        cpu_us_per_push: per_push(cpu),
        redis_cpu_us_per_push: redis_cpu.map(per_push),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(user: usize, sent_us: u64, accepted_us: Option<u64>) -> Push {
        Push {
            user,
            node: 0,
            sent_us,
            accepted_us,
        }
    }

    fn receipt(seq: u64, sent_us: u64, received_us: u64) -> Receipt {
        Receipt {
            seq,
            sent_us,
            received_us,
        }
    }

    #[test]
    fn pushes_take_the_users_in_turn_and_each_users_alternate_between_the_nodes() {
        let (users, nodes) = (40, 2);
        let mut per_node = [0; 2];
        let mut last_node: Vec<Option<usize>> = vec![None; users];
        for seq in 0..400 {
            let (user, node) = push_route(seq, users, nodes);
            assert_eq!(user, seq as usize % users);
            if let Some(last) = last_node[user] {
                assert_ne!(
                    last, node,
                    "user {user} got two pushes in a row through one node"
                );
            }
            last_node[user] = Some(node);
            per_node[node] += 1;
        }
        assert_eq!(per_node, [200, 200]);
        // An odd number of users too.
        let nodes_of_user_0: Vec<usize> = (0..3).map(|r| push_route(r * 3, 3, 2).1).collect();
        assert_eq!(nodes_of_user_0, [0, 1, 0]);
    }

    #[test]
    fn arguments_are_found_in_the_hub_record() {
        let record = format!(
            r#"{{"type":1,"target":"{TARGET}","arguments":{}}}"#,
            push_arguments(3, 41, 123_456)
        );
        let mut found = Vec::new();
        crate::signalr::Payload::Text(format!("{record}\u{1e}").into())
            .each_invocation(TARGET, |record| found.push(parse_push(record)));
        assert_eq!(found, vec![Some((3, 41, 123_456))]);
        assert_eq!(
            parse_push(r#"{"type":1,"target":"x","arguments":[ 1, 2 ,3, "more"]}"#),
            Some((1, 2, 3))
        );
        assert_eq!(parse_push(r#"{"arguments":[1,2]}"#), None);
        assert_eq!(parse_push(r#"{"arguments":["a",2,3]}"#), None);
        assert_eq!(parse_push(r#"{"arguments":[99999999999,2,3]}"#), None);
        assert_eq!(parse_push(r#"{"type":6}"#), None);
    }

    #[test]
    fn owed_deliveries_are_counted_exactly_once_missing_or_duplicated() {
        // Two users with two connections each; push 2 was refused.
        let pushes = [
            push(0, 100, Some(1_100)),
            push(1, 200, Some(1_200)),
            push(0, 300, None),
            push(0, 400, Some(1_400)),
        ];
        let receipts = [
            // Connection 0 (user 0): both owed pushes, the second twice.
            vec![
                receipt(0, 100, 2_100),
                receipt(3, 400, 2_400),
                receipt(3, 400, 2_500),
            ],
            // Connection 1 (user 0): push 3 missing, and the refused push 2 delivered anyway.
            vec![receipt(0, 100, 3_100), receipt(2, 300, 3_300)],
            // Connection 2 (user 1): its push, read before its 202, and user 0's push 0 by
            // mistake.
            vec![receipt(1, 200, 1_150), receipt(0, 100, 1_800)],
            // Connection 3 (user 1): nothing.
            vec![],
        ];
        let tally = tally(&pushes, &receipts, 2);
        assert_eq!(tally.accepted, 3);
        // Pushes 0 and 3 to user 0's two connections, push 1 to user 1's two.
        assert_eq!(tally.owed, 6);
        assert_eq!(tally.exactly_once, 3);
        assert_eq!(tally.missing, 2);
        assert_eq!(tally.duplicates, 1);
        assert_eq!(tally.unowed, 2);
        assert_eq!(tally.out_of_order, 0);
        // Connection 2 read push 1 before its 202 was read.
        assert_eq!(tally.before_accepted, 1);
        assert_eq!(tally.accepted_to_received.count, 5);
        assert_eq!(tally.sent_to_received.count, 5);
        // From the first send (100) to the last 202 (1 400): 3 in 1.3 ms.
        assert!((tally.accepted_per_s - 3.0 / 0.0013).abs() < 1.0);
    }

    #[test]
    fn latency_runs_from_the_202_and_is_zero_when_the_receipt_came_first() {
        let pushes = [push(0, 0, Some(1_000)), push(0, 10, Some(1_010))];
        let receipts = [vec![receipt(0, 0, 3_000), receipt(1, 10, 500)]];
        let tally = tally(&pushes, &receipts, 1);
        assert_eq!(tally.exactly_once, 2);
        assert_eq!(tally.before_accepted, 1);
        // 2 000 us, and 1 us for the receipt read before its 202.
        assert!((2_000..=2_002).contains(&tally.accepted_to_received.max_us));
        assert!(tally.accepted_to_received.p50_us <= 1);
        // The send times carried: 3 000 and 490 us.
        assert!(tally.sent_to_received.max_us >= 3_000);
    }

    #[test]
    fn a_push_accepted_before_another_was_sent_must_arrive_first() {
        // Push 1 was sent (5 000) after push 0's 202 (2 000): push 0 must come first.
        let pushes = [push(0, 1_000, Some(2_000)), push(0, 5_000, Some(6_000))];
        let in_order = [vec![receipt(0, 1_000, 3_000), receipt(1, 5_000, 7_000)]];
        assert_eq!(tally(&pushes, &in_order, 1).out_of_order, 0);
        let swapped = [vec![receipt(1, 5_000, 7_000), receipt(0, 1_000, 7_100)]];
        assert_eq!(tally(&pushes, &swapped, 1).out_of_order, 1);
        // Overlapping requests may be accepted in either order.
        let overlapping = [push(0, 1_000, Some(6_000)), push(0, 2_000, Some(5_000))];
        let either = [vec![receipt(1, 2_000, 7_000), receipt(0, 1_000, 7_100)]];
        assert_eq!(tally(&overlapping, &either, 1).out_of_order, 0);
        // Through one node, and through two.
        let tally_of = |node_of_second| {
            let pushes = [
                pushes[0],
                Push {
                    node: node_of_second,
                    ..pushes[1]
                },
            ];
            let tally = tally(&pushes, &swapped, 1);
            (tally.out_of_order, tally.out_of_order_one_node)
        };
        assert_eq!(tally_of(0), (1, 1));
        assert_eq!(tally_of(1), (1, 0));
    }

    #[test]
    fn the_ledger_counts_only_its_phase_and_starts_afresh() {
        let ledger = Ledger::new(2, 2);
        ledger.begin(1);
        let (seq, sent) = ledger.send(0, 1);
        ledger.accepted(seq);
        let record = |phase| {
            format!(
                r#"{{"type":1,"target":"{TARGET}","arguments":{}}}"#,
                push_arguments(phase, seq, sent)
            )
        };
        assert!(ledger.record(0, &record(1)).is_some());
        assert!(ledger.record(1, &record(1)).is_some());
        assert!(ledger.record(1, &record(0)).is_none());
        assert!(ledger.record(2, &record(1)).is_none());
        assert_eq!(ledger.received(), 2);
        let tally = ledger.tally();
        assert_eq!((tally.owed, tally.exactly_once), (2, 2));
        ledger.begin(2);
        assert_eq!((ledger.received(), ledger.accepted_count()), (0, 0));
        assert_eq!(ledger.tally().owed, 0);
    }
}
