//! Login churn: users who were never online open a hub connection each, as fast as the driver
//! can, and count as online when a live event reaches them; then they all leave and count as
//! offline when the gateway has closed their upstreams.
//!
//! Going online is the whole path: token cache miss, provider login, upstream connect and
//! subscriptions. Every [`PROBE_EVERY`] an event is posted to each channel (of
//! [`CHURN_GROUP`] churn users) whose users have started connecting and are not all online
//! yet, so "online" is known to within that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clients::{open_many, Publisher, Receiver};
use super::probe::Probe;
use super::{Bench, CHURN_GROUP, SET_UP_CONCURRENCY};
use crate::signalr::HubClient;

/// How often an event is posted while users come online.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long all users may take to come online, or to go offline.
const PATIENCE: Duration = Duration::from_secs(300);

/// What the churn measured.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Users.
    pub users: usize,
    /// From the first connect to the last user's first live event.
    pub online: Duration,
    /// From the first close to the last upstream closed, less the grace period.
    pub offline: Duration,
}

/// Runs the churn with the bench's churn users; the gateway must hold no upstream.
pub async fn run(bench: &Bench) -> anyhow::Result<Churn> {
    let users = &bench.churn_users;
    if users.is_empty() {
        bail!("no churn users");
    }
    bench.await_upstreams(0, PATIENCE).await?;
    let probe = Arc::new(Probe::new());
    probe.begin(1);
    let tokens: Vec<String> = users.iter().map(|user| bench.api.token(user)).collect();
    let arrived: Arc<Vec<AtomicU64>> = Arc::new(users.iter().map(|_| AtomicU64::new(0)).collect());

    // Group `g` is the users of `churn_rooms[g]`; it is probed from the first connect of one
    // of its users until all of them got an event.
    let started: Arc<Vec<AtomicBool>> = Arc::new(
        bench
            .churn_rooms
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let probing = CancellationToken::new();
    let probes = {
        let (probe, stop, http) = (probe.clone(), probing.clone(), bench.http.clone());
        let (started, arrived) = (started.clone(), arrived.clone());
        let publishers: Vec<Publisher> = bench
            .churn_rooms
            .iter()
            .map(|room| Publisher::Provider {
                sender: bench.sender.clone(),
                room: room.clone(),
            })
            .collect();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROBE_EVERY);
            while !stop.is_cancelled() {
                tick.tick().await;
                for (g, publisher) in publishers.iter().enumerate() {
                    let waiting = arrived[g * CHURN_GROUP..]
                        .iter()
                        .take(CHURN_GROUP)
                        .any(|at| at.load(Ordering::Relaxed) == 0);
                    if started[g].load(Ordering::Relaxed) && waiting {
                        publisher.publish(&http, &probe.event(1)).await?;
                    }
                }
            }
            Ok::<_, super::clients::PublishError>(())
        })
    };

    println!("[bench] churn: {} users going online", users.len());
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let start_us = probe.now_us();
    // Each connection reads from the moment it is open: a user counts as online at its first
    // event, not when the last user has connected.
    let opened = open_many(0..users.len(), SET_UP_CONCURRENCY, PATIENCE, |i| {
        let (token, source) = (&tokens[i], bench.source(i));
        let (tracker, probe, stop) = (&tracker, &probe, &stop);
        let (started, arrived) = (&started, &arrived);
        async move {
            started[i / CHURN_GROUP].store(true, Ordering::Relaxed);
            let client =
                HubClient::connect_from(&bench.http, bench.api.base(), token, PATIENCE, source)
                    .await?;
            let arrived = arrived.clone();
            let first = move |at: u64| {
                let _ = arrived[i].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
            };
            tracker.spawn(Receiver::Hub(client).run(i, probe.clone(), stop.clone(), first));
            Ok(())
        }
    })
    .await;
    if let Err(failed) = opened {
        probing.cancel();
        stop.cancel();
        bail!(failed);
    }
    let waited = tokio::time::timeout(PATIENCE, async {
        while arrived.iter().any(|at| at.load(Ordering::Relaxed) == 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    probing.cancel();
    probes
        .await
        .context("the probe task")?
        .context("posting a probe event")?;
    if waited.is_err() {
        let missing = arrived
            .iter()
            .filter(|at| at.load(Ordering::Relaxed) == 0)
            .count();
        bail!("{missing} of {} users got no live event", users.len());
    }
    let last = arrived
        .iter()
        .map(|at| at.load(Ordering::Relaxed))
        .max()
        .unwrap_or(start_us);
    let online = Duration::from_micros(last - start_us);

    println!("[bench] churn: {} users going offline", users.len());
    let closing = std::time::Instant::now();
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    bench.await_upstreams(0, PATIENCE).await?;
    let offline = closing.elapsed().saturating_sub(bench.config.grace);
    Ok(Churn {
        users: users.len(),
        online,
        offline,
    })
}
