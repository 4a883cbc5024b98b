//! `imgate-load`: load for a running imgate gateway. `imgate-load soak` runs the soak test
//! (`make soak` starts everything it needs and calls it); `imgate-load bench` the benchmarks
//! (`make bench`), next to `imgate-load limit`, the plain WebSocket server they compare with.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use imgate_load::api::GatewayApi;
use imgate_load::bench::{self, BenchConfig, Scenario};
use imgate_load::markdown::replace_section;
use imgate_load::procfs::Machine;
use imgate_load::soak::report::{self, SoakReport};
use imgate_load::soak::{self, SoakConfig};

#[derive(Parser)]
#[command(
    name = "imgate-load",
    version,
    about = "Load for a running imgate gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Steady load with churn of connections and users; samples the gateway's memory and
    /// descriptors and can write the results into a Markdown document.
    Soak(SoakArgs),
    /// Idle capacity, fan-out (over JSON, and over MessagePack next to it), REST overhead and
    /// login churn of a gateway, next to the limit server and a Socket.IO server, and the
    /// fan-out and host pushes over two gateway nodes sharing Redis; one line of figures per
    /// scenario.
    // A later flag wins, so `make bench` sizes can be overridden on the command line.
    #[command(args_override_self = true)]
    Bench(BenchArgs),
    /// The limit server of the bench: a plain WebSocket broadcast server.
    Limit {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: std::net::SocketAddr,
    },
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    target: Target,
    /// The gateway's process id.
    #[arg(long)]
    gateway_pid: u32,
    /// The provider's base URL.
    #[arg(long)]
    provider: String,
    /// The provider's administrator, USER:PASSWORD.
    #[arg(long, env = "IMGATE_LOAD_PROVIDER_ADMIN", hide_env_values = true)]
    provider_admin: String,
    /// The limit server (`ws://host:port`) and its process id, `URL,PID`.
    #[arg(long)]
    limit: Option<String>,
    /// The Socket.IO peer (`ws://host:port`) and its process id, `URL,PID`.
    #[arg(long)]
    socketio: Option<String>,
    /// A gateway node sharing Redis with the other (`http://host:port`) and its process id,
    /// `URL,PID`; the nodes and pushes scenarios need two. Same provider, secrets and users as
    /// `--base`.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// The process id of the Redis the nodes share, to count its CPU too.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// Connections held idle.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Users they belong to.
    #[arg(long, default_value_t = 2_000)]
    users: usize,
    /// Connections that receive the fan-out (the first whole users).
    #[arg(long, default_value_t = 10_000)]
    fanout_connections: usize,
    /// Seconds the idle connections are held.
    #[arg(long, default_value_t = 60)]
    hold_s: u64,
    /// Seconds each fan-out round publishes.
    #[arg(long, default_value_t = 5)]
    round_s: u64,
    /// The fixed fan-out rate, deliveries per second.
    #[arg(long, default_value_t = 150_000.0)]
    fixed_rate: f64,
    /// The p99 bound of a sustained rate, milliseconds.
    #[arg(long, default_value_t = 50)]
    p99_ms: u64,
    /// Host pushes per second offered in the paced phase of the pushes scenario.
    #[arg(long, default_value_t = 2_000.0)]
    push_rate: f64,
    /// Push requests outstanding at most in the pushes scenario (all the time when flat out).
    #[arg(long, default_value_t = 64)]
    push_in_flight: usize,
    /// Users going online and offline in the churn.
    #[arg(long, default_value_t = 2_000)]
    churn_users: usize,
    /// Sequential calls per REST operation and way.
    #[arg(long, default_value_t = 1_000)]
    rest_calls: usize,
    /// Seconds of each REST throughput run.
    #[arg(long, default_value_t = 5)]
    rest_s: u64,
    /// REST calls in flight in the throughput runs.
    #[arg(long, default_value_t = 32)]
    rest_in_flight: usize,
    /// Loopback source addresses for connections (127.0.0.2 onwards; 0: the system's).
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// The gateway's `realtime.grace_s`.
    #[arg(long, default_value_t = 1)]
    grace_s: u64,
    /// Scenarios to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "capacity,msgpack,nodes,pushes,churn,rest"
    )]
    scenarios: Vec<Scenario>,
    /// Markdown document the run's lines are appended to.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The run's name in the report.
    #[arg(long, default_value = "imgate-load bench")]
    label: String,
    /// The commit measured, for the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// When the run started, for the report.
    #[arg(long, default_value = "unknown")]
    date: String,
}

