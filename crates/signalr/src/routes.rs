//! The HTTP side: negotiate, the WebSocket upgrade, Server-Sent Events, Long Polling, and
//! CORS for browsers on other origins.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use imgate_domain::sync::lock;
use imgate_http::auth::{Authenticator, EndUser};
use imgate_http::error::ApiError;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, OwnedMutexGuard};

use crate::backend::Caller;
use crate::hub::{Connection, Hub, Inbound, Outbound, StartError, Transport};
use crate::lifetime::Refused;
use crate::protocol::Frame;
use crate::routing::{random_id, routed_id};
use crate::websocket;

/// Mounts `POST /hub/negotiate`, `GET|POST|DELETE /hub` and their CORS preflights.
pub fn configure(hub: Arc<Hub>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config: &mut web::ServiceConfig| {
        let contract = web::Data::new(crate::contract::document(&hub.config));
        let data = web::Data::from(hub);
        config
            .service(
                web::resource("/asyncapi.json")
                    .app_data(contract)
                    .route(web::get().to(asyncapi)),
            )
            .service(
                web::resource("/hub/negotiate")
                    .app_data(data.clone())
                    .route(web::post().to(negotiate))
                    .route(web::method(actix_web::http::Method::OPTIONS).to(preflight)),
            )
            .service(
                web::resource("/hub")
                    .app_data(data)
                    .route(web::get().to(connect))
                    .route(web::post().to(send))
                    .route(web::delete().to(disconnect))
                    .route(web::method(actix_web::http::Method::OPTIONS).to(preflight)),
            );
    }
}

/// The hub's contract, an AsyncAPI 3 document.
async fn asyncapi(contract: web::Data<serde_json::Value>) -> HttpResponse {
    HttpResponse::Ok().json(contract.as_ref())
}

/// Adds CORS headers when the request's origin is on the allow-list; credentials are
/// allowed, so the origin is echoed, never `*`.
fn with_cors(hub: &Hub, req: &HttpRequest, mut response: HttpResponse) -> HttpResponse {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return response;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| hub.config.origin_allowed(origin));
    let headers = response.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

fn error(hub: &Hub, req: &HttpRequest, err: ApiError) -> HttpResponse {
    with_cors(hub, req, err.error_response())
}

async fn preflight(hub: web::Data<Hub>, req: HttpRequest) -> HttpResponse {
    let mut response = HttpResponse::NoContent();
    response
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET, POST, DELETE, OPTIONS",
        ))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization, content-type, x-requested-with, x-signalr-user-agent",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    with_cors(&hub, &req, response.finish())
}

fn authenticate(req: &HttpRequest) -> Result<EndUser, ApiError> {
    let auth = req
        .app_data::<web::Data<Authenticator>>()
        .ok_or_else(|| ApiError::Internal("authenticator not configured".into()))?;
    auth.end_user(req)
}

