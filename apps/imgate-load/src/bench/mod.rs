//! `imgate-load bench`: what one gateway node carries and how fast, next to the least a
//! WebSocket server can do on the same machine (the [`limit`]) and a Socket.IO server (the
//! peer), driven by the same client in the same run.
//!
//! Scenarios: idle capacity and fan-out share one set of connections per server
//! ([`capacity`]); the gateway's fan-out over MessagePack next to JSON ([`msgpack`]); the
//! same fan-out over two gateway nodes sharing Redis ([`nodes`]); the host back end's pushes
//! to single users over those two nodes ([`pushes`]); REST overhead against the provider
//! called directly ([`rest`]); users going online and offline ([`churn`]). Each prints one
//! line; [`report`] appends them to a Markdown document.

pub mod capacity;
pub mod churn;
pub mod clients;
pub mod limit;
pub mod msgpack;
pub mod nodes;
pub mod probe;
pub mod provider;
pub mod pushes;
pub mod report;
pub mod rest;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::StreamExt;
use url::Url;

use crate::api::GatewayApi;
use provider::ProviderUser;

/// What to run and against what.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The provider (Rocket.Chat-compatible server) behind the gateway.
    pub provider: String,
    /// Its administrator, `user:password`.
    pub provider_admin: (String, String),
    /// The gateway's process id.
    pub gateway_pid: u32,
    /// The limit server, and its process id.
    pub limit: Option<(Url, u32)>,
    /// The Socket.IO peer, and its process id.
    pub socketio: Option<(Url, u32)>,
    /// Gateway nodes sharing Redis, in front of the same provider, and their process ids.
    pub nodes: Vec<(Url, u32)>,
    /// The process id of the Redis the nodes share, when it runs on this machine.
    pub redis_pid: Option<u32>,
    /// Connections held in the idle scenario.
    pub connections: usize,
    /// Users they belong to (each has `connections / users`).
    pub users: usize,
    /// Connections the fan-out keeps (the first ones, whole users).
    pub fanout_connections: usize,
    /// How long the idle connections are held.
    pub hold: Duration,
    /// How long each fan-out round publishes.
    pub round: Duration,
    /// The fixed fan-out rate, deliveries per second.
    pub fixed_rate: f64,
    /// The p99 a sustained rate must stay under.
    pub p99_bound: Duration,
    /// Host pushes per second offered in the paced phase of the pushes scenario.
    pub push_rate: f64,
    /// Push requests outstanding at most in the pushes scenario (all the time when flat out).
    pub push_in_flight: usize,
    /// Users going online and offline in the churn.
    pub churn_users: usize,
    /// Sequential calls per REST operation, for latency.
    pub rest_calls: usize,
    /// How long each REST throughput run lasts, and how many calls it keeps in flight.
    pub rest_for: Duration,
    /// Calls in flight in the throughput runs.
    pub rest_in_flight: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2 onwards).
    pub sources: usize,
    /// The gateway's `realtime.grace_s`.
    pub grace: Duration,
    /// Which scenarios run.
    pub scenarios: Vec<Scenario>,
}

impl BenchConfig {
    /// The connections the fan-out keeps: whole users, the first ones, members of the fan-out
    /// channel.
    pub fn fanout_kept(&self) -> usize {
        let per_user = self.connections / self.users.max(1);
        self.fanout_connections.div_ceil(per_user.max(1)) * per_user
    }
}

/// One scenario of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Idle capacity and fan-out.
    Capacity,
    /// The gateway's fan-out over MessagePack next to JSON: deliveries/s, CPU and bytes per
    /// delivery.
    Msgpack,
    /// The fan-out over two gateway nodes sharing Redis.
    Nodes,
    /// Host pushes to single users over two gateway nodes sharing Redis.
    Pushes,
    /// REST overhead.
    Rest,
    /// Login churn.
    Churn,
}

/// Everything the scenarios share.
pub struct Bench {
    /// The run's settings.
    pub config: BenchConfig,
    /// The gateway.
    pub api: GatewayApi,
    /// One HTTP client for every REST call of the driver.
    pub http: reqwest::Client,
    /// Host ids of the capacity users.
    pub users: Vec<String>,
    /// Host ids of the churn users.
    pub churn_users: Vec<String>,
    /// The user who sends every event and REST call, logged in at the provider.
    pub sender: ProviderUser,
    /// The sender's host id.
    pub sender_id: String,
    /// The channel of the first fan-out users and the sender.
    pub fanout_room: String,
    /// The channels of the churn users, [`CHURN_GROUP`] users each, with the sender.
    pub churn_rooms: Vec<String>,
    /// The gateway nodes sharing Redis, each with its process id.
    pub nodes: Vec<(GatewayApi, u32)>,
}