#[derive(Args)]
struct Target {
    /// The gateway's base URL.
    #[arg(
        long,
        env = "IMGATE_LOAD_BASE",
        default_value = "http://127.0.0.1:8080"
    )]
    base: String,
    /// The gateway's host API key (`auth.api_key`).
    #[arg(long, env = "IMGATE_LOAD_API_KEY", hide_env_values = true)]
    api_key: String,
    /// The gateway's HS256 secret (`auth.jwt_secret`), to mint end-user tokens.
    #[arg(long, env = "IMGATE_LOAD_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
}

#[derive(Args)]
struct SoakArgs {
    #[command(flatten)]
    target: Target,
    /// How long the load runs, seconds.
    #[arg(long, env = "SOAK_SECONDS", default_value_t = 600)]
    duration_s: u64,
    /// Users in rooms.
    #[arg(long, default_value_t = 180)]
    room_users: usize,
    /// Users deleted and created again in turn.
    #[arg(long, default_value_t = 20)]
    churn_users: usize,
    /// Private groups among the room users.
    #[arg(long, default_value_t = 10)]
    groups: usize,
    /// Members per group.
    #[arg(long, default_value_t = 10)]
    group_size: usize,
    /// Hub connections held.
    #[arg(long, default_value_t = 400)]
    connections: usize,
    /// Connections per user at most.
    #[arg(long, default_value_t = 8)]
    max_per_user: usize,
    /// Connections closed and replaced each second.
    #[arg(long, default_value_t = 10)]
    connection_churn_per_s: usize,
    /// Seconds between two user deletions.
    #[arg(long, default_value_t = 5.0)]
    user_churn_every_s: f64,
    /// Messages per second.
    #[arg(long, default_value_t = 30.0)]
    messages_per_s: f64,
    /// Reads per second.
    #[arg(long, default_value_t = 10.0)]
    reads_per_s: f64,
    /// Seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_every_s: u64,
    /// The gateway's process id: its RSS and descriptors are sampled.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Seconds a connection must be open before a send to be owed the message.
    #[arg(long, default_value_t = 5)]
    settle_s: u64,
    /// Seconds after the acknowledgement at which deliveries are checked.
    #[arg(long, default_value_t = 10)]
    deadline_s: u64,
    /// Seconds to wait after closing every connection before the last sample (more than
    /// the gateway's `realtime.grace_s`).
    #[arg(long, default_value_t = 5)]
    after_s: u64,
    /// Prefix of user ids and group names.
    #[arg(long, default_value = "soak")]
    prefix: String,
    /// Markdown document whose "## Soak" section gets the results (created if missing).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The commit measured, for the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// When the run started, for the report (`date -u`).
    #[arg(long, default_value = "unknown")]
    date: String,
    /// A gateway setting besides the defaults, `key = value`, for the report (repeatable).
    #[arg(long = "setting")]
    settings: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Soak(args) => run_soak(args).await,
        Command::Bench(args) => run_bench(args).await,
        Command::Limit { bind } => run_limit(bind).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("imgate-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the soak and writes its section; exit status 1 when it is not clean (growth,
/// misses or errors), so `make soak` fails visibly.
async fn run_soak(args: SoakArgs) -> anyhow::Result<ExitCode> {
    let config = SoakConfig {
        duration: Duration::from_secs(args.duration_s),
        room_users: args.room_users,
        churn_users: args.churn_users,
        groups: args.groups,
        group_size: args.group_size,
        connections: args.connections,
        max_per_user: args.max_per_user,
        connection_churn_per_s: args.connection_churn_per_s,
        user_churn_every: Duration::from_secs_f64(args.user_churn_every_s),
        messages_per_s: args.messages_per_s,
        reads_per_s: args.reads_per_s,
        sample_every: Duration::from_secs(args.sample_every_s.max(1)),
        gateway_pid: args.gateway_pid,
        settle: Duration::from_secs(args.settle_s),
        deadline: Duration::from_secs(args.deadline_s),
        after_wait: Duration::from_secs(args.after_s),
        prefix: args.prefix,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        // Bounded, so the driver's idle keep-alive sockets do not swing the gateway's
        // descriptor count.
        .pool_max_idle_per_host(16)
        // Shorter than the gateway's keep-alive (5 s): a request written on a socket the
        // server is closing at that moment fails without an answer, a race of the driver's
        // pooling, not something the gateway did.
        .pool_idle_timeout(Duration::from_secs(3))
        .build()
        .context("building the HTTP client")?;
    let token_ttl = config.duration + Duration::from_secs(3600);
    let api = GatewayApi::new(
        http,
        &args.target.base,
        &args.target.api_key,
        args.target.jwt_secret.as_bytes(),
        token_ttl,
    );
    let load = config.describe();
    let (settle, deadline) = (config.settle, config.deadline);
    let outcome = soak::run(api, config).await?;
    let report = SoakReport {
        date: args.date,
        commit: args.commit,
        machine: Machine::this().await.describe(),
        settings: args.settings,
        load,
        rows: outcome.rows,
        settle,
        deadline,
        misses: outcome.misses,
    };
    let verdict = report::verdict(&report.rows);
    println!("[soak] {verdict}");
    if let Some(path) = &args.report {
        let existing = match tokio::fs::read_to_string(path).await {
            Ok(text) => Some(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let doc = replace_section(
            existing.as_deref(),
            "# Reliability",
            report::HEADING,
            &report::render(&report),
        );
        tokio::fs::write(path, doc)
            .await
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "[soak] wrote the \"{}\" section of {}",
            report::HEADING,
            path.display()
        );
    }
    let clean = report.rows.last().is_some_and(|end| {
        end.counters.error_total() == 0 && end.tally.missed == 0 && end.tally.foreign == 0
    }) && verdict.starts_with("**Flat**");
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_limit(bind: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    let listener = bench::limit::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    bench::limit::serve(listener)
        .await
        .context("accepting connections")?;
    Ok(ExitCode::SUCCESS)
}

/// `URL,PID` of a comparison server.
fn server(arg: Option<&str>, flag: &str) -> anyhow::Result<Option<(url::Url, u32)>> {
    arg.map(|arg| url_and_pid(arg, flag)).transpose()
}

/// `URL,PID` of a server given with `--flag`.
fn url_and_pid(arg: &str, flag: &str) -> anyhow::Result<(url::Url, u32)> {
    let (url, pid) = arg
        .split_once(',')
        .with_context(|| format!("--{flag}: expected URL,PID"))?;
    let url = url::Url::parse(url).with_context(|| format!("--{flag}: bad URL"))?;
    let pid = pid
        .parse()
        .with_context(|| format!("--{flag}: bad process id"))?;
    Ok((url, pid))
}

/// Runs the bench's scenarios, printing each line and appending them all to the report.
async fn run_bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let (admin, admin_password) = args
        .provider_admin
        .split_once(':')
        .context("--provider-admin: expected USER:PASSWORD")?;
    let config = BenchConfig {
        provider: args.provider.clone(),
        provider_admin: (admin.to_owned(), admin_password.to_owned()),
        gateway_pid: args.gateway_pid,
        limit: server(args.limit.as_deref(), "limit")?,
        socketio: server(args.socketio.as_deref(), "socketio")?,
        nodes: args
            .nodes
            .iter()
            .map(|node| url_and_pid(node, "node"))
            .collect::<anyhow::Result<Vec<_>>>()?,
        redis_pid: args.redis_pid,
        connections: args.connections,
        users: args.users,
        fanout_connections: args.fanout_connections,
        hold: Duration::from_secs(args.hold_s),
        round: Duration::from_secs(args.round_s.max(1)),
        fixed_rate: args.fixed_rate,
        p99_bound: Duration::from_millis(args.p99_ms),
        push_rate: args.push_rate,
        push_in_flight: args.push_in_flight.max(1),
        churn_users: args.churn_users,
        rest_calls: args.rest_calls.max(1),
        rest_for: Duration::from_secs(args.rest_s.max(1)),
        rest_in_flight: args.rest_in_flight.max(1),
        sources: args.sources,
        grace: Duration::from_secs(args.grace_s),
        scenarios: args.scenarios.clone(),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build()
        .context("building the HTTP client")?;
    let api = GatewayApi::new(
        http.clone(),
        &args.target.base,
        &args.target.api_key,
        args.target.jwt_secret.as_bytes(),
        Duration::from_secs(24 * 3600),
    );
    let bench = bench::Bench::set_up(api, http, config).await?;
    let lines = bench::run(&bench).await?;
    if let Some(path) = &args.report {
        let run = bench::report::RunInfo {
            label: args.label,
            date: args.date,
            commit: args.commit,
            machine: Machine::this().await.describe(),
        };
        bench::report::append(path, &run, &lines).await?;
        println!(
            "[bench] appended {} lines to {}",
            lines.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