fn query(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .0
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn caller(user: EndUser) -> Caller {
    Caller {
        user: user.id,
        name: user.name,
        email: user.email,
        expires_at: user.expires_at,
    }
}

/// `POST /hub/negotiate`: version 0 (no or 0 `negotiateVersion`: the Python clients) answers
/// without a token and transports use the connection id; version 1 adds a secret token.
async fn negotiate(hub: web::Data<Hub>, req: HttpRequest) -> HttpResponse {
    let user = match authenticate(&req) {
        Ok(user) => user,
        Err(err) => return error(&hub, &req, err),
    };
    let requested = query(&req, "negotiateVersion")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let version = requested.min(1);
    // Stateful reconnect, when the client asks (the JS client's `withStatefulReconnect`).
    let resumable = version >= 1 && query(&req, "useStatefulReconnect").as_deref() == Some("true");
    let hub = hub.into_inner();
    // A connection that may resume stays on this node: only the node holding it can resume
    // it, so it is not handed to the node of the user's upstream.
    let elsewhere = if resumable {
        None
    } else {
        hub.route_elsewhere(&user.id).await
    };
    let (connection_id, key) = match elsewhere {
        // The user's connections belong with the upstream on another node: ids the proxy
        // routes there, and nothing to keep here (that node takes the connection over).
        Some(route) => {
            let id = routed_id(Some(&route));
            tracing::debug!(route = %route, "negotiated for the node holding the user's upstream");
            if version >= 1 {
                (random_id(), id)
            } else {
                (id.clone(), id)
            }
        }
        None => match hub.create(caller(user), version >= 1, resumable) {
            Ok(connection) => {
                hub.expire_unless_started(&connection);
                (connection.connection_id.clone(), connection.key.clone())
            }
            Err(refused) => return error(&hub, &req, refused.into()),
        },
    };
    // Text first: signalrcore picks MessagePack by itself when `Binary` comes first.
    let transports = json!([
        {"transport": "WebSockets", "transferFormats": ["Text", "Binary"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]);
    let body = if version >= 1 {
        let mut body = json!({
            "connectionId": connection_id,
            "connectionToken": key,
            "negotiateVersion": 1,
            "availableTransports": transports,
        });
        if resumable {
            body["useStatefulReconnect"] = json!(true);
        }
        body
    } else {
        json!({
            "connectionId": connection_id,
            "negotiateVersion": 0,
            "availableTransports": transports,
        })
    };
    tracing::debug!(connection_id = %connection_id, version, "negotiated");
    with_cors(&hub, &req, HttpResponse::Ok().json(body))
}

/// Whether a request naming an unknown connection id may start it here (see [`Hub::adopt`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// A transport's first request (WebSocket, SSE, poll): adopt the id.
    Adopt,
    /// Anything else (send, delete): the connection must exist.
    Refuse,
}

/// Finds the connection a transport request names and checks it belongs to the caller.
fn find(hub: &Arc<Hub>, req: &HttpRequest, unknown: Unknown) -> Result<Arc<Connection>, ApiError> {
    let user = authenticate(req)?;
    let id = query(req, "id")
        .ok_or_else(|| ApiError::Invalid("missing the connection id (`id` query)".into()))?;
    let connection = match hub.find(&id) {
        Some(connection) => connection,
        None if unknown == Unknown::Adopt => hub
            .adopt(caller(user.clone()), &id)?
            .ok_or_else(|| ApiError::NotFound("no such connection".into()))?,
        None => return Err(ApiError::NotFound("no such connection".into())),
    };
    if connection.caller.user != user.id {
        return Err(ApiError::Forbidden(
            "the connection belongs to another user".into(),
        ));
    }
    Ok(connection)
}

/// `GET /hub`: a WebSocket upgrade, an SSE stream (`Accept: text/event-stream`), or a poll.
async fn connect(hub: web::Data<Hub>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let hub = hub.into_inner();
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return match connect_websocket(&hub, &req, body) {
            Ok(response) => response,
            Err(err) => error(&hub, &req, err),
        };
    }
    let event_stream = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let result = if event_stream {
        connect_sse(&hub, &req)
    } else {
        poll(&hub, &req).await
    };
    match result {
        Ok(response) => with_cors(&hub, &req, response),
        Err(err) => error(&hub, &req, err),
    }
}

impl From<Refused> for ApiError {
    fn from(refused: Refused) -> Self {
        crate::telemetry::connection_refused(refused);
        ApiError::TooManyConnections(refused.to_string())
    }
}

fn conflict(_: StartError) -> ApiError {
    ApiError::Conflict("the connection already has a transport".into())
}

fn connect_websocket(
    hub: &Arc<Hub>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let connection = if query(req, "id").is_some() {
        find(hub, req, Unknown::Adopt)?
    } else {
        // skipNegotiation: the client connects straight away and gets a fresh connection.
        hub.create(caller(authenticate(req)?), false, false)?
    };
    // A second WebSocket for a connection: a stateful reconnect, or a conflict.
    let resumed = connection.transport().is_some();
    if resumed && connection.replay().is_none() {
        return Err(conflict(StartError::AlreadyConnected));
    }
    let (response, socket, stream) = actix_ws::handle(req, body).map_err(|err| {
        if query(req, "id").is_none() {
            hub.remove(&connection);
        }
        ApiError::Invalid(format!("websocket upgrade failed: {err}"))
    })?;
    let limit = websocket::max_ws_message(hub.config.max_message_size);
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    if resumed {
        hub.reattach(&connection).map_err(conflict)?;
    } else {
        hub.start(&connection, Transport::WebSockets)
            .map_err(conflict)?;
    }
    // actix-ws sockets are tied to this worker thread, hence a local task.
    actix_web::rt::spawn(websocket::run(connection, socket, stream, resumed));
    Ok(response)
}

/// Ends the transport when the SSE body is dropped (client gone) or finished.
struct TransportGuard(Arc<Connection>);

impl Drop for TransportGuard {
    fn drop(&mut self) {
        self.0.end_transport();
    }
}

fn connect_sse(hub: &Arc<Hub>, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let connection = find(hub, req, Unknown::Adopt)?;
    hub.start(&connection, Transport::ServerSentEvents)
        .map_err(conflict)?;
    let guard = TransportGuard(connection.clone());
    // The transport slot makes this the only reader, so the lock is free.
    let receiver = connection
        .outbound
        .clone()
        .try_lock_owned()
        .map_err(|_| conflict(StartError::AlreadyConnected))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // No compression and no proxy buffering: every event must reach the client now.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(sse_body(guard, receiver)))
}

/// The SSE body: a comment line first (so EventSource fires `open`), then one event per
/// outbound frame, split into `data:` lines.
fn sse_body(
    guard: TransportGuard,
    receiver: OwnedMutexGuard<mpsc::Receiver<Outbound>>,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
    let opening = futures::stream::once(async { Ok(Bytes::from_static(b":\r\n")) });
    let events = futures::stream::unfold((guard, receiver), |(guard, mut receiver)| async move {
        let item = tokio::select! {
            _ = guard.0.closed.cancelled() => None,
            item = receiver.recv() => item,
        };
        match item {
            // The handshake refuses a binary protocol on SSE, so every frame is text.
            Some(Outbound::Frame(Frame::Text(text)) | Outbound::Control(Frame::Text(text))) => {
                Some((Ok(sse_event(&text)), (guard, receiver)))
            }
            Some(
                Outbound::Frame(Frame::Binary(_))
                | Outbound::Control(Frame::Binary(_))
                | Outbound::End,
            )
            | None => None,
        }
    });
    opening.chain(events)
}

fn sse_event(text: &str) -> Bytes {
    let mut event = BytesMut::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(line.as_bytes());
        event.extend_from_slice(b"\r\n");
    }
    event.extend_from_slice(b"\r\n");
    event.freeze()
}

