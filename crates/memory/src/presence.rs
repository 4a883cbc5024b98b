//! `Presence` within one process: a [`PresenceBoard`] stands for the shared store, and each
//! [`MemoryPresence`] made from it for one node. A node's counts go when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use imgate_domain::ports::{Presence, PresenceError};
use imgate_domain::sync::lock;
use imgate_domain::UserId;

/// Each node's connection counts by user; cheap to clone.
#[derive(Clone, Default)]
pub struct PresenceBoard {
    shared: Arc<Mutex<Board>>,
}

#[derive(Default)]
struct Board {
    next_node: u64,
    nodes: HashMap<u64, HashMap<UserId, usize>>,
}

impl PresenceBoard {
    /// A board no node is on.
    pub fn new() -> Self {
        Self::default()
    }

    /// A node on this board.
    pub fn node(&self) -> MemoryPresence {
        let mut board = self.lock();
        let key = board.next_node;
        board.next_node += 1;
        board.nodes.insert(key, HashMap::new());
        MemoryPresence {
            board: self.clone(),
            key,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        lock(&self.shared)
    }
}

/// One node's presence on a [`PresenceBoard`].
pub struct MemoryPresence {
    board: PresenceBoard,
    key: u64,
}

impl MemoryPresence {
    /// A node alone on a board of its own: the presence of a gateway of one node.
    pub fn new() -> Self {
        PresenceBoard::new().node()
    }
}

impl Default for MemoryPresence {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemoryPresence {
    fn drop(&mut self) {
        self.board.lock().nodes.remove(&self.key);
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    fn set(&self, user: &UserId, connections: usize) {
        let mut board = self.board.lock();
        let Some(counts) = board.nodes.get_mut(&self.key) else {
            return;
        };
        if connections == 0 {
            counts.remove(user);
        } else {
            counts.insert(user.clone(), connections);
        }
    }

    async fn connections(&self, user: &UserId) -> Result<usize, PresenceError> {
        Ok(self
            .board
            .lock()
            .nodes
            .values()
            .filter_map(|counts| counts.get(user))
            .sum())
    }
}
