//! `EventPublisher` within one process.

use async_trait::async_trait;
use imgate_domain::fanout::LocalFanout;
use imgate_domain::ports::{EventPublisher, EventSubscription, PublishError};
use imgate_domain::{UserEvent, UserId};
use std::sync::Arc;

/// Publishes straight to this process's subscribers.
pub struct MemoryEventPublisher {
    fanout: LocalFanout,
}

impl MemoryEventPublisher {
    /// A publisher whose subscribers each buffer at most `buffer` events.
    pub fn new(buffer: usize) -> Self {
        Self {
            fanout: LocalFanout::new(buffer),
        }
    }

    /// The local subscriber registry, for metrics and shutdown.
    pub fn fanout(&self) -> &LocalFanout {
        &self.fanout
    }
}

#[async_trait]
impl EventPublisher for MemoryEventPublisher {
    async fn publish(&self, user: &UserId, event: &UserEvent) -> Result<(), PublishError> {
        self.fanout.deliver(user, Arc::new(event.clone()));
        Ok(())
    }

    async fn subscribe(&self, user: &UserId) -> Result<EventSubscription, PublishError> {
        Ok(self.fanout.subscribe(user))
    }
}
