//! The Realtime API: DDP over a raw WebSocket at `/websocket` (reference §5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message as WsMessage, MessageStream, Session};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::error::ApiError;
use crate::hub::Outbound;
use crate::ids::{hash_token, password_digest, random_id};
use crate::model::{Dates, RoomType};
use crate::store::{LoginSelector, Store, STREAM_NOTIFY_ROOM, STREAM_ROOM_MESSAGES, STREAM_USER};
use crate::{Shared, Version};

/// Upgrades `/websocket` and runs the connection on the worker's local executor.
pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let shared = shared.into_inner();
    let peer = req.peer_addr();
    actix_web::rt::spawn(async move {
        let mut conn = Conn::new(shared, session, peer);
        conn.run(stream.max_frame_size(16 * 1024 * 1024)).await;
    });
    Ok(response)
}

/// Unregisters the socket from the hub however the task ends.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.hub.close(self.id);
    }
}

struct Login {
    uid: String,
    token: String,
}

struct Conn {
    shared: Arc<Shared>,
    session: Session,
    rx: mpsc::Receiver<Outbound>,
    kill: Arc<Notify>,
    reg: Registration,
    connected: bool,
    login: Option<Login>,
    last_inbound: Instant,
    ping_sent: Option<Instant>,
}

/// What the read loop should do after a frame.
enum Next {
    Continue,
    Close,
}

impl Conn {
    fn new(shared: Arc<Shared>, session: Session, peer: Option<std::net::SocketAddr>) -> Conn {
        let (tx, rx) = mpsc::channel(shared.ddp_queue);
        let kill = Arc::new(Notify::new());
        let id = shared.hub.open(tx, kill.clone(), peer);
        Conn {
            reg: Registration {
                shared: shared.clone(),
                id,
            },
            shared,
            session,
            rx,
            kill,
            connected: false,
            login: None,
            last_inbound: Instant::now(),
            ping_sent: None,
        }
    }

    fn uid(&self) -> Option<&str> {
        self.login.as_ref().map(|l| l.uid.as_str())
    }

    fn frozen(&self) -> bool {
        self.uid().is_some_and(|u| self.shared.faults.is_frozen(u))
    }

    fn silent(&self) -> bool {
        self.uid().is_some_and(|u| self.shared.faults.is_silent(u))
    }

    async fn send(&mut self, frame: Value) -> bool {
        self.session.text(frame.to_string()).await.is_ok()
    }

