//! The `Backplane` contract suite, and [`Recorder`], a receiver that keeps what arrives.
//!
//! The factory returns three backplanes sharing one medium, standing for three nodes, each
//! with a [`Recorder`] attached ([`SuiteNode::attached`]). "Gets nothing" is checked without
//! sleeping: after the message that must not arrive, a publisher sends a marker to
//! [`Audience::All`]; a publisher's messages arrive in order, so the marker coming next
//! proves the message did not.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::DateTime;
use imgate_domain::ports::{
    Audience, Backplane, BackplaneMessage, BackplaneReceiver, MessageStamp, Payload, ProtocolCode,
};
use imgate_domain::MessageId;
use tokio::sync::{mpsc, watch};

use crate::{user, within, PATIENCE};

/// Records what a node receives, for a test to read in order.
pub struct Recorder {
    sender: mpsc::UnboundedSender<BackplaneMessage>,
    // Unbounded: a test double must take whatever the adapter hands it, and a test reads
    // everything it provoked.
    messages: tokio::sync::Mutex<mpsc::UnboundedReceiver<BackplaneMessage>>,
    resumed: watch::Sender<usize>,
}

impl Recorder {
    /// A recorder that has received nothing.
    pub fn new() -> Arc<Self> {
        let (sender, messages) = mpsc::unbounded_channel();
        Arc::new(Self {
            sender,
            messages: tokio::sync::Mutex::new(messages),
            resumed: watch::Sender::new(0),
        })
    }

    /// The next message received, failing the test if none comes within [`PATIENCE`].
    pub async fn next(&self, what: &str) -> BackplaneMessage {
        self.next_within(PATIENCE, what).await
    }

    /// The next message received, failing the test if none comes within `patience`.
    pub async fn next_within(&self, patience: Duration, what: &str) -> BackplaneMessage {
        let mut messages = self.messages.lock().await;
        match tokio::time::timeout(patience, messages.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => unreachable!("the recorder holds its own sender"),
            Err(_) => panic!("timed out after {patience:?} waiting for {what}"),
        }
    }

    /// The next message if one comes within `wait`.
    pub async fn try_next(&self, wait: Duration) -> Option<BackplaneMessage> {
        let mut messages = self.messages.lock().await;
        tokio::time::timeout(wait, messages.recv()).await.ok()?
    }

    /// How often the backplane said it resumed after losing the other nodes.
    pub fn resumed(&self) -> usize {
        *self.resumed.borrow()
    }

    /// Waits until `resumed` was called at least `count` times in all, failing the test
    /// after `patience`.
    pub async fn resumed_at_least(&self, count: usize, patience: Duration) {
        let mut resumed = self.resumed.subscribe();
        if tokio::time::timeout(patience, resumed.wait_for(|seen| *seen >= count))
            .await
            .is_err()
        {
            panic!(
                "timed out after {patience:?} waiting for `resumed` #{count} (seen {})",
                self.resumed()
            );
        }
    }
}

impl BackplaneReceiver for Recorder {
    fn receive(&self, message: BackplaneMessage) {
        // The receiving half lives as long as `self`, so this cannot fail.
        let _ = self.sender.send(message);
    }

    fn resumed(&self) {
        self.resumed.send_modify(|seen| *seen += 1);
    }
}

/// One node of the suite: its backplane and what it received.
pub struct SuiteNode {
    /// The node's backplane, as the app holds it.
    pub backplane: Arc<dyn Backplane>,
    /// What it received.
    pub recorder: Arc<Recorder>,
}

impl SuiteNode {
    /// `backplane` with a fresh recorder attached.
    pub fn attached(backplane: Arc<dyn Backplane>) -> Self {
        let recorder = Recorder::new();
        let as_receiver: Arc<dyn BackplaneReceiver> = recorder.clone();
        backplane.attach(Arc::downgrade(&as_receiver));
        Self {
            backplane,
            recorder,
        }
    }

