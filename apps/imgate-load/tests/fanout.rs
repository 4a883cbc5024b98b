//! The bench's fan-out path end to end at a tiny size: the limit server, receivers opened from
//! several loopback addresses, a publisher, and the probe that counts deliveries.

use std::sync::Arc;
use std::time::Duration;

use imgate_load::bench::clients::{Publisher, Receiver};
use imgate_load::bench::limit;
use imgate_load::bench::probe::Probe;
use imgate_load::ws;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn every_event_reaches_every_connection_once() {
    let listener = limit::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = url::Url::parse(&format!("ws://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(limit::serve(listener));

    let probe = Arc::new(Probe::new());
    let stop = CancellationToken::new();
    let connections = 20;
    for i in 0..connections {
        let socket = ws::open(&url, ws::loopback_source(i, 3)).await.unwrap();
        tokio::spawn(Receiver::Plain(socket).run(i, probe.clone(), stop.clone(), |_| {}));
    }
    let publisher = Publisher::on_socket(ws::open(&url, None).await.unwrap(), false);
    let http = reqwest::Client::new();

    // The server takes connections in the background: wait until one event reaches them all.
    let mut round = 1;
    loop {
        probe.begin(round);
        publisher.publish(&http, &probe.event(round)).await.unwrap();
        probe
            .settle(connections as u64, Duration::from_millis(500))
            .await;
        if probe.delivered() == connections as u64 {
            break;
        }
        assert!(round < 20, "connections never all received an event");
        round += 1;
    }

    probe.begin(round + 1);
    let mut sent_bytes = 0;
    for _ in 0..5 {
        let event = probe.event(round + 1);
        sent_bytes += event.len();
        publisher.publish(&http, &event).await.unwrap();
    }
    probe
        .settle(5 * connections as u64, Duration::from_secs(5))
        .await;
    assert_eq!(probe.delivered(), 5 * connections as u64);
    assert_eq!(probe.latency().count, 5 * connections as u64);
    // Nothing arrives twice.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(probe.delivered(), 5 * connections as u64);
    // The limit sends the events and nothing else, each as its own message.
    assert_eq!(probe.bytes_read(), (sent_bytes * connections) as u64);
    stop.cancel();
}
