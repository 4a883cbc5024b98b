//! One user's upstream realtime connection over DDP (wire reference §5): log in by resume
//! token, subscribe the user's streams, translate frames into domain events, answer and send
//! pings, and reconnect with capped, jittered backoff until the stream is dropped.
//!
//! Frames are decoded typed, straight from their text. What a room's members all receive
//! alike (a message, a room document) is decoded once per node through the provider's
//! [`DecodedFrames`]; what is the user's own (subscriptions, room events) is decoded in `state`,
//! which this connection loop feeds.

mod state;

use std::sync::Arc;
use std::time::Duration;

use imgate_domain::model::{ProviderSession, RoomKind};
use imgate_domain::ports::{ProviderError, RealtimeSignal, SessionSource};
use imgate_domain::{RoomId, UserId};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ddp::Ddp;
use crate::decoded_frames::DecodedFrames;
use crate::mapping::text;
use crate::rest::Rest;

pub(crate) use state::State;

/// Timing of the upstream connection.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming {
    /// Ping the server after this long without a frame from it.
    pub ping_after: Duration,
    /// Give the connection up after this long without a frame.
    pub dead_after: Duration,
    /// First reconnect delay; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for UpstreamTiming {
    fn default() -> Self {
        Self {
            ping_after: Duration::from_secs(20),
            dead_after: Duration::from_secs(45),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Signals buffered per user between the socket and the domain.
const SIGNAL_BUFFER: usize = 1024;

/// Why one DDP session ended.
enum Ended {
    /// The domain dropped the stream: stop for good.
    Dropped,
    /// The connection broke: reconnect.
    Lost(String),
    /// The user cannot be logged in any more: end the stream.
    Fatal(ProviderError),
}

pub(crate) struct Upstream {
    pub rest: Rest,
    pub url: String,
    pub call_timeout: Duration,
    pub timing: UpstreamTiming,
    pub user: UserId,
    pub sessions: Arc<dyn SessionSource>,
    pub room_kinds: moka::sync::Cache<RoomId, RoomKind>,
    /// The node's decoded shared frames, the same for every user's upstream.
    pub frames: Arc<DecodedFrames>,
}

impl Upstream {
    /// Starts the connection task; the returned receiver is the stream of signals.
    pub(crate) fn spawn(self) -> mpsc::Receiver<RealtimeSignal> {
        let (tx, rx) = mpsc::channel(SIGNAL_BUFFER);
        tokio::spawn(self.run(tx));
        rx
    }

    async fn run(self, tx: mpsc::Sender<RealtimeSignal>) {
        let mut backoff = self.timing.backoff_min;
        loop {
            let started = Instant::now();
            metrics::gauge!("imgate_upstream_connections", "provider" => "rocketchat")
                .increment(1.0);
            let ended = self.session(&tx).await;
            metrics::gauge!("imgate_upstream_connections", "provider" => "rocketchat")
                .decrement(1.0);
            match ended {
                Ended::Dropped => return,
                Ended::Fatal(error) => {
                    tracing::warn!(user = %self.user, error = %error, "upstream gives up: the user cannot log in");
                    return;
                }
                Ended::Lost(reason) => {
                    metrics::counter!("imgate_upstream_reconnects_total", "provider" => "rocketchat").increment(1);
                    tracing::info!(user = %self.user, reason = %reason, "upstream lost, reconnecting");
                }
            }
            // A connection that lived a while was healthy: start the backoff over.
            if started.elapsed() > self.timing.dead_after {
                backoff = self.timing.backoff_min;
            }
            let wait = jitter(backoff);
            backoff = (backoff * 2).min(self.timing.backoff_max);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
            }
        }
    }

    async fn login(&self, ddp: &mut Ddp) -> Result<ProviderSession, Ended> {
        let session = self
            .sessions
            .current()
            .await
            .map_err(classify_session_error)?;
        match ddp.login(session.token.expose()).await {
            Ok(_) => Ok(session),
            Err(ProviderError::SessionExpired) => {
                let fresh = self
                    .sessions
                    .renew(&session)
                    .await
                    .map_err(classify_session_error)?;
                ddp.login(fresh.token.expose())
                    .await
                    .map_err(|err| match err {
                        ProviderError::SessionExpired => Ended::Fatal(err),
                        other => Ended::Lost(other.to_string()),
                    })?;
                Ok(fresh)
            }
            Err(err) => Err(Ended::Lost(err.to_string())),
        }
    }

    /// One DDP session, from connect to loss.
    async fn session(&self, tx: &mpsc::Sender<RealtimeSignal>) -> Ended {
        // Boxed, like `start` below: the task keeps the size of its largest state for as
        // long as it lives, and connecting is a brief state of a long-lived task.
        let mut ddp = match Box::pin(Ddp::open(&self.url, self.call_timeout)).await {
            Ok(ddp) => ddp,
            Err(err) => return Ended::Lost(err.to_string()),
        };
        let ended = self.serve(&mut ddp, tx).await;
        ddp.close().await;
        ended
    }

    async fn serve(&self, ddp: &mut Ddp, tx: &mpsc::Sender<RealtimeSignal>) -> Ended {
        // Boxed so that the idle task is only as large as the loop below: the login and the
        // REST calls of the start are most of an upstream's future, and their answers would
        // otherwise stay in it for as long as the user is online.
        let mut state = match Box::pin(self.start(ddp)).await {
            Ok(state) => state,
            Err(ended) => return ended,
        };
        let mut last_frame = Instant::now();
        let mut pinged = false;
        loop {
            let wait = if pinged {
                self.timing.dead_after
            } else {
                self.timing.ping_after
            };
            let received = tokio::select! {
                received = ddp.recv(wait.saturating_sub(last_frame.elapsed())) => received,
                _ = tx.closed() => return Ended::Dropped,
            };
            let text = match received {
                Err(err) => return Ended::Lost(err.to_string()),
                Ok(None) if pinged || last_frame.elapsed() >= self.timing.dead_after => {
                    return Ended::Lost("the server went silent".into())
                }
                Ok(None) => {
                    pinged = true;
                    if let Err(err) = ddp.send(json!({"msg": "ping", "id": "keepalive"})).await {
                        return Ended::Lost(err.to_string());
                    }
                    continue;
                }
                Ok(Some(text)) => text,
            };
            // Any frame, a ping included, shows the server is there.
            last_frame = Instant::now();
            pinged = false;
            let frame = match ddp.envelope(&text).await {
                Err(err) => return Ended::Lost(err.to_string()),
                Ok(None) => continue,
                Ok(Some(frame)) => frame,
            };
            let (signals, replies) = state.handle(&frame, &self.frames, &self.room_kinds);
            for reply in replies {
                if let Err(err) = ddp.send(reply).await {
                    return Ended::Lost(err.to_string());
                }
            }
            for signal in signals {
                if tx.send(signal).await.is_err() {
                    return Ended::Dropped;
                }
            }
        }
    }

    /// Logs in and subscribes to the user's streams and rooms.
    async fn start(&self, ddp: &mut Ddp) -> Result<State, Ended> {
        let session = self.login(ddp).await?;
        let (me, subscriptions) = tokio::try_join!(
            self.rest.get("me", Some(&session), &[]),
            self.rest.get("subscriptions.get", Some(&session), &[]),
        )
        .map_err(|err| Ended::Lost(err.to_string()))?;
        let (state, frames) = State::start(
            text(&me, "username").unwrap_or_default(),
            session.user_id.as_str(),
            &subscriptions,
        );
        for frame in frames {
            ddp.send(frame)
                .await
                .map_err(|err| Ended::Lost(err.to_string()))?;
        }
        Ok(state)
    }
}

fn classify_session_error(err: ProviderError) -> Ended {
    match err {
        ProviderError::InvalidCredentials
        | ProviderError::Forbidden(_)
        | ProviderError::NotFound(_) => Ended::Fatal(err),
        other => Ended::Lost(other.to_string()),
    }
}

/// Up to a quarter more or less, so that many users do not reconnect in step.
fn jitter(base: Duration) -> Duration {
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos(),
    );
    let spread = base.as_millis() as u64 / 2;
    let offset = if spread == 0 { 0 } else { nanos % spread };
    base - base / 4 + Duration::from_millis(offset)
}
