//! The session task: one per connection, whatever the transport. It reads records from the
//! transport, answers the handshake and invocations, keeps the connection alive, and decides
//! when it ends.
//!
//! The user's messages do not pass through it: the lifetime manager queues them on the
//! connection's outbound channel directly. Neither ever waits on that channel (`try_send`): a
//! client that does not read fills it and is disconnected, so one slow browser costs bounded
//! memory and never delays anyone else.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::{HubCall, HubError};
use crate::hub::{Connection, Eviction, Hub, Inbound, Outbound, Transport, RESERVED_OUTBOUND};
use crate::protocol::{self, HubProtocol, Incoming, Outgoing, ProtocolError, RecordBuffer};
use crate::replay::Received;
use crate::telemetry::{self, CloseReason};
use imgate_domain::sync::lock;

/// How long a finished session waits for the transport to deliver its last messages (a
/// Close message to a long-polling client needs one more poll) before cutting it.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How a session ended: the reason for the metric, and the Close message to send, if any.
struct Ending {
    reason: CloseReason,
    close: Option<Outgoing>,
}

impl Ending {
    fn silent(reason: CloseReason) -> Self {
        Self {
            reason,
            close: None,
        }
    }

    fn with_error(reason: CloseReason, error: impl Into<String>, allow_reconnect: bool) -> Self {
        Self {
            reason,
            close: Some(Outgoing::Close {
                error: Some(error.into()),
                allow_reconnect,
            }),
        }
    }
}

/// The writing end of the outbound channel.
///
/// Frames that do not fit wait in `backlog`; while it is not empty the session does not read
/// the client, so the backlog holds at most the frames one inbound message or one finished
/// invocation produces. The user's messages meanwhile find the channel full, and the lifetime
/// manager cuts the connection off (lagged).
struct Outbox {
    tx: mpsc::Sender<Outbound>,
    /// The connection's protocol: JSON until the handshake chose.
    protocol: HubProtocol,
    backlog: VecDeque<Outbound>,
    /// Since when the channel has been too full to take the backlog.
    blocked_since: Option<Instant>,
    last_sent: Instant,
}

/// The transport is gone; nothing can be sent any more.
struct Gone;

impl Outbox {
    fn new(tx: mpsc::Sender<Outbound>) -> Self {
        Self {
            tx,
            protocol: HubProtocol::Json,
            backlog: VecDeque::new(),
            blocked_since: None,
            last_sent: Instant::now(),
        }
    }

    fn is_blocked(&self) -> bool {
        !self.backlog.is_empty()
    }

    fn push(&mut self, message: &Outgoing) -> Result<(), Gone> {
        let frame = message.encode(self.protocol);
        self.push_item(if message.is_tracked() {
            Outbound::Frame(frame)
        } else {
            Outbound::Control(frame)
        })
    }

    fn push_item(&mut self, item: Outbound) -> Result<(), Gone> {
        let item = if self.backlog.is_empty() {
            match self.try_send(item)? {
                None => return Ok(()),
                Some(item) => item,
            }
        } else {
            item
        };
        self.blocked_since.get_or_insert_with(Instant::now);
        self.backlog.push_back(item);
        Ok(())
    }

    /// Sends `item` if there is room (keeping the reserved slots free); gives it back if not.
    fn try_send(&mut self, item: Outbound) -> Result<Option<Outbound>, Gone> {
        if self.tx.is_closed() {
            return Err(Gone);
        }
        if self.tx.capacity() <= RESERVED_OUTBOUND {
            return Ok(Some(item));
        }
        match self.tx.try_send(item) {
            Ok(()) => {
                self.last_sent = Instant::now();
                Ok(None)
            }
            Err(mpsc::error::TrySendError::Full(item)) => Ok(Some(item)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Gone),
        }
    }

    /// Moves as much of the backlog into the channel as fits.
    fn flush(&mut self) -> Result<(), Gone> {
        while let Some(item) = self.backlog.pop_front() {
            if let Some(item) = self.try_send(item)? {
                self.backlog.push_front(item);
                return Ok(());
            }
        }
        self.blocked_since = None;
        Ok(())
    }

    /// Resolves when the transport has taken enough for the backlog to move again.
    async fn writable(&self) {
        // The permits are dropped at once: this only waits for room, `flush` uses it.
        let _ = self.tx.reserve_many(RESERVED_OUTBOUND + 1).await;
    }

    /// Queues the final messages into the reserved slots; failures mean nobody listens.
    fn finish(&mut self, close: Option<Outgoing>) {
        self.backlog.clear();
        if let Some(close) = close {
            let _ = self
                .tx
                .try_send(Outbound::Control(close.encode(self.protocol)));
        }
        let _ = self.tx.try_send(Outbound::End);
    }
}

