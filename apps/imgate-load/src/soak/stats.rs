//! The driver's own counters, shared by every task of a run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters the tasks bump; [`Stats::snapshot`] reads them all at once.
#[derive(Default)]
pub struct Stats {
    messages_sent: AtomicU64,
    deliveries: AtomicU64,
    other_events: AtomicU64,
    reads: AtomicU64,
    connections_opened: AtomicU64,
    connections_closed: AtomicU64,
    closed_by_deletion: AtomicU64,
    users_deleted: AtomicU64,
    users_recreated: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// One reading of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages the gateway acknowledged (201).
    pub messages_sent: u64,
    /// `getRoomMessageNotification`s of this run's messages received, all connections.
    pub deliveries: u64,
    /// Other hub events received (subscription changes, system messages, …).
    pub other_events: u64,
    /// History, unread, room-list and mark-read calls that succeeded.
    pub reads: u64,
    /// Hub connections that completed the handshake.
    pub connections_opened: u64,
    /// Hub connections the driver closed.
    pub connections_closed: u64,
    /// Hub connections the gateway closed because their user was deleted (expected).
    pub closed_by_deletion: u64,
    /// Users deleted.
    pub users_deleted: u64,
    /// Users created again after deletion.
    pub users_recreated: u64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Counters {
    /// All errors, whatever their kind.
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// A message was acknowledged.
    pub fn message_sent(&self) {
        bump(&self.messages_sent);
    }
    /// A message of this run arrived on a connection.
    pub fn delivery(&self) {
        bump(&self.deliveries);
    }
    /// Any other hub event arrived.
    pub fn other_event(&self) {
        bump(&self.other_events);
    }
    /// A read call succeeded.
    pub fn read(&self) {
        bump(&self.reads);
    }
    /// A hub connection completed its handshake.
    pub fn connection_opened(&self) {
        bump(&self.connections_opened);
    }
    /// The driver closed a hub connection.
    pub fn connection_closed(&self) {
        bump(&self.connections_closed);
    }
    /// The gateway closed a connection because its user was deleted.
    pub fn closed_by_deletion(&self) {
        bump(&self.closed_by_deletion);
    }
    /// A user was deleted.
    pub fn user_deleted(&self) {
        bump(&self.users_deleted);
    }
    /// A deleted user was created again.
    pub fn user_recreated(&self) {
        bump(&self.users_recreated);
    }

    /// Something went wrong; `kind` is a short stable label.
    pub fn error(&self, kind: impl Into<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(kind.into()).or_default() += 1;
    }

    /// Every counter now.
    pub fn snapshot(&self) -> Counters {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counters {
            messages_sent: read(&self.messages_sent),
            deliveries: read(&self.deliveries),
            other_events: read(&self.other_events),
            reads: read(&self.reads),
            connections_opened: read(&self.connections_opened),
            connections_closed: read(&self.connections_closed),
            closed_by_deletion: read(&self.closed_by_deletion),
            users_deleted: read(&self.users_deleted),
            users_recreated: read(&self.users_recreated),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
