//! Helpers shared by the integration tests: a started sim, a REST client, a DDP client.
#![allow(dead_code)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rocketchat_sim::{Sim, SimConfig, Version};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(5);

pub async fn sim() -> Sim {
    sim_with(SimConfig::default()).await
}

pub async fn sim_version(version: Version) -> Sim {
    sim_with(SimConfig {
        version,
        ..SimConfig::default()
    })
    .await
}

pub async fn sim_with(config: SimConfig) -> Sim {
    Sim::start(config).await.expect("sim starts on port 0")
}

/// A REST client bound to one sim, optionally logged in.
pub struct Rest {
    pub base: String,
    pub client: reqwest::Client,
    pub auth: Option<(String, String)>,
}

impl Rest {
    pub fn new(sim: &Sim) -> Rest {
        Rest {
            base: sim.http_url(),
            client: reqwest::Client::new(),
            auth: None,
        }
    }

    pub fn as_user(sim: &Sim, id: &str, token: &str) -> Rest {
        Rest {
            auth: Some((id.into(), token.into())),
            ..Rest::new(sim)
        }
    }

    /// Logs in over REST with a password.
    pub async fn login(sim: &Sim, user: &str, password: &str) -> Rest {
        let mut rest = Rest::new(sim);
        let (status, body) = rest
            .post("login", json!({"user": user, "password": password}))
            .await;
        assert_eq!(status, 200, "login failed: {body}");
        rest.auth = Some((
            body["data"]["userId"].as_str().unwrap().into(),
            body["data"]["authToken"].as_str().unwrap().into(),
        ));
        rest
    }

    pub fn uid(&self) -> &str {
        &self.auth.as_ref().expect("logged in").0
    }

    fn with_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((id, token)) => req.header("X-User-Id", id).header("X-Auth-Token", token),
            None => req,
        }
    }

    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        let url = format!("{}/api/v1/{}", self.base, path);
        tokio::time::timeout(WAIT, self.with_auth(self.client.get(url)).send())
            .await
            .expect("answer in time")
            .expect("http ok")
    }

    pub async fn post_raw(&self, path: &str, body: Value) -> reqwest::Response {
        let url = format!("{}/api/v1/{}", self.base, path);
        tokio::time::timeout(
            WAIT,
            self.with_auth(self.client.post(url)).json(&body).send(),
        )
        .await
        .expect("answer in time")
        .expect("http ok")
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        decode(self.get_raw(path).await).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        decode(self.post_raw(path, body).await).await
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A raw DDP client over tokio-tungstenite.
pub struct Ddp {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Ddp {
    /// Opens the socket without sending `connect`.
    pub async fn open(sim: &Sim) -> Ddp {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(sim.ws_url()))
            .await
            .expect("ws connects in time")
            .expect("ws handshake");
        Ddp { ws, next_id: 0 }
    }

    /// Opens and completes `connect`/`connected`.
    pub async fn connect(sim: &Sim) -> Ddp {
        let mut ddp = Ddp::open(sim).await;
        ddp.send(json!({"msg": "connect", "version": "1", "support": ["1", "pre2", "pre1"]}))
            .await;
        ddp.expect(|f| f["msg"] == "connected").await;
        ddp
    }

    /// Connects and resumes with a token.
    pub async fn logged_in(sim: &Sim, token: &str) -> Ddp {
        let mut ddp = Ddp::connect(sim).await;
        let res = ddp.call("login", json!([{"resume": token}])).await;
        assert!(res.get("result").is_some(), "login failed: {res}");
        ddp
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(frame.to_string()))
            .await
            .expect("ws send");
    }

    /// Next JSON frame, or `None` when the socket closed or `WAIT` passed.
    pub async fn next(&mut self) -> Option<Value> {
        self.next_within(WAIT).await
    }

    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("json frame"))
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for a frame matching `pred`, skipping others; panics on close or timeout.
    pub async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            match self.next().await {
                Some(f) if pred(&f) => return f,
                Some(_) => continue,
                None => panic!("socket closed or timed out while waiting"),
            }
        }
    }

    /// Calls a method; returns its `result` frame (and checks `updated` follows).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = format!("m{}", self.next_id);
        self.send(json!({"msg": "method", "method": method, "id": id, "params": params}))
            .await;
        let mut result = None;
        let mut updated = false;
        while result.is_none() || !updated {
            let f = self.next().await.expect("method answer");
            if f["msg"] == "result" && f["id"] == id.as_str() {
                result = Some(f);
            } else if f["msg"] == "updated"
                && f["methods"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == id.as_str()))
            {
                updated = true;
            }
        }
        result.unwrap()
    }

    /// Subscribes; returns the `ready` or `nosub` frame.
    pub async fn sub(&mut self, name: &str, event: &str) -> Value {
        self.next_id += 1;
        let id = format!("s{}", self.next_id);
        self.send(json!({"msg": "sub", "id": id, "name": name, "params": [event, {"useCollection": false, "args": []}]}))
            .await;
        let id2 = id.clone();
        self.expect(move |f| {
            (f["msg"] == "ready"
                && f["subs"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == id2.as_str())))
                || (f["msg"] == "nosub" && f["id"] == id2.as_str())
        })
        .await
    }

    /// Waits for a `changed` frame of this stream and event name.
    pub async fn event(&mut self, stream: &str, event_name: &str) -> Value {
        let (s, e) = (stream.to_string(), event_name.to_string());
        self.expect(move |f| {
            f["msg"] == "changed"
                && f["collection"] == s.as_str()
                && f["fields"]["eventName"] == e.as_str()
        })
        .await
    }

    /// True if the socket is closed within `wait` (frames before the close are skipped).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}
