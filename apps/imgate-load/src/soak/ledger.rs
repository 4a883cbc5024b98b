//! The delivery check: which connection should have received which message, and did it.
//!
//! A message counts as owed to a connection when the connection's user is a member of the
//! room and the connection was open from `settle` before the send until the check, which
//! runs `deadline` after the gateway acknowledged the send. `settle` covers the upstream
//! coming up: the gateway opens a user's provider connection in the background after the
//! first hub connection, and what is sent before it is live is history, not an event. A
//! connection that closes before the check owes nothing (it was not open the whole time),
//! though what it received still counts as delivered.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// A room and the indices of its members.
#[derive(Debug, Clone)]
pub struct Room {
    /// The gateway's room id.
    pub id: String,
    /// Members by user index.
    pub members: Vec<usize>,
}

/// Totals of the delivery check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Messages whose deliveries were checked (acknowledged by the gateway).
    pub checked: u64,
    /// (message, connection) pairs owed.
    pub owed: u64,
    /// Owed pairs that arrived before the check.
    pub delivered: u64,
    /// Owed pairs that had not arrived by the check.
    pub missed: u64,
    /// Extra copies of a message on one connection.
    pub duplicates: u64,
    /// Messages received by a connection whose user is not in the room.
    pub foreign: u64,
    /// Messages that arrived after their check (already counted as missed if owed).
    pub late: u64,
}

/// One missed delivery, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    /// The message's sequence number.
    pub seq: u64,
    /// The room index.
    pub room: usize,
    /// The user index of the connection.
    pub user: usize,
    /// How long the connection had been open when the message was sent.
    pub open_for: Duration,
}

struct Live {
    user: usize,
    since: Instant,
}

struct Pending {
    room: usize,
    sent_at: Instant,
    acked_at: Option<Instant>,
    /// Copies received per connection.
    received: HashMap<u64, u32>,
}

/// At most this many misses are kept for the report.
const MISSES_KEPT: usize = 20;

/// The check's bookkeeping; callers hold it behind a mutex and call it from every task.
pub struct Ledger {
    rooms: Vec<Room>,
    live: HashMap<u64, Live>,
    pending: BTreeMap<u64, Pending>,
    next_seq: u64,
    settle: Duration,
    deadline: Duration,
    tally: Tally,
    misses: Vec<Miss>,
}

impl Ledger {
    /// An empty ledger with the given margins.
    pub fn new(settle: Duration, deadline: Duration) -> Self {
        Self {
            rooms: Vec::new(),
            live: HashMap::new(),
            pending: BTreeMap::new(),
            next_seq: 0,
            settle,
            deadline,
            tally: Tally::default(),
            misses: Vec::new(),
        }
    }

    /// Adds a room; its index.
    pub fn add_room(&mut self, id: String, members: Vec<usize>) -> usize {
        self.rooms.push(Room { id, members });
        self.rooms.len() - 1
    }

    /// The room at `index`.
    pub fn room(&self, index: usize) -> &Room {
        &self.rooms[index]
    }

    /// Connection `connection` of `user` completed its handshake at `at`.
    pub fn opened(&mut self, connection: u64, user: usize, at: Instant) {
        self.live.insert(connection, Live { user, since: at });
    }

    /// Connection `connection` is closing or closed; it owes nothing from now on.
    pub fn closed(&mut self, connection: u64) {
        self.live.remove(&connection);
    }

