//! REST overhead: sending a message and reading history through the gateway, and the same
//! calls made directly to the provider by the same client in the same run. Latency from
//! calls made one after the other; throughput with several in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde_json::json;

use super::Bench;

/// One operation, both ways.
#[derive(Debug, Clone, Copy)]
pub struct Overhead {
    /// The operation.
    pub name: &'static str,
    /// Through the gateway.
    pub gateway: Calls,
    /// Straight to the provider.
    pub direct: Calls,
}

/// What one way of calling measured.
#[derive(Debug, Clone, Copy)]
pub struct Calls {
    /// Median and 99th percentile of calls made one at a time, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Calls per second with several in flight.
    pub per_s: f64,
}

/// A call as the driver makes it.
#[derive(Clone, Copy)]
enum Operation {
    Send,
    History,
}

/// Measures send and history both ways in a private group of the sender.
pub async fn run(bench: &Bench) -> anyhow::Result<Vec<Overhead>> {
    let room = bench
        .api
        .create_group(&bench.sender_id, &format!("{}-rest", bench.sender_id), &[])
        .await
        .context("creating the REST group")?;
    let token = bench.api.token(&bench.sender_id);
    let mut results = Vec::new();
    for (name, operation) in [
        ("send message", Operation::Send),
        ("history", Operation::History),
    ] {
        let gateway = |text: String| {
            let request = match operation {
                Operation::Send => bench
                    .http
                    .post(format!("{}/api/v1/rooms/{room}/messages", bench.api.base()))
                    .json(&json!({"text": text})),
                Operation::History => bench.http.get(format!(
                    "{}/api/v1/rooms/{room}/messages?limit=20",
                    bench.api.base()
                )),
            };
            let request = request.bearer_auth(&token);
            async move { check(request.send().await).await }
        };
        let direct = |text: String| {
            let room = &room;
            async move {
                match operation {
                    Operation::Send => bench.sender.send_message(&bench.http, room, &text).await,
                    Operation::History => bench.sender.group_history(&bench.http, room, 20).await,
                }
                .map_err(anyhow::Error::from)
            }
        };
        println!("[bench] rest: {name}");
        let gateway_latency = sequential(bench.config.rest_calls, &gateway).await?;
        let direct_latency = sequential(bench.config.rest_calls, &direct).await?;
        let gateway_rate = concurrent(bench, &gateway).await?;
        let direct_rate = concurrent(bench, &direct).await?;
        results.push(Overhead {
            name,
            gateway: Calls {
                per_s: gateway_rate,
                ..gateway_latency
            },
            direct: Calls {
                per_s: direct_rate,
                ..direct_latency
            },
        });
    }
    Ok(results)
}

async fn check(response: Result<reqwest::Response, reqwest::Error>) -> anyhow::Result<()> {
    let response = response.context("calling the gateway")?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .context("reading the gateway's answer")?;
    if !status.is_success() {
        anyhow::bail!(
            "the gateway answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

async fn sequential<F, Fut>(calls: usize, call: &F) -> anyhow::Result<Calls>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut histogram = Histogram::<u64>::new(3).expect("3 significant figures are valid");
    for i in 0..calls {
        let started = Instant::now();
        call(format!("rest {i}")).await?;
        histogram.saturating_record(started.elapsed().as_micros() as u64);
    }
    Ok(Calls {
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        per_s: 0.0,
    })
}

async fn concurrent<F, Fut>(bench: &Bench, call: &F) -> anyhow::Result<f64>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let end = started + bench.config.rest_for;
    let worker = |w: usize| {
        let done = &done;
        async move {
            let mut i = 0;
            while Instant::now() < end {
                call(format!("rest {w} {i}")).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, anyhow::Error>(())
        }
    };
    let results: Vec<_> = futures::stream::iter(0..bench.config.rest_in_flight)
        .map(worker)
        .buffer_unordered(bench.config.rest_in_flight)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(0.001))
}