    async fn run(&mut self, mut stream: MessageStream) {
        let conn_id = self.reg.id;
        tracing::debug!(connection_id = conn_id, "ddp socket opened");
        if self.shared.version == Version::V6 {
            // Older Meteor greets with a bare server_id frame before anything else.
            let _ = self.send(json!({"server_id": "0"})).await;
        }
        let tick = (self.shared.ping_interval / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        let kill = self.kill.clone();
        let close = loop {
            tokio::select! {
                _ = kill.notified() => break None,
                frame = stream.next() => match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        self.last_inbound = Instant::now();
                        self.ping_sent = None;
                        if self.frozen() {
                            continue;
                        }
                        match self.on_text(&text).await {
                            Next::Continue => {}
                            Next::Close => break Some(CloseReason { code: CloseCode::Normal, description: None }),
                        }
                    }
                    Some(Ok(WsMessage::Ping(bytes))) => {
                        self.last_inbound = Instant::now();
                        if !self.frozen() && self.session.pong(&bytes).await.is_err() {
                            break None;
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => { self.last_inbound = Instant::now(); }
                },
                out = self.rx.recv() => match out {
                    Some(Outbound::Frame(frame)) => {
                        if !self.frozen() && self.session.text(&*frame).await.is_err() {
                            break None;
                        }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        break Some(CloseReason { code: CloseCode::Other(code), description: Some(reason) })
                    }
                    None => break None,
                },
                _ = ticker.tick() => {
                    if self.frozen() || self.silent() {
                        continue;
                    }
                    match self.ping_sent {
                        Some(at) if at.elapsed() >= self.shared.ping_timeout => {
                            tracing::debug!(connection_id = conn_id, "ddp heartbeat timed out");
                            break Some(CloseReason { code: CloseCode::Normal, description: Some("heartbeat timeout".into()) });
                        }
                        None if self.last_inbound.elapsed() >= self.shared.ping_interval => {
                            self.ping_sent = Some(Instant::now());
                            if !self.send(json!({"msg": "ping"})).await {
                                break None;
                            }
                        }
                        _ => {}
                    }
                }
            }
        };
        let session = self.session.clone();
        match close {
            // A dropped socket ends without a close frame, as a dead TCP peer would.
            None => drop(session),
            Some(reason) => {
                let _ = session.close(Some(reason)).await;
            }
        }
        tracing::debug!(connection_id = conn_id, "ddp socket closed");
    }

    async fn on_text(&mut self, text: &str) -> Next {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            let _ = self
                .send(json!({"msg": "error", "reason": "Bad request"}))
                .await;
            return Next::Continue;
        };
        let msg = frame
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !self.connected {
            if msg != "connect" {
                let _ = self.send(json!({"msg": "error", "reason": "Must connect first", "offendingMessage": frame})).await;
                return Next::Continue;
            }
            let wanted = frame.get("version").and_then(Value::as_str).unwrap_or("1");
            let supported = frame
                .get("support")
                .and_then(Value::as_array)
                .is_none_or(|s| s.iter().any(|v| v == "1"));
            if !["1", "pre2", "pre1"].contains(&wanted) || !supported {
                let _ = self.send(json!({"msg": "failed", "version": "1"})).await;
                return Next::Close;
            }
            self.connected = true;
            let ok = self
                .send(json!({"msg": "connected", "session": random_id()}))
                .await;
            return if ok { Next::Continue } else { Next::Close };
        }
        let ok = match msg.as_str() {
            "ping" => {
                if self.silent() {
                    true
                } else {
                    let mut pong = json!({"msg": "pong"});
                    if let Some(id) = frame.get("id") {
                        pong["id"] = id.clone();
                    }
                    self.send(pong).await
                }
            }
            "pong" => true,
            "method" => self.on_method(&frame).await,
            "sub" => self.on_sub(&frame).await,
            "unsub" => {
                let id = frame.get("id").cloned().unwrap_or(Value::Null);
                if let Some(sid) = id.as_str() {
                    self.shared.hub.unsubscribe(self.reg.id, sid);
                }
                self.send(json!({"msg": "nosub", "id": id})).await
            }
            "connect" => true,
            _ => {
                self.send(
                    json!({"msg": "error", "reason": "Bad request", "offendingMessage": frame}),
                )
                .await
            }
        };
        if ok {
            Next::Continue
        } else {
            Next::Close
        }
    }

    async fn on_method(&mut self, frame: &Value) -> bool {
        let id = frame.get("id").cloned().unwrap_or(Value::Null);
        let method = frame
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let params = frame
            .get("params")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let outcome = self.call(&method, &params);
        if let Some(delay) = self.shared.faults.delay() {
            tokio::time::sleep(delay).await;
        }
        let (result, extra_before) = match outcome {
            Ok((result, before)) => (json!({"msg": "result", "id": id, "result": result}), before),
            Err(MethodError::Api(e)) => (
                json!({"msg": "result", "id": id, "error": e.ddp_error()}),
                Vec::new(),
            ),
            Err(MethodError::NotFound) => (
                json!({"msg": "result", "id": id, "error": {
                    "isClientSafe": true, "error": 404, "reason": format!("Method '{method}' not found"),
                    "message": format!("Method '{method}' not found [404]"), "errorType": "Meteor.Error",
                }}),
                Vec::new(),
            ),
        };
        for f in extra_before {
            if !self.send(f).await {
                return false;
            }
        }
        if !self.send(result).await {
            return false;
        }
        self.send(json!({"msg": "updated", "methods": [id]})).await
    }

