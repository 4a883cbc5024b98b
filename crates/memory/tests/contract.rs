//! The port contract suites, run against the in-process adapters.

use imgate_memory::{MemoryEventPublisher, MemoryTokenCache};

#[tokio::test]
async fn memory_token_cache_meets_the_token_cache_contract() {
    imgate_testkit::token_cache::run_all(|| async { MemoryTokenCache::default() }).await;
}

#[tokio::test]
async fn memory_event_publisher_meets_the_event_publisher_contract() {
    imgate_testkit::event_publisher::run_all(|_buffer| async move {
        let publisher = MemoryEventPublisher::new(_buffer);
        // One process is one node: both "nodes" of the suite are the same publisher.
        let publisher = std::sync::Arc::new(publisher);
        (publisher.clone(), publisher)
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
