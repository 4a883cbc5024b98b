//! The port contract suites, run against the in-process adapters.

use std::sync::Arc;

use imgate_memory::{MemoryBus, MemoryTokenCache};
use imgate_testkit::backplane::SuiteNode;

#[tokio::test]
async fn memory_token_cache_meets_the_token_cache_contract() {
    imgate_testkit::token_cache::run_all(|| async { MemoryTokenCache::default() }).await;
}

#[tokio::test]
async fn memory_backplane_meets_the_backplane_contract() {
    imgate_testkit::backplane::run_all(|| async {
        let bus = MemoryBus::new();
        ["a", "b", "c"].map(|name| SuiteNode::attached(Arc::new(bus.node(name))))
    })
    .await;
}

#[tokio::test]
async fn a_tiered_token_cache_meets_the_token_cache_contract() {
    imgate_testkit::token_cache::run_all(|| async {
        imgate_memory::TieredTokenCache::new(
            Arc::new(MemoryTokenCache::default()),
            1_000,
            std::time::Duration::from_secs(30),
        )
    })
    .await;
}

#[tokio::test]
async fn memory_lease_meets_the_lease_contract() {
    imgate_testkit::lease::run_all(|| async { imgate_memory::MemoryLease::default() }).await;
}

#[tokio::test]
async fn memory_password_store_meets_the_password_store_contract() {
    imgate_testkit::password_store::run_all(|| async {
        // One process is one node: both "nodes" of the suite are the same store.
        let store = std::sync::Arc::new(imgate_memory::MemoryPasswordStore::default());
        (store.clone(), store)
    })
    .await;
}

#[tokio::test]
async fn memory_presence_meets_the_presence_contract() {
    imgate_testkit::presence::run_all(|| async {
        let board = imgate_memory::PresenceBoard::new();
        [(); 3].map(|()| Arc::new(board.node()) as Arc<dyn imgate_domain::ports::Presence>)
    })
    .await;
}
