//! The upstream lifecycle against a scripted provider: one upstream per online user, closed
//! after the grace period, and no message lost or doubled across a reconnect.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{Message, Room, RoomKind, Sender};
use imgate_domain::ports::{EventPublisher, ImProvider, RealtimeSignal};
use imgate_domain::services::{Ownership, PasswordPolicy, SessionService, UpstreamService};
use imgate_domain::{MessageId, Password, RoomId, UserEvent};
use imgate_memory::{MemoryEventPublisher, MemoryLease, MemoryTokenCache};
use imgate_testkit::scripted_provider::ScriptedProvider;
use imgate_testkit::{user, within};

const GRACE: Duration = Duration::from_secs(30);

/// A session service logging users in to `provider` with password "pw".
fn sessions(provider: &Arc<ScriptedProvider>) -> Arc<SessionService> {
    Arc::new(SessionService::new(
        provider.clone() as Arc<dyn ImProvider>,
        Arc::new(MemoryTokenCache::default()),
        PasswordPolicy::new(
            Password::new("pw"),
            Arc::new(imgate_memory::MemoryPasswordStore::default()),
        ),
        Duration::from_secs(3600),
    ))
}

/// One node's upstream service, sharing `lease` and `publisher` with any other node.
fn node(
    provider: &Arc<ScriptedProvider>,
    publisher: Arc<dyn EventPublisher>,
    lease: Arc<MemoryLease>,
    name: &str,
) -> Arc<UpstreamService> {
    UpstreamService::new(
        provider.clone(),
        sessions(provider),
        publisher,
        Ownership {
            lease,
            node: name.into(),
            ttl: Duration::from_secs(15),
        },
        GRACE,
    )
}

fn setup() -> (
    Arc<ScriptedProvider>,
    Arc<UpstreamService>,
    Arc<MemoryEventPublisher>,
) {
    let provider = ScriptedProvider::with_password("pw");
    let publisher = Arc::new(MemoryEventPublisher::new(64));
    let upstreams = node(
        &provider,
        publisher.clone(),
        Arc::new(MemoryLease::default()),
        "node-a",
    );
    (provider, upstreams, publisher)
}

fn message(id: &str, minute: u32, text: &str) -> Message {
    Message {
        id: MessageId::parse(id).unwrap(),
        room_id: RoomId::parse("room").unwrap(),
        sender: Sender {
            id: user("bob"),
            username: "bob".into(),
            name: "Bob".into(),
        },
        text: text.into(),
        created_at: Utc.with_ymd_and_hms(2030, 1, 1, 12, minute, 0).unwrap(),
        edited_at: None,
        thread_id: None,
        system: None,
        file: None,
    }
}

fn live(m: &Message) -> RealtimeSignal {
    RealtimeSignal::Event(UserEvent::RoomMessage {
        message: Box::new(m.clone()),
    })
}

