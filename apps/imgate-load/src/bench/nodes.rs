//! The fan-out over two gateway nodes sharing Redis, as behind `config/nginx.conf`: every
//! user negotiates on both nodes in turn, and each connection's transport goes where the
//! nginx map would send it, to the node whose route (`hub.route`: `a`, `b`) starts its id.
//! The nodes give out ids of the node holding the user's upstream, so a user's connections
//! meet there and the events reach them without Redis; the latency is split by whether the
//! connection negotiated on the other node (and was routed).
//!
//! Which node holds a user's upstream is decided here, not guessed: each user's first
//! connection is opened alone, on the node [`node_of`] gives it, and only once every node holds
//! the upstreams of exactly the users whose first connection it got (its
//! `imgate_upstreams_held`) are the others opened. A node can only hold the lease of a user it
//! has a connection of, so at that point each user's upstream is on their first connection's
//! node, and a holder renews its lease for as long as the user stays online. The counts are
//! read again after the last round, and reported, with each node's hub connections.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::capacity::{self, Fanout, Measured, Server};
use super::probe::Probe;
use super::{hub_connections, upstreams_held, Bench};

/// The scenario's name in the report.
pub const NAME: &str = "gateway on two nodes + Redis";

/// The nodes, with each connection's transport where nginx's map would send it.
const SERVER: Server = Server::Nodes { routed: true };

/// How long the nodes may take to hold the upstreams, or to let them go.
const PATIENCE: Duration = Duration::from_secs(300);

/// The node of connection `k` (0-based) of user `user`: users' first connections alternate
/// between the nodes, and each user's further connections take the nodes in turn from there,
/// so a user with at least as many connections as there are nodes is on every node.
pub fn node_of(user: usize, k: usize, nodes: usize) -> usize {
    (user + k) % nodes.max(1)
}

/// The route of node `node` (0-based): `a`, `b`, …, as `scripts/bench.sh` sets `hub.route`.
pub fn route(node: usize) -> String {
    char::from(b'a' + u8::try_from(node % 26).unwrap_or(0)).to_string()
}

/// Whether connection `k` of `user` negotiates on a node other than the one holding the
/// user's upstream (the node of the user's first connection), and is routed there.
pub fn crosses_nodes(user: usize, k: usize, nodes: usize) -> bool {
    node_of(user, k, nodes) != node_of(user, 0, nodes)
}

/// How many of `users`' upstreams each of `nodes` holds when every user's first connection
/// decided.
pub fn expected_upstreams(users: usize, nodes: usize) -> Vec<u64> {
    let mut held = vec![0; nodes.max(1)];
    for user in 0..users {
        held[node_of(user, 0, nodes)] += 1;
    }
    held
}

/// Runs the fan-out against the bench's nodes: the fan-out users' connections spread over
/// them, the deliveries' latency split by whether they crossed nodes.
pub async fn run(bench: &Bench) -> anyhow::Result<Fanout> {
    let config = &bench.config;
    let nodes = bench.nodes.len();
    let (users, per_user, keep) = set_up(bench).await?;
    let classes = (0..keep)
        .map(|i| usize::from(crosses_nodes(i / per_user, i % per_user, nodes)))
        .collect();
    let probe = Arc::new(Probe::classified(classes));
    let tracker = TaskTracker::new();
    let mut stops: Vec<Option<CancellationToken>> = vec![None; keep];
    let (first, rest): (Vec<usize>, Vec<usize>) = (0..keep).partition(|i| i % per_user == 0);
    println!("[bench] {NAME}: opening {keep} connections of {users} users over {nodes} nodes");
    let opened = async {
        capacity::open_into(bench, &SERVER, &first, &probe, &tracker, &mut stops).await?;
        for ((node, _), expected) in bench.nodes.iter().zip(expected_upstreams(users, nodes)) {
            await_held(node, expected).await?;
        }
        capacity::open_into(bench, &SERVER, &rest, &probe, &tracker, &mut stops).await
    }
    .await;
    let expected = expected_upstreams(users, nodes);
    let connections = connections_per_node(bench).await?;
    let fanout = match opened {
        Ok(()) => {
            let measured = Measured {
                connections: keep as u64,
                pids: bench.nodes.iter().map(|(_, pid)| *pid).collect(),
                redis_pid: config.redis_pid,
                split: Some([expected[0], expected[1]]),
            };
            let publisher = capacity::publisher(bench, &SERVER).await?;
            capacity::fan_out(bench, &probe, &publisher, &measured, true).await
        }
        Err(err) => Err(err),
    };
    let mut held = Vec::with_capacity(nodes);
    for (node, _) in &bench.nodes {
        held.push(upstreams_held(node).await?);
    }
    close(bench, &stops, &tracker).await?;
    let mut fanout = fanout?;
    fanout.upstreams_held = held;
    fanout.hub_connections = connections;
    Ok(fanout)
}

