//! Many nodes as an operator runs them: two `imgate` processes sharing Redis, behind Debian's
//! nginx running `config/nginx.conf`, in front of the Rocket.Chat-compatible server; the
//! clients are the official `@microsoft/signalr` client in Node.
//!
//! Needs `nginx` (Debian's package) and Redis on `IMGATE_TEST_REDIS_URL` or 127.0.0.1:6379;
//! `scripts/test-deps.sh` provides both. Fails, never skips, when they are missing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imgate_testkit::hub_client::HubClient;
use rocketchat_sim::{ConnectionRecord, Sim, SimConfig};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

const SECRET: &str = "a-host-secret-of-at-least-32-bytes!";
const API_KEY: &str = "cluster-test-api-key";
/// Short, so a takeover after a crash happens within seconds.
const LEASE_TTL_S: u64 = 3;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn token(user: &str) -> String {
    imgate_http::auth::mint_hs256(SECRET.as_bytes(), "sub", user, Duration::from_secs(600))
}

fn redis_url() -> String {
    std::env::var("IMGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A scratch folder under the target directory, fresh for each test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cluster-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One `imgate` process.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    async fn start(sim: &Sim, prefix: &str, config_dir: &Path, route: &str) -> Node {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_imgate"));
        command.arg("--config-dir").arg(config_dir);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMGATE")) {
            command.env_remove(key);
        }
        let lease_ttl = LEASE_TTL_S.to_string();
        command
            .env("IMGATE__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("IMGATE__SERVER__BASE_PATH", "/chat")
            .env("IMGATE__SERVER__TRUSTED_PROXIES", "127.0.0.1")
            .env("IMGATE__SERVER__WORKERS", "1")
            .env("IMGATE__SERVER__SHUTDOWN_TIMEOUT_S", "5")
            .env("IMGATE__PROVIDER__URL", sim.http_url())
            .env("IMGATE__PROVIDER__ADMIN_PASSWORD", "admin")
            .env("IMGATE__PROVIDER__DEFAULT_PASSWORD", "user-password")
            .env("IMGATE__AUTH__JWT_SECRET", SECRET)
            .env("IMGATE__AUTH__API_KEY", API_KEY)
            .env("IMGATE__CACHE__KIND", "redis")
            .env("IMGATE__PUSH__KIND", "redis")
            .env("IMGATE__REDIS__URL", redis_url())
            .env("IMGATE__REDIS__PREFIX", prefix)
            .env("IMGATE__HUB__ROUTE", route)
            .env("IMGATE__REALTIME__LEASE_TTL_S", &lease_ttl)
            // Raise it to see the nodes' logs when a test fails.
            .env(
                "IMGATE__LOG__LEVEL",
                std::env::var("IMGATE_TEST_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let child = command.spawn().expect("the imgate binary starts");
        let node = Node { child, port };
        node.until_ready().await;
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/chat", self.port)
    }

    async fn until_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{}/readyz", self.url()))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never got ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A gauge or counter from the node's `/metrics`, 0 when absent or unreachable.
    async fn metric(&self, name: &str) -> f64 {
        let Ok(response) = reqwest::get(format!("{}/metrics", self.url())).await else {
            return 0.0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    async fn hub_connections(&self) -> f64 {
        self.metric("imgate_hub_connections_open ").await
    }

    /// Upstreams this node holds the lease for.
    async fn upstreams_held(&self) -> f64 {
        self.metric("imgate_upstreams_held ").await
    }

    /// SIGTERM, then the exit status.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the node stops within its shutdown deadlines")
            .unwrap()
    }
}

/// Debian's nginx running `config/nginx.conf`, with only the listen port, the node addresses
/// and the file paths replaced.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // A killed master leaves its workers running: ask it to stop them, and wait until it
        // has (it exits after its workers).
        let Some(pid) = self.child.id() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Nginx {
    async fn start(nodes: [&Node; 2], dir: &Path) -> Nginx {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect(
                "nginx is not installed: run `bash scripts/test-deps.sh` (Debian package nginx)",
            );
        let port = free_port();
        let source = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/nginx.conf"
        ))
        .unwrap();
        let dir_text = dir.display().to_string();
        let temp_paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|kind| format!("    {kind}_temp_path {dir_text}/{kind};\n"))
            .concat();
        let replacements = [
            ("listen 8080;", format!("listen 127.0.0.1:{port};")),
            ("127.0.0.1:8081", format!("127.0.0.1:{}", nodes[0].port)),
            ("127.0.0.1:8082", format!("127.0.0.1:{}", nodes[1].port)),
            ("/run/imgate-nginx.pid", format!("{dir_text}/nginx.pid")),
            ("/var/log/nginx/", format!("{dir_text}/")),
            ("http {\n", format!("http {{\n{temp_paths}")),
        ];
        let mut config = source;
        for (from, to) in replacements {
            assert!(
                config.contains(from),
                "config/nginx.conf no longer has `{from}`"
            );
            config = config.replace(from, &to);
        }
        let path = dir.join("nginx.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("startup-error.log"))
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(format!("{}/healthz", nginx.url()))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nginx never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/chat", self.port)
    }
}