    /// A message to room `room` is about to be sent at `at`; its sequence number.
    pub fn sending(&mut self, room: usize, at: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                room,
                sent_at: at,
                acked_at: None,
                received: HashMap::new(),
            },
        );
        seq
    }

    /// The gateway acknowledged message `seq` at `at`.
    pub fn acknowledged(&mut self, seq: u64, at: Instant) {
        if let Some(pending) = self.pending.get_mut(&seq) {
            pending.acked_at = Some(at);
        }
    }

    /// Sending message `seq` failed: nobody is owed it.
    pub fn failed(&mut self, seq: u64) {
        self.pending.remove(&seq);
    }

    /// Connection `connection` of `user` received message `seq`.
    pub fn received(&mut self, connection: u64, user: usize, seq: u64) {
        match self.pending.get_mut(&seq) {
            Some(pending) => {
                if !self.rooms[pending.room].members.contains(&user) {
                    self.tally.foreign += 1;
                }
                *pending.received.entry(connection).or_default() += 1;
            }
            None if seq < self.next_seq => self.tally.late += 1,
            // Not a number this run handed out: someone else's message.
            None => self.tally.foreign += 1,
        }
    }

    /// Checks every acknowledged message whose deadline has passed by `now`.
    pub fn check(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.acked_at.is_some_and(|at| at + self.deadline <= now))
            .map(|(seq, _)| *seq)
            .collect();
        for seq in due {
            if let Some(pending) = self.pending.remove(&seq) {
                self.settle_message(seq, pending);
            }
        }
    }

    fn settle_message(&mut self, seq: u64, pending: Pending) {
        self.tally.checked += 1;
        let members = &self.rooms[pending.room].members;
        for (connection, live) in &self.live {
            if !members.contains(&live.user) || live.since + self.settle > pending.sent_at {
                continue;
            }
            self.tally.owed += 1;
            if pending.received.contains_key(connection) {
                self.tally.delivered += 1;
            } else {
                self.tally.missed += 1;
                if self.misses.len() < MISSES_KEPT {
                    self.misses.push(Miss {
                        seq,
                        room: pending.room,
                        user: live.user,
                        open_for: pending.sent_at.saturating_duration_since(live.since),
                    });
                }
            }
        }
        self.tally.duplicates += pending
            .received
            .values()
            .map(|copies| u64::from(copies.saturating_sub(1)))
            .sum::<u64>();
    }

    /// Messages to `room` still waiting for the gateway's answer.
    pub fn unanswered_in(&self, room: usize) -> usize {
        self.pending
            .values()
            .filter(|p| p.room == room && p.acked_at.is_none())
            .count()
    }

    /// Messages sent and not checked yet.
    pub fn unchecked(&self) -> usize {
        self.pending.len()
    }

    /// The totals so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The first misses, for the report.
    pub fn misses(&self) -> &[Miss] {
        &self.misses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_secs(5);
    const DEADLINE: Duration = Duration::from_secs(10);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Users 0 and 1 share room 0; user 2 is elsewhere.
    fn ledger() -> Ledger {
        let mut ledger = Ledger::new(SETTLE, DEADLINE);
        ledger.add_room("dm".into(), vec![0, 1]);
        ledger.add_room("other".into(), vec![2]);
        ledger
    }

    #[test]
    fn a_settled_member_connection_is_owed_and_counted_delivered() {
        let t0 = Instant::now();
        let mut l = ledger();
        l.opened(1, 0, t0);
        l.opened(2, 1, t0);
        l.opened(3, 2, t0);
        let seq = l.sending(0, t0 + secs(6));
        l.acknowledged(seq, t0 + secs(6));
        l.received(1, 0, seq);
        l.received(2, 1, seq);
        l.check(t0 + secs(15));
        assert_eq!(l.unchecked(), 1, "not due before the deadline");
        l.check(t0 + secs(16));
        let tally = l.tally();
        assert_eq!(
            (tally.checked, tally.owed, tally.delivered, tally.missed),
            (1, 2, 2, 0)
        );
        assert_eq!(l.unchecked(), 0);
    }

    #[test]
    fn a_missing_delivery_is_a_miss_and_arriving_later_is_late() {
        let t0 = Instant::now();
        let mut l = ledger();
        l.opened(1, 0, t0);
        let seq = l.sending(0, t0 + secs(10));
        l.acknowledged(seq, t0 + secs(10));
        l.check(t0 + secs(20));
        l.received(1, 0, seq);
        let tally = l.tally();
        assert_eq!((tally.owed, tally.missed, tally.late), (1, 1, 1));
        assert_eq!(l.misses()[0].open_for, secs(10));
    }

    #[test]
    fn young_or_closed_connections_are_owed_nothing() {
        let t0 = Instant::now();
        let mut l = ledger();
        l.opened(1, 0, t0 + secs(2)); // open 4 s at the send: not settled
        l.opened(2, 1, t0);
        let seq = l.sending(0, t0 + secs(6));
        l.acknowledged(seq, t0 + secs(6));
        l.closed(2); // closed before the check
        l.check(t0 + secs(30));
        let tally = l.tally();
        assert_eq!((tally.checked, tally.owed, tally.missed), (1, 0, 0));
    }

    #[test]
    fn copies_and_strangers_are_counted() {
        let t0 = Instant::now();
        let mut l = ledger();
        l.opened(1, 0, t0);
        let seq = l.sending(0, t0 + secs(6));
        l.acknowledged(seq, t0 + secs(6));
        l.received(1, 0, seq);
        l.received(1, 0, seq);
        l.received(3, 2, seq); // user 2 is not in room 0
        l.received(1, 0, 999); // never sent
        l.check(t0 + secs(30));
        let tally = l.tally();
        assert_eq!(
            (tally.delivered, tally.duplicates, tally.foreign),
            (1, 1, 2)
        );
    }

    #[test]
    fn failed_and_unacknowledged_sends_are_never_checked() {
        let t0 = Instant::now();
        let mut l = ledger();
        l.opened(1, 0, t0);
        let failed = l.sending(0, t0 + secs(6));
        l.failed(failed);
        let in_flight = l.sending(0, t0 + secs(6));
        l.check(t0 + secs(60));
        assert_eq!(l.tally().checked, 0);
        assert_eq!(l.unchecked(), 1);
        assert_eq!((l.unanswered_in(0), l.unanswered_in(1)), (1, 0));
        l.acknowledged(in_flight, t0 + secs(7));
        assert_eq!(l.unanswered_in(0), 0);
    }
}
