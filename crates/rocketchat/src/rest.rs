//! The REST client: one pooled reqwest client, auth headers, and the decision table of the
//! wire reference §4 that turns Rocket.Chat answers into `ProviderError`s.

use std::time::Duration;

use imgate_domain::model::ProviderSession;
use imgate_domain::ports::ProviderError;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::telemetry;

/// Rocket.Chat's text for a missing, expired or revoked session.
const NOT_LOGGED_IN: &str = "You must be logged in";

/// Extra headers a call may need, e.g. the 2FA password fallback.
pub(crate) type ExtraHeaders<'a> = &'a [(&'static str, String)];

/// A REST client bound to one server.
#[derive(Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    // A 429 whose window resets sooner than this is waited out and retried once; a longer
    // wait is the caller's to decide (`rate_limited` with `Retry-After`).
    rate_limit_wait: Duration,
}

impl Rest {
    /// A client for the server at `base` (no trailing slash).
    pub(crate) fn new(
        base: &str,
        connect_timeout: Duration,
        timeout: Duration,
        rate_limit_wait: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("imgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            rate_limit_wait,
        })
    }

    /// A request to `path` (below the base URL) with the session's auth headers.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        session: Option<&ProviderSession>,
    ) -> RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(session) = session {
            request = request
                .header("X-User-Id", session.user_id.as_str())
                .header("X-Auth-Token", session.token.expose());
        }
        request
    }

    /// `GET /api/v1/<endpoint>?<query>`.
    pub(crate) async fn get(
        &self,
        endpoint: &'static str,
        session: Option<&ProviderSession>,
        query: &[(&str, String)],
    ) -> Result<Value, ProviderError> {
        let request = self
            .request(Method::GET, &format!("/api/v1/{endpoint}"), session)
            .query(query);
        self.send(endpoint, request).await
    }

    /// `POST /api/v1/<endpoint>` with a JSON body.
    pub(crate) async fn post(
        &self,
        endpoint: &'static str,
        session: Option<&ProviderSession>,
        body: &Value,
        headers: ExtraHeaders<'_>,
    ) -> Result<Value, ProviderError> {
        let mut request = self
            .request(Method::POST, &format!("/api/v1/{endpoint}"), session)
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        self.send(endpoint, request).await
    }

    /// Sends a request and reads the answer by the decision table; `endpoint` labels metrics
    /// and logs. A short rate-limit wait is sat out and the request sent once more.
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let again = request.try_clone();
        match self.send_once(endpoint, request).await {
            Err(ProviderError::RateLimited { retry_after })
                if retry_after <= self.rate_limit_wait && again.is_some() =>
            {
                tracing::info!(
                    endpoint,
                    wait_ms = retry_after.as_millis() as u64,
                    "provider rate limit, waiting"
                );
                tokio::time::sleep(retry_after).await;
                self.send_once(endpoint, again.expect("checked above"))
                    .await
            }
            other => other,
        }
    }

    async fn send_once(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let result = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                match response.bytes().await {
                    Ok(body) => classify(endpoint, status, &headers, &body),
                    Err(err) => Err(transport_error(&err)),
                }
            }
            Err(err) => Err(transport_error(&err)),
        };
        telemetry::request(endpoint, &result);
        result
    }
}

pub(crate) fn transport_error(err: &reqwest::Error) -> ProviderError {
    if err.is_timeout() {
        ProviderError::Unavailable("the provider did not answer in time".into())
    } else if err.is_connect() {
        ProviderError::Unavailable(format!("cannot connect to the provider: {err}"))
    } else if err.is_decode() || err.is_body() {
        ProviderError::BadResponse(format!("unreadable answer: {err}"))
    } else {
        ProviderError::Unavailable(format!("request to the provider failed: {err}"))
    }
}

