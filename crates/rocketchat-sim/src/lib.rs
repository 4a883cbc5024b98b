//! A Rocket.Chat-compatible server for tests, the demo default and benchmarks.
//!
//! It speaks the REST v1 and Realtime (DDP over WebSocket) dialects described in
//! `docs/rocketchat-wire.md`, keeps everything in memory, and lets tests inject faults
//! (broken answers, delays, refused connections, revoked tokens, frozen sockets) through
//! [`Sim`]. It is a test double, **not** a Rocket.Chat replacement: no persistence, no
//! federation, no apps, no LDAP/2FA, only the endpoints an IM gateway needs.
//!
//! Main types: [`Sim`] (a running server and its knobs), [`SimConfig`], [`Version`]
//! (which Rocket.Chat line to emulate), [`RestFault`], [`ConnectionRecord`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), rocketchat_sim::SimError> {
//! let sim = rocketchat_sim::Sim::start(rocketchat_sim::SimConfig::default()).await?;
//! let alice = sim.create_user("alice", "secret")?;
//! println!("{} {} {}", sim.http_url(), sim.ws_url(), alice.id);
//! sim.stop().await;
//! # Ok(()) }
//! ```

mod ddp;
mod error;
mod faults;
mod hub;
mod ids;
mod limiter;
mod model;
mod rest;
mod store;

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::Value;

pub use faults::{RestFault, RestFaultKind};
pub use hub::ConnectionRecord;

use faults::Faults;
use hub::Hub;
use store::{NewUser, Store};

/// Which Rocket.Chat release line to emulate (reference §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Version {
    /// 6.x: Restivus bodies without `success`, `unauthorized()` is 403, `server_id` frame.
    V6,
    /// 7.x: superset bodies, `rooms.upload` still present.
    #[default]
    V7,
    /// 8.x: as 7.x, `rooms.upload` removed, `subscriptions.read` also takes `roomId`.
    V8,
}

impl Version {
    /// Parses `6`, `7`, `8` (or `6.x`, `7.10.0`…).
    pub fn parse(text: &str) -> Option<Version> {
        match text.split('.').next()? {
            "6" => Some(Version::V6),
            "7" => Some(Version::V7),
            "8" => Some(Version::V8),
            _ => None,
        }
    }

    /// The full version string `/api/info` reports.
    pub fn full(self) -> &'static str {
        match self {
            Version::V6 => "6.13.1",
            Version::V7 => "7.10.0",
            Version::V8 => "8.8.1",
        }
    }
}

/// The REST limiter's numbers (Rocket.Chat settings `API_Enable_Rate_Limiter_Limit_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls allowed per window and bucket (IP + route + method).
    pub calls: u32,
    /// Window length.
    pub window: Duration,
}

impl RateLimit {
    /// A fresh Rocket.Chat's numbers: 10 calls per 60 s.
    pub const ROCKETCHAT_DEFAULT: RateLimit = RateLimit {
        calls: 10,
        window: Duration::from_secs(60),
    };
}

/// How to start a sim.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The seeded administrator's username.
    pub admin_username: String,
    /// The seeded administrator's password.
    pub admin_password: String,
    /// Which release line to emulate.
    pub version: Version,
    /// HTTP worker threads.
    pub workers: usize,
    /// Server pings a DDP socket after this long without inbound frames (Meteor: 15 s).
    pub ddp_ping_interval: Duration,
    /// …and closes it if nothing arrives within this much more (Meteor: 15 s).
    pub ddp_ping_timeout: Duration,
    /// Outbound frames queued per DDP socket before it is cut off as too slow. Meteor buffers
    /// without limit; the sim bounds it, high enough that a busy benchmark consumer catches up.
    pub ddp_queue: usize,
    /// REST rate limiter; `None` (the sim's default) leaves it off.
    pub rate_limit: Option<RateLimit>,
    /// The DDP `sendMessage` limit per user without `send-many-messages` (real server: 5 per second).
    pub ddp_send_limit: Option<RateLimit>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_username: "admin".into(),
            admin_password: "admin".into(),
            version: Version::V7,
            workers: 2,
            ddp_ping_interval: Duration::from_secs(15),
            ddp_ping_timeout: Duration::from_secs(15),
            ddp_queue: 65_536,
            rate_limit: None,
            ddp_send_limit: Some(RateLimit {
                calls: 5,
                window: Duration::from_secs(1),
            }),
        }
    }
}

