//! The gateway's fan-out over the MessagePack hub protocol next to JSON: the fan-out users'
//! connections speak MessagePack, and the same events reach them the same way as in the
//! capacity scenario's fan-out, whose JSON figures of the same run it is compared with. Without
//! that scenario the JSON fan-out is measured here first, the same way. Only the fixed rate and
//! saturation are run: deliveries per second, CPU per delivery and the bytes the driver read
//! per delivery, at a known load and at the peak.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::capacity::{self, Fanout, Measured, Server};
use super::probe::Probe;
use super::Bench;
use crate::signalr::HubProtocol;

/// How long the gateway may take to let go of the upstreams of the scenario before.
const PATIENCE: Duration = Duration::from_secs(300);

/// The two fan-outs of the same run.
#[derive(Debug, Clone)]
pub struct Compared {
    /// Over MessagePack.
    pub messagepack: Fanout,
    /// Over JSON.
    pub json: Fanout,
    /// Whether the JSON figures are the capacity scenario's (else measured here, just before).
    pub json_from_capacity: bool,
}

/// Runs the fan-out over MessagePack, and over JSON first unless `json` brings the capacity
/// scenario's.
pub async fn run(bench: &Bench, json: Option<Fanout>) -> anyhow::Result<Compared> {
    let json_from_capacity = json.is_some();
    let json = match json {
        Some(json) => json,
        None => fan_out_over(bench, HubProtocol::Json).await?,
    };
    let messagepack = fan_out_over(bench, HubProtocol::MessagePack).await?;
    Ok(Compared {
        messagepack,
        json,
        json_from_capacity,
    })
}

/// The fan-out users' connections opened over `protocol` to the gateway, once it holds no
/// upstream left from what ran before, and the fixed rate and saturation rounds on them.
async fn fan_out_over(bench: &Bench, protocol: HubProtocol) -> anyhow::Result<Fanout> {
    let config = &bench.config;
    let server = Server::Gateway(protocol);
    bench.await_upstreams(0, PATIENCE).await?;
    let keep = config.fanout_kept();
    let probe = Arc::new(Probe::new());
    let tracker = TaskTracker::new();
    let mut stops: Vec<Option<CancellationToken>> = vec![None; keep];
    let all: Vec<usize> = (0..keep).collect();
    println!("[bench] {}: opening {keep} connections", server.name());
    let fanout = async {
        capacity::open_into(bench, &server, &all, &probe, &tracker, &mut stops).await?;
        let publisher = capacity::publisher(bench, &server).await?;
        let measured = Measured {
            connections: keep as u64,
            pids: vec![config.gateway_pid],
            redis_pid: None,
            split: None,
        };
        capacity::fan_out(bench, &probe, &publisher, &measured, false).await
    }
    .await;
    for stop in stops.iter().flatten() {
        stop.cancel();
    }
    tracker.close();
    tracker.wait().await;
    fanout
}
