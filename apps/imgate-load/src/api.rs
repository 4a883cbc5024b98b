//! The gateway's REST API as the load needs it: the host back end (users, by API key) and end
//! users (rooms, messages, unread, by host JWTs minted here with the gateway's HS256 secret).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A host JWT for `user` (claim `sub`), signed with `secret` and valid for `ttl`.
pub fn mint_hs256(secret: &[u8], user: &str, ttl: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = json!({
        "sub": user,
        "name": user,
        "iat": now,
        "exp": now + ttl.as_secs(),
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of a JSON object cannot fail")
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The gateway answered with an error status.
    #[error("{method} {path}: {status} {code}")]
    Status {
        /// What was called, without the host.
        method: &'static str,
        /// The path, for the log.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The `error` code of the envelope, or `-` when the body had none.
        code: String,
    },
    /// No answer: connection refused or reset, timeout, unreadable body.
    #[error("{method} {path}")]
    Transport {
        /// What was called, without the host.
        method: &'static str,
        /// The path, for the log.
        path: String,
        /// What went wrong.
        #[source]
        source: reqwest::Error,
    },
}

impl ApiError {
    /// A short, stable label for counting errors by kind: `http_<status>_<code>` or
    /// `transport_<what>`.
    pub fn kind(&self) -> String {
        match self {
            Self::Status { status, code, .. } => format!("http_{status}_{code}"),
            Self::Transport { source, .. } if source.is_timeout() => "transport_timeout".into(),
            Self::Transport { source, .. } if source.is_connect() => "transport_connect".into(),
            Self::Transport { source, .. } if source.is_decode() => "transport_decode".into(),
            Self::Transport { .. } => "transport_other".into(),
        }
    }
}

/// The gateway at `base`, called with one shared HTTP client.
#[derive(Clone)]
pub struct GatewayApi {
    http: reqwest::Client,
    base: String,
    api_key: String,
    secret: Vec<u8>,
    token_ttl: Duration,
}

impl GatewayApi {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:8080`) that signs end-user
    /// tokens valid for `token_ttl` with `jwt_secret`.
    pub fn new(
        http: reqwest::Client,
        base: &str,
        api_key: &str,
        jwt_secret: &[u8],
        token_ttl: Duration,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            secret: jwt_secret.to_vec(),
            token_ttl,
        }
    }

    /// The same client for another node of the gateway (same secrets), at `base`.
    pub fn at(&self, base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A fresh end-user token for `user`.
    pub fn token(&self, user: &str) -> String {
        mint_hs256(&self.secret, user, self.token_ttl)
    }

    /// `GET /readyz` answered 200.
    pub async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let path = "/metrics".to_owned();
        let response = self
            .call("GET", &path, self.http.get(self.url(&path)))
            .await?;
        response.text().await.map_err(|source| ApiError::Transport {
            method: "GET",
            path,
            source,
        })
    }

    /// Creates or updates the user `id` (host back end).
    pub async fn put_user(&self, id: &str) -> Result<(), ApiError> {
        self.put_user_with_password(id, None).await
    }

    /// Creates or updates the user `id` with a provider `password` (the gateway's default
    /// password when `None`).
    pub async fn put_user_with_password(
        &self,
        id: &str,
        password: Option<&str>,
    ) -> Result<(), ApiError> {
        let path = format!("/api/v1/users/{id}");
        let mut body = json!({"username": id, "name": id});
        if let Some(password) = password {
            body["password"] = json!(password);
        }
        let request = self
            .http
            .put(self.url(&path))
            .header("X-Api-Key", &self.api_key)
            .json(&body);
        self.call("PUT", &path, request).await.map(drop)
    }

    /// Deletes the user `id` (host back end).
    pub async fn delete_user(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/users/{id}");
        let request = self
            .http
            .delete(self.url(&path))
            .header("X-Api-Key", &self.api_key);
        self.call("DELETE", &path, request).await.map(drop)
    }

    /// Invokes `target(...arguments)` on every hub connection of `user`, on every node (host
    /// back end); `arguments` is the text of a JSON array, sent as it is. `Ok` once the
    /// gateway accepted it (202).
    pub async fn push_to_user(
        &self,
        user: &str,
        target: &str,
        arguments: &str,
    ) -> Result<(), ApiError> {
        let path = format!("/api/v1/hub/users/{user}");
        let request = self
            .http
            .post(self.url(&path))
            .header("X-Api-Key", &self.api_key)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(format!(
                r#"{{"target":{},"arguments":{arguments}}}"#,
                Value::from(target)
            ));
        self.call("POST", &path, request).await.map(drop)
    }

    /// The direct room of `user` and `other`, created when missing; its id.
    pub async fn direct_room(&self, user: &str, other: &str) -> Result<String, ApiError> {
        let path = "/api/v1/rooms/direct".to_owned();
        let body = json!({"members": [other]});
        let room = self.user_json("POST", user, &path, Some(body)).await?;
        room_id(room, "POST", path)
    }

    /// A private group `name` owned by `owner` with `members`; its id.
    pub async fn create_group(
        &self,
        owner: &str,
        name: &str,
        members: &[String],
    ) -> Result<String, ApiError> {
        let path = "/api/v1/rooms".to_owned();
        let body = json!({"kind": "group", "name": name, "members": members});
        let room = self.user_json("POST", owner, &path, Some(body)).await?;
        room_id(room, "POST", path)
    }

    /// Sends `text` to `room` as `user`; the message as the gateway returns it.
    pub async fn send_message(
        &self,
        user: &str,
        room: &str,
        text: &str,
    ) -> Result<Value, ApiError> {
        let path = format!("/api/v1/rooms/{room}/messages");
        self.user_json("POST", user, &path, Some(json!({"text": text})))
            .await
    }

    /// The newest `limit` messages of `room`, read as `user`.
    pub async fn history(&self, user: &str, room: &str, limit: u8) -> Result<Value, ApiError> {
        let path = format!("/api/v1/rooms/{room}/messages?limit={limit}");
        self.user_json("GET", user, &path, None).await
    }

    /// The unread counts of `user`.
    pub async fn unread(&self, user: &str) -> Result<Value, ApiError> {
        self.user_json("GET", user, "/api/v1/unread", None).await
    }

    /// The rooms of `user`.
    pub async fn rooms(&self, user: &str) -> Result<Value, ApiError> {
        self.user_json("GET", user, "/api/v1/rooms", None).await
    }

    /// Marks `room` read for `user`.
    pub async fn mark_read(&self, user: &str, room: &str) -> Result<(), ApiError> {
        let path = format!("/api/v1/rooms/{room}/read");
        self.user_json("POST", user, &path, None).await.map(drop)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn user_json(
        &self,
        method: &'static str,
        user: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let url = self.url(path);
        let mut request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        request = request.bearer_auth(self.token(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.call(method, path, request).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response.json().await.map_err(|source| ApiError::Transport {
            method,
            path: path.to_owned(),
            source,
        })
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let response = request.send().await.map_err(|source| ApiError::Transport {
            method,
            path: path.to_owned(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(ApiError::Status {
            method,
            path: path.to_owned(),
            status: status.as_u16(),
            code: body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned(),
        })
    }
}

fn room_id(room: Value, method: &'static str, path: String) -> Result<String, ApiError> {
    match room.get("id").and_then(Value::as_str) {
        Some(id) => Ok(id.to_owned()),
        // A 2xx without an id is the gateway breaking its contract; count it like an error.
        None => Err(ApiError::Status {
            method,
            path,
            status: 200,
            code: "no_room_id".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn minted_tokens_verify_with_the_secret_and_name_the_user() {
        let secret = b"a-host-secret-of-at-least-32-bytes!";
        let token = mint_hs256(secret, "soak-u001", Duration::from_secs(60));
        let claims = jsonwebtoken::decode::<Value>(
            &token,
            &DecodingKey::from_secret(secret),
            &Validation::new(Algorithm::HS256),
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "soak-u001");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
    }
}