/// The fan-out users over the bench's two nodes: `(users, connections of each, connections)`,
/// once neither the single gateway of the other scenarios nor the nodes hold an upstream, so
/// the provider serves only what the caller opens.
pub(crate) async fn set_up(bench: &Bench) -> anyhow::Result<(usize, usize, usize)> {
    let config = &bench.config;
    let nodes = bench.nodes.len();
    if nodes != 2 {
        bail!("two gateway nodes are needed, {nodes} were given");
    }
    let per_user = config.connections / config.users;
    let users = config.fanout_connections.div_ceil(per_user);
    bench.await_upstreams(0, PATIENCE).await?;
    for (node, _) in &bench.nodes {
        await_held(node, 0).await?;
    }
    Ok((users, per_user, users * per_user))
}

/// The hub connections each of the bench's nodes serves.
pub(crate) async fn connections_per_node(bench: &Bench) -> anyhow::Result<Vec<u64>> {
    let mut connections = Vec::with_capacity(bench.nodes.len());
    for (node, _) in &bench.nodes {
        connections.push(hub_connections(node).await?);
    }
    Ok(connections)
}

/// Closes the connections of `stops`, waits for their tasks, then until the nodes hold no
/// upstream, so the next scenarios find them as they were.
pub(crate) async fn close(
    bench: &Bench,
    stops: &[Option<CancellationToken>],
    tracker: &TaskTracker,
) -> anyhow::Result<()> {
    for stop in stops.iter().flatten() {
        stop.cancel();
    }
    tracker.close();
    tracker.wait().await;
    for (node, _) in &bench.nodes {
        await_held(node, 0).await?;
    }
    Ok(())
}

/// Waits until `node` holds `count` upstreams.
pub(crate) async fn await_held(node: &crate::api::GatewayApi, count: u64) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let held = upstreams_held(node).await?;
        if held == count {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            bail!(
                "the node at {} holds {held} upstreams after {PATIENCE:?}, expected {count}",
                node.base()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_user_is_on_both_nodes_and_the_upstreams_are_shared_evenly() {
        // The small bench: 10 000 connections of 2 000 users.
        let (users, per_user, nodes) = (2_000, 5, 2);
        let mut on_node = [0; 2];
        let mut crossing = 0;
        for user in 0..users {
            let mut seen = [false; 2];
            for k in 0..per_user {
                let node = node_of(user, k, nodes);
                seen[node] = true;
                on_node[node] += 1;
                crossing += usize::from(crosses_nodes(user, k, nodes));
            }
            assert_eq!(seen, [true, true], "user {user} is not on both nodes");
        }
        assert_eq!(on_node, [5_000, 5_000]);
        assert_eq!(expected_upstreams(users, nodes), vec![1_000, 1_000]);
        // Two of each user's five connections are on the node without the upstream.
        assert_eq!(crossing, 4_000);
    }

    #[test]
    fn the_first_connection_is_on_the_upstreams_node() {
        for user in 0..7 {
            assert!(!crosses_nodes(user, 0, 2));
            assert!(crosses_nodes(user, 1, 2));
        }
        assert_eq!(expected_upstreams(3, 2), vec![2, 1]);
        // One connection per user: nothing crosses.
        assert!((0..10).all(|user| !crosses_nodes(user, 0, 2)));
    }
}
