//! The upstream lifecycle against a scripted provider: one upstream per online user, closed
//! after the grace period, and no message lost or doubled across a reconnect.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use imgate_domain::event::SubscriptionChange;
use imgate_domain::model::{Message, Room, RoomKind, Sender};
use imgate_domain::ports::{EventDelivery, ImProvider, MessageStamp, Reach, RealtimeSignal};
use imgate_domain::services::{Ownership, PasswordPolicy, SessionService, UpstreamService};
use imgate_domain::{MessageId, Password, RoomId, UserEvent, UserId};
use imgate_memory::{MemoryLease, MemoryTokenCache};
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

/// One node's connections as the hub would serve them: what reaches them, in order, and the
/// other nodes, which get what this node sends to all nodes as a backplane would carry it,
/// unless the backplane is down.
#[derive(Default)]
struct Node {
    received: Mutex<Vec<(UserId, UserEvent)>>,
    wake: tokio::sync::Notify,
    peers: Mutex<Vec<Arc<Node>>>,
    service: OnceLock<std::sync::Weak<UpstreamService>>,
    backplane_down: std::sync::atomic::AtomicBool,
    /// What peers sent while held, as the hub keeps it back during a recovery.
    held: Mutex<Option<Vec<(UserId, UserEvent)>>>,
}

impl Node {
    fn here(&self, user: &UserId, event: &UserEvent) {
        self.received
            .lock()
            .unwrap()
            .push((user.clone(), event.clone()));
        self.wake.notify_waiters();
    }

    /// What another node sent, passed through the user's repeat filter as the hub does.
    fn received(&self, user: &UserId, event: &UserEvent) {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push((user.clone(), event.clone()));
            return;
        }
        self.filtered(user, event);
    }

    fn filtered(&self, user: &UserId, event: &UserEvent) {
        let service = self.service.get().and_then(std::sync::Weak::upgrade);
        if let (UserEvent::RoomMessage { message }, Some(service)) = (event, &service) {
            if !service.observe(user, &MessageStamp::of(message)) {
                return;
            }
        }
        self.here(user, event);
    }
}

impl EventDelivery for Node {
    fn hold(&self, _user: &UserId) {
        self.held.lock().unwrap().get_or_insert_with(Vec::new);
    }

    fn release(&self, _user: &UserId) {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for (user, event) in held {
            self.filtered(&user, &event);
        }
    }

    fn deliver(&self, user: &UserId, event: &UserEvent, reach: Reach) {
        self.here(user, event);
        if reach == Reach::AllNodes
            && !self
                .backplane_down
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            for peer in self.peers.lock().unwrap().iter() {
                peer.received(user, event);
            }
        }
    }
}

/// A reader of what one node's connections of a user received, from the start.
struct Tab {
    node: Arc<Node>,
    user: UserId,
    read: usize,
}

impl Tab {
    fn new(node: &Arc<Node>, user: &UserId) -> Self {
        Self {
            node: node.clone(),
            user: user.clone(),
            read: 0,
        }
    }

    async fn next(&mut self) -> Option<UserEvent> {
        loop {
            let wake = self.node.wake.notified();
            tokio::pin!(wake);
            // Registered before looking, so a delivery in between still wakes us.
            wake.as_mut().enable();
            {
                let received = self.node.received.lock().unwrap();
                while self.read < received.len() {
                    let (user, event) = &received[self.read];
                    self.read += 1;
                    if *user == self.user {
                        return Some(event.clone());
                    }
                }
            }
            wake.await;
        }
    }
}

/// One node's upstream service, sharing `lease` with any other node.
fn node(
    provider: &Arc<ScriptedProvider>,
    delivery: Arc<Node>,
    lease: Arc<MemoryLease>,
    name: &str,
) -> Arc<UpstreamService> {
    let service = UpstreamService::new(
        provider.clone(),
        sessions(provider),
        delivery.clone(),
        Ownership {
            lease,
            node: name.into(),
            ttl: Duration::from_secs(15),
        },
        GRACE,
    );
    let _ = delivery.service.set(Arc::downgrade(&service));
    service
}

/// One node's upstream service and what its connections received.
type TestNode = (Arc<UpstreamService>, Arc<Node>);

/// Two nodes whose deliveries to all nodes reach each other.
fn two_nodes(provider: &Arc<ScriptedProvider>) -> (TestNode, TestNode) {
    let lease: Arc<MemoryLease> = Arc::new(MemoryLease::default());
    let (here_a, here_b) = (Arc::new(Node::default()), Arc::new(Node::default()));
    here_a.peers.lock().unwrap().push(here_b.clone());
    here_b.peers.lock().unwrap().push(here_a.clone());
    (
        (
            node(provider, here_a.clone(), lease.clone(), "node-a"),
            here_a,
        ),
        (node(provider, here_b.clone(), lease, "node-b"), here_b),
    )
}

