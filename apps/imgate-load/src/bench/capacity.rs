//! Idle capacity and fan-out, per server, on one set of connections: open them, measure the
//! server's memory per connection and its CPU while they idle, keep the fan-out's share and
//! publish events at rising rates until the p99 bound breaks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use super::clients::{self, open_many, Publisher, Receiver};
use super::probe::{Latency, Probe, Recorder};
use super::{Bench, SET_UP_CONCURRENCY};
use crate::procfs;
use crate::signalr::{HubClient, HubProtocol};
use crate::ws;

/// Budget for opening one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a round's deliveries may keep everyone waiting after the last one arrived.
pub(crate) const SETTLE_PATIENCE: Duration = Duration::from_secs(3);
/// The first rate tried for the highest sustained one is the fixed rate over this; each
/// next one is [`LADDER_STEP`] times faster.
const LADDER_START_BELOW_FIXED: f64 = 15.0;
const LADDER_STEP: f64 = 1.5;
/// Rounds tried at most for the highest sustained rate.
const LADDER_ROUNDS: usize = 10;
/// The last round offers this many times the fixed rate, more than any of the servers
/// delivers here, so its achieved rate is the server's peak. Last, because a server may cut
/// off connections that fall behind.
const SATURATION_OVER_FIXED: f64 = 4.0;

/// The server measured.
#[derive(Debug, Clone)]
pub enum Server {
    /// The gateway's hub, its connections speaking the protocol given.
    Gateway(HubProtocol),
    /// The limit server.
    Limit(Url),
    /// The Socket.IO peer.
    SocketIo(Url),
    /// The gateway nodes of the bench sharing Redis, each connection negotiating on the node
    /// [`super::nodes::node_of`] picks. `routed`: its transport goes where nginx's map would
    /// send it (to the node the connection id names), else to the node that negotiated, as
    /// without the proxy's routing.
    Nodes {
        /// Whether transports follow the connection id's route.
        routed: bool,
    },
}

impl Server {
    /// Its name in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gateway(HubProtocol::Json) => "gateway",
            Self::Gateway(HubProtocol::MessagePack) => "gateway over MessagePack",
            Self::Limit(_) => "limit",
            Self::SocketIo(_) => "socket.io",
            Self::Nodes { .. } => super::nodes::NAME,
        }
    }
}

/// What the idle part measured.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Connections held.
    pub connections: usize,
    /// Server RSS growth per connection, KiB (for the gateway: per connection beyond each
    /// user's first).
    pub kib_per_connection: f64,
    /// Gateway RSS growth per online user (first connection and upstream), KiB.
    pub kib_per_user: Option<f64>,
    /// Server CPU while the connections idled, share of one core.
    pub idle_cpu: f64,
    /// Server RSS with every connection open, MiB.
    pub rss_mib: f64,
}

/// One fan-out round.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Deliveries per second asked for.
    pub offered: f64,
    /// Deliveries per second achieved, from the round's start to its last delivery.
    pub achieved: f64,
    /// Deliveries owed: events sent times connections.
    pub owed: u64,
    /// Deliveries made.
    pub delivered: u64,
    /// Their latency, event sent to delivery read.
    pub latency: Latency,
    /// CPU time the server spent per delivery, microseconds: unlike rates and latencies,
    /// hardly changed by other work on the machine. For several nodes, all of theirs.
    pub cpu_us_per_delivery: f64,
    /// CPU time Redis spent per delivery, microseconds, when the nodes share one on this
    /// machine.
    pub redis_cpu_us_per_delivery: Option<f64>,
    /// WebSocket payload bytes the driver read per delivery: every message the connections
    /// read during the round (events, the other records that come with them, pings) over
    /// the deliveries.
    pub bytes_per_delivery: f64,
    /// For several nodes: the latency on the node holding the user's upstream and on the
    /// other one.
    pub split: Option<Split>,
}

/// The latency of deliveries by where the connection is, relative to its user's upstream.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// Connections on the node that holds their user's upstream.
    pub holder: Latency,
    /// Connections on another node: the cross-node deliveries.
    pub other: Latency,
    /// Upstreams each node held after the round.
    pub held_after: [u64; 2],
    /// Each node held the upstreams of exactly the users whose first connection it got, before
    /// and after the round: no upstream moved, so the split is by the actual holder.
    pub exact: bool,
}

