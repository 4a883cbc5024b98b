//! Rocket.Chat's REST rate limiter in front of many users. Out of the box Rocket.Chat lets each
//! client address call each endpoint 10 times per 60 s, and every call of the gateway comes
//! from one address. The server here runs Rocket.Chat's limiter with its default 10 calls but a
//! 4-second window instead of 60 s: the same rules and headers, in a test that takes seconds.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketchat_sim::{RateLimit, Sim, SimConfig};
use serde_json::{json, Value};

use crate::helpers::{TestGateway, API_KEY};

const WINDOW: Duration = Duration::from_secs(4);
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const PER_USER: usize = 10;

async fn limited_server() -> Sim {
    Sim::start(SimConfig {
        rate_limit: Some(RateLimit {
            calls: RateLimit::ROCKETCHAT_DEFAULT.calls,
            window: WINDOW,
        }),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

/// Log lines written while the gateway starts (a current-thread test runtime runs the
/// start-up, and so the admin agent's first check, on this thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Starts a gateway in front of `sim` and returns it with what it logged meanwhile.
async fn gateway_logging(sim: &Sim, extra: &[(&str, &str)]) -> (TestGateway, String) {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let gw = {
        let _capture = tracing::subscriber::set_default(subscriber);
        TestGateway::against(sim, extra).await
    };
    (gw, log.text())
}

/// Mirrors the three users and opens a channel of theirs; returns its id.
async fn three_users_in_a_channel(gw: &TestGateway) -> String {
    for user in USERS {
        let (status, body) = gw
            .send(
                gw.put(&format!("/api/v1/users/{user}"))
                    .header("X-Api-Key", API_KEY)
                    .json(&json!({"username": user, "name": user})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, room) = gw
        .send(
            gw.post("/api/v1/rooms")
                .bearer_auth(gw.host_token("alice"))
                .json(&json!({"kind": "channel", "name": "launch", "members": ["bob", "carol"]})),
        )
        .await;
    assert_eq!(status, 201, "{room}");
    room["id"].as_str().unwrap().to_owned()
}

/// One answer of the gateway to one send.
#[derive(Debug)]
struct Attempt {
    status: u16,
    retry_after_s: Option<u64>,
    sent_ms: i64,
    answered_ms: i64,
    /// When the server's current `chat.sendMessage` window ends, read right after the answer.
    server_reset_ms: Option<i64>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Sends every user's messages at once, each caller retrying after `Retry-After` while
/// `retry` holds; returns each message's text and attempts.
async fn send_all(
    gw: &Arc<TestGateway>,
    sim: &Arc<Sim>,
    room: &str,
    retry: bool,
) -> Vec<(String, Vec<Attempt>)> {
    let mut callers = Vec::new();
    for user in USERS {
        for n in 0..PER_USER {
            let (gw, sim) = (gw.clone(), sim.clone());
            let path = format!("/api/v1/rooms/{room}/messages");
            let text = format!("from {user} #{n}");
            callers.push(tokio::spawn(async move {
                let token = gw.host_token(user);
                let mut attempts = Vec::new();
                loop {
                    let sent_ms = now_ms();
                    let response = gw
                        .post(&path)
                        .bearer_auth(&token)
                        .json(&json!({ "text": text }))
                        .send()
                        .await
                        .expect("the gateway answers");
                    let answered_ms = now_ms();
                    let server_reset_ms = sim.rate_limit_reset("chat.sendMessage", "POST");
                    let status = response.status().as_u16();
                    let retry_after_s = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                    let body: Value = response.json().await.expect("a JSON body");
                    if status == 429 {
                        assert_eq!(body["error"], "rate_limited", "{body}");
                    }
                    attempts.push(Attempt {
                        status,
                        retry_after_s,
                        sent_ms,
                        answered_ms,
                        server_reset_ms,
                    });
                    match retry_after_s {
                        Some(wait) if retry && status == 429 => {
                            tokio::time::sleep(Duration::from_secs(wait)).await
                        }
                        _ => return (text, attempts),
                    }
                }
            }));
        }
    }
    let mut results = Vec::new();
    for caller in callers {
        results.push(caller.await.unwrap());
    }
    results
}

/// Every answer is a success or `rate_limited` whose `Retry-After` ends after the server's
/// window does and at most a second later; every message reported sent is stored once, and
/// none that was not.
fn check_answers_and_history(results: &[(String, Vec<Attempt>)], sim: &Sim, room: &str) {
    for (text, attempts) in results {
        for a in attempts {
            match a.status {
                201 => {}
                429 => {
                    let wait_ms = a.retry_after_s.expect("429 carries Retry-After") as i64 * 1000;
                    let reset = a.server_reset_ms.expect("the server has a window running");
                    assert!(
                        a.answered_ms + wait_ms >= reset,
                        "{text}: retrying after {wait_ms} ms from {} is before the server's reset {reset}",
                        a.answered_ms
                    );
                    assert!(
                        a.sent_ms + wait_ms <= reset + 1_000 + 100,
                        "{text}: Retry-After {wait_ms} ms from {} waits more than a second past the reset {reset}",
                        a.sent_ms
                    );
                }
                other => panic!("{text}: HTTP {other} ({a:?})"),
            }
        }
    }
    let mut stored: BTreeMap<String, usize> = BTreeMap::new();
    for message in sim.messages(room) {
        if let Some(text) = message["msg"].as_str().filter(|t| t.starts_with("from ")) {
            *stored.entry(text.to_owned()).or_default() += 1;
        }
    }
    for (text, attempts) in results {
        let reported_sent = attempts.iter().any(|a| a.status == 201);
        assert_eq!(
            stored.get(text).copied().unwrap_or(0),
            usize::from(reported_sent),
            "{text}: stored as often as reported sent"
        );
    }
}

fn first_attempts(results: &[(String, Vec<Attempt>)]) -> (usize, BTreeMap<u64, usize>) {
    let mut sent = 0;
    let mut limited = BTreeMap::new();
    for (_, attempts) in results {
        match attempts[0].status {
            201 => sent += 1,
            _ => {
                *limited
                    .entry(attempts[0].retry_after_s.unwrap())
                    .or_default() += 1
            }
        }
    }
    (sent, limited)
}

#[tokio::test]
async fn with_the_default_limiter_and_policy_report_users_get_sent_or_a_correct_retry_after() {
    let sim = Arc::new(limited_server().await);
    let (gw, log) = gateway_logging(&sim, &[]).await;
    assert!(
        log.contains("lacks the permission api-bypass-rate-limit")
            && log.contains("API_Enable_Rate_Limiter_Limit_Calls_Default = 10"),
        "start-up warns and names the settings to change:\n{log}"
    );

    let (status, ready) = gw.send(gw.get("/readyz")).await;
    assert_eq!(
        status, 200,
        "a warning does not make the gateway unready: {ready}"
    );
    let warning = ready["warnings"]["rate_limiter"]
        .as_str()
        .unwrap_or_default();
    assert!(
        warning.contains("API_Enable_Rate_Limiter = true") && warning.contains("role `user`"),
        "{ready}"
    );
    assert!(ready["warnings"]["login_rate_limit"].is_string(), "{ready}");
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains("imgate_provider_deployment_warning{check=\"rate_limiter\"}"),
        "{metrics}"
    );

    let room = three_users_in_a_channel(&gw).await;
    let gw = Arc::new(gw);
    let started = std::time::Instant::now();
    let results = send_all(&gw, &sim, &room, true).await;
    let took = started.elapsed();
    check_answers_and_history(&results, &sim, &room);
    let (sent, limited) = first_attempts(&results);
    let attempts: usize = results.iter().map(|(_, a)| a.len()).sum();
    eprintln!(
        "policy report: first attempts {sent} sent, rate_limited by Retry-After (s): {limited:?}; \
         {attempts} attempts in all, all 30 sent after {took:?}; the server refused {} calls",
        sim.rate_limit_refusals("chat.sendMessage", "POST")
    );
    assert!(sent < 30, "the limiter did limit");
    assert!(
        results
            .iter()
            .all(|(_, a)| a.last().map(|a| a.status) == Some(201)),
        "callers that honour Retry-After all get through"
    );
    assert!(took < Duration::from_secs(60), "within a minute: {took:?}");
    Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test]
async fn with_policy_configure_the_gateway_grants_the_bypass_and_every_message_goes_through() {
    let sim = Arc::new(limited_server().await);
    let (gw, log) = gateway_logging(&sim, &[("provider.rate_limit_policy", "configure")]).await;
    assert!(
        log.contains("granted the permission api-bypass-rate-limit to role `user`"),
        "start-up says what it changed:\n{log}"
    );
    assert_eq!(
        sim.permission_roles("api-bypass-rate-limit").unwrap(),
        ["admin", "bot", "app", "user"]
    );
    // As an operator would see it, through the admin REST API.
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/api/v1/login", sim.http_url()))
        .json(&json!({"user": "admin", "password": "admin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let permissions: Value = http
        .get(format!("{}/api/v1/permissions.listAll", sim.http_url()))
        .header("X-User-Id", login["data"]["userId"].as_str().unwrap())
        .header("X-Auth-Token", login["data"]["authToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bypass = permissions["update"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["_id"] == "api-bypass-rate-limit")
        .unwrap();
    assert!(
        bypass["roles"].as_array().unwrap().contains(&json!("user")),
        "{bypass}"
    );

    let (status, ready) = gw.send(gw.get("/readyz")).await;
    assert_eq!(status, 200);
    assert!(ready["warnings"].get("rate_limiter").is_none(), "{ready}");

    let room = three_users_in_a_channel(&gw).await;
    let gw = Arc::new(gw);
    let results = send_all(&gw, &sim, &room, false).await;
    check_answers_and_history(&results, &sim, &room);
    let (sent, limited) = first_attempts(&results);
    eprintln!("policy configure: {sent} of 30 sent at once, rate_limited: {limited:?}");
    assert_eq!(sent, 30, "rate_limited: {limited:?}");
    assert_eq!(sim.rate_limit_refusals("chat.sendMessage", "POST"), 0);
    Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test]
async fn a_wait_budget_longer_than_the_window_lets_callers_queue_for_the_next_one() {
    let sim = Arc::new(limited_server().await);
    let gw = TestGateway::against(&sim, &[("provider.rate_limit_wait_ms", "5000")]).await;
    let room = three_users_in_a_channel(&gw).await;
    let gw = Arc::new(gw);
    let results = send_all(&gw, &sim, &room, false).await;
    check_answers_and_history(&results, &sim, &room);
    let (sent, limited) = first_attempts(&results);
    eprintln!(
        "wait budget 5 s: {sent} of 30 sent, rate_limited by Retry-After (s): {limited:?}; the server refused {} calls",
        sim.rate_limit_refusals("chat.sendMessage", "POST")
    );
    assert!(
        sent >= 20,
        "the window in progress and the next one: {sent} sent"
    );
    assert!(
        sim.rate_limit_refusals("chat.sendMessage", "POST") <= 20,
        "waiting callers are not refused over and over"
    );
    Arc::into_inner(gw).unwrap().stop().await;
}