fn gone(_: Gone) -> Ending {
    Ending::silent(CloseReason::ClientClosed)
}

fn slow_client() -> Ending {
    Ending::with_error(
        CloseReason::SlowClient,
        "connection closed because the client does not read its messages",
        true,
    )
}

type InvocationResult = (
    Option<String>,
    &'static str,
    Result<Option<Value>, HubError>,
);

/// Runs a connection from transport start to its removal from the hub.
pub(crate) async fn run(
    hub: Arc<Hub>,
    connection: Arc<Connection>,
    transport: Transport,
    mut inbound: mpsc::Receiver<Inbound>,
    outbound: mpsc::Sender<Outbound>,
) {
    telemetry::connection_opened(transport.name());
    tracing::debug!("hub connection started");
    let mut outbox = Outbox::new(outbound);
    let mut opened = false;
    let ending = match handshake(&hub, &connection, transport, &mut inbound, &mut outbox).await {
        Err(ending) => ending,
        Ok((mut records, leftover)) => {
            opened = true;
            let mut session = Session {
                hub: &hub,
                connection: &connection,
                outbox: &mut outbox,
                queue: VecDeque::new(),
                running: FuturesUnordered::new(),
                received: Received::new(),
                ack_due: false,
                detached_until: None,
            };
            session.serve(&mut inbound, &mut records, leftover).await
        }
    };
    match &ending.close {
        Some(Outgoing::Close { error, .. }) => {
            tracing::info!(reason = ending.reason.label(), error = ?error, "hub connection closing");
        }
        _ => tracing::debug!(reason = ending.reason.label(), "hub connection closing"),
    }
    outbox.finish(ending.close);
    drop(outbox);
    if opened {
        hub.manager
            .leave(&connection, |user| hub.backend.user_offline(user));
        hub.backend.connection_closed(&connection.caller).await;
    }
    telemetry::connection_closed(ending.reason);
    // Let the transport write what is queued (the Close message above), then cut it.
    tokio::select! {
        _ = connection.link().cancelled_owned() => {}
        _ = connection.closed.cancelled() => {}
        _ = tokio::time::sleep(DRAIN_GRACE) => {}
    }
    hub.remove(&connection);
    connection.closed.cancel();
    connection.finished.cancel();
}

/// Waits for the handshake request, tells the backend, subscribes, answers `{}` and makes the
/// connection a receiver of its user's messages. Returns the reader of the chosen protocol
/// and the bytes that came after the handshake.
async fn handshake(
    hub: &Hub,
    connection: &Arc<Connection>,
    transport: Transport,
    inbound: &mut mpsc::Receiver<Inbound>,
    outbox: &mut Outbox,
) -> Result<(RecordBuffer, Vec<u8>), Ending> {
    let deadline = Instant::now() + hub.config.handshake_timeout();
    let max = hub.config.max_message_size;
    let refuse = |outbox: &mut Outbox, reason: CloseReason, error: &str| {
        let _ = outbox.push_item(Outbound::Control(
            outbox.protocol.handshake_response(Some(error)),
        ));
        Ending::silent(reason)
    };
    let mut reader = RecordBuffer::new(HubProtocol::Json, max);
    let handshake = loop {
        let item = tokio::select! {
            _ = connection.closed.cancelled() => return Err(Ending::silent(CloseReason::ClientClosed)),
            _ = connection.link().cancelled_owned() => return Err(Ending::silent(CloseReason::ClientClosed)),
            _ = connection.shutdown.cancelled() => return Err(Ending::silent(CloseReason::Shutdown)),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(refuse(outbox, CloseReason::HandshakeFailed, "handshake was not received in time"));
            }
            item = inbound.recv() => item,
        };
        match item {
            None => return Err(Ending::silent(CloseReason::ClientClosed)),
            Some(Inbound::TooLarge) => {
                return Err(refuse(
                    outbox,
                    CloseReason::MessageTooLarge,
                    "handshake request is too large",
                ))
            }
            Some(Inbound::Data(bytes)) => match reader.push_handshake(&bytes) {
                Err(err) => {
                    return Err(refuse(
                        outbox,
                        CloseReason::HandshakeFailed,
                        &err.to_string(),
                    ))
                }
                Ok(None) => continue,
                Ok(Some(handshake)) => break handshake,
            },
        }
    };
    let request = match protocol::parse_handshake(&handshake.request) {
        Ok(request) => request,
        Err(err) => {
            tracing::info!(error = %err, "refusing hub handshake");
            return Err(refuse(
                outbox,
                CloseReason::HandshakeFailed,
                &err.to_string(),
            ));
        }
    };
    let protocol = request.protocol;
    if protocol.is_binary() && transport == Transport::ServerSentEvents {
        return Err(refuse(
            outbox,
            CloseReason::HandshakeFailed,
            &format!(
                "the '{}' protocol needs a transport that carries binary data (WebSockets or \
                 Long Polling); Server-Sent Events carry text only",
                protocol.name()
            ),
        ));
    }
    outbox.protocol = protocol;
    connection.set_protocol(protocol);
    // Stateful reconnect: granted in negotiate, asked for again by the handshake's version,
    // and only WebSockets can resume (as in ASP.NET Core).
    if connection.resumable && request.version >= 2 && transport == Transport::WebSockets {
        connection.enable_replay(hub.config.stateful_reconnect_buffer_bytes);
    }
    if let Err(err) = hub.backend.connection_opened(&connection.caller).await {
        tracing::warn!(error = %err, "backend refused the hub connection");
        return Err(refuse(
            outbox,
            CloseReason::BackendError,
            &err.client_message(),
        ));
    }
    let user = &connection.caller.user;
    if !hub.manager.has_members(user) {
        // Subscribed before the handshake is answered, so what another node sends the user
        // after that reaches this connection. Without the backplane the connection still
        // works here, and the subscription is made when the backplane is back.
        if let Err(err) = hub.manager.subscribe(user).await {
            tracing::warn!(error = %err, "cannot subscribe to the user's messages from other nodes yet");
        }
    }
    hub.manager
        .join(connection, protocol.handshake_response(None), |user| {
            hub.backend.user_online(user)
        });
    telemetry::handshake_done(protocol.name());
    tracing::debug!(protocol = protocol.name(), "hub handshake done");
    Ok((RecordBuffer::new(protocol, max), handshake.rest))
}