/// What a round measures: the connections owed each event and the processes whose CPU
/// counts.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Connections receiving every event.
    pub connections: u64,
    /// The server's processes (one, or one per node).
    pub pids: Vec<u32>,
    /// The Redis process the nodes share, if it is on this machine.
    pub redis_pid: Option<u32>,
    /// For a [`Split`]: the upstreams each of the bench's two nodes holds while no upstream
    /// has moved; the probe's class 1 is the connections on a node without their user's
    /// upstream.
    pub split: Option<[u64; 2]>,
}

impl Round {
    /// Everything owed arrived within the p99 bound.
    pub fn sustained(&self, bound: Duration) -> bool {
        self.delivered >= self.owed
            && self.latency.p99_us <= bound.as_micros() as u64
            && self.achieved >= 0.9 * self.offered
    }
}

/// What the fan-out measured.
#[derive(Debug, Clone)]
pub struct Fanout {
    /// Connections receiving every event.
    pub connections: usize,
    /// The round at the fixed rate.
    pub fixed: Round,
    /// The fastest round that was sustained, if any.
    pub best: Option<Round>,
    /// The first round that was not.
    pub broke: Option<Round>,
    /// The round that achieved the most deliveries per second, whatever its latency.
    pub peak: Round,
    /// For several nodes: the upstreams each held after the last round.
    pub upstreams_held: Vec<u64>,
    /// For several nodes: the hub connections each served once all were open.
    pub hub_connections: Vec<u64>,
}

/// Runs idle capacity and fan-out against `server` (with process `pid`).
pub async fn run(bench: &Bench, server: &Server, pid: u32) -> anyhow::Result<(Idle, Fanout)> {
    let config = &bench.config;
    let probe = Arc::new(Probe::new());
    let tracker = TaskTracker::new();
    let mut stops: Vec<Option<CancellationToken>> = vec![None; config.connections];
    let per_user = config.connections / config.users;
    let name = server.name();

    let rss0 = rss_kib(pid).await?;
    // For the gateway each user's first connection comes first, so what an online user costs
    // (upstream included) and what a further connection costs are measured apart.
    let (first, rest): (Vec<usize>, Vec<usize>) = match server {
        Server::Gateway(_) => (0..config.connections).partition(|i| i % per_user == 0),
        _ => ((0..config.connections).collect(), Vec::new()),
    };
    println!("[bench] {name}: opening {} connections", config.connections);
    open_into(bench, server, &first, &probe, &tracker, &mut stops).await?;
    let (mut kib_per_user, mut rss_base) = (None, rss0);
    if !rest.is_empty() {
        bench
            .await_upstreams(config.users as u64, Duration::from_secs(300))
            .await?;
        rss_base = rss_kib(pid).await?;
        kib_per_user = Some((rss_base - rss0) / config.users as f64);
        open_into(bench, server, &rest, &probe, &tracker, &mut stops).await?;
    }
    println!(
        "[bench] {name}: holding them idle for {} s",
        config.hold.as_secs()
    );
    let cpu0 = procfs::cpu_time(pid).await?;
    let held_at = Instant::now();
    tokio::time::sleep(config.hold).await;
    let idle_cpu =
        (procfs::cpu_time(pid).await? - cpu0).as_secs_f64() / held_at.elapsed().as_secs_f64();
    let rss_held = rss_kib(pid).await?;
    let grown = if rest.is_empty() {
        first.len()
    } else {
        rest.len()
    };
    let idle = Idle {
        connections: config.connections,
        kib_per_connection: (rss_held - rss_base) / grown.max(1) as f64,
        kib_per_user,
        idle_cpu,
        rss_mib: rss_held / 1024.0,
    };

    let keep = config.fanout_kept();
    for stop in stops.iter().skip(keep).flatten() {
        stop.cancel();
    }
    let publisher = publisher(bench, server).await?;
    let measured = Measured {
        connections: keep as u64,
        pids: vec![pid],
        redis_pid: None,
        split: None,
    };
    let fanout = fan_out(bench, &probe, &publisher, &measured, true).await;
    for stop in stops.iter().flatten() {
        stop.cancel();
    }
    drop(publisher);
    tracker.close();
    tracker.wait().await;
    Ok((idle, fanout?))
}

async fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let sample = procfs::sample(pid)
        .await
        .with_context(|| format!("sampling process {pid}"))?;
    Ok(sample.rss_kib as f64)
}

