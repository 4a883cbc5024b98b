//! A hub on 127.0.0.1:0 with an in-memory backplane and a recording backend, and the
//! official clients as subprocesses speaking JSON lines.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use async_trait::async_trait;
use imgate_domain::model::{Message, Sender};
use imgate_domain::ports::{EventDelivery, MessageStamp, Reach};
use imgate_domain::{ClientError, MessageId, RoomId, UserEvent, UserId};
use imgate_http::auth::{mint_hs256, AuthSettings, Authenticator, JwtKey};
use imgate_memory::MemoryBackplane;
use imgate_signalr::{Caller, Hub, HubBackend, HubConfig, HubError, HubLifetimeManager};

/// The process-wide metrics recorder, so tests can read the hub's counters.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// The value of a counter or gauge line in the Prometheus text, 0 when absent.
pub fn metric(series: &str) -> f64 {
    metrics()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

pub const SECRET: &[u8] = b"imgate-signalr-test-secret-0123456789";
pub use imgate_testkit::hub_client::WAIT;

/// A JWT for `user`, signed with the test secret.
pub fn token(user: &str) -> String {
    mint_hs256(SECRET, "sub", user, Duration::from_secs(3600))
}

/// Records every backend call as a line; user `refused` cannot connect, `SendMessage` to
/// room `forbidden` fails.
#[derive(Default)]
pub struct RecordingBackend {
    calls: Mutex<Vec<String>>,
    /// What `upstream_node` answers.
    pub upstream_node: Mutex<Option<String>>,
}

impl RecordingBackend {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, line: &str) -> usize {
        self.calls().iter().filter(|c| *c == line).count()
    }

    fn record(&self, line: String) {
        self.calls.lock().unwrap().push(line);
    }
}

#[async_trait]
impl HubBackend for RecordingBackend {
    async fn connection_opened(&self, caller: &Caller) -> Result<(), HubError> {
        if caller.user.as_str() == "refused" {
            return Err(HubError::Client(ClientError::Forbidden(
                "this user may not connect".into(),
            )));
        }
        self.record(format!("opened:{}", caller.user));
        Ok(())
    }

    async fn connection_closed(&self, caller: &Caller) {
        self.record(format!("closed:{}", caller.user));
    }

    fn user_online(&self, user: &UserId) {
        self.record(format!("online:{user}"));
    }

    fn user_offline(&self, user: &UserId) {
        self.record(format!("offline:{user}"));
    }

    fn first_delivery(&self, user: &UserId, stamp: &MessageStamp) -> bool {
        self.record(format!("first_delivery:{user}:{}", stamp.id));
        true
    }

    fn backplane_resumed(&self) {
        self.record("resumed".into());
    }

    async fn upstream_node(&self, _user: &UserId) -> Option<String> {
        self.upstream_node.lock().unwrap().clone()
    }

    async fn send_message(
        &self,
        caller: &Caller,
        room: RoomId,
        text: String,
    ) -> Result<Message, HubError> {
        self.record(format!("send:{}:{room}:{text}", caller.user));
        if room.as_str() == "forbidden" {
            return Err(HubError::Client(ClientError::Forbidden(
                "not a member of room forbidden".into(),
            )));
        }
        Ok(message(&room, &caller.user, &text))
    }

    async fn mark_read(&self, caller: &Caller, room: RoomId) -> Result<(), HubError> {
        self.record(format!("read:{}:{room}", caller.user));
        Ok(())
    }

    async fn typing(&self, caller: &Caller, room: RoomId, typing: bool) -> Result<(), HubError> {
        self.record(format!("typing:{}:{room}:{typing}", caller.user));
        Ok(())
    }
}

/// A made-up message.
pub fn message(room: &RoomId, sender: &UserId, text: &str) -> Message {
    Message {
        id: MessageId::parse(format!("m-{text}")).unwrap(),
        room_id: room.clone(),
        sender: Sender {
            id: sender.clone(),
            username: sender.to_string(),
            name: format!("{sender} name"),
        },
        text: text.into(),
        created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        edited_at: None,
        thread_id: None,
        system: None,
        file: None,
    }
}

/// A typing event, handy as a marker.
pub fn typing(room: &str, username: &str) -> UserEvent {
    UserEvent::Typing {
        room_id: RoomId::parse(room).unwrap(),
        username: username.into(),
        typing: true,
    }
}

pub struct TestHub {
    pub addr: std::net::SocketAddr,
    pub hub: Arc<Hub>,
    pub backend: Arc<RecordingBackend>,
    server: actix_web::dev::ServerHandle,
}

impl TestHub {
    pub async fn start(config: HubConfig) -> Self {
        Self::start_on(config, MemoryBackplane::new()).await
    }

    /// A hub reaching other test hubs through `backplane` (a node of a shared `MemoryBus`).
    pub async fn start_on(config: HubConfig, backplane: MemoryBackplane) -> Self {
        metrics();
        // RUST_LOG=imgate_signalr=debug shows the hub's side of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let backend = Arc::new(RecordingBackend::default());
        let connections = HubLifetimeManager::new(
            Arc::new(backplane),
            Arc::new(imgate_memory::MemoryPresence::new()),
        );
        let hub = Hub::new(config, connections, backend.clone());
        let auth = web::Data::new(
            Authenticator::new(AuthSettings {
                key: JwtKey::Hs256(SECRET.to_vec()),
                issuer: None,
                audience: None,
                leeway: Duration::from_secs(60),
                user_claim: "sub".into(),
                admin_claim: "roles".into(),
                admin_value: "im-admin".into(),
                api_key: None,
            })
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app_hub = hub.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(auth.clone())
                .configure(imgate_signalr::configure(app_hub.clone()))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            addr,
            hub,
            backend,
            server: handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hub", self.addr)
    }

    /// Sends `event` to `user` as the node holding the user's upstream does.
    pub fn publish(&self, user: &str, event: &UserEvent) {
        self.hub
            .manager()
            .deliver(&UserId::parse(user).unwrap(), event, Reach::AllNodes);
    }

    /// Waits until `check` holds, failing with `what` after [`WAIT`].
    pub async fn eventually(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; backend calls: {:?}",
                self.backend.calls()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// The official clients, pointed at a [`TestHub`] with a user's token.
pub use imgate_testkit::hub_client::HubClient as Client;

/// Starting official clients against a [`TestHub`].
pub trait ClientExt: Sized {
    /// `@microsoft/signalr` in Node as `user`.
    async fn node(hub: &TestHub, user: &str, transport: &str) -> Self;
    /// `@microsoft/signalr` in Node with a given token.
    async fn node_with_token(hub: &TestHub, token: &str, transport: &str) -> Self;
    /// `signalrcore` or `pysignalr` as `user`.
    async fn python(hub: &TestHub, user: &str, library: &str) -> Self;
}

impl ClientExt for Client {
    async fn node(hub: &TestHub, user: &str, transport: &str) -> Self {
        Client::spawn_node(&hub.url(), &token(user), transport)
    }

    async fn node_with_token(hub: &TestHub, token: &str, transport: &str) -> Self {
        Client::spawn_node(&hub.url(), token, transport)
    }

    async fn python(hub: &TestHub, user: &str, library: &str) -> Self {
        Client::spawn_python(&hub.url(), &token(user), library)
    }
}
