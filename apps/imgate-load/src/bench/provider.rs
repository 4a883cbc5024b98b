//! The provider's own REST API (Rocket.Chat's), called directly: to post the events the
//! gateway relays, to set rooms up, and as the baseline the gateway's REST overhead is
//! measured against.

use serde_json::{json, Value};

/// A failed provider call.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error status or `success: false`.
    #[error("{call}: {status} {body}")]
    Refused {
        /// The REST method called, e.g. `chat.sendMessage`.
        call: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No answer, or an unreadable one.
    #[error("{call}")]
    Transport {
        /// The REST method called.
        call: &'static str,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
}

/// A logged-in provider user.
#[derive(Debug, Clone)]
pub struct ProviderUser {
    base: String,
    user_id: String,
    token: String,
}

impl ProviderUser {
    /// Logs `username` in at the provider at `base` (`http://host:port`).
    pub async fn login(
        http: &reqwest::Client,
        base: &str,
        username: &str,
        password: &str,
    ) -> Result<Self, ProviderError> {
        let base = base.trim_end_matches('/').to_owned();
        let request = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"user": username, "password": password}));
        let body = answer("login", request).await?;
        let text = |name: &str| {
            body.pointer(&format!("/data/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Self {
            user_id: text("userId"),
            token: text("authToken"),
            base,
        })
    }

    /// Posts `text` to room `room`.
    pub async fn send_message(
        &self,
        http: &reqwest::Client,
        room: &str,
        text: &str,
    ) -> Result<(), ProviderError> {
        let body = json!({"message": {"rid": room, "msg": text}});
        let request = self.authed(http.post(format!("{}/api/v1/chat.sendMessage", self.base)));
        answer("chat.sendMessage", request.json(&body))
            .await
            .map(drop)
    }

    /// The newest `count` messages of private group `room`.
    pub async fn group_history(
        &self,
        http: &reqwest::Client,
        room: &str,
        count: u8,
    ) -> Result<(), ProviderError> {
        let url = format!(
            "{}/api/v1/groups.history?roomId={room}&count={count}",
            self.base
        );
        answer("groups.history", self.authed(http.get(url)))
            .await
            .map(drop)
    }

    /// Creates public channel `name` with `members` (usernames); its id.
    pub async fn create_channel(
        &self,
        http: &reqwest::Client,
        name: &str,
        members: &[String],
    ) -> Result<String, ProviderError> {
        let request = self.authed(http.post(format!("{}/api/v1/channels.create", self.base)));
        let body = answer(
            "channels.create",
            request.json(&json!({"name": name, "members": members})),
        )
        .await?;
        Ok(body
            .pointer("/channel/_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", &self.token)
    }
}

async fn answer(
    call: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Value, ProviderError> {
    let transport = |source| ProviderError::Transport { call, source };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(transport)?;
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 || value.get("success") == Some(&Value::Bool(false)) {
        return Err(ProviderError::Refused {
            call,
            status,
            body: body.chars().take(200).collect(),
        });
    }
    Ok(value)
}
