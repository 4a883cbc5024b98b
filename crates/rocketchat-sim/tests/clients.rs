//! The sim driven by real third-party Rocket.Chat clients from PyPI (`rocketchat_API` for REST,
//! `rocketchat-async` for the Realtime API). Their scripts live in `tests/clients/`;
//! `bash tests/clients/setup.sh` installs them. A missing install fails these tests.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rocketchat_sim::Sim;
use serde_json::Value;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients")
}

fn python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the third-party client venv is missing at {}: run `bash tests/clients/setup.sh` first",
        python.display()
    );
    python
}

/// Runs a client script; returns its `STEP` names and the `RESULT` JSON, failing on a non-zero exit.
async fn run(script: &str, args: &[String]) -> (Vec<String>, Value) {
    let child = tokio::process::Command::new(python())
        .arg(clients_dir().join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 60 s"))
        .expect("script output");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let steps = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("STEP "))
        .map(String::from)
        .collect();
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_else(|| panic!("{script} printed no RESULT line\n{stdout}"));
    (steps, result)
}

#[tokio::test]
async fn rocketchat_api_rest_client_full_flow() {
    let sim = common::sim().await;
    let (steps, result) = run(
        "rc_rest.py",
        &[sim.http_url(), "admin".into(), "admin".into()],
    )
    .await;
    for step in [
        "info",
        "duplicate users.create rejected",
        "users.create joined #general",
        "dm.create rid",
        "dm.create idempotent",
        "dm.history",
        "unread counter",
        "subscriptions.read",
        "rooms.media",
        "rooms.mediaConfirm",
        "file download",
        "file download needs auth",
        "token dead after logout",
    ] {
        assert!(
            steps.iter().any(|s| s == step),
            "missing step {step}: {steps:?}"
        );
    }
    assert_eq!(
        result["rid"].as_str().unwrap().len(),
        34,
        "1:1 DM rid is two ids"
    );
    sim_has_file(
        &sim,
        result["rid"].as_str().unwrap(),
        result["file_id"].as_str().unwrap(),
    );
}

/// The confirmed upload is a message with `file` in the DM the script used.
fn sim_has_file(sim: &Sim, rid: &str, file_id: &str) {
    let messages = sim.messages(rid);
    assert!(
        messages.iter().any(|m| m["file"]["_id"] == file_id),
        "no file message for {file_id} in {rid}"
    );
}

#[tokio::test]
async fn rocketchat_async_realtime_client_receives_live_events() {
    let sim = common::sim().await;
    let listener = sim.create_user("listener", "pw-l").unwrap();
    let sender = sim.create_user("sender", "pw-s").unwrap();
    let args = [
        sim.ws_url(),
        sim.http_url(),
        "listener".into(),
        "pw-l".into(),
        "sender".into(),
        "pw-s".into(),
    ];
    let (steps, result) = run("rc_realtime.py", &args).await;
    for step in [
        "password login over ddp",
        "rooms/get lists #general",
        "rest message arrives over ddp",
        "rooms-changed for #general",
        "own ddp message echoed on room stream",
        "ddp sendMessage stored",
        "new dm shows in rooms-changed",
        "resume login over ddp",
    ] {
        assert!(
            steps.iter().any(|s| s == step),
            "missing step {step}: {steps:?}"
        );
    }
    assert_eq!(result["listener_id"], listener.id.as_str());
    assert_eq!(result["sender_id"], sender.id.as_str());
    assert_eq!(result["first"]["sender"], sender.id.as_str());
    let log = sim.ddp_connection_log();
    assert!(log
        .iter()
        .any(|r| r.username.as_deref() == Some("listener")));
}

#[tokio::test]
async fn rocketchat_api_copes_with_6x_and_8x_emulation() {
    for version in [rocketchat_sim::Version::V6, rocketchat_sim::Version::V8] {
        let sim = common::sim_version(version).await;
        let (steps, result) = run(
            "rc_rest.py",
            &[sim.http_url(), "admin".into(), "admin".into()],
        )
        .await;
        assert!(
            steps.iter().any(|s| s == "token dead after logout"),
            "{version:?}: {steps:?}"
        );
        sim_has_file(
            &sim,
            result["rid"].as_str().unwrap(),
            result["file_id"].as_str().unwrap(),
        );
    }
}

#[tokio::test]
async fn rocketchat_async_copes_with_6x_and_8x_emulation() {
    for version in [rocketchat_sim::Version::V6, rocketchat_sim::Version::V8] {
        let sim = common::sim_version(version).await;
        sim.create_user("listener", "pw-l").unwrap();
        sim.create_user("sender", "pw-s").unwrap();
        let args = [
            sim.ws_url(),
            sim.http_url(),
            "listener".into(),
            "pw-l".into(),
            "sender".into(),
            "pw-s".into(),
        ];
        let (steps, _) = run("rc_realtime.py", &args).await;
        assert!(
            steps.iter().any(|s| s == "rest message arrives over ddp"),
            "{version:?}: {steps:?}"
        );
        assert!(
            steps.iter().any(|s| s == "resume login over ddp"),
            "{version:?}: {steps:?}"
        );
    }
}