    /// Runs a method; returns its result and frames to send before the result.
    fn call(&mut self, method: &str, params: &[Value]) -> Result<(Value, Vec<Value>), MethodError> {
        let shared = self.shared.clone();
        match method {
            "login" => self.login(params.first().cloned().unwrap_or(Value::Null)),
            "logout" => {
                if let Some(login) = self.login.take() {
                    shared.hub.clear_user(self.reg.id);
                    shared.with_store(|st| st.remove_token(&login.uid, &login.token));
                }
                Ok((Value::Null, Vec::new()))
            }
            "sendMessage" => {
                let uid = self.require_login()?;
                let m = params.first().cloned().unwrap_or(Value::Null);
                let rid = m
                    .get("rid")
                    .and_then(Value::as_str)
                    .ok_or_else(|| api(ApiError::InvalidParams("rid".into())))?
                    .to_string();
                let text = m
                    .get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let client_id = m.get("_id").and_then(Value::as_str).map(String::from);
                let tmid = m.get("tmid").and_then(Value::as_str).map(String::from);
                shared
                    .with_store(|st| {
                        st.ddp_send_allowed(&uid)?;
                        let id = st.send_message(
                            &uid,
                            &rid,
                            &text,
                            client_id,
                            tmid,
                            Default::default(),
                        )?;
                        Ok(st.messages[&id].to_json(Dates::Ejson))
                    })
                    .map(|v| (v, Vec::new()))
                    .map_err(api)
            }
            "readMessages" => {
                let uid = self.require_login()?;
                let rid = params
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                shared
                    .with_store(|st| st.mark_read(&uid, &rid))
                    .map_err(api)?;
                Ok((Value::Null, Vec::new()))
            }
            "stream-notify-room" => {
                let uid = self.require_login()?;
                let event = params
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let (rid, kind) = event.split_once('/').unwrap_or((&event, ""));
                let username = params.get(1).cloned().unwrap_or(Value::Null);
                let username = username.as_str().unwrap_or_default();
                shared
                    .with_store(|st| {
                        if !st.is_member(&uid, rid) {
                            return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
                        }
                        match kind {
                            "user-activity" => {
                                let acts = params.get(2).cloned().unwrap_or(json!([]));
                                let extra = params.get(3).cloned().unwrap_or(json!({}));
                                st.user_activity(rid, username, acts, extra);
                            }
                            "typing" => {
                                let on = params.get(2).and_then(Value::as_bool).unwrap_or(false);
                                let acts = if on {
                                    json!(["user-typing"])
                                } else {
                                    json!([])
                                };
                                st.user_activity(rid, username, acts, json!({}));
                            }
                            _ => return Err(ApiError::meteor("not-allowed", "")),
                        }
                        Ok(())
                    })
                    .map_err(api)?;
                Ok((Value::Bool(true), Vec::new()))
            }
            "rooms/get" | "subscriptions/get" => {
                let uid = self.require_login()?;
                let since = params
                    .first()
                    .and_then(|p| p.get("$date"))
                    .and_then(Value::as_i64)
                    .and_then(chrono::DateTime::from_timestamp_millis);
                let st = shared.store();
                let (update, remove) = if method == "rooms/get" {
                    rooms_ejson(&st, &uid, since)
                } else {
                    st.subs_since(&uid, since, Dates::Ejson)
                };
                let result = match since {
                    Some(_) => json!({"update": update, "remove": remove}),
                    None => Value::Array(update),
                };
                Ok((result, Vec::new()))
            }
            "loadHistory" => {
                let uid = self.require_login()?;
                let rid = params
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let end = params
                    .get(1)
                    .and_then(|p| p.get("$date"))
                    .and_then(Value::as_i64)
                    .and_then(chrono::DateTime::from_timestamp_millis);
                let limit = params.get(2).and_then(Value::as_u64).unwrap_or(20) as usize;
                let st = shared.store();
                let room = st
                    .room(&rid)
                    .ok_or_else(|| api(ApiError::meteor("error-invalid-room", "Invalid room")))?;
                if !st.can_access(&uid, room) {
                    return Err(api(ApiError::meteor("error-not-allowed", "Not allowed")));
                }
                let msgs: Vec<Value> = st
                    .history(&rid, end, None, false, 0, Some(limit))
                    .into_iter()
                    .map(|m| m.to_json(Dates::Ejson))
                    .collect();
                Ok((json!({"messages": msgs}), Vec::new()))
            }
            _ => Err(MethodError::NotFound),
        }
    }