    /// Subscribes to `user_id` and waits until that is in effect.
    pub async fn subscribe(&self, user_id: &str) {
        within(
            "a subscription to take effect",
            self.backplane.subscribe(&user(user_id)),
        )
        .await
        .expect("subscribe");
    }

    /// Unsubscribes from `user_id` and waits until that is in effect.
    pub async fn unsubscribe(&self, user_id: &str) {
        within(
            "an unsubscription to take effect",
            self.backplane.unsubscribe(&user(user_id)),
        )
        .await
        .expect("unsubscribe");
    }

    /// Publishes `message`, which must be accepted.
    pub fn publish(&self, message: &BackplaneMessage) {
        self.backplane.publish(message).expect("publish");
    }

    /// Publishes `message` and waits until the backplane confirms it is ordered.
    pub async fn publish_confirmed(&self, message: &BackplaneMessage) {
        within(
            "a publish to be confirmed",
            self.backplane.publish_confirmed(message),
        )
        .await
        .expect("publish_confirmed");
    }

    /// Checks that the next message this node receives is `expected`.
    pub async fn expect(&self, expected: &BackplaneMessage, what: &str) {
        assert_eq!(&self.recorder.next(what).await, expected, "{what}");
    }
}

/// A message to `audience` whose frames say `text`, stamped as a room message.
pub fn frames(audience: Audience, text: &str) -> BackplaneMessage {
    BackplaneMessage {
        audience,
        payload: Payload::Frames {
            stamp: Some(MessageStamp {
                id: MessageId::parse(text).expect("valid id"),
                edited_at: None,
                at: DateTime::from_timestamp(1_700_000_000, 7).expect("valid time"),
            }),
            frames: vec![
                (
                    ProtocolCode::JSON,
                    Bytes::from(format!("{{\"text\":\"{text}\"}}\u{1e}")),
                ),
                (
                    ProtocolCode::MESSAGEPACK,
                    Bytes::from(text.as_bytes().to_vec()),
                ),
            ],
        },
    }
}

/// A message to `user_id` whose frames say `text`.
pub fn to_user(user_id: &str, text: &str) -> BackplaneMessage {
    frames(Audience::User(user(user_id)), text)
}

/// An edit of the message `to_user(user_id, text)` would make, with a different stamp.
fn edited(user_id: &str, text: &str) -> BackplaneMessage {
    let mut message = to_user(user_id, text);
    if let Payload::Frames {
        stamp: Some(stamp), ..
    } = &mut message.payload
    {
        stamp.edited_at = DateTime::from_timestamp(1_700_000_060, 9);
        stamp.at = DateTime::from_timestamp(1_700_000_060, 9).expect("valid time");
    }
    message
}

/// A message to every node, without a stamp, told apart by `text`.
pub fn marker(text: &str) -> BackplaneMessage {
    BackplaneMessage {
        audience: Audience::All,
        payload: Payload::Frames {
            stamp: None,
            frames: vec![(ProtocolCode::JSON, Bytes::from(text.to_owned()))],
        },
    }
}

/// A host's invocation of `target` for `user_id`.
pub fn host(user_id: &str, target: &str) -> BackplaneMessage {
    host_to(Audience::User(user(user_id)), target)
}

/// A host's invocation of `target` for `audience`.
pub fn host_to(audience: Audience, target: &str) -> BackplaneMessage {
    BackplaneMessage {
        audience,
        payload: Payload::Host {
            frames: vec![(
                ProtocolCode::JSON,
                Bytes::from(format!("{{\"type\":1,\"target\":\"{target}\"}}\u{1e}")),
            )],
        },
    }
}

/// A message closing `user_id`'s connections with `reason`.
pub fn close(user_id: &str, reason: &str) -> BackplaneMessage {
    BackplaneMessage {
        audience: Audience::User(user(user_id)),
        payload: Payload::Close {
            reason: reason.to_owned(),
        },
    }
}

/// How many messages the burst case publishes in one go.
pub const BURST: usize = 1_000;

