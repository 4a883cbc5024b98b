//! The `Presence` contract suite.
//!
//! The factory returns three presences sharing one store, standing for three nodes. `set`
//! applies soon after the call, so each check waits until the count is what it must be, and
//! fails after [`PATIENCE`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgate_domain::ports::Presence;

use crate::{user, PATIENCE};

/// Runs every case, each on fresh nodes from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = [Arc<dyn Presence>; 3]>,
{
    nobody_set_is_offline(make().await).await;
    counts_add_up_over_nodes(make().await).await;
    the_last_set_of_a_node_wins(make().await).await;
    users_are_counted_apart(make().await).await;
    a_node_that_stops_stops_counting(make().await).await;
}

/// Waits until `node` counts `expected` connections of `id`.
async fn counts(node: &dyn Presence, id: &str, expected: usize, what: &str) {
    let start = Instant::now();
    loop {
        let now = node.connections(&user(id)).await.expect("presence answers");
        if now == expected {
            return;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: {id} has {now} connections, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn nobody_set_is_offline([a, ..]: [Arc<dyn Presence>; 3]) {
    counts(&*a, "alice", 0, "never set").await;
}

async fn counts_add_up_over_nodes([a, b, c]: [Arc<dyn Presence>; 3]) {
    a.set(&user("alice"), 2);
    counts(&*c, "alice", 2, "two on a, asked on c").await;
    b.set(&user("alice"), 1);
    counts(&*c, "alice", 3, "two on a and one on b").await;
    a.set(&user("alice"), 0);
    counts(&*a, "alice", 1, "none on a any more").await;
    b.set(&user("alice"), 0);
    counts(&*c, "alice", 0, "none anywhere").await;
}

async fn the_last_set_of_a_node_wins([a, b, _]: [Arc<dyn Presence>; 3]) {
    for n in [1, 4, 2, 0, 3] {
        a.set(&user("alice"), n);
    }
    counts(&*b, "alice", 3, "the last of five sets").await;
    // Still 3 a while later: no earlier set lands after the last one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    counts(&*b, "alice", 3, "the last of five sets, later").await;
}

async fn users_are_counted_apart([a, b, _]: [Arc<dyn Presence>; 3]) {
    a.set(&user("alice"), 1);
    b.set(&user("bob"), 2);
    counts(&*a, "alice", 1, "alice").await;
    counts(&*a, "bob", 2, "bob").await;
    counts(&*a, "carol", 0, "carol").await;
}

async fn a_node_that_stops_stops_counting([a, b, c]: [Arc<dyn Presence>; 3]) {
    a.set(&user("alice"), 1);
    c.set(&user("alice"), 2);
    counts(&*b, "alice", 3, "one on a, two on c").await;
    drop(c);
    counts(&*b, "alice", 1, "c stopped").await;
}
