//! Starting a gateway per test and calling it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use imgate::settings::Settings;
use imgate::Gateway;
use imgate_testkit::hub_client::HubClient;
use serde_json::Value;

/// The providers the parameterised tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// The embedded Rocket.Chat-compatible server.
    RocketChat,
    /// The shared Synapse of this test binary.
    Matrix,
}

/// Runs the async test function `$name(Provider)` once per provider, as the tests
/// `$name::rocketchat` and `$name::matrix`.
macro_rules! each_provider {
    ($name:ident) => {
        mod $name {
            use crate::helpers::Provider;

            #[tokio::test]
            async fn rocketchat() {
                super::$name(Provider::RocketChat).await;
            }

            #[tokio::test]
            async fn matrix() {
                super::$name(Provider::Matrix).await;
            }
        }
    };
}
pub(crate) use each_provider;

/// A gateway with embedded defaults on a free loopback port.
pub struct TestGateway {
    pub gateway: Gateway,
    pub base: String,
    pub http: reqwest::Client,
    /// The host JWT secret the gateway checks tokens with.
    secret: String,
}

impl TestGateway {
    /// Starts one with `overrides` on top of the defaults.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_edited(overrides, |_| {}).await
    }

    /// Starts one with `overrides` on top of the defaults, and then `edit` (for settings no
    /// single string holds, such as `hub.targets`).
    pub async fn start_edited(
        overrides: &[(&str, &str)],
        edit: impl FnOnce(&mut Settings),
    ) -> Self {
        let mut all = vec![
            ("server.bind", "127.0.0.1:0"),
            ("server.workers", "1"),
            ("log.level", "warn"),
        ];
        all.extend_from_slice(overrides);
        let secret = all
            .iter()
            .rfind(|(key, _)| *key == "auth.jwt_secret")
            .map_or(imgate::demo::DEMO_JWT_SECRET, |(_, value)| *value)
            .to_owned();
        let mut settings = Settings::with_overrides(&all).expect("settings load");
        edit(&mut settings);
        settings.validate().expect("settings are valid");
        let gateway = imgate::start(settings).await.expect("the gateway starts");
        let base = format!("http://{}", gateway.addr);
        Self {
            gateway,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            secret,
        }
    }

    /// One in front of the test server `sim`, with the host secret [`SECRET`] and the
    /// demo API key, and `extra` overrides.
    pub async fn against(sim: &rocketchat_sim::Sim, extra: &[(&str, &str)]) -> Self {
        let url = sim.http_url();
        let mut overrides = vec![
            ("provider.url", url.as_str()),
            ("provider.admin_password", "admin"),
            ("provider.default_password", "user-password"),
            ("auth.jwt_secret", SECRET),
            ("auth.api_key", API_KEY),
        ];
        overrides.extend_from_slice(extra);
        Self::start(&overrides).await
    }

    /// One in front of `provider` with `extra` overrides, the demo API key and the demo
    /// users. `None` when the Matrix variant is skipped on this machine.
    pub async fn on(provider: Provider, extra: &[(&str, &str)]) -> Option<Self> {
        match provider {
            Provider::RocketChat => Some(Self::start(extra).await),
            Provider::Matrix => {
                let synapse = imgate_e2e::synapse::synapse()?;
                // Gateways share the homeserver: each gets its own users and room names.
                static GATEWAYS: AtomicUsize = AtomicUsize::new(0);
                let namespace = format!("g{}_", GATEWAYS.fetch_add(1, Ordering::Relaxed));
                let mut overrides = vec![
                    ("provider.kind", "matrix"),
                    ("provider.url", synapse.url.as_str()),
                    ("provider.admin_user", synapse.admin_user.as_str()),
                    ("provider.admin_password", synapse.admin_password.as_str()),
                    ("provider.default_password", "user-password"),
                    ("provider.namespace", namespace.as_str()),
                    ("auth.jwt_secret", SECRET),
                    ("auth.api_key", API_KEY),
                ];
                overrides.extend_from_slice(extra);
                let gw = Self::start(&overrides).await;
                // The demo users the embedded provider starts with.
                let demo: Vec<&str> = imgate::demo::DEMO_USERS.iter().map(|u| u.0).collect();
                gw.mirror(&demo).await;
                Some(gw)
            }
        }
    }

    /// Mirrors each of `users` (id = username = name) through the host API; each must be new.
    pub async fn mirror(&self, users: &[&str]) {
        for user in users {
            let (status, body) = self
                .send(
                    self.put(&format!("/api/v1/users/{user}"))
                        .header("X-Api-Key", API_KEY)
                        .json(&serde_json::json!({"username": user, "name": user})),
                )
                .await;
            assert_eq!(status, 201, "mirroring {user}: {body}");
        }
    }

    /// A token for `user` signed with [`SECRET`].
    pub fn host_token(&self, user: &str) -> String {
        imgate_http::auth::mint_hs256(SECRET.as_bytes(), "sub", user, Duration::from_secs(600))
    }

    /// A token for `user` that this gateway accepts (the demo secret's, unless it was given one).
    pub fn token(&self, user: &str) -> String {
        imgate_http::auth::mint_hs256(
            self.secret.as_bytes(),
            "sub",
            user,
            Duration::from_secs(600),
        )
    }

    /// Sends a request and returns status and JSON body (`Null` when there is none).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("a body");
        let json = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).expect("a JSON body")
        };
        (status, json)
    }

    /// The `/metrics` page as text.
    pub async fn metrics(&self) -> String {
        let response = self
            .get("/metrics")
            .send()
            .await
            .expect("the gateway answers");
        response.text().await.expect("a text body")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.base))
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(format!("{}{path}", self.base))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.delete(format!("{}{path}", self.base))
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
    }
}

/// The demo API key.
pub const API_KEY: &str = imgate::demo::DEMO_API_KEY;

/// The host JWT secret of gateways started with [`TestGateway::against`].
pub const SECRET: &str = "a-host-secret-of-at-least-32-bytes!";

/// Bob writes `probe N` into `room` through `gw` until every one of `clients` has seen one of
/// them: the user's upstream is live and reaches every node the clients are on.
pub async fn until_live(gw: &TestGateway, room: &str, clients: &mut [&mut HubClient]) {
    let probe = |v: &Value| {
        v["arg"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("probe"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for n in 0.. {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream never went live on every connection"
        );
        let (status, body) = gw
            .send(
                gw.post(&format!("/api/v1/rooms/{room}/messages"))
                    .bearer_auth(gw.host_token("bob"))
                    .json(&serde_json::json!({ "text": format!("probe {n}") })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let mut all = true;
        for client in clients.iter_mut() {
            all &= tokio::time::timeout(
                Duration::from_millis(300),
                client.wait_for("a probe", probe),
            )
            .await
            .is_ok();
        }
        if all {
            return;
        }
    }
}

/// The id of the direct room `from` opens with `to` through `gw`.
pub async fn direct_room(gw: &TestGateway, from: &str, to: &str) -> String {
    let (status, room) = gw
        .send(
            gw.post("/api/v1/rooms/direct")
                .bearer_auth(gw.host_token(from))
                .json(&serde_json::json!({ "members": [to] })),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {room}");
    room["id"].as_str().expect("a room id").to_owned()
}
