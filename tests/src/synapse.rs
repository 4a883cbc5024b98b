//! A real Matrix homeserver for the Matrix variant of the suite: Synapse from the venv that
//! `scripts/ensure-synapse.sh` installs, started once per test binary on a free loopback port
//! with SQLite, and stopped by PID when the test process ends.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set to skip the Matrix variant on a machine without Synapse (it says so on every test).
pub const SKIP_VAR: &str = "IMGATE_SKIP_MATRIX";

/// A running Synapse and its admin account.
#[derive(Debug)]
pub struct Synapse {
    /// The client-server API's base URL.
    pub url: String,
    /// The server admin's localpart.
    pub admin_user: String,
    /// The server admin's password.
    pub admin_password: String,
}

/// The shared Synapse, started on first use; `None` only when [`SKIP_VAR`] is set and the
/// venv is missing. Panics, naming the fix, when it cannot start.
pub fn synapse() -> Option<&'static Synapse> {
    static SYNAPSE: OnceLock<Option<Synapse>> = OnceLock::new();
    SYNAPSE
        .get_or_init(|| {
            let venv = venv();
            if !venv.join("bin/synapse_homeserver").exists() {
                if std::env::var_os(SKIP_VAR).is_some() {
                    eprintln!("SKIPPING the Matrix variant: no Synapse in {} ({SKIP_VAR} is set)", venv.display());
                    return None;
                }
                panic!(
                    "no Synapse in {}: run `bash scripts/ensure-synapse.sh` (or `make test-deps`), or set {SKIP_VAR}=1 to skip the Matrix variant",
                    venv.display()
                );
            }
            Some(start(&venv))
        })
        .as_ref()
}

fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/synapse/.venv")
}

const SHARED_SECRET: &str = "imgate-test-registration-secret";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    // Limits raised so the suite's bursts are not throttled; every `rc_*` the server knows.
    let generous = "{per_second: 1000, burst_count: 10000}";
    format!(
        r#"server_name: "imgate.test"
pid_file: "{dir}/homeserver.pid"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{dir}/homeserver.db"
media_store_path: "{dir}/media"
signing_key_path: "{dir}/signing.key"
registration_shared_secret: "{SHARED_SECRET}"
macaroon_secret_key: "imgate-test-macaroon-secret"
form_secret: "imgate-test-form-secret"
report_stats: false
enable_registration: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
presence:
  enabled: false
bcrypt_rounds: 4
background_updates:
  sleep_enabled: false
url_preview_enabled: false
enable_metrics: false
rc_message: {generous}
rc_registration: {generous}
rc_login:
  address: {generous}
  account: {generous}
  failed_attempts: {generous}
rc_admin_redaction: {generous}
rc_joins:
  local: {generous}
  remote: {generous}
rc_joins_per_room: {generous}
rc_invites:
  per_room: {generous}
  per_user: {generous}
  per_issuer: {generous}
rc_3pid_validation: {generous}
rc_media_create: {generous}
rc_room_creation: {generous}
rc_delayed_event_mgmt: {generous}
rc_presence:
  per_user: {generous}
"#
    )
}

fn start(venv: &Path) -> Synapse {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("imgate-synapse-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir for Synapse");
    let config_path = dir.join("homeserver.yaml");
    std::fs::write(&config_path, config(&dir, port)).expect("writing homeserver.yaml");
    let python = venv.join("bin/python");
    let generated = Command::new(&python)
        .args(["-m", "synapse.app.homeserver", "--generate-keys", "-c"])
        .arg(&config_path)
        .output()
        .expect("running Synapse to generate its keys");
    assert!(
        generated.status.success(),
        "Synapse cannot generate its keys: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    // A watcher in the background stops Synapse by PID once this test process is gone,
    // however it ends; the shell that starts them returns at once.
    let watcher = r#"
owner=$1; dir=$2; python=$3
(
  "$python" -m synapse.app.homeserver -c "$dir/homeserver.yaml" >"$dir/synapse.log" 2>&1 &
  pid=$!
  while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
  kill "$pid" 2>/dev/null
  wait "$pid"
  rm -rf "$dir"
) >/dev/null 2>&1 &
"#;
    let started = Command::new("sh")
        .args(["-c", watcher, "synapse-watcher"])
        .arg(std::process::id().to_string())
        .arg(&dir)
        .arg(&python)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting Synapse");
    assert!(started.success(), "cannot start Synapse: {started}");
    let log = dir.join("synapse.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !healthy(port) {
        assert!(
            Instant::now() < deadline,
            "Synapse did not answer within 120 s; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Early calls can fail with a 500 while the fresh database still runs its updates.
    let database = dir.join("homeserver.db");
    while pending_background_updates(&python, &database) != 0 {
        assert!(
            Instant::now() < deadline,
            "Synapse's background updates did not finish within 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://127.0.0.1:{port}");
    let admin_password = "admin-password".to_owned();
    let registered = Command::new(venv.join("bin/register_new_matrix_user"))
        .args([
            "-u",
            "admin",
            "-p",
            &admin_password,
            "-a",
            "-k",
            SHARED_SECRET,
            &url,
        ])
        .output()
        .expect("running register_new_matrix_user");
    assert!(
        registered.status.success(),
        "registering the Synapse admin failed: {}",
        String::from_utf8_lossy(&registered.stderr)
    );
    Synapse {
        url,
        admin_user: "admin".into(),
        admin_password,
    }
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

fn pending_background_updates(python: &Path, database: &Path) -> u64 {
    let counted = Command::new(python)
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from background_updates').fetchone()[0])",
        ])
        .arg(database)
        .output()
        .expect("running python to read Synapse's database");
    String::from_utf8_lossy(&counted.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}
