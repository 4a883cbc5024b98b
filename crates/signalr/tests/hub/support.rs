//! A hub on 127.0.0.1:0 with an in-memory publisher and a recording backend, and the
//! official clients as subprocesses speaking JSON lines.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use async_trait::async_trait;
use imgate_domain::model::{Message, Sender};
use imgate_domain::ports::EventPublisher;
use imgate_domain::{MessageId, RoomId, UserEvent, UserId};
use imgate_http::auth::{mint_hs256, AuthSettings, Authenticator, JwtKey};
use imgate_memory::MemoryEventPublisher;
use imgate_signalr::{Caller, Hub, HubBackend, HubConfig, HubError};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

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
pub const WAIT: Duration = Duration::from_secs(20);

/// A JWT for `user`, signed with the test secret.
pub fn token(user: &str) -> String {
    mint_hs256(SECRET, "sub", user, Duration::from_secs(3600))
}

/// Records every backend call as a line; user `refused` cannot connect, `SendMessage` to
/// room `forbidden` fails.
#[derive(Default)]
pub struct RecordingBackend {
    calls: Mutex<Vec<String>>,
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
            return Err(HubError::Forbidden("this user may not connect".into()));
        }
        self.record(format!("opened:{}", caller.user));
        Ok(())
    }

    async fn connection_closed(&self, caller: &Caller) {
        self.record(format!("closed:{}", caller.user));
    }

    async fn send_message(
        &self,
        caller: &Caller,
        room: RoomId,
        text: String,
    ) -> Result<Message, HubError> {
        self.record(format!("send:{}:{room}:{text}", caller.user));
        if room.as_str() == "forbidden" {
            return Err(HubError::Forbidden("not a member of room forbidden".into()));
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
    pub publisher: Arc<MemoryEventPublisher>,
    pub backend: Arc<RecordingBackend>,
    server: actix_web::dev::ServerHandle,
}

impl TestHub {
    pub async fn start(config: HubConfig) -> Self {
        Self::start_with(config, 64).await
    }

    /// A hub whose publisher buffers `feed_buffer` events per connection.
    pub async fn start_with(config: HubConfig, feed_buffer: usize) -> Self {
        metrics();
        // RUST_LOG=imgate_signalr=debug shows the hub's side of a failing test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let publisher = Arc::new(MemoryEventPublisher::new(feed_buffer));
        let backend = Arc::new(RecordingBackend::default());
        let hub = Hub::new(config, publisher.clone(), backend.clone());
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
            publisher,
            backend,
            server: handle,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hub", self.addr)
    }

    pub async fn publish(&self, user: &str, event: &UserEvent) {
        self.publisher
            .publish(&UserId::parse(user).unwrap(), event)
            .await
            .unwrap();
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

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/hub")
}

/// Fails (never skips) when the official clients are not installed.
fn require_clients() -> PathBuf {
    let dir = clients_dir();
    let node = dir.join("node_modules/@microsoft/signalr/package.json");
    let python = dir.join(".venv/bin/python");
    assert!(
        node.exists() && python.exists(),
        "the official SignalR clients are not installed (missing {} or {}): run `bash tests/clients/hub/setup.sh`",
        node.display(),
        python.display()
    );
    dir
}

/// An official client in a subprocess: events arrive as JSON lines, commands go to stdin.
pub struct Client {
    pub name: String,
    _child: Child,
    stdin: ChildStdin,
    // Unbounded is fine here: a test client prints a bounded number of lines.
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every event read so far.
    pub seen: Vec<Value>,
}

impl Client {
    /// `@microsoft/signalr` in Node with the given transport (`websockets`, `sse`,
    /// `longpolling`, or `websockets+skip` for skipNegotiation).
    pub async fn node(hub: &TestHub, user: &str, transport: &str) -> Self {
        Self::node_with_token(hub, &token(user), transport).await
    }

    pub async fn node_with_token(hub: &TestHub, token: &str, transport: &str) -> Self {
        let dir = require_clients();
        let mut command = Command::new("node");
        command
            .arg(dir.join("hub-client.js"))
            .env("HUB_URL", hub.url())
            .env("HUB_TOKEN", token)
            .env("HUB_TRANSPORT", transport.trim_end_matches("+skip"));
        if transport.ends_with("+skip") {
            command.env("HUB_SKIP_NEGOTIATION", "1");
        }
        Self::spawn(format!("node/{transport}"), command)
    }

    /// `signalrcore` or `pysignalr`, over WebSockets.
    pub async fn python(hub: &TestHub, user: &str, library: &str) -> Self {
        let dir = require_clients();
        let mut command = Command::new(dir.join(".venv/bin/python"));
        command
            .arg("-u")
            .arg(dir.join("hub_client.py"))
            .arg(library)
            .env("HUB_URL", hub.url())
            .env("HUB_TOKEN", token(user));
        Self::spawn(library.to_owned(), command)
    }

    fn spawn(name: String, mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {name}: {err}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let label = name.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        let _ = tx.send(value);
                    }
                    Err(_) => eprintln!("[{label}] {line}"),
                }
            }
        });
        Self {
            name,
            _child: child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads events until one matches; fails after [`WAIT`].
    pub async fn wait_for(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match next {
                Ok(Some(value)) => {
                    self.seen.push(value.clone());
                    if check(&value) {
                        return value;
                    }
                }
                Ok(None) => panic!(
                    "{} exited while waiting for {what}; saw {:?}",
                    self.name, self.seen
                ),
                Err(_) => panic!(
                    "{} timed out waiting for {what}; saw {:?}",
                    self.name, self.seen
                ),
            }
        }
    }

    pub async fn wait_event(&mut self, event: &str) -> Value {
        let name = event.to_owned();
        self.wait_for(event, move |v| v["event"] == name.as_str())
            .await
    }

    pub async fn connected(&mut self) {
        let value = self
            .wait_for("connected", |v| {
                v["event"] == "connected" || v["event"] == "start_failed"
            })
            .await;
        assert_eq!(
            value["event"], "connected",
            "{} failed to start: {value}",
            self.name
        );
    }

    pub async fn command(&mut self, command: Value) {
        let mut line = command.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Invokes a hub method and returns the client's `result` event for it.
    pub async fn invoke(&mut self, tag: &str, method: &str, args: Value) -> Value {
        self.command(json!({"cmd": "invoke", "tag": tag, "method": method, "args": args}))
            .await;
        let tag = tag.to_owned();
        self.wait_for("a result", move |v| {
            v["event"] == "result" && v["tag"] == tag.as_str()
        })
        .await
    }

    /// Received invocations (pushed events) so far.
    pub fn received(&self) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["event"] == "recv").collect()
    }
}
