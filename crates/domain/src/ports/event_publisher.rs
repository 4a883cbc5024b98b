//! `EventPublisher`: delivers a user's events to every live connection of that user.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::event::UserEvent;
use crate::ids::UserId;

/// The publisher failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The backplane cannot be reached.
    #[error("the event backplane is unavailable: {0}")]
    Unavailable(String),
}

/// One local connection's feed of its user's events.
///
/// Dropping it unsubscribes. The feed ends (`next` gives `None`) when the publisher shuts down
/// or when this subscriber fell too far behind; [`EventSubscription::lagged`] tells which.
pub struct EventSubscription {
    events: mpsc::Receiver<Arc<UserEvent>>,
    lagged: Arc<AtomicBool>,
    // Held only for its `Drop`, which unregisters the subscriber from the publisher.
    _registration: Box<dyn Send + Sync>,
}

impl EventSubscription {
    /// Builds a subscription from its parts; for adapters.
    pub fn new(
        events: mpsc::Receiver<Arc<UserEvent>>,
        lagged: Arc<AtomicBool>,
        registration: Box<dyn Send + Sync>,
    ) -> Self {
        Self {
            events,
            lagged,
            _registration: registration,
        }
    }

    /// The next event, or `None` once the feed has ended.
    pub async fn next(&mut self) -> Option<Arc<UserEvent>> {
        self.events.recv().await
    }

    /// Whether the feed was cut because this subscriber did not keep up.
    pub fn lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }
}

/// Publishes events to users and feeds them to local connections.
///
/// Contract (checked by `imgate_testkit::event_publisher::run_all`):
/// - An event published to a user reaches every current subscription of that user once,
///   in publication order, wherever the subscriber lives (one process, or any node sharing
///   the backplane); other users' subscriptions get nothing.
/// - A room message published again (same id, same edit time; say, the retry of a publish
///   that timed out but went through) reaches each subscription once.
/// - Publishing to a user with no subscription is `Ok(())` and is dropped.
/// - A subscription dropped before an event is published does not receive it.
/// - A subscriber whose buffer is full is cut off (its feed ends with `lagged() == true`)
///   rather than slowing the publisher or the user's other connections.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Sends `event` to every connection of `user`.
    async fn publish(&self, user: &UserId, event: &UserEvent) -> Result<(), PublishError>;
    /// Opens a feed of `user`'s events for one local connection.
    async fn subscribe(&self, user: &UserId) -> Result<EventSubscription, PublishError>;
}