struct Session<'a> {
    hub: &'a Arc<Hub>,
    connection: &'a Arc<Connection>,
    outbox: &'a mut Outbox,
    /// Invocations waiting for the running one, in arrival order.
    queue: VecDeque<(Option<String>, HubCall)>,
    /// The running invocation (at most one: calls of a connection run in order).
    running: FuturesUnordered<BoxFuture<'static, InvocationResult>>,
    /// Stateful reconnect: the client's messages received, to drop what it sends again.
    received: Received,
    /// Stateful reconnect: a message of the client was handled since the last Ack.
    ack_due: bool,
    /// Stateful reconnect: the WebSocket dropped, and the client may come back until then.
    detached_until: Option<Instant>,
}

impl Session<'_> {
    async fn serve(
        &mut self,
        inbound: &mut mpsc::Receiver<Inbound>,
        records: &mut RecordBuffer,
        leftover: Vec<u8>,
    ) -> Ending {
        if let Err(ending) = self.handle_data(records, &leftover) {
            return ending;
        }
        let keep_alive = self.hub.config.keep_alive_interval();
        let client_timeout = self.hub.config.client_timeout();
        let stall_timeout = self.hub.config.slow_client_timeout();
        let max_pending = self.hub.config.max_pending_invocations.max(1);
        let expires_at = match self.connection.caller.expires_at {
            Some(at) => {
                Instant::now()
                    + at.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
            }
            None => Instant::now(),
        };
        loop {
            let now = Instant::now();
            let link = self.connection.link();
            if self.detached_until.is_some() && !link.is_cancelled() {
                // A new WebSocket took the connection over.
                self.detached_until = None;
            }
            let detached = self.detached_until.is_some();
            let idle = self.connection.idle_for();
            let polling = self.connection.polls_pending.load(Ordering::Relaxed) > 0;
            // While invocations pile up we are not reading, so silence proves nothing; while
            // detached, the reconnect window decides instead.
            let reading = self.queue.len() < max_pending;
            if idle >= client_timeout && !polling && reading && !detached {
                return Ending::silent(CloseReason::ClientTimeout);
            }
            let blocked = self.outbox.is_blocked();
            let stall_at = self.outbox.blocked_since.map(|since| since + stall_timeout);
            if stall_at.is_some_and(|at| now >= at) {
                return slow_client();
            }
            let timeout_at = if polling || !reading || detached {
                // Liveness is not in question now; look again a timeout later.
                now + client_timeout
            } else {
                now + client_timeout.saturating_sub(idle)
            };
            // No pings while blocked: data is waiting anyway, and the stall timer runs.
            // Messages the lifetime manager queued count as sent too.
            let last_sent = self
                .connection
                .last_message_at()
                .map_or(self.outbox.last_sent, |at| at.max(self.outbox.last_sent));
            let ping_at = if blocked || detached {
                timeout_at
            } else {
                last_sent + keep_alive
            };
            let wake_at = timeout_at.min(ping_at).min(stall_at.unwrap_or(timeout_at));
            tokio::select! {
                _ = self.connection.closed.cancelled() => return Ending::silent(CloseReason::ClientClosed),
                _ = link.cancelled(), if !detached => {
                    // A stateful-reconnect WebSocket that dropped (rather than closed) keeps
                    // the connection for the client to come back to.
                    let resumable = self.connection.replay().is_some()
                        && !self.connection.client_left.load(Ordering::Acquire);
                    if !resumable {
                        return Ending::silent(CloseReason::ClientClosed);
                    }
                    tracing::debug!("hub connection's WebSocket dropped; waiting for the client to resume");
                    self.detached_until = Some(Instant::now() + self.hub.config.reconnect_window());
                }
                _ = self.connection.relinked.notified(), if detached => {}
                _ = tokio::time::sleep_until(self.detached_until.unwrap_or(now)), if detached => {
                    return Ending::silent(CloseReason::ReconnectTimeout);
                }
                _ = self.connection.shutdown.cancelled() => {
                    // No `error`: pysignalr raises on a Close that has one and stops for good,
                    // while every client reconnects on a plain `allowReconnect`.
                    return Ending {
                        reason: CloseReason::Shutdown,
                        close: Some(Outgoing::Close { error: None, allow_reconnect: true }),
                    };
                }
                _ = tokio::time::sleep_until(expires_at), if self.connection.caller.expires_at.is_some() => {
                    // The client's token factory gives it a fresh token when it reconnects.
                    return Ending::with_error(
                        CloseReason::TokenExpired,
                        "the access token expired; reconnect with a new one",
                        true,
                    );
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    // A message queued while asleep moved the ping on.
                    let quiet = self
                        .connection
                        .last_message_at()
                        .is_none_or(|at| Instant::now() >= at + keep_alive);
                    if !blocked && !detached && quiet && Instant::now() >= ping_at {
                        if let Err(err) = self.outbox.push(&Outgoing::Ping) {
                            return gone(err);
                        }
                    }
                }
                _ = self.outbox.writable(), if blocked => {
                    if let Err(err) = self.outbox.flush() {
                        return gone(err);
                    }
                }
                // Reading pauses while invocations pile up: back-pressure on the client.
                item = inbound.recv(), if !blocked && reading => match item {
                    None => return Ending::silent(CloseReason::ClientClosed),
                    Some(Inbound::TooLarge) => return too_large(self.hub.config.max_message_size),
                    Some(Inbound::Data(bytes)) => {
                        if let Err(ending) = self.handle_data(records, &bytes) {
                            return ending;
                        }
                    }
                },
                _ = self.connection.evicted.cancelled() => {
                    return match self.connection.eviction() {
                        Some(Eviction::Closed(reason)) => {
                            Ending::with_error(CloseReason::ClosedByServer, reason.clone(), false)
                        }
                        Some(Eviction::Unacknowledged) => Ending::with_error(
                            CloseReason::Unacknowledged,
                            format!(
                                "connection closed because the client did not acknowledge its \
                                 messages (more than {} bytes waiting)",
                                self.hub.config.stateful_reconnect_buffer_bytes
                            ),
                            true,
                        ),
                        _ => Ending::with_error(
                            CloseReason::Lagged,
                            "connection closed because it fell behind its messages (lagged)",
                            true,
                        ),
                    };
                }
                Some((invocation_id, method, outcome)) = self.running.next(), if !self.running.is_empty() => {
                    if let Err(ending) = self.finish_invocation(invocation_id, method, outcome) {
                        return ending;
                    }
                }
            }
        }
    }

    /// Reads the records `bytes` completes and handles each in turn.
    fn handle_data(&mut self, records: &mut RecordBuffer, bytes: &[u8]) -> Result<(), Ending> {
        let list = match records.push(bytes) {
            Ok(list) => list,
            Err(ProtocolError::TooLarge { max }) => return Err(too_large(max)),
            Err(err) => {
                return Err(Ending::with_error(
                    CloseReason::ProtocolError,
                    err.to_string(),
                    false,
                ))
            }
        };
        for record in list {
            self.handle_record(&record)?;
        }
        if std::mem::take(&mut self.ack_due) {
            let ack = Outgoing::Ack(self.received.latest());
            self.outbox.push(&ack).map_err(gone)?;
        }
        Ok(())
    }

    fn handle_record(&mut self, record: &[u8]) -> Result<(), Ending> {
        let message = self.outbox.protocol.decode(record).map_err(|err| {
            tracing::info!(error = %err, "closing hub connection on a malformed message");
            Ending::with_error(CloseReason::ProtocolError, err.to_string(), false)
        })?;
        if let Some(replay) = self.connection.replay() {
            match &message {
                Incoming::Ack(id) => lock(replay).ack(*id),
                Incoming::Sequence(id) => {
                    self.received.restart_at(*id).map_err(|error| {
                        Ending::with_error(CloseReason::ProtocolError, error, false)
                    })?;
                }
                tracked if tracked.is_tracked() => {
                    if !self.received.arrive() {
                        // Sent again after a reconnect, and handled the first time.
                        return Ok(());
                    }
                    self.ack_due = true;
                }
                _ => {}
            }
        }
        match message {
            Incoming::Invocation {
                invocation_id,
                target,
                arguments,
                has_streams,
            } => {
                if has_streams {
                    return self.complete(
                        invocation_id,
                        Err("client-to-server streaming is not supported by this hub".into()),
                    );
                }
                match HubCall::parse(&target, &arguments) {
                    Ok(call) => {
                        self.enqueue(invocation_id, call);
                        Ok(())
                    }
                    Err(error) => {
                        telemetry::invocation("unknown", "invalid");
                        self.complete(invocation_id, Err(error))
                    }
                }
            }
            Incoming::StreamInvocation {
                invocation_id,
                target,
            } => self.complete(
                Some(invocation_id),
                Err(format!(
                    "streaming is not supported by this hub (method '{target}')"
                )),
            ),
            Incoming::CancelInvocation { invocation_id } => self.complete(
                Some(invocation_id),
                Err("streaming is not supported by this hub; there is nothing to cancel".into()),
            ),
            // Without stateful reconnect there is nothing to acknowledge or resume.
            Incoming::Ping | Incoming::Ack(_) | Incoming::Sequence(_) => Ok(()),
            Incoming::Close => Err(Ending::silent(CloseReason::ClientClosed)),
            Incoming::Ignored(kind) => {
                tracing::debug!(kind, "ignoring hub message");
                Ok(())
            }
            Incoming::Invalid {
                invocation_id,
                reason,
            } => self.complete(invocation_id, Err(format!("invalid message: {reason}"))),
        }
    }

    /// Queues a call behind the running one. The queue is bounded by the pause in reading
    /// (`max_pending_invocations`) plus the records of one message (`max_message_size`).
    fn enqueue(&mut self, invocation_id: Option<String>, call: HubCall) {
        self.queue.push_back((invocation_id, call));
        self.run_next();
    }

    fn run_next(&mut self) {
        if !self.running.is_empty() {
            return;
        }
        let Some((invocation_id, call)) = self.queue.pop_front() else {
            return;
        };
        let backend = self.hub.backend.clone();
        let caller = self.connection.caller.clone();
        let method = call.name();
        self.running.push(Box::pin(async move {
            let outcome = call.run(&*backend, &caller).await;
            (invocation_id, method, outcome)
        }));
    }

    fn finish_invocation(
        &mut self,
        invocation_id: Option<String>,
        method: &'static str,
        outcome: Result<Option<Value>, HubError>,
    ) -> Result<(), Ending> {
        let outcome = match outcome {
            Ok(value) => {
                telemetry::invocation(method, "ok");
                Ok(value)
            }
            Err(err) => {
                telemetry::invocation(method, "error");
                if err.is_fault() {
                    tracing::warn!(method, error = %err, "hub method failed");
                } else {
                    tracing::debug!(method, error = %err, "hub method refused");
                }
                Err(err.client_message())
            }
        };
        self.complete(invocation_id, outcome)?;
        self.run_next();
        Ok(())
    }

    /// Sends the one completion an invocation with an id is owed; without an id the client
    /// expects nothing, so the outcome is only logged.
    fn complete(
        &mut self,
        invocation_id: Option<String>,
        outcome: Result<Option<Value>, String>,
    ) -> Result<(), Ending> {
        match invocation_id {
            Some(invocation_id) => self
                .outbox
                .push(&Outgoing::Completion {
                    invocation_id,
                    outcome,
                })
                .map_err(gone),
            None => {
                if let Err(error) = outcome {
                    tracing::info!(error = %error, "non-blocking invocation failed");
                }
                Ok(())
            }
        }
    }
}

fn too_large(max: usize) -> Ending {
    Ending::with_error(
        CloseReason::MessageTooLarge,
        format!("message exceeds the maximum size of {max} bytes"),
        false,
    )
}