    fn require_login(&self) -> Result<String, MethodError> {
        self.uid()
            .map(String::from)
            .ok_or(MethodError::Api(ApiError::NotLoggedIn))
    }

    fn login(&mut self, arg: Value) -> Result<(Value, Vec<Value>), MethodError> {
        let shared = self.shared.clone();
        let (uid, token, kind) = shared
            .with_store(|st: &mut Store| {
                if let Some(resume) = arg.get("resume").and_then(Value::as_str) {
                    let uid = st.login_resume(resume)?.id.clone();
                    return Ok((uid, resume.to_string(), "resume"));
                }
                let who = match arg.get("user") {
                    Some(Value::String(u)) => LoginSelector::Either(u.clone()),
                    Some(Value::Object(o)) => match (o.get("username"), o.get("email")) {
                        (Some(Value::String(u)), _) => LoginSelector::Username(u.clone()),
                        (_, Some(Value::String(e))) => LoginSelector::Email(e.clone()),
                        _ => return Err(bad_login()),
                    },
                    _ => return Err(bad_login()),
                };
                let digest = match arg.get("password") {
                    Some(Value::String(p)) => password_digest(p),
                    Some(Value::Object(o)) => o
                        .get("digest")
                        .and_then(Value::as_str)
                        .map(str::to_lowercase)
                        .ok_or_else(bad_login)?,
                    _ => return Err(bad_login()),
                };
                let (uid, token) = st.login_password(&who, &digest)?;
                Ok((uid, token, "password"))
            })
            .map_err(api)?;
        let (username, added) = {
            let st = shared.store();
            let user = st.user(&uid).map_err(api)?;
            let mut fields = user.me_json(&st.base_url, Dates::Ejson);
            fields.remove("_id");
            fields.remove("status");
            fields.remove("services");
            fields.insert("statusConnection".into(), json!("online"));
            (
                user.username.clone(),
                json!({"msg": "added", "collection": "users", "id": uid, "fields": fields}),
            )
        };
        if let Some(previous) = self.login.take() {
            tracing::debug!(user_id = %previous.uid, "ddp socket logs in again");
        }
        shared
            .hub
            .set_user(self.reg.id, &uid, &username, &hash_token(&token));
        let expires = {
            let st = shared.store();
            // Rocket.Chat falls back to 90 days for invalid values; the cap keeps chrono in range.
            let days = match st.setting_i64("Accounts_LoginExpiration", 90) {
                d @ 1..=36_500 => d,
                _ => 90,
            };
            st.token_issued(&uid, &token).unwrap_or_else(Utc::now) + chrono::Duration::days(days)
        };
        self.login = Some(Login {
            uid: uid.clone(),
            token: token.clone(),
        });
        let result = json!({"id": uid, "token": token, "tokenExpires": {"$date": expires.timestamp_millis()}, "type": kind});
        // The monolith (6.x/7.x) re-runs the user publication; ddp-streamer (8.x here) does not.
        let before = if self.shared.version == Version::V8 {
            Vec::new()
        } else {
            vec![added]
        };
        Ok((result, before))
    }

