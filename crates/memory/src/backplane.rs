//! `Backplane` within one process: a [`MemoryBus`] stands for the medium, and each
//! [`MemoryBackplane`] made from it for one node.
//!
//! A gateway of one node uses a backplane alone on its bus, where `publish` finds no other
//! node and does nothing but hand a host's invocation back to the node itself. Several nodes on one bus are for tests: what one publishes is
//! encoded with the backplane's wire format and decoded by each receiving node, so these
//! tests run through the same versioned format as Redis.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;
use futures::FutureExt;
use imgate_domain::ports::backplane::wire;
use imgate_domain::ports::{
    Audience, Backplane, BackplaneError, BackplaneMessage, BackplaneReceiver, Confirmation,
    Payload, SubscriptionChange,
};
use imgate_domain::sync::lock;
use imgate_domain::UserId;
use tokio::sync::mpsc;

/// Messages waiting for one node's receiver. A receiver only hands frames to connection
/// queues, so it keeps up unless something is badly wrong; beyond this the node drops
/// messages rather than let publishers wait or memory grow.
const NODE_QUEUE: usize = 10_000;

/// The medium the nodes of one process share; cheap to clone.
#[derive(Clone, Default)]
pub struct MemoryBus {
    shared: Arc<Bus>,
}

#[derive(Default)]
struct Bus {
    nodes: Mutex<Nodes>,
}

#[derive(Default)]
struct Nodes {
    /// The key the next node gets; keys tell nodes apart even if their ids are equal.
    next_key: u64,
    by_key: HashMap<u64, NodeEntry>,
}

/// What a publisher needs to reach a node.
struct NodeEntry {
    users: HashSet<UserId>,
    queue: mpsc::Sender<Bytes>,
    node: Arc<NodeState>,
}

/// A node's state shared by its backplane, the bus and its delivery task.
struct NodeState {
    id: String,
    /// The receiving end of the node's queue until `attach` hands it to the delivery task.
    pending: Mutex<Option<mpsc::Receiver<Bytes>>>,
    receiver: OnceLock<Weak<dyn BackplaneReceiver>>,
    /// Messages to this node were dropped since it last caught up.
    lagging: AtomicBool,
}

impl Bus {
    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }

    /// Whether the node `key` still wants `audience`'s messages.
    fn wants(&self, key: u64, audience: &Audience) -> bool {
        self.nodes()
            .by_key
            .get(&key)
            .is_some_and(|entry| match audience {
                Audience::All => true,
                Audience::User(user) => entry.users.contains(user),
            })
    }
}

impl MemoryBus {
    /// A bus without nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new node on this bus named `id`, the origin its messages carry.
    pub fn node(&self, id: impl Into<String>) -> MemoryBackplane {
        let (queue, pending) = mpsc::channel(NODE_QUEUE);
        let node = Arc::new(NodeState {
            id: id.into(),
            pending: Mutex::new(Some(pending)),
            receiver: OnceLock::new(),
            lagging: AtomicBool::new(false),
        });
        let mut nodes = self.shared.nodes();
        let key = nodes.next_key;
        nodes.next_key += 1;
        nodes.by_key.insert(
            key,
            NodeEntry {
                users: HashSet::new(),
                queue,
                node: node.clone(),
            },
        );
        MemoryBackplane {
            bus: self.shared.clone(),
            key,
            node,
        }
    }
}

/// One node's backplane on a [`MemoryBus`].
///
/// Subscriptions change at the call, so their futures are ready at once. Each node has a
/// queue of [`NODE_QUEUE`] messages and a task handing them to its receiver in arrival order,
/// so a publisher never waits for a receiver and never calls one while holding the bus. When
/// a node's queue is full, what does not fit is dropped and counted
/// (`imgate_backplane_dropped_total{reason="queue_full"}`), and once the node has caught up
/// its receiver gets `resumed`, as after a lost link on Redis. Dropping the backplane takes
/// the node off the bus.
pub struct MemoryBackplane {
    bus: Arc<Bus>,
    key: u64,
    node: Arc<NodeState>,
}

impl MemoryBackplane {
    /// A node alone on a bus of its own: the backplane of a single-node gateway.
    pub fn new() -> Self {
        MemoryBus::new().node("local")
    }

    /// A fresh bus, for making several nodes that share it.
    pub fn bus() -> MemoryBus {
        MemoryBus::new()
    }

    /// This node's id, the origin of what it publishes.
    pub fn node_id(&self) -> &str {
        &self.node.id
    }
}

impl Default for MemoryBackplane {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryBackplane {
    fn drop(&mut self) {
        // Dropping the entry drops the queue's sender, which ends the delivery task.
        self.bus.nodes().by_key.remove(&self.key);
    }
}

impl Backplane for MemoryBackplane {
    /// Starts delivering to `receiver`; must be called within a Tokio runtime, which runs the
    /// node's delivery task. Later calls are ignored.
    fn attach(&self, receiver: Weak<dyn BackplaneReceiver>) {
        if self.node.receiver.set(receiver.clone()).is_err() {
            tracing::warn!(node = %self.node.id, "backplane attached twice; keeping the first receiver");
            return;
        }
        let pending = lock(&self.node.pending).take();
        if let Some(queue) = pending {
            tokio::spawn(deliver(
                Arc::downgrade(&self.bus),
                self.key,
                self.node.clone(),
                queue,
                receiver,
            ));
        }
    }