/// Opens connections `indices` to `server`, each reading into `probe` until its stop.
pub(crate) async fn open_into<R: Recorder>(
    bench: &Bench,
    server: &Server,
    indices: &[usize],
    probe: &Arc<R>,
    tracker: &TaskTracker,
    stops: &mut [Option<CancellationToken>],
) -> anyhow::Result<()> {
    let per_user = bench.config.connections / bench.config.users;
    let tokens: Vec<String> = match server {
        Server::Gateway(_) | Server::Nodes { .. } => bench
            .users
            .iter()
            .map(|user| bench.api.token(user))
            .collect(),
        _ => Vec::new(),
    };
    // The nodes' routes, so that connections go where nginx's map would send them.
    let routes: Vec<(String, String)> = match server {
        Server::Nodes { routed: true } => bench
            .nodes
            .iter()
            .enumerate()
            .map(|(n, (node, _))| (super::nodes::route(n), node.base().to_owned()))
            .collect(),
        _ => Vec::new(),
    };
    let open = |i: usize| {
        let source = bench.source(i);
        let token = tokens.get(i / per_user).cloned();
        let base = match server {
            Server::Nodes { .. } => {
                let node = super::nodes::node_of(i / per_user, i % per_user, bench.nodes.len());
                bench.nodes[node].0.base()
            }
            _ => bench.api.base(),
        };
        let routes = &routes;
        async move {
            let protocol = match server {
                Server::Gateway(protocol) => *protocol,
                _ => HubProtocol::Json,
            };
            Ok(match server {
                Server::Gateway(_) | Server::Nodes { .. } => Receiver::Hub(
                    HubClient::connect_routed(
                        &bench.http,
                        base,
                        routes,
                        &token.unwrap_or_default(),
                        CONNECT_TIMEOUT,
                        source,
                        protocol,
                    )
                    .await?,
                ),
                Server::Limit(url) => Receiver::Plain(ws::open(url, source).await?),
                Server::SocketIo(url) => Receiver::SocketIo(
                    clients::open_socketio(&clients::socketio_url(url), source).await?,
                ),
            })
        }
    };
    let mut opened = Vec::with_capacity(indices.len());
    for chunk in indices.chunks(SET_UP_CONCURRENCY * 16) {
        let range = 0..chunk.len();
        let batch = open_many(range, SET_UP_CONCURRENCY, CONNECT_TIMEOUT, |k| {
            open(chunk[k])
        })
        .await
        .map_err(anyhow::Error::msg)?;
        opened.extend(batch.into_iter().map(|(k, receiver)| (chunk[k], receiver)));
    }
    for (i, receiver) in opened {
        let stop = CancellationToken::new();
        stops[i] = Some(stop.clone());
        tracker.spawn(receiver.run(i, probe.clone(), stop, |_| {}));
    }
    Ok(())
}

pub(crate) async fn publisher(bench: &Bench, server: &Server) -> anyhow::Result<Publisher> {
    Ok(match server {
        Server::Gateway(_) | Server::Nodes { .. } => Publisher::Provider {
            sender: bench.sender.clone(),
            room: bench.fanout_room.clone(),
        },
        Server::Limit(url) => Publisher::on_socket(ws::open(url, None).await?, false),
        Server::SocketIo(url) => Publisher::on_socket(
            clients::open_socketio(&clients::socketio_url(url), None).await?,
            true,
        ),
    })
}

