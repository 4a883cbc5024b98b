//! What the logs hold: the real binary at debug level, with tokens in the places clients put
//! them. A JWT in the `access_token` query must never reach the log.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn imgate() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgate"));
    command.args(["--config-dir", env!("CARGO_TARGET_TMPDIR")]);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("IMGATE")) {
        command.env_remove(key);
    }
    command
}

#[tokio::test]
async fn tokens_in_queries_and_headers_never_reach_the_log() {
    let token = String::from_utf8(
        imgate()
            .args(["token", "--user", "zoe"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert!(token.len() > 40, "{token}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("imgate-log-{}.txt", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = imgate()
        .env("IMGATE__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("IMGATE__LOG__LEVEL", "debug")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "the gateway never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let negotiated = http
        .post(format!(
            "{base}/hub/negotiate?negotiateVersion=1&access_token={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(negotiated.status(), 200);
    let refused = http
        .get(format!("{base}/api/v1/me?access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let me = http
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let missing = http
        .get(format!(
            "{base}/hub?id=no-such-connection&access_token={token}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("/hub/negotiate") && text.contains("/api/v1/me"),
        "the requests were logged: {text}"
    );
    // (The demo banner prints a token of its own, for alice; this one is zoe's.)
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(&token), "the token was logged");
    assert!(
        !text.contains(signature),
        "the token's signature was logged"
    );
}