async fn poll(hub: &Arc<Hub>, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let connection = find(hub, req, Unknown::Adopt)?;
    connection.touch();
    match connection.transport() {
        None => {
            // The first poll only activates the connection; the JS client ignores its body.
            hub.start(&connection, Transport::LongPolling)
                .map_err(conflict)?;
            return Ok(HttpResponse::Ok().finish());
        }
        Some(Transport::LongPolling) => {}
        Some(_) => return Err(conflict(StartError::AlreadyConnected)),
    }
    if connection.poll_ended.load(Ordering::Acquire) {
        connection.end_transport();
        return Ok(HttpResponse::NoContent().finish());
    }
    // A newer poll replaces a pending one (its client has evidently given up on it).
    let (preempt_tx, preempt_rx) = oneshot::channel();
    if let Some(previous) = lock(&connection.poll_preempt).replace(preempt_tx) {
        let _ = previous.send(());
    }
    let _pending = PendingPoll::new(connection.clone());
    let mut preempt_rx = preempt_rx;
    let mut receiver = tokio::select! {
        receiver = connection.outbound.clone().lock_owned() => receiver,
        _ = &mut preempt_rx => return Ok(HttpResponse::NoContent().finish()),
    };
    let first = tokio::select! {
        _ = connection.closed.cancelled() => return Ok(HttpResponse::NoContent().finish()),
        _ = &mut preempt_rx => return Ok(HttpResponse::NoContent().finish()),
        _ = tokio::time::sleep(hub.config.long_poll_timeout()) => return Ok(HttpResponse::Ok().finish()),
        item = receiver.recv() => item,
    };
    let first = match first {
        Some(Outbound::Frame(frame) | Outbound::Control(frame)) => frame,
        Some(Outbound::End) | None => {
            connection.poll_ended.store(true, Ordering::Release);
            connection.end_transport();
            return Ok(HttpResponse::NoContent().finish());
        }
    };
    // One connection's frames are all of its protocol's kind: text for JSON, binary for
    // MessagePack.
    let content_type = if first.is_binary() {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut body = BytesMut::from(first.as_bytes());
    // Hand over everything already queued in one response, up to a sane size.
    while body.len() < 1024 * 1024 {
        match receiver.try_recv() {
            Ok(Outbound::Frame(frame) | Outbound::Control(frame)) => {
                body.extend_from_slice(frame.as_bytes())
            }
            Ok(Outbound::End) | Err(mpsc::error::TryRecvError::Disconnected) => {
                connection.poll_ended.store(true, Ordering::Release);
                break;
            }
            Err(mpsc::error::TryRecvError::Empty) => break,
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body.freeze()))
}

/// Counts a waiting poll as a live client while it exists.
struct PendingPoll(Arc<Connection>);

impl PendingPoll {
    fn new(connection: Arc<Connection>) -> Self {
        connection.polls_pending.fetch_add(1, Ordering::AcqRel);
        Self(connection)
    }
}

impl Drop for PendingPoll {
    fn drop(&mut self) {
        self.0.touch();
        self.0.polls_pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `POST /hub?id=…`: client → server records for SSE and long polling.
async fn send(hub: web::Data<Hub>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let hub = hub.into_inner();
    let result = async {
        let connection = find(&hub, &req, Unknown::Refuse)?;
        match connection.transport() {
            Some(Transport::ServerSentEvents | Transport::LongPolling) => {}
            Some(Transport::WebSockets) => {
                return Err(ApiError::Invalid(
                    "this connection uses WebSockets; POST is for SSE and long polling".into(),
                ))
            }
            None => {
                return Err(ApiError::Invalid(
                    "the connection has no transport yet".into(),
                ))
            }
        }
        let _in_flight = PostInFlight::claim(&connection).ok_or_else(|| {
            ApiError::Conflict("another send is in progress for this connection".into())
        })?;
        deliver(&hub, &connection, body).await
    }
    .await;
    match result {
        Ok(response) => with_cors(&hub, &req, response),
        Err(err) => error(&hub, &req, err),
    }
}

/// Marks a POST in progress; released on drop, also when the client aborts the request.
struct PostInFlight(Arc<Connection>);

impl PostInFlight {
    fn claim(connection: &Arc<Connection>) -> Option<Self> {
        (!connection.post_in_flight.swap(true, Ordering::AcqRel)).then(|| Self(connection.clone()))
    }
}

impl Drop for PostInFlight {
    fn drop(&mut self) {
        self.0.post_in_flight.store(false, Ordering::Release);
    }
}

async fn deliver(
    hub: &Hub,
    connection: &Connection,
    mut body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    connection.touch();
    let limit = websocket::max_ws_message(hub.config.max_message_size);
    let mut data = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| ApiError::Invalid(format!("unreadable body: {err}")))?;
        if data.len() + chunk.len() > limit {
            let _ = connection.inbound.try_send(Inbound::TooLarge);
            return Err(ApiError::PayloadTooLarge(format!(
                "message exceeds the maximum size of {limit} bytes"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    let delivered = tokio::select! {
        sent = connection.inbound.send(Inbound::Data(data.freeze())) => sent.is_ok(),
        _ = connection.closed.cancelled() => false,
    };
    if delivered {
        Ok(HttpResponse::Ok().finish())
    } else {
        Err(ApiError::NotFound("the connection has ended".into()))
    }
}

/// `DELETE /hub?id=…`: the client ends the connection (long polling's stop).
async fn disconnect(hub: web::Data<Hub>, req: HttpRequest) -> HttpResponse {
    let hub = hub.into_inner();
    match find(&hub, &req, Unknown::Refuse) {
        Ok(connection) => {
            connection.end_transport();
            if connection.transport().is_none() {
                hub.remove(&connection);
                connection.closed.cancel();
            }
            with_cors(&hub, &req, HttpResponse::Accepted().finish())
        }
        Err(err) => error(&hub, &req, err),
    }
}