/// Reads one answer. Decides on status codes and `errorType`, never on human text, except
/// for the one 401 text the reference names as the session marker.
pub(crate) fn classify(
    endpoint: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, ProviderError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if status.is_success() {
        let Some(json) = json.filter(Value::is_object) else {
            tracing::warn!(endpoint, body = %excerpt(body), "provider answered non-JSON");
            return Err(ProviderError::BadResponse(format!(
                "{endpoint} answered something that is not a JSON object"
            )));
        };
        if json.get("success") == Some(&Value::Bool(false)) {
            return Err(business_error(&json));
        }
        return Ok(json);
    }
    let json = json.unwrap_or(Value::Null);
    let text = error_text(&json);
    match status {
        StatusCode::UNAUTHORIZED if text.contains(NOT_LOGGED_IN) => {
            Err(ProviderError::SessionExpired)
        }
        StatusCode::UNAUTHORIZED if endpoint == "login" => Err(ProviderError::InvalidCredentials),
        // 7.x answers a missing permission with 401 `unauthorized` (reference §4): not a session problem.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(ProviderError::Forbidden(
            "the chat provider does not allow this".into(),
        )),
        StatusCode::NOT_FOUND => Err(ProviderError::NotFound("not found".into())),
        StatusCode::TOO_MANY_REQUESTS => Err(ProviderError::RateLimited {
            retry_after: retry_after(headers),
        }),
        StatusCode::BAD_REQUEST if json.is_object() => Err(business_error(&json)),
        status if status.is_server_error() => {
            tracing::warn!(endpoint, status = status.as_u16(), body = %excerpt(body), "provider failed");
            Err(ProviderError::Unavailable(format!(
                "{endpoint} answered HTTP {status}"
            )))
        }
        status => {
            tracing::warn!(endpoint, status = status.as_u16(), body = %excerpt(body), "unexpected provider answer");
            Err(ProviderError::BadResponse(format!(
                "{endpoint} answered HTTP {status}"
            )))
        }
    }
}

/// How long until the limiter's window resets (`X-RateLimit-Reset` is epoch milliseconds).
fn retry_after(headers: &HeaderMap) -> Duration {
    let reset = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    match reset {
        Some(reset_ms) => {
            let wait = reset_ms - chrono::Utc::now().timestamp_millis();
            Duration::from_millis(u64::try_from(wait).unwrap_or(0)).max(Duration::from_secs(1))
        }
        None => Duration::from_secs(60),
    }
}