/// Users created or connected at once during set-up.
pub const SET_UP_CONCURRENCY: usize = 64;

/// Churn users per channel. The churn posts only to the channels of users still coming
/// online, so its probe events do not become a fan-out to everyone already online.
pub const CHURN_GROUP: usize = SET_UP_CONCURRENCY;

impl Bench {
    /// Creates the users (through the gateway, as a host back end would) and the fan-out
    /// channel (at the provider).
    pub async fn set_up(
        api: GatewayApi,
        http: reqwest::Client,
        config: BenchConfig,
    ) -> anyhow::Result<Self> {
        if config.users == 0 || !config.connections.is_multiple_of(config.users) {
            bail!("--connections must be a multiple of --users");
        }
        if config.fanout_connections > config.connections {
            bail!("--fanout-connections must not exceed --connections");
        }
        for (scenario, name) in [(Scenario::Nodes, "nodes"), (Scenario::Pushes, "pushes")] {
            if config.scenarios.contains(&scenario) && config.nodes.len() < 2 {
                bail!("the {name} scenario needs two gateway nodes (--node URL,PID twice)");
            }
        }
        let nodes: Vec<(GatewayApi, u32)> = config
            .nodes
            .iter()
            .map(|(url, pid)| (api.at(url.as_str()), *pid))
            .collect();
        for (node, _) in &nodes {
            if !node.ready().await {
                bail!("the gateway node at {} is not ready", node.base());
            }
        }
        let started = std::time::Instant::now();
        while !api.ready().await {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the gateway at {} is not ready after 30 s", api.base());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let users: Vec<String> = (0..config.users).map(|i| format!("b{tag}-u{i}")).collect();
        let churn_users: Vec<String> = (0..config.churn_users)
            .map(|i| format!("b{tag}-c{i}"))
            .collect();
        let sender_id = format!("b{tag}-sender");
        let password = format!("{tag}-{:016x}", rand::random::<u64>());
        println!(
            "[bench] creating {} users through the gateway",
            users.len() + churn_users.len() + 1
        );
        api.put_user_with_password(&sender_id, Some(&password))
            .await
            .context("creating the sender")?;
        let failures = futures::stream::iter(users.iter().chain(&churn_users))
            .map(|user| api.put_user_with_password(user, None))
            .buffer_unordered(SET_UP_CONCURRENCY)
            .filter_map(|result| async move { result.err() })
            .collect::<Vec<_>>()
            .await;
        if let Some(first) = failures.first() {
            bail!(
                "{} users could not be created, e.g. {first}",
                failures.len()
            );
        }
        let sender = ProviderUser::login(&http, &config.provider, &sender_id, &password)
            .await
            .context("logging the sender in at the provider")?;
        let (admin, admin_password) = &config.provider_admin;
        let admin = ProviderUser::login(&http, &config.provider, admin, admin_password)
            .await
            .context("logging the provider's admin in")?;
        // A channel of `members` and the sender, who posts every event into it.
        let channel = |name: String, members: &[String]| {
            let mut members = members.to_vec();
            members.push(sender_id.clone());
            let (admin, http) = (&admin, &http);
            async move {
                admin
                    .create_channel(http, &name, &members)
                    .await
                    .with_context(|| format!("creating channel {name}"))
            }
        };
        let per_user = config.connections / config.users;
        let fanout_users = &users[..config.fanout_connections.div_ceil(per_user)];
        let fanout_room = channel(format!("b{tag}-fanout"), fanout_users).await?;
        let churn_rooms = futures::future::try_join_all(
            churn_users
                .chunks(CHURN_GROUP)
                .enumerate()
                .map(|(g, members)| channel(format!("b{tag}-churn{g}"), members)),
        )
        .await?;
        Ok(Self {
            config,
            api,
            http,
            users,
            churn_users,
            sender,
            sender_id,
            fanout_room,
            churn_rooms,
            nodes,
        })
    }

    /// The source address of connection `i`.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        crate::ws::loopback_source(i, self.config.sources)
    }

    /// The gateway's `imgate_upstreams_held` gauge.
    pub async fn upstreams_held(&self) -> anyhow::Result<u64> {
        upstreams_held(&self.api).await
    }