fn setup() -> (Arc<ScriptedProvider>, Arc<UpstreamService>, Arc<Node>) {
    let provider = ScriptedProvider::with_password("pw");
    let here = Arc::new(Node::default());
    let upstreams = node(
        &provider,
        here.clone(),
        Arc::new(MemoryLease::default()),
        "node-a",
    );
    (provider, upstreams, here)
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

fn live_event(m: &Message) -> UserEvent {
    UserEvent::RoomMessage {
        message: Box::new(m.clone()),
    }
}

fn live(m: &Message) -> RealtimeSignal {
    RealtimeSignal::Event(live_event(m))
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
    upstreams.online(&alice);
    upstreams.online(&user("bob"));
    until("two upstreams", || provider.upstreams().len() == 2).await;
    assert_eq!(
        provider
            .upstreams()
            .iter()
            .filter(|(u, _)| u == &alice)
            .count(),
        1
    );

    upstreams.offline(&alice);
    tokio::time::sleep(GRACE / 2).await;
    // Back within the grace period: the same upstream stays.
    upstreams.online(&alice);
    tokio::time::sleep(GRACE * 2).await;
    assert_eq!(provider.open_upstreams(), 2);
    assert_eq!(
        provider.upstreams().len(),
        2,
        "no second upstream was opened"
    );

    upstreams.offline(&alice);
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
    let (provider, upstreams, here) = setup();
    let alice = user("alice");
    let mut tabs = [Tab::new(&here, &alice), Tab::new(&here, &alice)];
    upstreams.online(&alice);
    until("the upstream", || provider.upstreams().len() == 1).await;
    let upstream = provider.upstreams()[0].1.clone();

    let m1 = message("m1", 1, "before the drop");
    let m2 = message("m2", 2, "while away");
    let m3 = message("m3", 3, "after the reconnect");
    upstream.send(RealtimeSignal::Connected).await.unwrap();
    upstream.send(live(&m1)).await.unwrap();
    for tab in &mut tabs {
        assert_eq!(
            within("m1", tab.next()).await.unwrap(),
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
            match &within("events after the reconnect", tab.next())
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
            within("the edit", tab.next()).await.unwrap(),
            UserEvent::RoomMessage {
                message: Box::new(edited.clone())
            }
        );
    }
    // Another user got none of it.
    assert!(here
        .received
        .lock()
        .unwrap()
        .iter()
        .all(|(u, _)| *u == alice));
}

#[tokio::test(start_paused = true)]
async fn the_upstream_is_renewed_when_the_cached_session_expires() {
    let (provider, upstreams, _) = setup();
    upstreams.online(&user("alice"));
    until("the upstream", || provider.upstreams().len() == 1).await;
    // The sessions in `setup` live an hour.
    tokio::time::sleep(Duration::from_secs(3601)).await;
    until("a renewed upstream", || provider.upstreams().len() == 2).await;
    assert_eq!(provider.open_upstreams(), 1, "the old upstream was closed");
}

#[tokio::test(start_paused = true)]
async fn across_nodes_one_upstream_per_user_and_a_standby_takes_over() {
    let provider = ScriptedProvider::with_password("pw");
    let ((a, _), (b, _)) = two_nodes(&provider);
    a.online(&user("alice"));
    until("the first upstream", || provider.upstreams().len() == 1).await;
    b.online(&user("alice"));
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
    let ((a, _), (b, on_b)) = two_nodes(&provider);
    let alice = user("alice");
    // A connection on node b: it gets what node a delivers, then what node b's takeover does.
    let mut tab = Tab::new(&on_b, &alice);
    a.online(&alice);
    until("node a's upstream", || provider.upstreams().len() == 1).await;
    b.online(&alice);
    // Node b finds the lease taken and starts watching.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = provider.upstreams()[0].1.clone();
    let m1 = message("m1", 1, "delivered by node a");
    let m2 = message("m2", 2, "sent while nobody held the upstream");
    first.send(RealtimeSignal::Connected).await.unwrap();
    first.send(live(&m1)).await.unwrap();
    assert_eq!(
        within("m1", tab.next()).await.unwrap(),
        UserEvent::RoomMessage {
            message: Box::new(m1.clone())
        }
    );
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
        if let UserEvent::RoomMessage { message } = &within("the gap", tab.next()).await.unwrap() {
            break message.text.clone();
        }
    };
    assert_eq!(gap, "sent while nobody held the upstream");
    // Nothing else queued: m1 was not delivered a second time.
    let m3 = message("m3", 3, "live again");
    second.send(live(&m3)).await.unwrap();
    loop {
        match &within("m3", tab.next()).await.unwrap() {
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

#[tokio::test(start_paused = true)]
async fn a_standby_recovers_from_history_what_the_backplane_lost_each_message_once_in_order() {
    let provider = ScriptedProvider::with_password("pw");
    let ((a, on_a), (b, on_b)) = two_nodes(&provider);
    let alice = user("alice");
    let mut tab = Tab::new(&on_b, &alice);
    a.online(&alice);
    until("node a's upstream", || provider.upstreams().len() == 1).await;
    b.online(&alice);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let upstream = provider.upstreams()[0].1.clone();
    let m1 = message("m1", 1, "before the outage");
    let m2 = message("m2", 2, "during the outage");
    let m3 = message("m3", 3, "during the outage too");
    let m4 = message("m4", 4, "after the outage");
    upstream.send(RealtimeSignal::Connected).await.unwrap();
    upstream.send(live(&m1)).await.unwrap();
    within("m1", tab.next()).await.unwrap();

    on_a.backplane_down
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
    until("node a's own connections to have m3", || {
        on_a.received.lock().unwrap().len() == 3
    })
    .await;
    on_a.backplane_down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    b.backplane_resumed();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        if let UserEvent::RoomMessage { message } =
            &within("what the backplane lost", tab.next()).await.unwrap()
        {
            texts.push(message.text.clone());
        }
    }
    assert_eq!(texts, ["during the outage", "during the outage too"]);
    // Node a's copy of m3 turning up late is not delivered again; m4 comes live.
    on_b.received(&alice, &live_event(&m3));
    upstream.send(live(&m4)).await.unwrap();
    loop {
        match &within("m4", tab.next()).await.unwrap() {
            UserEvent::RoomMessage { message } => {
                assert_eq!(message.text, "after the outage");
                break;
            }
            UserEvent::SubscriptionChanged { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    b.shutdown(Duration::from_secs(1)).await;
    a.shutdown(Duration::from_secs(1)).await;
}
