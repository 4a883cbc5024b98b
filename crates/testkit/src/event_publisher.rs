//! The `EventPublisher` contract suite.
//!
//! The factory returns two publishers that share one backplane, standing for two nodes; an
//! in-process adapter returns the same publisher twice.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use imgate_domain::model::{Message, Sender};
use imgate_domain::ports::{EventPublisher, EventSubscription};
use imgate_domain::{MessageId, RoomId, UserEvent, UserId};

use crate::{user, within};

/// Subscriber buffer the suite asks the factory for; the lag case overflows it.
pub const SUITE_BUFFER: usize = 16;

/// A distinguishable event for the suite.
pub fn typing(n: usize) -> UserEvent {
    UserEvent::Typing {
        room_id: RoomId::parse("room").expect("valid id"),
        username: format!("user-{n}"),
        typing: n.is_multiple_of(2),
    }
}

/// A room message with `id`, edited at `edited_s` (Unix seconds) if given.
pub fn room_message(id: &str, edited_s: Option<i64>) -> UserEvent {
    UserEvent::RoomMessage {
        message: Box::new(Message {
            id: MessageId::parse(id).expect("valid id"),
            room_id: RoomId::parse("room").expect("valid id"),
            sender: Sender {
                id: UserId::parse("bob").expect("valid id"),
                username: "bob".into(),
                name: "Bob".into(),
            },
            text: format!("text of {id}"),
            created_at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid time"),
            edited_at: edited_s.map(|s| DateTime::from_timestamp(s, 0).expect("valid time")),
            thread_id: None,
            system: None,
            file: None,
        }),
    }
}

/// Runs every clause of the `EventPublisher` contract on fresh publishers from `make`, which
/// receives the per-subscriber buffer size to configure.
pub async fn run_all<P, F, Fut>(make: F)
where
    P: EventPublisher + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = (Arc<P>, Arc<P>)>,
{
    let (a, b) = make(SUITE_BUFFER).await;
    every_connection_of_the_user_gets_each_event_once(&*a, &*b).await;
    let (a, b) = make(SUITE_BUFFER).await;
    events_arrive_in_publication_order(&*a, &*b).await;
    let (a, _) = make(SUITE_BUFFER).await;
    publishing_to_a_user_without_subscribers_is_ok(&*a).await;
    let (a, b) = make(SUITE_BUFFER).await;
    a_dropped_subscription_receives_nothing_more(&*a, &*b).await;
    let (a, b) = make(SUITE_BUFFER).await;
    a_subscriber_that_does_not_read_is_cut_off_alone(&*a, &*b).await;
    let (a, b) = make(SUITE_BUFFER).await;
    a_room_message_published_again_reaches_each_connection_once(&*a, &*b).await;
}

async fn next(sub: &mut EventSubscription, what: &str) -> UserEvent {
    let event = within(what, sub.next()).await;
    (*event.unwrap_or_else(|| panic!("feed ended while waiting for {what}"))).clone()
}

async fn every_connection_of_the_user_gets_each_event_once(
    a: &dyn EventPublisher,
    b: &dyn EventPublisher,
) {
    let mut alice = [
        a.subscribe(&user("alice")).await.unwrap(),
        a.subscribe(&user("alice")).await.unwrap(),
        b.subscribe(&user("alice")).await.unwrap(),
    ];
    let mut bob = b.subscribe(&user("bob")).await.unwrap();

    a.publish(&user("alice"), &typing(1)).await.unwrap();
    b.publish(&user("alice"), &typing(2)).await.unwrap();
    // A marker published last: if bob had been sent alice's events they would come first.
    a.publish(&user("bob"), &typing(99)).await.unwrap();

    for (i, sub) in alice.iter_mut().enumerate() {
        assert_eq!(next(sub, &format!("alice #{i}, event 1")).await, typing(1));
        assert_eq!(next(sub, &format!("alice #{i}, event 2")).await, typing(2));
    }
    assert_eq!(next(&mut bob, "bob's marker").await, typing(99));
    // Nothing beyond the two events: a duplicate would show up here.
    a.publish(&user("alice"), &typing(3)).await.unwrap();
    for (i, sub) in alice.iter_mut().enumerate() {
        assert_eq!(next(sub, &format!("alice #{i}, event 3")).await, typing(3));
    }
}