    /// Waits until the gateway holds `count` upstreams, at most `patience`; how long it took.
    pub async fn await_upstreams(
        &self,
        count: u64,
        patience: Duration,
    ) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        loop {
            let held = self.upstreams_held().await?;
            if held == count {
                return Ok(started.elapsed());
            }
            if started.elapsed() > patience {
                bail!("the gateway holds {held} upstreams after {patience:?}, expected {count}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `imgate_upstreams_held` gauge of the gateway (node) `api`.
pub async fn upstreams_held(api: &GatewayApi) -> anyhow::Result<u64> {
    gauge_of(api, "imgate_upstreams_held").await
}

/// The `imgate_hub_connections_open` gauge of the gateway (node) `api`.
pub async fn hub_connections(api: &GatewayApi) -> anyhow::Result<u64> {
    gauge_of(api, "imgate_hub_connections_open").await
}

/// The gauge `name` of the gateway (node) `api`, 0 when absent.
async fn gauge_of(api: &GatewayApi, name: &str) -> anyhow::Result<u64> {
    let text = api
        .metrics()
        .await
        .with_context(|| format!("reading the metrics of {}", api.base()))?;
    Ok(gauge(&text, name).unwrap_or(0.0) as u64)
}

/// Runs the configured scenarios in order: capacity (gateway, then limit, then Socket.IO),
/// MessagePack, churn, REST, two nodes, host pushes; each line is printed as it is known.
/// Returns the lines.
pub async fn run(bench: &Bench) -> anyhow::Result<Vec<String>> {
    let config = &bench.config;
    let mut lines = Vec::new();
    let mut say = |line: String| {
        println!("{line}");
        lines.push(line);
    };
    let load = || async { crate::procfs::load_average().await.unwrap_or(f64::NAN) };
    // The gateway's JSON fan-out, for the MessagePack scenario to compare with.
    let mut gateway_json = None;
    if config.scenarios.contains(&Scenario::Capacity) {
        let json = capacity::Server::Gateway(crate::signalr::HubProtocol::Json);
        let mut servers = vec![(json, config.gateway_pid)];
        if let Some((url, pid)) = &config.limit {
            servers.push((capacity::Server::Limit(url.clone()), *pid));
        }
        if let Some((url, pid)) = &config.socketio {
            servers.push((capacity::Server::SocketIo(url.clone()), *pid));
        }
        let mut fanouts = Vec::new();
        for (server, pid) in servers {
            let name = server.name();
            let (idle, fanout) = capacity::run(bench, &server, pid)
                .await
                .with_context(|| format!("capacity of {name}"))?;
            say(report::idle(name, &idle, config.hold, load().await));
            say(report::fanout(
                name,
                &fanout,
                config.p99_bound,
                load().await,
            ));
            fanouts.push((name, fanout));
        }
        if let Some(((_, gateway), others)) = fanouts.split_first() {
            if !others.is_empty() {
                let others: Vec<_> = others.iter().map(|(name, f)| (*name, f)).collect();
                say(report::ratios(gateway, &others));
            }
            gateway_json = Some(gateway.clone());
        }
    }
    if config.scenarios.contains(&Scenario::Msgpack) {
        let compared = msgpack::run(bench, gateway_json)
            .await
            .context("fan-out over MessagePack")?;
        say(report::msgpack(&compared, load().await));
    }
    if config.scenarios.contains(&Scenario::Churn) {
        let churn = churn::run(bench).await.context("login churn")?;
        say(report::churn(&churn, load().await));
    }
    if config.scenarios.contains(&Scenario::Rest) {
        let overheads = rest::run(bench).await.context("REST overhead")?;
        say(report::rest(
            &overheads,
            config.rest_in_flight,
            load().await,
        ));
    }
    // Last: three gateway processes at saturation leave the machine busy for a while after.
    if config.scenarios.contains(&Scenario::Nodes) {
        let fanout = nodes::run(bench).await.context("fan-out over two nodes")?;
        say(report::fanout(
            nodes::NAME,
            &fanout,
            config.p99_bound,
            load().await,
        ));
    }
    if config.scenarios.contains(&Scenario::Pushes) {
        let pushes = pushes::run(bench)
            .await
            .context("host pushes over two nodes")?;
        say(report::pushes(&pushes, load().await));
    }
    Ok(lines)
}

/// The value of an unlabelled gauge in a Prometheus text.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Milliseconds with two decimals, from microseconds.
pub fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_by_exact_name() {
        let text = "# TYPE imgate_upstreams_held gauge\nimgate_upstreams_held 12\nimgate_upstreams_held_x 3\n";
        assert_eq!(gauge(text, "imgate_upstreams_held"), Some(12.0));
        assert_eq!(gauge(text, "imgate_upstream_users"), None);
    }
}