/// Lets spawned tasks run until the condition holds.
async fn until(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn one_upstream_per_online_user_closed_after_the_grace_period() {
    let (provider, upstreams, _) = setup();
    let alice = user("alice");
    upstreams.connected(&alice);
    upstreams.connected(&alice);
    upstreams.connected(&user("bob"));
    until("two upstreams", || provider.upstreams().len() == 2).await;
    assert_eq!(
        provider
            .upstreams()
            .iter()
            .filter(|(u, _)| u == &alice)
            .count(),
        1
    );

    upstreams.disconnected(&alice);
    upstreams.disconnected(&alice);
    tokio::time::sleep(GRACE / 2).await;
    // Back within the grace period: the same upstream stays.
    upstreams.connected(&alice);
    tokio::time::sleep(GRACE * 2).await;
    assert_eq!(provider.open_upstreams(), 2);
    assert_eq!(
        provider.upstreams().len(),
        2,
        "no second upstream was opened"
    );

    upstreams.disconnected(&alice);
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    until("alice's upstream to close", || {
        provider.open_upstreams() == 1
    })
    .await;
    assert_eq!(upstreams.online_users(), 1);

    upstreams.close(&user("bob"));
    until("bob's upstream to close at once", || {
        provider.open_upstreams() == 0
    })
    .await;
}

#[tokio::test]
async fn events_reach_every_connection_and_a_reconnect_loses_and_doubles_nothing() {
    let (provider, upstreams, publisher) = setup();
    let alice = user("alice");
    let mut tabs = [
        publisher.subscribe(&alice).await.unwrap(),
        publisher.subscribe(&alice).await.unwrap(),
    ];
    upstreams.connected(&alice);
    until("the upstream", || provider.upstreams().len() == 1).await;
    let upstream = provider.upstreams()[0].1.clone();

    let m1 = message("m1", 1, "before the drop");
    let m2 = message("m2", 2, "while away");
    let m3 = message("m3", 3, "after the reconnect");
    upstream.send(RealtimeSignal::Connected).await.unwrap();
    upstream.send(live(&m1)).await.unwrap();
    for tab in &mut tabs {
        assert_eq!(
            *within("m1", tab.next()).await.unwrap(),
            UserEvent::RoomMessage {
                message: Box::new(m1.clone())
            }
        );
    }

    // The connection drops; m2 arrives meanwhile and is only in history.
    provider.add_history(m1.clone());
    provider.add_history(m2.clone());
    provider.set_rooms(vec![Room {
        id: RoomId::parse("room").unwrap(),
        kind: RoomKind::Group,
        name: "room".into(),
        members: None,
        unread: 1,
        last_message: Some(Box::new(m2.clone())),
        updated_at: m2.created_at,
    }]);
    upstream.send(RealtimeSignal::Connected).await.unwrap();
    // The provider also replays m2 live after the reconnect; it must not arrive twice.
    upstream.send(live(&m2)).await.unwrap();
    upstream.send(live(&m3)).await.unwrap();
    for tab in &mut tabs {
        let mut texts = Vec::new();
        loop {
            match &*within("events after the reconnect", tab.next())
                .await
                .unwrap()
            {
                UserEvent::RoomMessage { message } => {
                    texts.push(message.text.clone());
                    if message.id == m3.id {
                        break;
                    }
                }
                UserEvent::SubscriptionChanged { method, room } => {
                    assert_eq!((*method, room.unread), (SubscriptionChange::Updated, 1));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(texts, ["while away", "after the reconnect"]);
    }

    // An edit of m1 is a new event, not a duplicate.
    let mut edited = m1.clone();
    edited.text = "edited".into();
    edited.edited_at = Some(m3.created_at);
    upstream.send(live(&edited)).await.unwrap();
    for tab in &mut tabs {
        assert_eq!(
            *within("the edit", tab.next()).await.unwrap(),
            UserEvent::RoomMessage {
                message: Box::new(edited.clone())
            }
        );
    }
    // Another user's feed got none of it.
    let mut bob = publisher.subscribe(&user("bob")).await.unwrap();
    publisher
        .publish(
            &user("bob"),
            &UserEvent::Typing {
                room_id: RoomId::parse("r").unwrap(),
                username: "x".into(),
                typing: true,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        &*within("bob's marker", bob.next()).await.unwrap(),
        UserEvent::Typing { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn the_upstream_is_renewed_when_the_cached_session_expires() {
    let (provider, upstreams, _) = setup();
    upstreams.connected(&user("alice"));
    until("the upstream", || provider.upstreams().len() == 1).await;
    // The sessions in `setup` live an hour.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    until("a renewed upstream", || provider.upstreams().len() == 2).await;
    assert_eq!(provider.open_upstreams(), 1, "the old upstream was closed");
}

#[tokio::test(start_paused = true)]
async fn across_nodes_one_upstream_per_user_and_a_standby_takes_over() {
    let provider = ScriptedProvider::with_password("pw");
    let lease: Arc<MemoryLease> = Arc::new(MemoryLease::default());
    let publisher = Arc::new(MemoryEventPublisher::new(64));
    let (a, b) = (
        node(&provider, publisher.clone(), lease.clone(), "node-a"),
        node(&provider, publisher.clone(), lease.clone(), "node-b"),
    );
    a.connected(&user("alice"));
    until("the first upstream", || provider.upstreams().len() == 1).await;
    b.connected(&user("alice"));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        provider.upstreams().len(),
        1,
        "node b stands by while node a holds the lease"
    );

    // Node a closes alice's upstream (she was logged out there, say); node b takes over.
    a.close(&user("alice"));
    // Node b retries every half lease.
    tokio::time::sleep(Duration::from_secs(8)).await;
    until("node b's upstream", || provider.upstreams().len() == 2).await;
    assert_eq!(provider.open_upstreams(), 1, "never two at once");
    b.shutdown(Duration::from_secs(1)).await;
    until("all closed", || provider.open_upstreams() == 0).await;
}

#[tokio::test(start_paused = true)]
async fn a_takeover_delivers_what_the_old_holder_missed_and_nothing_it_delivered() {
    let provider = ScriptedProvider::with_password("pw");
    let lease: Arc<MemoryLease> = Arc::new(MemoryLease::default());
    let publisher = Arc::new(MemoryEventPublisher::new(64));
    let alice = user("alice");
    let mut tab = publisher.subscribe(&alice).await.unwrap();
    let (a, b) = (
        node(&provider, publisher.clone(), lease.clone(), "node-a"),
        node(&provider, publisher.clone(), lease.clone(), "node-b"),
    );
    a.connected(&alice);
    until("node a's upstream", || provider.upstreams().len() == 1).await;
    b.connected(&alice);
    // Node b finds the lease taken and starts watching.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = provider.upstreams()[0].1.clone();
    let m1 = message("m1", 1, "delivered by node a");
    let m2 = message("m2", 2, "sent while nobody held the upstream");
    first.send(RealtimeSignal::Connected).await.unwrap();
    first.send(live(&m1)).await.unwrap();
    assert_eq!(
        *within("m1", tab.next()).await.unwrap(),
        UserEvent::RoomMessage {
            message: Box::new(m1.clone())
        }
    );
    // Let node b's watch see m1 before node a goes.
    tokio::time::sleep(Duration::from_millis(10)).await;

    a.close(&alice);
    for m in [&m1, &m2] {
        provider.add_history(m.clone());
    }
    provider.set_rooms(vec![Room {
        id: RoomId::parse("room").unwrap(),
        kind: RoomKind::Group,
        name: "room".into(),
        members: None,
        unread: 1,
        last_message: Some(Box::new(m2.clone())),
        updated_at: m2.created_at,
    }]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    until("node b's upstream", || provider.upstreams().len() == 2).await;
    let second = provider.upstreams()[1].1.clone();
    second.send(RealtimeSignal::Connected).await.unwrap();
    let gap = loop {
        if let UserEvent::RoomMessage { message } = &*within("the gap", tab.next()).await.unwrap() {
            break message.text.clone();
        }
    };
    assert_eq!(gap, "sent while nobody held the upstream");
    // Nothing else queued: m1 was not delivered a second time.
    let m3 = message("m3", 3, "live again");
    second.send(live(&m3)).await.unwrap();
    loop {
        match &*within("m3", tab.next()).await.unwrap() {
            UserEvent::RoomMessage { message } => {
                assert_eq!(message.text, "live again");
                break;
            }
            UserEvent::SubscriptionChanged { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    b.shutdown(Duration::from_secs(1)).await;
}

/// A publisher that refuses everything while `down` is set, like Redis during an outage.
struct Flaky {
    inner: MemoryEventPublisher,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl EventPublisher for Flaky {
    async fn publish(
        &self,
        user: &imgate_domain::UserId,
        event: &UserEvent,
    ) -> Result<(), imgate_domain::ports::PublishError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(imgate_domain::ports::PublishError::Unavailable(
                "down".into(),
            ));
        }
        self.inner.publish(user, event).await
    }

    async fn subscribe(
        &self,
        user: &imgate_domain::UserId,
    ) -> Result<imgate_domain::ports::EventSubscription, imgate_domain::ports::PublishError> {
        self.inner.subscribe(user).await
    }
}

#[tokio::test]
async fn messages_the_publisher_refused_are_delivered_once_it_is_back_in_order() {
    let provider = ScriptedProvider::with_password("pw");
    let publisher = Arc::new(Flaky {
        inner: MemoryEventPublisher::new(64),
        down: false.into(),
    });
    let upstreams = node(
        &provider,
        publisher.clone(),
        Arc::new(MemoryLease::default()),
        "node-a",
    );
    let alice = user("alice");
    let mut tab = publisher.subscribe(&alice).await.unwrap();
    upstreams.connected(&alice);
    until("the upstream", || provider.upstreams().len() == 1).await;
    let upstream = provider.upstreams()[0].1.clone();
    let m1 = message("m1", 1, "before the outage");
    let m2 = message("m2", 2, "during the outage");
    let m3 = message("m3", 3, "during the outage too");
    let m4 = message("m4", 4, "after the outage");
    upstream.send(RealtimeSignal::Connected).await.unwrap();
    upstream.send(live(&m1)).await.unwrap();
    within("m1", tab.next()).await.unwrap();

    publisher
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for m in [&m1, &m2, &m3] {
        provider.add_history(m.clone());
    }
    provider.set_rooms(vec![Room {
        id: RoomId::parse("room").unwrap(),
        kind: RoomKind::Group,
        name: "room".into(),
        members: None,
        unread: 2,
        last_message: Some(Box::new(m3.clone())),
        updated_at: m3.created_at,
    }]);
    upstream.send(live(&m2)).await.unwrap();
    upstream.send(live(&m3)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    provider.add_history(m4.clone());
    upstream.send(live(&m4)).await.unwrap();

    let mut texts = Vec::new();
    while texts.last().map(String::as_str) != Some("after the outage") {
        if let UserEvent::RoomMessage { message } =
            &*within("messages after the outage", tab.next())
                .await
                .unwrap()
        {
            texts.push(message.text.clone());
        }
    }
    assert_eq!(
        texts,
        [
            "during the outage",
            "during the outage too",
            "after the outage"
        ]
    );
}