/// Two nodes behind nginx, with users alice and bob and a direct room between them.
struct Cluster {
    sim: Arc<Sim>,
    nodes: [Node; 2],
    nginx: Nginx,
    http: reqwest::Client,
    dm: String,
}

impl Cluster {
    async fn start(name: &str) -> Cluster {
        let sim = Arc::new(Sim::start(SimConfig::default()).await.unwrap());
        let dir = scratch(name);
        let prefix = dir.file_name().unwrap().to_string_lossy().into_owned();
        // The routes `config/nginx.conf` maps connection ids to.
        let a = Node::start(&sim, &prefix, &dir, "a").await;
        let b = Node::start(&sim, &prefix, &dir, "b").await;
        let nginx = Nginx::start([&a, &b], &dir).await;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        for user in ["alice", "bob"] {
            let response = http
                .put(format!("{}/api/v1/users/{user}", nginx.url()))
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": user, "name": user}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        }
        let dm: Value = http
            .post(format!("{}/api/v1/rooms/direct", nginx.url()))
            .bearer_auth(token("bob"))
            .json(&json!({"members": ["alice"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Cluster {
            sim,
            nodes: [a, b],
            nginx,
            http,
            dm: dm["id"].as_str().expect("a room id").to_owned(),
        }
    }

    async fn hub_connections(&self) -> [f64; 2] {
        [
            self.nodes[0].hub_connections().await,
            self.nodes[1].hub_connections().await,
        ]
    }

    /// Which node a connection opened after `before` was counted landed on.
    async fn landed(&self, before: [f64; 2]) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.hub_connections().await;
            if let Some(node) = (0..2).find(|&i| now[i] > before[i]) {
                return node;
            }
            assert!(Instant::now() < deadline, "no node counted the connection");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens alice's connections through nginx, one per transport, and checks that they all
    /// reach the node holding her upstream; then one more straight to the other node, without
    /// negotiating, as a client that skips negotiation does: the backplane serves that one.
    /// Returns each with the index of the node it is on.
    async fn connect_alice_to_both(&self, transports: &[&str]) -> Vec<(HubClient, usize)> {
        let mut clients: Vec<(HubClient, usize)> = Vec::new();
        for transport in transports {
            let before = self.hub_connections().await;
            let mut client = HubClient::spawn_node(
                &format!("{}/hub", self.nginx.url()),
                &token("alice"),
                transport,
            );
            client.connected().await;
            let node = self.landed(before).await;
            if clients.is_empty() {
                // The first connection makes its node take the upstream; negotiate routes
                // the next ones by who holds it.
                let deadline = Instant::now() + Duration::from_secs(20);
                while self.nodes[node].upstreams_held().await < 1.0 {
                    assert!(
                        Instant::now() < deadline,
                        "node {node} never took the upstream"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            clients.push((client, node));
        }
        let home = clients[0].1;
        assert!(
            clients.iter().all(|(_, node)| *node == home),
            "every connection through nginx reaches the node holding the upstream: {:?}",
            clients
                .iter()
                .map(|(c, node)| (&c.name, node))
                .collect::<Vec<_>>()
        );
        let other = 1 - home;
        let before = self.hub_connections().await;
        let mut client = HubClient::spawn_node(
            &format!("{}/hub", self.nodes[other].url()),
            &token("alice"),
            "websockets+skip",
        );
        client.connected().await;
        assert_eq!(self.landed(before).await, other);
        clients.push((client, other));
        clients
    }

    /// Bob writes through nginx until every client has seen one of his probes: the single
    /// upstream is live and reaches every node.
    async fn until_live(&self, clients: &mut [(HubClient, usize)]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in 0.. {
            assert!(Instant::now() < deadline, "the upstream never went live");
            self.sim
                .send_message("bob", &self.dm, &format!("probe {n}"))
                .unwrap();
            let mut all = true;
            for (client, _) in clients.iter_mut() {
                let seen = tokio::time::timeout(
                    Duration::from_millis(300),
                    client.wait_for("a probe", |v| {
                        v["arg"]["text"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("probe"))
                    }),
                )
                .await
                .is_ok();
                all &= seen;
            }
            if all {
                return;
            }
        }
    }

    /// Alice's upstream connections as the provider logged them, oldest first.
    fn alice_upstreams(&self) -> Vec<ConnectionRecord> {
        let mut log: Vec<ConnectionRecord> = self
            .sim
            .ddp_connection_log()
            .into_iter()
            .filter(|record| record.username.as_deref() == Some("alice"))
            .collect();
        log.sort_by_key(|record| record.opened_at);
        log
    }
}

/// Bob's numbered messages as a client received them, in order.
fn numbered(client: &HubClient) -> Vec<String> {
    client
        .received()
        .into_iter()
        .filter(|v| v["target"] == "getRoomMessageNotification")
        .filter_map(|v| v["arg"]["text"].as_str())
        .filter(|text| text.starts_with('m'))
        .map(str::to_owned)
        .collect()
}

fn expected(count: usize) -> Vec<String> {
    (0..count).map(|n| format!("m{n}")).collect()
}

/// No two upstreams of alice were ever open at the same time.
fn assert_never_two_at_once(log: &[ConnectionRecord]) {
    for pair in log.windows(2) {
        let closed = pair[0]
            .closed_at
            .unwrap_or_else(|| panic!("an older upstream is still open: {log:?}"));
        assert!(
            closed <= pair[1].opened_at,
            "two upstreams of alice at once: {log:?}"
        );
    }
}

#[tokio::test]
async fn through_nginx_a_users_connections_meet_on_one_node_and_every_message_reaches_every_connection_once(
) {
    let cluster = Cluster::start("routing").await;
    // Server-Sent Events and Long Polling need every request of a connection on one node.
    let mut clients = cluster
        .connect_alice_to_both(&["websockets", "sse", "longpolling"])
        .await;
    cluster.until_live(&mut clients).await;
    // Sending goes over each connection's own transport (a POST beside the stream for SSE
    // and Long Polling).
    for (n, (client, _)) in clients.iter_mut().enumerate() {
        let result = client
            .invoke(
                &format!("hello-{n}"),
                "SendMessage",
                json!([cluster.dm, format!("hello from {}", client.name)]),
            )
            .await;
        assert_eq!(result["ok"], true, "{}: {result}", client.name);
    }
    for n in 0..10 {
        let response = cluster
            .http
            .post(format!(
                "{}/api/v1/rooms/{}/messages",
                cluster.nginx.url(),
                cluster.dm
            ))
            .bearer_auth(token("bob"))
            .json(&json!({"text": format!("m{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    for (client, node) in &mut clients {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == "m9")
            .await;
        assert_eq!(
            numbered(client),
            expected(10),
            "{} on node {node}",
            client.name
        );
    }
    assert_eq!(
        cluster.sim.open_ddp_connections("alice"),
        1,
        "one upstream for alice across both nodes"
    );
    let owners = [
        cluster.nodes[0].upstreams_held().await,
        cluster.nodes[1].upstreams_held().await,
    ];
    assert_eq!(owners.iter().sum::<f64>(), 1.0, "{owners:?}");
}

#[tokio::test]
async fn when_the_node_holding_the_upstream_is_killed_the_other_takes_over_and_loses_nothing() {
    let mut cluster = Cluster::start("sigkill").await;
    let mut clients = cluster.connect_alice_to_both(&["websockets"]).await;
    cluster.until_live(&mut clients).await;
    let mut owner = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        if node.upstreams_held().await == 1.0 {
            owner = Some(i);
        }
    }
    let owner = owner.expect("one node holds alice's upstream");
    let survivor = 1 - owner;

    let total = 40;
    let sender = {
        let sim = cluster.sim.clone();
        let dm = cluster.dm.clone();
        tokio::spawn(async move {
            for n in 0..total {
                sim.send_message("bob", &dm, &format!("m{n}")).unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let killed_at = chrono::Utc::now();
    cluster.nodes[owner].child.start_kill().unwrap();
    sender.await.unwrap();

    let last = format!("m{}", total - 1);
    for (client, node) in clients.iter_mut().filter(|(_, node)| *node == survivor) {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == last.as_str())
            .await;
        assert_eq!(
            numbered(client),
            expected(total),
            "{} on node {node}",
            client.name
        );
    }
    let log = cluster.alice_upstreams();
    assert_never_two_at_once(&log);
    let takeover = log
        .iter()
        .find(|record| record.opened_at > killed_at)
        .expect("the surviving node opened an upstream");
    eprintln!(
        "takeover {} ms after SIGKILL (lease TTL {LEASE_TTL_S} s)",
        (takeover.opened_at - killed_at).num_milliseconds()
    );
    assert_eq!(cluster.sim.open_ddp_connections("alice"), 1);
}

#[tokio::test]
async fn a_node_stopping_gracefully_hands_its_clients_and_the_upstream_to_the_other() {
    let mut cluster = Cluster::start("sigterm").await;
    let mut clients = cluster.connect_alice_to_both(&["websockets"]).await;
    cluster.until_live(&mut clients).await;
    let stopping = clients[0].1;
    let started = cluster.alice_upstreams().len();

    let status = cluster.nodes[stopping].terminate().await;
    assert!(status.success(), "a graceful stop exits 0: {status}");
    // The node's clients were told to reconnect, and nginx sent them to the other node.
    for (client, node) in clients.iter_mut().filter(|(_, node)| *node == stopping) {
        client.wait_event("reconnecting").await;
        client.wait_event("reconnected").await;
        *node = 1 - stopping;
    }
    assert!(
        cluster.nodes[1 - stopping].hub_connections().await >= clients.len() as f64,
        "every client is on the remaining node"
    );
    for n in 0..5 {
        cluster
            .sim
            .send_message("bob", &cluster.dm, &format!("m{n}"))
            .unwrap();
    }
    for (client, _) in &mut clients {
        client
            .wait_for("the last message", |v| v["arg"]["text"] == "m4")
            .await;
        // Later arrivals would be duplicates or out of order.
        tokio::time::sleep(Duration::from_millis(200)).await;
        client.drain();
        assert_eq!(numbered(client), expected(5), "{}", client.name);
    }
    let log = cluster.alice_upstreams();
    assert_never_two_at_once(&log);
    assert!(
        log.len() > started || cluster.nodes[1 - stopping].upstreams_held().await == 1.0,
        "the remaining node holds alice's upstream: {log:?}"
    );
    assert_eq!(cluster.sim.open_ddp_connections("alice"), 1);
}
