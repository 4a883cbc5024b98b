//! Event frames encoded once for all the connections that receive the same event.
//!
//! The publisher hands each connection of a user the same `Arc<UserEvent>`; encoding it per
//! connection made JSON serialization the largest cost of a fan-out. The cache is keyed by
//! the event's address and holds a `Weak` to it: while that `Weak` lives the allocation
//! cannot be reused, so an equal address is the same event. Entries of events nobody holds
//! any more are swept as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use imgate_domain::UserEvent;

use crate::backend::event_frame;

/// Entries at which the first sweep happens; afterwards twice what a sweep left.
const FIRST_SWEEP: usize = 1024;

/// Frames of events still on their way to some connection.
pub(crate) struct FrameCache {
    state: Mutex<State>,
}

struct State {
    entries: HashMap<usize, (Weak<UserEvent>, Arc<str>)>,
    sweep_at: usize,
}

impl Default for FrameCache {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                entries: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

impl FrameCache {
    /// The frame of `event` (see [`event_frame`]), encoded by the first connection that asks.
    pub(crate) fn frame(&self, event: &Arc<UserEvent>) -> Option<String> {
        let key = Arc::as_ptr(event) as usize;
        if let Some((_, frame)) = self.lock().entries.get(&key) {
            return Some(frame.to_string());
        }
        let frame = event_frame(event)?;
        // Only other holders can ask again; the last one need not leave anything behind.
        if Arc::strong_count(event) > 1 {
            let mut state = self.lock();
            if state.entries.len() >= state.sweep_at {
                state
                    .entries
                    .retain(|_, (event, _)| event.strong_count() > 0);
                state.sweep_at = (state.entries.len() * 2).max(FIRST_SWEEP);
            }
            state
                .entries
                .insert(key, (Arc::downgrade(event), Arc::from(frame.as_str())));
        }
        Some(frame)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is one map edit, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgate_domain::{MessageId, RoomId};

    fn deleted(message: &str) -> Arc<UserEvent> {
        Arc::new(UserEvent::MessageDeleted {
            room_id: RoomId::parse("r").unwrap(),
            message_id: MessageId::parse(message).unwrap(),
        })
    }

    #[test]
    fn every_holder_gets_the_frame_of_its_own_event() {
        let cache = FrameCache::default();
        let first = deleted("m1");
        let copy = first.clone();
        let frame = cache.frame(&first).unwrap();
        assert!(frame.contains("\"messageId\":\"m1\""));
        assert_eq!(cache.frame(&copy).unwrap(), frame);
        drop((first, copy));
        // Whatever address a new event gets, it is never mistaken for the dropped one.
        for i in 0..100 {
            let event = deleted(&format!("n{i}"));
            let _other = event.clone();
            assert!(cache.frame(&event).unwrap().contains(&format!("\"n{i}\"")));
        }
    }

    #[test]
    fn events_nobody_holds_are_swept() {
        let cache = FrameCache::default();
        for i in 0..5 * FIRST_SWEEP {
            let event = deleted(&format!("m{i}"));
            let _other = event.clone();
            cache.frame(&event);
        }
        assert!(cache.len() <= FIRST_SWEEP);
        assert_eq!(cache.frame(&Arc::new(UserEvent::AccountDeleted)), None);
    }
}