async fn events_arrive_in_publication_order(a: &dyn EventPublisher, b: &dyn EventPublisher) {
    let mut near = a.subscribe(&user("alice")).await.unwrap();
    let mut far = b.subscribe(&user("alice")).await.unwrap();
    let count = SUITE_BUFFER / 2;
    for n in 0..count {
        a.publish(&user("alice"), &typing(n)).await.unwrap();
    }
    for n in 0..count {
        assert_eq!(next(&mut near, "near events").await, typing(n));
        assert_eq!(next(&mut far, "far events").await, typing(n));
    }
}

async fn publishing_to_a_user_without_subscribers_is_ok(a: &dyn EventPublisher) {
    a.publish(&user("nobody-listens"), &typing(0))
        .await
        .unwrap();
}

async fn a_dropped_subscription_receives_nothing_more(
    a: &dyn EventPublisher,
    b: &dyn EventPublisher,
) {
    let dropped = b.subscribe(&user("alice")).await.unwrap();
    let mut kept = b.subscribe(&user("alice")).await.unwrap();
    drop(dropped);
    a.publish(&user("alice"), &typing(1)).await.unwrap();
    assert_eq!(next(&mut kept, "the kept subscription").await, typing(1));
}

async fn a_subscriber_that_does_not_read_is_cut_off_alone(
    a: &dyn EventPublisher,
    b: &dyn EventPublisher,
) {
    let mut stalled = b.subscribe(&user("alice")).await.unwrap();
    let mut reader = b.subscribe(&user("alice")).await.unwrap();
    let total = SUITE_BUFFER * 4;
    let reading = async {
        for n in 0..total {
            assert_eq!(next(&mut reader, "the reading subscriber").await, typing(n));
        }
    };
    let publishing = async {
        for n in 0..total {
            a.publish(&user("alice"), &typing(n)).await.unwrap();
            // Let the reader keep pace; the stalled subscriber never reads.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    within("publishing past a stalled subscriber", async {
        tokio::join!(reading, publishing)
    })
    .await;
    // The stalled feed yields what it buffered, then ends, marked as lagging.
    let mut buffered = 0;
    while within("the stalled feed to end", stalled.next())
        .await
        .is_some()
    {
        buffered += 1;
    }
    assert!(buffered <= SUITE_BUFFER, "buffered {buffered} events");
    assert!(stalled.lagged(), "the cut-off feed must say it lagged");
    assert!(!reader.lagged());
}

/// A publish that timed out may have gone through, and its retry then repeats it; an edit of
/// the message is news.
async fn a_room_message_published_again_reaches_each_connection_once(
    a: &dyn EventPublisher,
    b: &dyn EventPublisher,
) {
    let mut near = a.subscribe(&user("alice")).await.unwrap();
    let mut far = b.subscribe(&user("alice")).await.unwrap();
    a.publish(&user("alice"), &room_message("m1", None))
        .await
        .unwrap();
    b.publish(&user("alice"), &room_message("m1", None))
        .await
        .unwrap();
    a.publish(&user("alice"), &room_message("m1", Some(1_700_000_100)))
        .await
        .unwrap();
    a.publish(&user("alice"), &room_message("m1", None))
        .await
        .unwrap();
    // A marker published last: a repeat would come before it.
    a.publish(&user("alice"), &typing(1)).await.unwrap();
    for (sub, name) in [(&mut near, "near"), (&mut far, "far")] {
        assert_eq!(next(sub, name).await, room_message("m1", None));
        assert_eq!(
            next(sub, name).await,
            room_message("m1", Some(1_700_000_100))
        );
        assert_eq!(next(sub, name).await, typing(1));
    }
}