impl SimConfig {
    /// The sim's defaults, but with the REST limiter on with a fresh Rocket.Chat's numbers, as
    /// a real server out of the box has it.
    pub fn like_default_server() -> Self {
        SimConfig {
            rate_limit: Some(RateLimit::ROCKETCHAT_DEFAULT),
            ..SimConfig::default()
        }
    }
}

/// The limiter numbers the settings hold now.
pub(crate) fn limiter_numbers(store: &Store) -> limiter::Numbers {
    limiter::Numbers {
        calls: store.setting_i64("API_Enable_Rate_Limiter_Limit_Calls_Default", 10),
        window_ms: store.setting_i64("API_Enable_Rate_Limiter_Limit_Time_Default", 60_000),
    }
}

/// Why the sim could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding or starting the HTTP server failed.
    #[error("could not listen on {addr}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// The IO failure.
        #[source]
        source: std::io::Error,
    },
    /// No user with that username.
    #[error("no user named {0}")]
    UnknownUser(String),
    /// The store refused the change (taken username, invalid name…).
    #[error("rejected: {0}")]
    Rejected(String),
}

/// A user the library created, with a login token ready for REST headers or DDP resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeededUser {
    /// The user's `_id`.
    pub id: String,
    /// The username.
    pub username: String,
    /// The password it was created with.
    pub password: String,
    /// A fresh login token (`X-Auth-Token`).
    pub token: String,
}

/// State shared by every worker and socket.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub hub: Arc<Hub>,
    pub faults: Faults,
    pub version: Version,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub ddp_queue: usize,
    /// The REST limiter's rules; its settings live in the store.
    pub limiter: limiter::Limiter,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // Store methods never leave maps half-updated across a panic point that matters to a test double.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a store change and delivers the events it queued once the lock is released.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, events) = {
            let mut st = self.store();
            let out = f(&mut st);
            (out, std::mem::take(&mut st.pending))
        };
        self.hub.deliver(events);
        out
    }
}

/// A running sim: URLs, seeding, fault knobs and observability.
pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    workers: usize,
    server: tokio::sync::Mutex<Option<ServerHandle>>,
}

