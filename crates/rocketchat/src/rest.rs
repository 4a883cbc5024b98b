//! The REST client: one pooled reqwest client, auth headers, the decision table of the
//! wire reference §4 that turns Rocket.Chat answers into `ProviderError`s, and the queue per
//! endpoint behind Rocket.Chat's rate limiter (`throttle`).

use std::sync::Arc;
use std::time::Duration;

use imgate_domain::model::ProviderSession;
use imgate_domain::ports::ProviderError;
use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::telemetry;
use crate::throttle::{Throttle, WindowReport};

/// Rocket.Chat still refuses a call made at the very `X-RateLimit-Reset` instant (its window
/// restarts only once the interval is *exceeded*), so waits end this much later.
const RESET_MARGIN: Duration = Duration::from_millis(50);
/// The wait after a 429 whose reset is already past by our clock: the server's clock runs
/// ahead of ours, so "now" is not yet its reset.
const SKEWED_RESET_WAIT: Duration = Duration::from_secs(1);
/// The wait after a 429 that says nothing about its window.
const UNKNOWN_RESET_WAIT: Duration = Duration::from_secs(60);

/// Rocket.Chat's text for a missing, expired or revoked session.
const NOT_LOGGED_IN: &str = "You must be logged in";

/// Extra headers a call may need, e.g. the 2FA password fallback.
pub(crate) type ExtraHeaders<'a> = &'a [(&'static str, String)];

/// A REST client bound to one server.
#[derive(Clone)]
pub(crate) struct Rest {
    http: reqwest::Client,
    base: String,
    // How long one call may queue behind the provider's rate limiter before it fails with
    // `RateLimited` (and the gateway answers `rate_limited` with `Retry-After`).
    rate_limit_wait: Duration,
    throttle: Arc<Throttle>,
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
            throttle: Arc::new(Throttle::default()),
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
    /// and logs and, with the method, names Rocket.Chat's limiter bucket. While that bucket is
    /// used up the call queues behind the others (one caller tries the new window first, the
    /// rest follow its answer) for at most `rate_limit_wait` in all, then fails with
    /// `RateLimited` and how long until the reset. A 429 means the server did nothing, so a
    /// refused call is sent again once its turn comes; one whose body cannot be replayed (a
    /// streamed upload) fails instead.
    pub(crate) async fn send(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let mut request = request.build().map_err(|err| transport_error(&err))?;
        let gate = self.throttle.gate(request.method(), endpoint);
        let deadline = tokio::time::Instant::now() + self.rate_limit_wait;
        loop {
            let pass = match gate.admit(deadline).await {
                Ok(pass) => pass,
                Err(retry_after) => {
                    telemetry::rate_limit_gave_up(endpoint, retry_after);
                    return Err(ProviderError::RateLimited { retry_after });
                }
            };
            if pass.queued {
                telemetry::rate_limit_queued(endpoint);
            }
            let spare = request.try_clone();
            let (result, window) = self.send_once(endpoint, request).await;
            match (&result, window) {
                (Err(ProviderError::RateLimited { retry_after }), window) => {
                    if gate.refused(*retry_after, window.map(|w| w.reset_ms)) {
                        telemetry::rate_limit_met(endpoint, *retry_after);
                    }
                }
                (_, Some(window)) => gate.observe(window),
                (_, None) => {}
            }
            drop(pass);
            match (result, spare) {
                (Err(ProviderError::RateLimited { .. }), Some(spare)) => request = spare,
                (other, _) => return other,
            }
        }
    }

    async fn send_once(
        &self,
        endpoint: &'static str,
        request: reqwest::Request,
    ) -> (Result<Value, ProviderError>, Option<WindowReport>) {
        let (result, window) = match self.http.execute(request).await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let window = window_report(&headers);
                match response.bytes().await {
                    Ok(body) => (classify(endpoint, status, &headers, &body), window),
                    Err(err) => (Err(transport_error(&err)), window),
                }
            }
            Err(err) => (Err(transport_error(&err)), None),
        };
        telemetry::request(endpoint, &result);
        (result, window)
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

fn header_number(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
}

/// How long from now until `reset_ms` (epoch ms, the server's clock) has surely passed.
fn until_reset(reset_ms: i64) -> Option<Duration> {
    let wait = reset_ms - chrono::Utc::now().timestamp_millis();
    u64::try_from(wait)
        .ok()
        .map(|ms| Duration::from_millis(ms) + RESET_MARGIN)
}

/// How long until a refusing limiter lets calls through again: `X-RateLimit-Reset` (epoch
/// ms), else a standard `Retry-After` (a proxy's limiter), else a minute.
fn retry_after(headers: &HeaderMap) -> Duration {
    match header_number(headers, "x-ratelimit-reset") {
        Some(reset_ms) => until_reset(reset_ms).unwrap_or(SKEWED_RESET_WAIT),
        None => header_number(headers, "retry-after")
            .and_then(|s| u64::try_from(s).ok())
            .map_or(UNKNOWN_RESET_WAIT, Duration::from_secs),
    }
}

/// What a limited answer's headers say about its window; `None` when the call was not
/// limited (limiter off, or a caller holding `api-bypass-rate-limit`).
fn window_report(headers: &HeaderMap) -> Option<WindowReport> {
    let remaining = header_number(headers, "x-ratelimit-remaining")?;
    let reset_ms = header_number(headers, "x-ratelimit-reset")?;
    Some(WindowReport {
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        reset_ms,
        reset_in: until_reset(reset_ms).unwrap_or(Duration::ZERO),
    })
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
            retry_after: UNKNOWN_RESET_WAIT,
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
        let limited = |pairs: &[(&'static str, String)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().unwrap());
            }
            match classify(
                "chat.sendMessage",
                StatusCode::TOO_MANY_REQUESTS,
                &headers,
                b"{}",
            ) {
                Err(ProviderError::RateLimited { retry_after }) => retry_after,
                other => panic!("{other:?}"),
            }
        };
        let now = chrono::Utc::now().timestamp_millis();
        let wait = limited(&[("x-ratelimit-reset", (now + 5_000).to_string())]);
        assert!(
            wait <= Duration::from_secs(5) + RESET_MARGIN && wait >= Duration::from_secs(3),
            "until the reset, and a little more: {wait:?}"
        );
        assert_eq!(
            limited(&[("x-ratelimit-reset", (now - 2_000).to_string())]),
            SKEWED_RESET_WAIT,
            "a reset already past by our clock"
        );
        assert_eq!(
            limited(&[("retry-after", "7".into())]),
            Duration::from_secs(7)
        );
        assert_eq!(limited(&[]), UNKNOWN_RESET_WAIT);
    }
}
