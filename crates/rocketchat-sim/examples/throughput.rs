//! Measures how fast the sim accepts `chat.sendMessage` over REST to `#general`, with DDP
//! listeners attached the way a gateway holds them (`__my_messages__`, rooms-changed,
//! subscriptions-changed, notification), so every send pays for the full fan-out.
//!
//! `cargo run --release -p imgate-rocketchat-sim --example throughput -- [messages] [concurrency] [listeners]`
//! Everything runs on loopback; the load generator shares the machine's cores with the sim.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rocketchat_sim::{Sim, SimConfig};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("numeric argument"));
    let messages = args.next().unwrap_or(20_000);
    let concurrency = args.next().unwrap_or(32).max(1);
    let listeners = args.next().unwrap_or(4);

    let queue = std::env::var("SIM_DDP_QUEUE")
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(SimConfig::default().ddp_queue);
    let sim = Sim::start(SimConfig {
        ddp_queue: queue,
        ..SimConfig::default()
    })
    .await
    .expect("sim starts");
    let senders: Vec<_> = (0..concurrency)
        .map(|i| sim.create_user(&format!("sender{i}"), "pw").expect("user"))
        .collect();

    // DDP listeners on #general, so each send also pays for the fan-out.
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..listeners {
        let user = sim
            .create_user(&format!("listener{i}"), "pw")
            .expect("user");
        let (mut ws, _) = tokio_tungstenite::connect_async(sim.ws_url())
            .await
            .expect("ws");
        // What a gateway holds per user: its own streams plus __my_messages__.
        for frame in [
            json!({"msg": "connect", "version": "1", "support": ["1"]}),
            json!({"msg": "method", "method": "login", "id": "1", "params": [{"resume": user.token}]}),
            json!({"msg": "sub", "id": "s", "name": "stream-room-messages", "params": ["__my_messages__", false]}),
            json!({"msg": "sub", "id": "r", "name": "stream-notify-user", "params": [format!("{}/rooms-changed", user.id), false]}),
            json!({"msg": "sub", "id": "u", "name": "stream-notify-user", "params": [format!("{}/subscriptions-changed", user.id), false]}),
            json!({"msg": "sub", "id": "n", "name": "stream-notify-user", "params": [format!("{}/notification", user.id), false]}),
        ] {
            ws.send(Message::text(frame.to_string()))
                .await
                .expect("send");
        }
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    if t.as_str().contains("__my_messages__") && t.as_str().contains("load ") {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/chat.sendMessage", sim.http_url());
    let per_sender = messages / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for user in senders {
        let client = client.clone();
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_sender);
            for n in 0..per_sender {
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("X-User-Id", &user.id)
                    .header("X-Auth-Token", &user.token)
                    .json(&json!({"message": {"rid": "GENERAL", "msg": format!("load {n}")}}))
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 200);
                let _ = resp.bytes().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    let sent = latencies.len();
    latencies.sort();
    let pct = |p: f64| latencies[((sent as f64 * p) as usize).min(sent - 1)];
    let expected = (sent * listeners) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "chat.sendMessage: {sent} requests, concurrency {concurrency}, {listeners} DDP listeners: {:.0} req/s, p50 {:?}, p99 {:?}; __my_messages__ delivered {}/{}; sockets still open {}",
        sent as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        received.load(Ordering::Relaxed),
        expected,
        sim.open_ddp_total(),
    );
    for t in tasks {
        t.abort();
    }
    sim.stop().await;
}
