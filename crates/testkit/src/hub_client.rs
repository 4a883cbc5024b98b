//! The official SignalR clients (`@microsoft/signalr` in Node; `signalrcore`, `pysignalr` in
//! Python) as subprocesses speaking JSON lines, for tests of the hub and of the whole gateway.
//! They live in `tests/clients/hub/`; `bash tests/clients/hub/setup.sh` installs them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// How long a client waits for an expected event before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/hub")
}

/// Fails (never skips) when the official clients are not installed.
fn require_clients() -> PathBuf {
    let dir = clients_dir();
    let node = dir.join("node_modules/@microsoft/signalr-protocol-msgpack/package.json");
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
pub struct HubClient {
    /// A label for messages: the library and transport.
    pub name: String,
    _child: Child,
    stdin: ChildStdin,
    // Unbounded is fine here: a test client prints a bounded number of lines.
    lines: mpsc::UnboundedReceiver<Value>,
    /// Every event read so far.
    pub seen: Vec<Value>,
}

impl HubClient {
    /// `@microsoft/signalr` in Node against the hub at `url`, with the given transport
    /// (`websockets`, `sse`, `longpolling`), optionally followed by `+skip` (skipNegotiation),
    /// `+msgpack` (the MessagePack hub protocol of `@microsoft/signalr-protocol-msgpack`) and
    /// `+stateful` (`withStatefulReconnect`).
    pub fn spawn_node(url: &str, token: &str, transport: &str) -> Self {
        let dir = require_clients();
        let mut options = transport.split('+');
        let mut command = Command::new("node");
        command
            .arg(dir.join("hub-client.js"))
            .env("HUB_URL", url)
            .env("HUB_TOKEN", token)
            .env("HUB_TRANSPORT", options.next().unwrap_or_default());
        for option in options {
            match option {
                "skip" => command.env("HUB_SKIP_NEGOTIATION", "1"),
                "msgpack" => command.env("HUB_PROTOCOL", "messagepack"),
                "stateful" => command.env("HUB_STATEFUL", "1"),
                other => panic!("unknown client option '{other}' in '{transport}'"),
            };
        }
        Self::spawn(format!("node/{transport}"), command)
    }

    /// `signalrcore`, `pysignalr` or `pysignalr+msgpack` (its MessagePack hub protocol)
    /// against the hub at `url`, over WebSockets.
    pub fn spawn_python(url: &str, token: &str, library: &str) -> Self {
        let dir = require_clients();
        let mut command = Command::new(dir.join(".venv/bin/python"));
        command
            .arg("-u")
            .arg(dir.join("hub_client.py"))
            .arg(library)
            .env("HUB_URL", url)
            .env("HUB_TOKEN", token);
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

    /// Reads events until one named `event` arrives.
    pub async fn wait_event(&mut self, event: &str) -> Value {
        let name = event.to_owned();
        self.wait_for(event, move |v| v["event"] == name.as_str())
            .await
    }

    /// Waits for the client's `connected` event; fails on `start_failed`.
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

    /// Sends one command line to the client.
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

    /// Reads what has arrived without waiting, e.g. to catch late duplicates after a pause.
    pub fn drain(&mut self) {
        while let Ok(value) = self.lines.try_recv() {
            self.seen.push(value);
        }
    }

    /// How many events named `event` (`reconnecting`, `closed`, …) the client reported so far.
    pub fn count_events(&self, event: &str) -> usize {
        self.seen.iter().filter(|v| v["event"] == event).count()
    }

    /// Received invocations (pushed events) so far.
    pub fn received(&self) -> Vec<&Value> {
        self.seen.iter().filter(|v| v["event"] == "recv").collect()
    }
}