/// Warms up until one event reaches every connection, then runs the fixed rate, the ladder
/// when `ladder` (rising rates for the highest sustained one) and saturation.
pub(crate) async fn fan_out(
    bench: &Bench,
    probe: &Probe,
    publisher: &Publisher,
    measured: &Measured,
    ladder: bool,
) -> anyhow::Result<Fanout> {
    let config = &bench.config;
    let connections = measured.connections;
    let mut round_id = 1;
    let warm_until = Instant::now() + Duration::from_secs(120);
    loop {
        probe.begin(round_id);
        publisher
            .publish(&bench.http, &probe.event(round_id))
            .await
            .context("publishing a warm-up event")?;
        round_id += 1;
        probe.settle(connections, Duration::from_secs(1)).await;
        if probe.delivered() >= connections {
            break;
        }
        if Instant::now() > warm_until {
            bail!(
                "a warm-up event reached {} of {connections} connections",
                probe.delivered()
            );
        }
    }
    let fixed = round(
        bench,
        probe,
        publisher,
        round_id,
        measured,
        config.fixed_rate,
    )
    .await?;
    round_id += 1;
    println!("[bench]   fixed {:.0}/s: {:?}", config.fixed_rate, fixed);
    let (mut best, mut broke) = (None, None);
    let mut rate = config.fixed_rate / LADDER_START_BELOW_FIXED;
    let mut retried = false;
    let ladder_rounds = if ladder { LADDER_ROUNDS } else { 0 };
    for _ in 0..ladder_rounds {
        let result = round(bench, probe, publisher, round_id, measured, rate).await?;
        round_id += 1;
        println!("[bench]   ladder {rate:.0}/s: {result:?}");
        if result.sustained(config.p99_bound) {
            best = Some(result);
            rate *= LADDER_STEP;
            retried = false;
        } else if retried {
            broke = Some(result);
            break;
        } else {
            // The cores are shared with whatever else runs: one bad round may be a stall of
            // the machine, two in a row are the server.
            retried = true;
        }
    }
    let rate = config.fixed_rate * SATURATION_OVER_FIXED;
    let saturated = round(bench, probe, publisher, round_id, measured, rate).await?;
    println!("[bench]   saturation {rate:.0}/s: {saturated:?}");
    let peak = [Some(fixed), best, broke, Some(saturated)]
        .into_iter()
        .flatten()
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
        .unwrap_or(saturated);
    Ok(Fanout {
        connections: connections as usize,
        fixed,
        best,
        broke,
        peak,
        upstreams_held: Vec::new(),
        hub_connections: Vec::new(),
    })
}

/// Publishes at `rate` deliveries per second to the connections `measured` for the round's
/// length and waits for them.
async fn round(
    bench: &Bench,
    probe: &Probe,
    publisher: &Publisher,
    id: u32,
    measured: &Measured,
    rate: f64,
) -> anyhow::Result<Round> {
    let connections = measured.connections;
    let held_before = match measured.split {
        Some(_) => Some(nodes_held(bench).await?),
        None => None,
    };
    probe.begin(id);
    let cpu = cpu_time(&measured.pids).await?;
    let redis_cpu = match measured.redis_pid {
        Some(pid) => Some(procfs::cpu_time(pid).await?),
        None => None,
    };
    let every = Duration::from_secs_f64(connections as f64 / rate);
    let start = tokio::time::Instant::now();
    let start_us = probe.now_us();
    let end = start + bench.config.round;
    let mut sent = 0u64;
    let mut at = start;
    while at < end {
        tokio::time::sleep_until(at).await;
        publisher
            .publish(&bench.http, &probe.event(id))
            .await
            .context("publishing an event")?;
        sent += 1;
        at += every;
    }
    let owed = sent * connections;
    probe.settle(owed, SETTLE_PATIENCE).await;
    let delivered = probe.delivered();
    let cpu = cpu_time(&measured.pids).await? - cpu;
    let redis_cpu = match (measured.redis_pid, redis_cpu) {
        (Some(pid), Some(before)) => Some(procfs::cpu_time(pid).await? - before),
        _ => None,
    };
    let per_delivery = |cpu: Duration| cpu.as_secs_f64() * 1e6 / delivered.max(1) as f64;
    let split = match (measured.split, held_before) {
        (Some(expected), Some(before)) => {
            let after = nodes_held(bench).await?;
            Some(Split {
                holder: probe.latency_of(0),
                other: probe.latency_of(1),
                held_after: after,
                exact: before == expected && after == expected,
            })
        }
        _ => None,
    };
    let span = probe.last_delivery().as_secs_f64() - start_us as f64 / 1e6;
    Ok(Round {
        offered: rate,
        achieved: if span > 0.0 {
            delivered as f64 / span
        } else {
            0.0
        },
        owed,
        delivered,
        latency: probe.latency(),
        cpu_us_per_delivery: per_delivery(cpu),
        redis_cpu_us_per_delivery: redis_cpu.map(per_delivery),
        bytes_per_delivery: probe.bytes_read() as f64 / delivered.max(1) as f64,
        split,
    })
}

/// The upstreams each of the bench's first two nodes holds.
async fn nodes_held(bench: &Bench) -> anyhow::Result<[u64; 2]> {
    let mut held = [0; 2];
    for (count, (node, _)) in held.iter_mut().zip(&bench.nodes) {
        *count = super::upstreams_held(node).await?;
    }
    Ok(held)
}

/// The CPU time of all of `pids` together.
pub(crate) async fn cpu_time(pids: &[u32]) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for &pid in pids {
        total += procfs::cpu_time(pid)
            .await
            .with_context(|| format!("reading the CPU time of process {pid}"))?;
    }
    Ok(total)
}
