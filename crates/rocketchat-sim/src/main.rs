//! `rocketchat-sim`: runs the Rocket.Chat-compatible test server until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use rocketchat_sim::{Sim, SimConfig, Version};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "rocketchat-sim",
    about = "A Rocket.Chat-compatible server for tests and demos (not a Rocket.Chat replacement)"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000", env = "ROCKETCHAT_SIM_BIND")]
    bind: SocketAddr,
    /// Administrator account as USER:PASSWORD.
    #[arg(long, default_value = "admin:admin", env = "ROCKETCHAT_SIM_ADMIN")]
    admin: String,
    /// Rocket.Chat release line to emulate: 6, 7 or 8.
    #[arg(long, default_value = "7", env = "ROCKETCHAT_SIM_EMULATE")]
    emulate: String,
    /// Turn the REST rate limiter on with CALLS per WINDOW_MS (e.g. 10/60000), or with a
    /// fresh Rocket.Chat's numbers (`default`, 10/60000).
    #[arg(long)]
    rate_limit: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let Some((user, password)) = args.admin.split_once(':') else {
        eprintln!("--admin: expected USER:PASSWORD");
        return ExitCode::from(2);
    };
    let Some(version) = Version::parse(&args.emulate) else {
        eprintln!("--emulate: expected 6, 7 or 8");
        return ExitCode::from(2);
    };
    let rate_limit = match args.rate_limit.as_deref().map(parse_rate_limit) {
        None => None,
        Some(Some(limit)) => Some(limit),
        Some(None) => {
            eprintln!("--rate-limit: expected CALLS/WINDOW_MS, e.g. 10/60000, or default");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig {
        bind: args.bind,
        admin_username: user.into(),
        admin_password: password.into(),
        version,
        rate_limit,
        ..SimConfig::default()
    };
    let sim = match Sim::start(config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("rocketchat-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "rocketchat-sim listening on {} (ws {}), emulating {:?}",
        sim.http_url(),
        sim.ws_url(),
        version
    );
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %error, "waiting for ctrl-c failed");
    }
    sim.stop().await;
    ExitCode::SUCCESS
}

fn parse_rate_limit(text: &str) -> Option<rocketchat_sim::RateLimit> {
    if text == "default" {
        return Some(rocketchat_sim::RateLimit::ROCKETCHAT_DEFAULT);
    }
    let (calls, window) = text.split_once('/')?;
    Some(rocketchat_sim::RateLimit {
        calls: calls.parse().ok()?,
        window: std::time::Duration::from_millis(window.parse().ok()?),
    })
}
