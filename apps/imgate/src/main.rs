//! The `imgate` binary: `imgate` (or `imgate serve`) runs the gateway; `imgate token --user ID`
//! mints a demo JWT; `imgate check-config` validates the configuration and exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imgate::settings::Settings;

// Under steady churn of connections and users, glibc's allocator let RSS climb well past the
// live heap and kept it at its peak after the load ended. jemalloc keeps RSS flat under that
// churn, costs no more per connection than glibc, and fans out fastest of the three tried
// (docs/reliability.md, "Memory under churn"; docs/benchmarks.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "imgate",
    version,
    about = "An IM gateway in front of Rocket.Chat"
)]
struct Cli {
    /// Folder holding default.toml and {IMGATE_ENV}.toml.
    #[arg(
        long,
        global = true,
        default_value = "config",
        env = "IMGATE_CONFIG_DIR"
    )]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Print a demo JWT for a user; only in demo mode (no auth key configured).
    Token {
        /// The host user id to put in the token.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl_s: u64,
    },
    /// Validate the configuration and exit.
    CheckConfig,
}

/// Exit status for configuration errors, distinct from run-time failures.
const CONFIG_ERROR: u8 = 2;

fn load(cli: &Cli) -> Result<Settings, ExitCode> {
    let settings = Settings::load(&cli.config_dir).map_err(|err| {
        eprintln!("imgate: config error: {err:#}");
        ExitCode::from(CONFIG_ERROR)
    })?;
    settings.validate().map_err(|problems| {
        for problem in problems {
            eprintln!("imgate: config error: {problem}");
        }
        ExitCode::from(CONFIG_ERROR)
    })?;
    Ok(settings)
}

fn init_logs(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load(&cli) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Command::Token { user, ttl_s } => {
            if !settings.demo_auth() {
                eprintln!("imgate: token minting is for demo mode only; this gateway has an auth key configured, so tokens come from your host application");
                return ExitCode::from(CONFIG_ERROR);
            }
            if imgate_domain::UserId::parse(user.as_str()).is_err() {
                eprintln!("imgate: --user: not a valid user id");
                return ExitCode::from(CONFIG_ERROR);
            }
            println!(
                "{}",
                imgate::demo::token(&settings.auth.user_claim, &user, Duration::from_secs(ttl_s))
            );
            ExitCode::SUCCESS
        }
        Command::Serve => {
            init_logs(&settings);
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("imgate: cannot start the async runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("imgate: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let user_claim = settings.auth.user_claim.clone();
    let base_path = settings.server.base_path.clone();
    let gateway = imgate::start(settings).await?;
    let base = format!("http://{}{base_path}", gateway.addr);
    tracing::info!(url = %base, provider = %gateway.provider_url, "imgate listening");
    if gateway.demo {
        let token = imgate::demo::token(&user_claim, "alice", Duration::from_secs(86_400));
        tracing::warn!("DEMO MODE: no auth key is configured, so anyone can mint tokens with the public demo secret. Never expose this gateway.");
        println!(
            "\nimgate demo is running at {base}\n  provider (embedded Rocket.Chat-compatible server): {}\n  demo users: alice, bob, carol\n  a token for alice:  {token}\n  more tokens:        cargo run -q -p imgate -- token --user bob\n  host back-end key:  X-Api-Key: {}\n  try: curl -H 'Authorization: Bearer {token}' {base}/api/v1/me\n",
            gateway.provider_url,
            imgate::demo::DEMO_API_KEY,
        );
    }
    gateway.run_until_signal().await
}