/// Runs every clause of the `Backplane` contract on fresh nodes from `make`.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = [SuiteNode; 3]>,
{
    a_user_message_reaches_every_other_subscribed_node_once_in_order_as_published(make().await)
        .await;
    nodes_not_subscribed_to_the_user_get_nothing(make().await).await;
    the_publisher_does_not_get_its_own_messages_back(make().await).await;
    a_message_to_all_reaches_every_other_node_without_subscribing(make().await).await;
    after_unsubscribing_a_node_gets_nothing_more_for_that_user(make().await).await;
    repeated_and_needless_subscription_changes_are_ok(make().await).await;
    subscription_changes_take_effect_in_the_order_of_the_calls(make().await).await;
    publishing_never_waits_and_a_burst_arrives_whole_in_order(make().await).await;
    host_invocations_reach_the_publisher_too_in_one_order_on_every_node(make().await).await;
}

async fn a_user_message_reaches_every_other_subscribed_node_once_in_order_as_published(
    [a, b, c]: [SuiteNode; 3],
) {
    b.subscribe("alice").await;
    c.subscribe("alice").await;
    let sent = [
        to_user("alice", "m1"),
        close("alice", "the user's account was deleted"),
        edited("alice", "m1"),
        host("alice", "orderShipped"),
        to_user("alice", "m2"),
    ];
    for message in &sent {
        a.publish(message);
    }
    // A marker last: a repeat of any message would come before it.
    a.publish(&marker("after"));
    for (node, name) in [(&b, "b"), (&c, "c")] {
        for (n, message) in sent.iter().enumerate() {
            node.expect(message, &format!("message {n} on {name}"))
                .await;
        }
        node.expect(&marker("after"), &format!("the marker on {name}"))
            .await;
    }
}

async fn nodes_not_subscribed_to_the_user_get_nothing([a, b, c]: [SuiteNode; 3]) {
    b.subscribe("alice").await;
    c.subscribe("bob").await;
    a.publish(&to_user("alice", "m1"));
    a.publish(&marker("after"));
    b.expect(&to_user("alice", "m1"), "alice's message on b")
        .await;
    b.expect(&marker("after"), "the marker on b").await;
    c.expect(
        &marker("after"),
        "the marker on c, with nothing of alice's before it",
    )
    .await;
}

async fn the_publisher_does_not_get_its_own_messages_back([a, b, _c]: [SuiteNode; 3]) {
    a.subscribe("alice").await;
    b.subscribe("alice").await;
    a.publish(&to_user("alice", "m1"));
    a.publish(&marker("from-a"));
    b.expect(&to_user("alice", "m1"), "a's message on b").await;
    b.expect(&marker("from-a"), "a's marker on b").await;
    // b publishes after b got a's messages: anything a heard of its own would come first.
    b.publish(&marker("from-b"));
    a.expect(
        &marker("from-b"),
        "b's marker on a, with none of a's own messages before it",
    )
    .await;
}

async fn host_invocations_reach_the_publisher_too_in_one_order_on_every_node(
    [a, b, c]: [SuiteNode; 3],
) {
    a.subscribe("alice").await;
    b.subscribe("alice").await;
    // Each published once the one before was confirmed, by the nodes in turn; c is not
    // subscribed to alice.
    let sent = [
        host("alice", "h1"),
        host("alice", "h2"),
        host("alice", "h3"),
        host("alice", "h4"),
    ];
    for (n, message) in sent.iter().enumerate() {
        [&a, &b, &c][n % 3].publish_confirmed(message).await;
    }
    b.publish(&marker("after"));
    for (n, message) in sent.iter().enumerate() {
        a.expect(message, &format!("invocation {n} on a")).await;
        b.expect(message, &format!("invocation {n} on b")).await;
    }
    a.expect(&marker("after"), "b's marker on a, after them")
        .await;
    c.expect(
        &marker("after"),
        "b's marker on c, with none of alice's invocations before it",
    )
    .await;
    // To everyone: every node, the publisher too, subscribed or not.
    let everyone = host_to(Audience::All, "h5");
    c.publish_confirmed(&everyone).await;
    for (node, name) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        node.expect(&everyone, &format!("the invocation to everyone on {name}"))
            .await;
    }
}