    fn publish(&self, message: &BackplaneMessage) -> Result<(), BackplaneError> {
        let nodes = self.bus.nodes();
        // A host's invocation comes back to its publisher too, behind what the bus took before.
        let to_self = matches!(message.payload, Payload::Host { .. });
        // Encoded only when a node wants it, and once for all of them.
        let mut encoded: Option<Bytes> = None;
        for (key, entry) in &nodes.by_key {
            let wanted = (*key != self.key || to_self)
                && match &message.audience {
                    Audience::All => true,
                    Audience::User(user) => entry.users.contains(user),
                };
            if !wanted {
                continue;
            }
            let bytes = encoded
                .get_or_insert_with(|| wire::encode(&self.node.id, message))
                .clone();
            match entry.queue.try_send(bytes) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    metrics::counter!("imgate_backplane_dropped_total", "reason" => "queue_full")
                        .increment(1);
                    if !entry.node.lagging.swap(true, Ordering::AcqRel) {
                        tracing::warn!(
                            node = %entry.node.id,
                            "a node's backplane queue is full; dropping its messages until it catches up"
                        );
                    }
                }
                // Its delivery task ended with its receiver; nobody is left to tell.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        Ok(())
    }

    /// The bus orders what is published under its lock, so the message is in order once
    /// `publish` returned.
    fn publish_confirmed(&self, message: &BackplaneMessage) -> Confirmation {
        futures::future::ready(self.publish(message)).boxed()
    }

    fn subscribe(&self, user: &UserId) -> SubscriptionChange {
        if let Some(entry) = self.bus.nodes().by_key.get_mut(&self.key) {
            entry.users.insert(user.clone());
        }
        futures::future::ready(Ok(())).boxed()
    }

    fn unsubscribe(&self, user: &UserId) -> SubscriptionChange {
        if let Some(entry) = self.bus.nodes().by_key.get_mut(&self.key) {
            entry.users.remove(user);
        }
        futures::future::ready(Ok(())).boxed()
    }
}

/// Hands one node's queue to its receiver, in order, holding no lock while the receiver runs
/// (it may publish or subscribe).
async fn deliver(
    bus: Weak<Bus>,
    key: u64,
    node: Arc<NodeState>,
    mut queue: mpsc::Receiver<Bytes>,
    receiver: Weak<dyn BackplaneReceiver>,
) {
    while let Some(bytes) = queue.recv().await {
        let Some(receiver) = receiver.upgrade() else {
            // The receiver is gone for good; ending the task closes the queue.
            return;
        };
        match wire::decode(bytes) {
            Ok((_origin, message)) => {
                // Checked again here: the node may have unsubscribed while it was queued.
                let wanted = bus
                    .upgrade()
                    .is_some_and(|bus| bus.wants(key, &message.audience));
                if wanted {
                    receiver.receive(message);
                }
            }
            Err(error) => {
                // Only this build writes to the bus, so this is a bug, not a peer's message.
                metrics::counter!("imgate_backplane_dropped_total", "reason" => "undecodable")
                    .increment(1);
                tracing::error!(node = %node.id, error = %error, "undecodable message on the in-process backplane");
            }
        }
        if queue.is_empty() && node.lagging.swap(false, Ordering::AcqRel) {
            receiver.resumed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::ports::Payload;

    #[derive(Default)]
    struct Count {
        messages: std::sync::atomic::AtomicUsize,
        resumed: std::sync::atomic::AtomicUsize,
    }

    impl BackplaneReceiver for Count {
        fn receive(&self, _message: BackplaneMessage) {
            self.messages.fetch_add(1, Ordering::SeqCst);
        }

        fn resumed(&self) {
            self.resumed.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn to_all(n: usize) -> BackplaneMessage {
        BackplaneMessage {
            audience: Audience::All,
            payload: Payload::Close {
                reason: n.to_string(),
            },
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_excess_and_resumes_once_drained() {
        let bus = MemoryBus::new();
        let a = bus.node("a");
        let b = bus.node("b");
        // Not attached yet, so b's queue fills without being read.
        for n in 0..NODE_QUEUE + 5 {
            a.publish(&to_all(n)).unwrap();
        }
        let count = Arc::new(Count::default());
        let receiver: Arc<dyn BackplaneReceiver> = count.clone();
        b.attach(Arc::downgrade(&receiver));
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while count.resumed.load(Ordering::SeqCst) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("resumed after catching up");
        assert_eq!(count.messages.load(Ordering::SeqCst), NODE_QUEUE);
        assert_eq!(count.resumed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_node_alone_publishes_without_a_runtime_or_a_receiver() {
        let alone = MemoryBackplane::new();
        for n in 0..NODE_QUEUE * 2 {
            alone.publish(&to_all(n)).unwrap();
        }
        assert!(!alone.node.lagging.load(Ordering::SeqCst), "nothing queued");
    }

    #[test]
    fn a_dropped_node_leaves_the_bus() {
        let bus = MemoryBus::new();
        let a = bus.node("a");
        drop(bus.node("b"));
        assert_eq!(bus.shared.nodes().by_key.len(), 1);
        a.publish(&to_all(0)).unwrap();
    }
}