impl Sim {
    /// Binds, seeds `#general` and the admin, and serves on the current tokio runtime.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let listener = TcpListener::bind(config.bind).map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
        let hub = Arc::new(Hub::default());
        let mut store = Store::new(
            hub.clone(),
            (&config.admin_username, &config.admin_password),
        );
        store.base_url = format!("http://{addr}");
        if let Some(limit) = config.rate_limit {
            apply_rate_limit(&mut store, Some(limit));
        }
        store.ddp_send_limit = config.ddp_send_limit;
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            hub,
            faults: Faults::default(),
            version: config.version,
            ping_interval: config.ddp_ping_interval,
            ping_timeout: config.ddp_ping_timeout,
            ddp_queue: config.ddp_queue.max(1),
            limiter: limiter::Limiter::new(chrono::Utc::now().timestamp_millis()),
        });
        let handle = rest::serve(shared.clone(), listener, config.workers)
            .map_err(|source| SimError::Bind { addr, source })?;
        tracing::info!(%addr, version = ?config.version, "rocketchat-sim listening");
        Ok(Sim {
            shared,
            addr,
            workers: config.workers,
            server: tokio::sync::Mutex::new(Some(handle)),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:<port>/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/websocket", self.addr)
    }

    /// The emulated version.
    pub fn version(&self) -> Version {
        self.shared.version
    }

    /// Creates a user (role `user`, joined to `#general`) and logs it in.
    pub fn create_user(&self, username: &str, password: &str) -> Result<SeededUser, SimError> {
        self.create_user_with_roles(username, password, &["user"])
    }

    /// Creates a user with the given roles (e.g. `["admin"]`, `["bot"]`) and logs it in.
    pub fn create_user_with_roles(
        &self,
        username: &str,
        password: &str,
        roles: &[&str],
    ) -> Result<SeededUser, SimError> {
        self.shared.with_store(|st| {
            let id = st
                .create_user(
                    NewUser {
                        username: username.into(),
                        email: format!("{username}@example.com"),
                        password: Some(password.into()),
                        name: username.into(),
                        active: true,
                        roles: Some(roles.iter().map(|r| r.to_string()).collect()),
                        verified: true,
                        join_default_channels: true,
                        ..NewUser::default()
                    },
                    None,
                )
                .map_err(|e| SimError::Rejected(e.to_string()))?;
            let token = st.issue_token(&id);
            Ok(SeededUser {
                id,
                username: username.into(),
                password: password.into(),
                token,
            })
        })
    }

    /// A new login token for an existing user (as a REST password login would give).
    pub fn login(&self, username: &str) -> Result<SeededUser, SimError> {
        self.shared.with_store(|st| {
            let id = st
                .uid_by_username(username)
                .cloned()
                .ok_or_else(|| SimError::UnknownUser(username.into()))?;
            let token = st.issue_token(&id);
            Ok(SeededUser {
                id,
                username: username.into(),
                password: String::new(),
                token,
            })
        })
    }

    /// The `_id` of a username.
    pub fn user_id(&self, username: &str) -> Option<String> {
        self.shared.store().uid_by_username(username).cloned()
    }

    /// Creates a public channel owned by `owner` with these member usernames; returns its id.
    pub fn create_channel(
        &self,
        name: &str,
        owner: &str,
        members: &[&str],
    ) -> Result<String, SimError> {
        self.create_room(model::RoomType::Channel, name, owner, members)
    }

    /// Creates a private group owned by `owner` with these member usernames; returns its id.
    pub fn create_group(
        &self,
        name: &str,
        owner: &str,
        members: &[&str],
    ) -> Result<String, SimError> {
        self.create_room(model::RoomType::Group, name, owner, members)
    }

    fn create_room(
        &self,
        t: model::RoomType,
        name: &str,
        owner: &str,
        members: &[&str],
    ) -> Result<String, SimError> {
        self.shared.with_store(|st| {
            let owner_id = st
                .uid_by_username(owner)
                .cloned()
                .ok_or_else(|| SimError::UnknownUser(owner.into()))?;
            let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
            let spec = store::NewRoom {
                t,
                name,
                members: &members,
                read_only: false,
                exclude_self: false,
                topic: None,
            };
            st.create_room(&owner_id, spec)
                .map_err(|e| SimError::Rejected(e.to_string()))
        })
    }

    /// Opens (or finds) the DM of two users, as `im.create` by `from`; returns its rid.
    pub fn create_dm(&self, from: &str, to: &str) -> Result<String, SimError> {
        self.shared.with_store(|st| {
            let from_id = st
                .uid_by_username(from)
                .cloned()
                .ok_or_else(|| SimError::UnknownUser(from.into()))?;
            st.create_dm(&from_id, &[to.to_string()], false)
                .map(|(rid, _)| rid)
                .map_err(|e| SimError::Rejected(e.to_string()))
        })
    }

    /// Posts a message as `username`, firing the same events as `chat.sendMessage`; returns its id.
    pub fn send_message(&self, username: &str, rid: &str, text: &str) -> Result<String, SimError> {
        self.shared.with_store(|st| {
            let uid = st
                .uid_by_username(username)
                .cloned()
                .ok_or_else(|| SimError::UnknownUser(username.into()))?;
            st.send_message(&uid, rid, text, None, None, serde_json::Map::new())
                .map_err(|e| SimError::Rejected(e.to_string()))
        })
    }

    /// The messages of a room, newest first, as REST `*.history` renders them (ISO dates).
    pub fn messages(&self, rid: &str) -> Vec<Value> {
        let st = self.shared.store();
        st.history(rid, None, None, false, 0, None)
            .into_iter()
            .map(|m| m.to_json(model::Dates::Iso))
            .collect()
    }

    /// A user's subscription to a room as `subscriptions.getOne` renders it, if any.
    pub fn subscription(&self, username: &str, rid: &str) -> Option<Value> {
        let st = self.shared.store();
        let uid = st.uid_by_username(username)?;
        st.subscription(uid, rid)
            .map(|s| s.to_json(model::Dates::Iso))
    }

    /// Reads a server setting (as `GET /api/v1/settings/<id>` would).
    pub fn setting(&self, id: &str) -> Option<Value> {
        self.shared.store().settings.get(id).cloned()
    }

    /// Writes a server setting (as `POST /api/v1/settings/<id>` would, limiter rules included).
    pub fn set_setting(&self, id: &str, value: Value) {
        let numbers = {
            let mut st = self.shared.store();
            st.settings.insert(id.into(), value);
            limiter_numbers(&st)
        };
        self.shared
            .limiter
            .sync(numbers, chrono::Utc::now().timestamp_millis());
    }

    /// Turns the REST rate limiter on with these numbers (fresh windows from now), or off with
    /// `None`.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let numbers = {
            let mut st = self.shared.store();
            apply_rate_limit(&mut st, limit);
            limiter_numbers(&st)
        };
        let now = chrono::Utc::now().timestamp_millis();
        self.shared.limiter.sync(numbers, now);
        self.shared.limiter.rebuild(now);
    }

    /// When the limiter's current window for `endpoint` (e.g. `chat.sendMessage`) and HTTP
    /// `method` ends, in epoch milliseconds as `X-RateLimit-Reset` says; `None` when no window
    /// runs (the next limited call starts one).
    pub fn rate_limit_reset(&self, endpoint: &str, method: &str) -> Option<i64> {
        self.shared.limiter.reset_of(
            &limiter::route_key(endpoint, method),
            chrono::Utc::now().timestamp_millis(),
        )
    }

    /// How many calls of `endpoint` and `method` the limiter refused (429) since its rules
    /// were last built.
    pub fn rate_limit_refusals(&self, endpoint: &str, method: &str) -> u64 {
        self.shared
            .limiter
            .refused(&limiter::route_key(endpoint, method))
    }

    /// The roles holding a permission (as `permissions.listAll` shows it), if it exists.
    pub fn permission_roles(&self, permission: &str) -> Option<Vec<String>> {
        self.shared
            .store()
            .permissions
            .get(permission)
            .map(|p| p.roles.clone())
    }

    /// Adds a role users can be given and permissions granted to (a custom role).
    pub fn add_role(&self, role: &str) {
        self.shared.store().roles.insert(role.into());
    }

    // ------------------------------------------------------------------------ faults

    /// Adds a REST fault rule (500, garbage, 429, 502), optionally per path and count.
    pub fn add_rest_fault(&self, fault: RestFault) {
        self.shared.faults.add_rest(fault);
    }

    /// Removes every REST fault rule and the answer delay.
    pub fn clear_rest_faults(&self) {
        self.shared.faults.clear_rest();
    }

    /// Delays every REST answer and DDP method result by this much (`None` to stop).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.faults.set_delay(delay);
    }

    /// Stops listening: open sockets are dropped and new connections are refused until
    /// [`Sim::accept_connections`].
    pub async fn refuse_connections(&self) {
        self.shared.hub.close_all();
        if let Some(handle) = self.server.lock().await.take() {
            handle.stop(false).await;
        }
    }

    /// Listens again on the same address after [`Sim::refuse_connections`].
    pub async fn accept_connections(&self) -> Result<(), SimError> {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return Ok(());
        }
        let addr = self.addr;
        // The old socket may linger for a moment after stop; retry briefly.
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(addr) {
                Ok(listener) => {
                    let handle = rest::serve(self.shared.clone(), listener, self.workers)
                        .map_err(|source| SimError::Bind { addr, source })?;
                    *server = Some(handle);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Err(SimError::Bind {
            addr,
            source: last.unwrap_or_else(|| std::io::Error::other("bind failed")),
        })
    }

    /// Removes every login token of a user; REST calls then get 401 and their DDP sockets close.
    pub fn revoke_tokens(&self, username: &str) -> Result<usize, SimError> {
        self.shared.with_store(|st| {
            let id = st
                .uid_by_username(username)
                .cloned()
                .ok_or_else(|| SimError::UnknownUser(username.into()))?;
            Ok(st.revoke_tokens(&id))
        })
    }

    /// Drops every DDP socket of a user without a close frame; returns how many.
    pub fn drop_ddp(&self, username: &str) -> Result<usize, SimError> {
        let id = self
            .user_id(username)
            .ok_or_else(|| SimError::UnknownUser(username.into()))?;
        Ok(self.shared.hub.kill_user(&id))
    }

    /// Freezes (or thaws) a user's DDP sockets: open, but nothing is read or written.
    pub fn freeze_ddp(&self, username: &str, frozen: bool) -> Result<(), SimError> {
        let id = self
            .user_id(username)
            .ok_or_else(|| SimError::UnknownUser(username.into()))?;
        self.shared.faults.set_frozen(&id, frozen);
        Ok(())
    }

    /// Stops (or resumes) answering and sending pings on a user's DDP sockets.
    pub fn ignore_pings(&self, username: &str, ignore: bool) -> Result<(), SimError> {
        let id = self
            .user_id(username)
            .ok_or_else(|| SimError::UnknownUser(username.into()))?;
        self.shared.faults.set_silent(&id, ignore);
        Ok(())
    }

    // ----------------------------------------------------------------- observability

    /// Open, logged-in DDP sockets of a user.
    pub fn open_ddp_connections(&self, username: &str) -> usize {
        self.user_id(username)
            .map_or(0, |id| self.shared.hub.open_count(&id))
    }

    /// Open DDP sockets, logged in or not.
    pub fn open_ddp_total(&self) -> usize {
        self.shared.hub.open_total()
    }

    /// Every DDP socket opened so far, with user and open/close times.
    pub fn ddp_connection_log(&self) -> Vec<ConnectionRecord> {
        self.shared.hub.log()
    }

    /// Stops the server and closes every socket.
    pub async fn stop(self) {
        self.refuse_connections().await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // A sim dropped without `stop()` must not keep serving: the stop command is sent
        // when `stop` is called, so the returned future need not be awaited here.
        if let Some(handle) = self.server.get_mut().take() {
            self.shared.hub.close_all();
            drop(handle.stop(false));
        }
    }
}

fn apply_rate_limit(store: &mut Store, limit: Option<RateLimit>) {
    match limit {
        Some(l) => {
            store
                .settings
                .insert("API_Enable_Rate_Limiter".into(), Value::Bool(true));
            store.settings.insert(
                "API_Enable_Rate_Limiter_Limit_Calls_Default".into(),
                Value::from(l.calls),
            );
            store.settings.insert(
                "API_Enable_Rate_Limiter_Limit_Time_Default".into(),
                Value::from(l.window.as_millis() as u64),
            );
        }
        None => {
            store
                .settings
                .insert("API_Enable_Rate_Limiter".into(), Value::Bool(false));
        }
    }
}