fn error_text(json: &Value) -> String {
    ["error", "message", "reason"]
        .iter()
        .filter_map(|key| json.get(key).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The error code of a 400 envelope: `errorType`, or the `[code]` at the end of `error`.
pub(crate) fn error_type(json: &Value) -> Option<String> {
    if let Some(kind) = json.get("errorType").and_then(Value::as_str) {
        return Some(kind.to_owned());
    }
    let error = json.get("error").and_then(Value::as_str)?;
    let open = error.rfind('[')?;
    error[open + 1..].strip_suffix(']').map(str::to_owned)
}

/// The human part of an error: `error` without its `[code]` suffix.
fn reason(json: &Value) -> String {
    let error = json
        .get("error")
        .and_then(Value::as_str)
        .or_else(|| json.get("message").and_then(Value::as_str))
        .unwrap_or("request refused");
    let reason = match error.rfind(" [") {
        Some(open) if error.ends_with(']') => &error[..open],
        _ => error,
    };
    if reason.is_empty() || (reason.starts_with('[') && reason.ends_with(']')) {
        "request refused".into()
    } else {
        reason.to_owned()
    }
}

fn business_error(json: &Value) -> ProviderError {
    let kind = error_type(json).unwrap_or_default();
    let reason = reason(json);
    match kind.as_str() {
        "error-room-not-found"
        | "error-invalid-room"
        | "error-invalid-user"
        | "error-user-not-found"
        | "error-invalid-message"
        | "error-message-not-found" => ProviderError::NotFound(reason),
        "error-field-unavailable" | "error-duplicate-channel-name" => {
            ProviderError::Conflict(reason)
        }
        "error-not-allowed"
        | "error-action-not-allowed"
        | "not-allowed"
        | "error-unauthorized"
        | "error-forbidden"
        | "error-user-not-in-room" => ProviderError::Forbidden(reason),
        "error-too-many-requests" => ProviderError::RateLimited {
            retry_after: Duration::from_secs(60),
        },
        // `rooms.info` answers an unknown or hidden room with a bare `not-allowed`.
        "" if reason == "not-allowed" || reason == "Not Allowed" => {
            ProviderError::Forbidden(reason)
        }
        "" if reason.contains("not found") || reason.contains("No message found") => {
            ProviderError::NotFound(reason)
        }
        "" => ProviderError::Invalid {
            field: "request".into(),
            message: reason,
        },
        kind => ProviderError::Invalid {
            field: kind.trim_start_matches("error-").to_owned(),
            message: reason,
        },
    }
}

/// The start of a body, for logs: never the whole of it, never more than a line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(endpoint: &str, status: u16, body: Value, expected: ProviderError) {
        let got = classify(
            endpoint,
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        );
        assert_eq!(got, Err(expected), "{status} {body}");
    }

    #[test]
    fn answers_are_read_by_the_decision_table() {
        let logged_out = "You must be logged in to do this.";
        check(
            "me",
            401,
            json!({"status": "error", "message": logged_out}),
            ProviderError::SessionExpired,
        );
        check(
            "me",
            401,
            json!({"success": false, "error": logged_out, "status": "error", "message": logged_out}),
            ProviderError::SessionExpired,
        );
        check(
            "login",
            401,
            json!({"status": "error", "error": 403, "message": "Incorrect password"}),
            ProviderError::InvalidCredentials,
        );
        check(
            "users.delete",
            401,
            json!({"success": false, "error": "unauthorized"}),
            ProviderError::Forbidden("the chat provider does not allow this".into()),
        );
        check(
            "groups.create",
            403,
            json!({"success": false, "error": "User does not have the permissions required for this action [error-unauthorized]"}),
            ProviderError::Forbidden("the chat provider does not allow this".into()),
        );
        check(
            "x",
            404,
            json!({"success": false, "error": "Resource not found"}),
            ProviderError::NotFound("not found".into()),
        );
        check(
            "x",
            500,
            json!({"success": false, "error": "Internal server error"}),
            ProviderError::Unavailable("x answered HTTP 500 Internal Server Error".into()),
        );
        check(
            "groups.info",
            400,
            json!({"success": false, "error": "The required \"roomId\" or \"roomName\" param provided does not match any group [error-room-not-found]", "errorType": "error-room-not-found"}),
            ProviderError::NotFound(
                "The required \"roomId\" or \"roomName\" param provided does not match any group"
                    .into(),
            ),
        );
        check(
            "users.create",
            400,
            json!({"success": false, "error": "bob is already in use :( [error-field-unavailable]", "errorType": "error-field-unavailable"}),
            ProviderError::Conflict("bob is already in use :(".into()),
        );
        check(
            "chat.sendMessage",
            400,
            json!({"success": false, "error": "must have required property 'msg' [invalid-params]", "errorType": "invalid-params"}),
            ProviderError::Invalid {
                field: "invalid-params".into(),
                message: "must have required property 'msg'".into(),
            },
        );
        check(
            "users.info",
            400,
            json!({"success": false, "error": "User not found."}),
            ProviderError::NotFound("User not found.".into()),
        );
    }

    #[test]
    fn garbage_is_a_bad_response_and_rate_limits_carry_the_wait() {
        let got = classify(
            "me",
            StatusCode::OK,
            &HeaderMap::new(),
            b"<html>oops</html>",
        );
        assert!(matches!(got, Err(ProviderError::BadResponse(_))), "{got:?}");
        let got = classify("me", StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
        assert!(matches!(got, Err(ProviderError::Unavailable(_))), "{got:?}");
        let mut headers = HeaderMap::new();
        let reset = chrono::Utc::now().timestamp_millis() + 5_000;
        headers.insert("x-ratelimit-reset", reset.to_string().parse().unwrap());
        match classify(
            "chat.sendMessage",
            StatusCode::TOO_MANY_REQUESTS,
            &headers,
            b"{}",
        ) {
            Err(ProviderError::RateLimited { retry_after }) => {
                assert!(
                    retry_after <= Duration::from_secs(5) && retry_after >= Duration::from_secs(3),
                    "{retry_after:?}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