async fn a_message_to_all_reaches_every_other_node_without_subscribing([a, b, c]: [SuiteNode; 3]) {
    a.publish(&marker("everyone"));
    b.expect(&marker("everyone"), "the broadcast on b").await;
    c.expect(&marker("everyone"), "the broadcast on c").await;
    // Subscribing to a user changes nothing about it.
    b.subscribe("alice").await;
    c.publish(&marker("back"));
    a.expect(&marker("back"), "c's broadcast on a").await;
    b.expect(&marker("back"), "c's broadcast on b").await;
}

async fn after_unsubscribing_a_node_gets_nothing_more_for_that_user([a, b, _c]: [SuiteNode; 3]) {
    b.subscribe("alice").await;
    a.publish(&to_user("alice", "m1"));
    b.expect(&to_user("alice", "m1"), "m1").await;
    b.unsubscribe("alice").await;
    a.publish(&to_user("alice", "m2"));
    a.publish(&marker("after"));
    b.expect(
        &marker("after"),
        "the marker, with nothing for alice before it",
    )
    .await;
}

async fn repeated_and_needless_subscription_changes_are_ok([a, b, _c]: [SuiteNode; 3]) {
    b.unsubscribe("nobody").await;
    b.subscribe("alice").await;
    b.subscribe("alice").await;
    a.publish(&to_user("alice", "m1"));
    a.publish(&marker("after"));
    b.expect(&to_user("alice", "m1"), "m1, once").await;
    b.expect(&marker("after"), "then the marker").await;
}

async fn subscription_changes_take_effect_in_the_order_of_the_calls([a, b, c]: [SuiteNode; 3]) {
    let alice = user("alice");
    b.subscribe("alice").await;
    // Made one after the other, awaited only afterwards and in the other order: the later
    // call wins.
    let unsubscribed = b.backplane.unsubscribe(&alice);
    let subscribed = b.backplane.subscribe(&alice);
    within("b subscribed again", subscribed)
        .await
        .expect("subscribed");
    within("b unsubscribed", unsubscribed)
        .await
        .expect("unsubscribed");
    let subscribed = c.backplane.subscribe(&alice);
    let unsubscribed = c.backplane.unsubscribe(&alice);
    let (subscribed, unsubscribed) = within(
        "c's two changes",
        futures::future::join(subscribed, unsubscribed),
    )
    .await;
    subscribed.expect("subscribed");
    unsubscribed.expect("unsubscribed");
    // A change whose future is dropped unawaited still happens, in its turn.
    drop(c.backplane.subscribe(&user("carol")));
    c.subscribe("dave").await;

    a.publish(&to_user("alice", "m1"));
    a.publish(&to_user("carol", "m2"));
    a.publish(&marker("after"));
    b.expect(&to_user("alice", "m1"), "m1: b ends subscribed")
        .await;
    b.expect(&marker("after"), "the marker on b").await;
    c.expect(
        &to_user("carol", "m2"),
        "m2: c subscribed to carol without awaiting",
    )
    .await;
    c.expect(
        &marker("after"),
        "the marker: c ends unsubscribed from alice",
    )
    .await;
}

async fn publishing_never_waits_and_a_burst_arrives_whole_in_order([a, b, _c]: [SuiteNode; 3]) {
    b.subscribe("alice").await;
    let burst: Vec<BackplaneMessage> = (0..BURST)
        .map(|n| to_user("alice", &format!("m{n}")))
        .collect();
    let started = Instant::now();
    for message in &burst {
        a.publish(message);
    }
    // A round trip per message would take far longer; queuing takes microseconds each.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "publishing {BURST} messages took {:?}: publish waits for something",
        started.elapsed()
    );
    for (n, message) in burst.iter().enumerate() {
        b.expect(message, &format!("message {n} of the burst"))
            .await;
    }
}
