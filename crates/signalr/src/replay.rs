//! Stateful reconnect's bookkeeping for one connection (dotnet/aspnetcore `HubProtocol.md`,
//! "Stateful Reconnect"): the messages sent and not yet acknowledged, to send again on a new
//! WebSocket, and the count of messages received, to drop what the client sends again.
//!
//! Only invocations, stream items, completions and cancels count; they are numbered from 1 in
//! each direction, across reconnects.

use std::collections::VecDeque;

use crate::protocol::Frame;

/// Messages sent to the client and not yet acknowledged, within a byte limit.
#[derive(Debug)]
pub(crate) struct ReplayBuffer {
    /// The id the next message sent gets.
    next_id: u64,
    /// Each kept message with its id, oldest first.
    frames: VecDeque<(u64, Frame)>,
    bytes: usize,
    limit: usize,
}

/// Keeping one more message would pass the byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

impl ReplayBuffer {
    /// An empty buffer keeping at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            next_id: 1,
            frames: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Numbers a message being sent and keeps it until the client acknowledges it; `Full`
    /// (and the message not kept) when it would pass the limit.
    pub(crate) fn record(&mut self, frame: &Frame) -> Result<(), Full> {
        let id = self.next_id;
        self.next_id += 1;
        if self.bytes + frame.len() > self.limit {
            return Err(Full);
        }
        self.bytes += frame.len();
        self.frames.push_back((id, frame.clone()));
        Ok(())
    }

    /// The client acknowledged every message up to `id`.
    pub(crate) fn ack(&mut self, id: u64) {
        while let Some((first, frame)) = self.frames.front() {
            if *first > id {
                break;
            }
            self.bytes -= frame.len();
            self.frames.pop_front();
        }
    }

    /// What a reconnected transport sends first: the Sequence id (that of the oldest message
    /// kept, or of the next one) and the kept messages, oldest first.
    pub(crate) fn unacknowledged(&self) -> (u64, Vec<Frame>) {
        let first = self.frames.front().map_or(self.next_id, |(id, _)| *id);
        (first, self.frames.iter().map(|(_, f)| f.clone()).collect())
    }

    /// The bytes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The client's messages received so far, to tell new ones from ones sent again.
#[derive(Debug)]
pub(crate) struct Received {
    /// The id the next message received carries.
    next: u64,
    /// The highest id handled.
    latest: u64,
}

impl Received {
    pub(crate) fn new() -> Self {
        Self { next: 1, latest: 0 }
    }

    /// A counted message arrived: whether it is new (to handle) rather than sent again.
    pub(crate) fn arrive(&mut self) -> bool {
        let id = self.next;
        self.next += 1;
        if id <= self.latest {
            return false;
        }
        self.latest = id;
        true
    }

    /// The client's Sequence message: its next message carries `id`. An id past what arrived
    /// means the client counts differently; the connection cannot go on.
    pub(crate) fn restart_at(&mut self, id: u64) -> Result<(), String> {
        if id > self.next {
            return Err(format!(
                "sequence id {id} is past the {} messages received",
                self.next - 1
            ));
        }
        self.next = id;
        Ok(())
    }

    /// The highest id handled, what an Ack says.
    pub(crate) fn latest(&self) -> u64 {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;

    fn frame(text: &str) -> Frame {
        Frame::Text(ByteString::from(text.to_owned()))
    }

    #[test]
    fn sent_messages_are_kept_until_acknowledged_and_within_the_limit() {
        let mut buffer = ReplayBuffer::new(10);
        assert_eq!(buffer.unacknowledged(), (1, vec![]));
        for text in ["aaa", "bbb", "ccc"] {
            buffer.record(&frame(text)).unwrap();
        }
        assert_eq!(buffer.record(&frame("dd")), Err(Full), "11 bytes > 10");
        assert_eq!(buffer.bytes(), 9);
        buffer.ack(2);
        assert_eq!(buffer.unacknowledged(), (3, vec![frame("ccc")]));
        // The refused message still took its id: the client counts every message it gets.
        buffer.record(&frame("eee")).unwrap();
        assert_eq!(
            buffer.unacknowledged(),
            (3, vec![frame("ccc"), frame("eee")])
        );
        buffer.ack(5);
        assert_eq!((buffer.unacknowledged(), buffer.bytes()), ((6, vec![]), 0));
        // An old or repeated Ack changes nothing.
        buffer.ack(1);
        assert_eq!(buffer.unacknowledged(), (6, vec![]));
    }

    #[test]
    fn messages_sent_again_after_a_sequence_are_dropped_once_handled() {
        let mut received = Received::new();
        assert!(received.arrive() && received.arrive() && received.arrive());
        assert_eq!(received.latest(), 3);
        // The client reconnects and sends again from its oldest unacknowledged message, 2.
        received.restart_at(2).unwrap();
        assert!(!received.arrive(), "2 again");
        assert!(!received.arrive(), "3 again");
        assert!(received.arrive(), "4 is new");
        assert_eq!(received.latest(), 4);
        assert!(received.restart_at(7).is_err());
    }
}