    async fn on_sub(&mut self, frame: &Value) -> bool {
        let id = frame.get("id").cloned().unwrap_or(Value::Null);
        let sub_id = id.as_str().unwrap_or_default().to_string();
        let name = frame
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let event = frame
            .get("params")
            .and_then(Value::as_array)
            .and_then(|p| p.first())
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let verdict = self.may_subscribe(&name, &event);
        match verdict {
            Ok(()) => {
                self.shared
                    .hub
                    .subscribe(self.reg.id, &sub_id, &name, &event);
                self.send(json!({"msg": "ready", "subs": [id]})).await
            }
            Err(error) => {
                self.send(json!({"msg": "nosub", "id": id, "error": error}))
                    .await
            }
        }
    }

    /// The `sub`-time permission check of each stream.
    fn may_subscribe(&self, stream: &str, event: &str) -> Result<(), Value> {
        // The streamer throws reason-less Meteor errors, so `message` is just "[code]".
        let not_allowed = || json!({"isClientSafe": true, "error": "not-allowed", "message": "[not-allowed]", "errorType": "Meteor.Error"});
        let known = [
            STREAM_USER,
            STREAM_ROOM_MESSAGES,
            STREAM_NOTIFY_ROOM,
            "stream-notify-logged",
            "stream-notify-all",
            "stream-user-presence",
            "stream-roles",
            "stream-room-data",
            "stream-notify-room-users",
            "stream-apps",
        ];
        if !known.contains(&stream) {
            return Err(
                json!({"isClientSafe": true, "error": 404, "reason": format!("Subscription '{stream}' not found"), "message": format!("Subscription '{stream}' not found [404]"), "errorType": "Meteor.Error"}),
            );
        }
        if event.is_empty() && stream != "stream-user-presence" {
            return Err(
                json!({"isClientSafe": true, "error": "invalid-event-name", "message": "[invalid-event-name]", "errorType": "Meteor.Error"}),
            );
        }
        let uid = self.uid();
        match stream {
            STREAM_USER => match (uid, event.split_once('/')) {
                (Some(uid), Some((prefix, _))) if prefix == uid => Ok(()),
                _ => Err(not_allowed()),
            },
            STREAM_ROOM_MESSAGES => {
                if event == "__my_messages__" {
                    return Ok(());
                }
                let uid = uid.ok_or_else(not_allowed)?;
                let st = self.shared.store();
                match st.room(event) {
                    Some(room) if st.can_access(uid, room) => Ok(()),
                    _ => Err(not_allowed()),
                }
            }
            STREAM_NOTIFY_ROOM => {
                let uid = uid.ok_or_else(not_allowed)?;
                let rid = event.split_once('/').map_or(event, |(r, _)| r);
                if self.shared.store().is_member(uid, rid) {
                    Ok(())
                } else {
                    Err(not_allowed())
                }
            }
            "stream-notify-all" => Ok(()),
            _ => uid.map(|_| ()).ok_or_else(not_allowed),
        }
    }
}

fn rooms_ejson(
    st: &Store,
    uid: &str,
    since: Option<chrono::DateTime<Utc>>,
) -> (Vec<Value>, Vec<Value>) {
    let update = st
        .rooms_of(uid)
        .iter()
        .filter_map(|rid| st.room(rid))
        .filter(|r| since.is_none_or(|s| r.updated_at > s))
        .filter_map(|r| st.room_json(&r.id, Dates::Ejson))
        .collect();
    let _ = RoomType::Direct;
    (update, Vec::new())
}

enum MethodError {
    Api(ApiError),
    NotFound,
}

fn api(e: ApiError) -> MethodError {
    MethodError::Api(e)
}

fn bad_login() -> ApiError {
    ApiError::LoginFailed {
        error: json!(400),
        message: "Match failed".into(),
    }
}
