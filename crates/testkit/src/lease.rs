//! The `Lease` contract suite.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use imgate_domain::ports::Lease;

use crate::{user, within};

const LONG: Duration = Duration::from_secs(300);
const SHORT: Duration = Duration::from_millis(800);

/// Runs every clause of the `Lease` contract, each on a fresh lease store from `make`.
pub async fn run_all<L, F, Fut>(make: F)
where
    L: Lease + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    a_held_lease_excludes_others(&make().await).await;
    acquiring_again_as_holder_is_idempotent(&make().await).await;
    an_expired_lease_goes_to_the_next_holder_with_a_larger_fence(&make().await).await;
    renew_keeps_it_and_a_stale_token_cannot(&make().await).await;
    release_frees_it_and_a_stale_release_does_nothing(&make().await).await;
    of_many_concurrent_acquirers_exactly_one_wins(Arc::new(make().await)).await;
    expires_in_tells_a_standby_when_to_try_again(&make().await).await;
    holder_names_who_holds_the_lease(&make().await).await;
}

async fn holder_names_who_holds_the_lease(lease: &dyn Lease) {
    let alice = user("alice");
    assert_eq!(lease.holder(&alice).await.unwrap(), None, "free");
    let token = lease
        .acquire(&alice, "node:a", LONG)
        .await
        .unwrap()
        .expect("free lease");
    assert_eq!(
        lease.holder(&alice).await.unwrap().as_deref(),
        Some("node:a")
    );
    assert_eq!(lease.holder(&user("bob")).await.unwrap(), None, "per user");
    lease.release(&alice, &token).await.unwrap();
    assert_eq!(lease.holder(&alice).await.unwrap(), None, "released");
    lease
        .acquire(&alice, "node-b", Duration::from_millis(50))
        .await
        .unwrap()
        .expect("released lease");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(lease.holder(&alice).await.unwrap(), None, "expired");
}

async fn expires_in_tells_a_standby_when_to_try_again(lease: &dyn Lease) {
    let alice = user("alice");
    assert_eq!(lease.expires_in(&alice).await.unwrap(), None, "free");
    let token = lease
        .acquire(&alice, "node-a", LONG)
        .await
        .unwrap()
        .unwrap();
    let left = lease.expires_in(&alice).await.unwrap().expect("held");
    assert!(left <= LONG && left > LONG / 2, "{left:?}");
    lease.release(&alice, &token).await.unwrap();
    assert_eq!(lease.expires_in(&alice).await.unwrap(), None, "released");
}

async fn a_held_lease_excludes_others(lease: &dyn Lease) {
    let token = lease.acquire(&user("alice"), "node-a", LONG).await.unwrap();
    assert!(token.is_some());
    assert_eq!(
        lease.acquire(&user("alice"), "node-b", LONG).await.unwrap(),
        None
    );
    assert!(
        lease
            .acquire(&user("bob"), "node-b", LONG)
            .await
            .unwrap()
            .is_some(),
        "leases are per user"
    );
}

async fn acquiring_again_as_holder_is_idempotent(lease: &dyn Lease) {
    let first = lease
        .acquire(&user("alice"), "node-a", LONG)
        .await
        .unwrap()
        .unwrap();
    let again = lease
        .acquire(&user("alice"), "node-a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, again);
}

async fn an_expired_lease_goes_to_the_next_holder_with_a_larger_fence(lease: &dyn Lease) {
    let old = lease
        .acquire(&user("alice"), "node-a", SHORT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lease.acquire(&user("alice"), "node-b", LONG).await.unwrap(),
        None
    );
    tokio::time::sleep(SHORT + Duration::from_millis(400)).await;
    let new = lease
        .acquire(&user("alice"), "node-b", LONG)
        .await
        .unwrap()
        .expect("expired lease is free");
    assert_eq!(new.holder, "node-b");
    assert!(
        new.fence > old.fence,
        "fence must grow: {} then {}",
        old.fence,
        new.fence
    );
    assert!(
        !lease.renew(&user("alice"), &old, LONG).await.unwrap(),
        "the old holder lost it"
    );
}

async fn renew_keeps_it_and_a_stale_token_cannot(lease: &dyn Lease) {
    let token = lease
        .acquire(&user("alice"), "node-a", SHORT)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(SHORT / 2).await;
        assert!(lease.renew(&user("alice"), &token, SHORT).await.unwrap());
    }
    assert_eq!(
        lease.acquire(&user("alice"), "node-b", LONG).await.unwrap(),
        None,
        "renewed lease is still held"
    );
    let forged = imgate_domain::ports::LeaseToken {
        holder: "node-b".into(),
        fence: token.fence,
    };
    assert!(!lease.renew(&user("alice"), &forged, LONG).await.unwrap());
}

async fn release_frees_it_and_a_stale_release_does_nothing(lease: &dyn Lease) {
    let token = lease
        .acquire(&user("alice"), "node-a", LONG)
        .await
        .unwrap()
        .unwrap();
    let stale = imgate_domain::ports::LeaseToken {
        holder: "node-a".into(),
        fence: token.fence + 100,
    };
    lease.release(&user("alice"), &stale).await.unwrap();
    assert_eq!(
        lease.acquire(&user("alice"), "node-b", LONG).await.unwrap(),
        None
    );
    lease.release(&user("alice"), &token).await.unwrap();
    let next = lease
        .acquire(&user("alice"), "node-b", LONG)
        .await
        .unwrap()
        .expect("released lease is free");
    assert!(!lease.renew(&user("alice"), &token, LONG).await.unwrap());
    lease.release(&user("alice"), &token).await.unwrap();
    assert!(
        lease.renew(&user("alice"), &next, LONG).await.unwrap(),
        "a stale release left the new holder alone"
    );
}

async fn of_many_concurrent_acquirers_exactly_one_wins(lease: Arc<dyn Lease>) {
    let tries = (0..20).map(|n| {
        let lease = lease.clone();
        tokio::spawn(async move {
            lease
                .acquire(&user("alice"), &format!("node-{n}"), LONG)
                .await
        })
    });
    let won = within(
        "20 concurrent acquisitions",
        futures::future::join_all(tries),
    )
    .await
    .into_iter()
    .filter(|r| {
        r.as_ref()
            .expect("task")
            .as_ref()
            .expect("acquire")
            .is_some()
    })
    .count();
    assert_eq!(won, 1);
}
