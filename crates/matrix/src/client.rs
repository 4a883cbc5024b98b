//! The HTTP side: building client-server and admin API URLs, sending with the session's
//! access token, and the decision table that turns Matrix answers into `ProviderError`s.

use std::time::Duration;

use imgate_domain::model::ProviderSession;
use imgate_domain::ports::ProviderError;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use url::Url;

/// A reqwest client bound to one homeserver; clones share the connection pool.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
}

impl Client {
    pub(crate) fn new(
        base: Url,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .build()?;
        Ok(Self { http, base })
    }

    /// The homeserver's base URL.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// `prefix` (a fixed path such as `_matrix/client/v3/rooms`) followed by `segments`, each
    /// percent-encoded: room, event and user ids carry `!`, `$`, `@` and `:`.
    pub(crate) fn url(&self, prefix: &str, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty();
            path.extend(prefix.split('/'));
            path.extend(segments);
        }
        url
    }

    /// A request with the session's access token.
    pub(crate) fn request(
        &self,
        method: Method,
        url: Url,
        session: Option<&ProviderSession>,
    ) -> RequestBuilder {
        let request = self.http.request(method, url);
        match session {
            Some(session) => request.bearer_auth(session.token.expose()),
            None => request,
        }
    }

    /// Sends a JSON call and reads the JSON answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Url,
        session: Option<&ProviderSession>,
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        let mut request = self.request(method, url, session);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(unavailable)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| ProviderError::BadResponse("an answer that is not JSON".into()))
    }

    /// Sends a request and returns the response when it succeeded, else its error.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response, ProviderError> {
        let result = async {
            let response = request.send().await.map_err(unavailable)?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body: Value = response.json().await.unwrap_or(Value::Null);
            Err(error_for(status, &body))
        }
        .await;
        crate::telemetry::request(&result);
        result
    }
}

fn unavailable(err: reqwest::Error) -> ProviderError {
    ProviderError::Unavailable(if err.is_timeout() {
        "the homeserver did not answer in time".into()
    } else {
        "cannot reach the homeserver".into()
    })
}

/// The decision table: Matrix `errcode`s (client-server API, "Standard error response") and
/// statuses into what a caller can act on.
pub(crate) fn error_for(status: StatusCode, body: &Value) -> ProviderError {
    let code = body.get("errcode").and_then(Value::as_str).unwrap_or("");
    let text = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no reason given")
        .to_owned();
    match (status.as_u16(), code) {
        (401, _) | (_, "M_UNKNOWN_TOKEN" | "M_MISSING_TOKEN") => ProviderError::SessionExpired,
        (429, _) | (_, "M_LIMIT_EXCEEDED") => ProviderError::RateLimited {
            retry_after: Duration::from_millis(
                body.get("retry_after_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(1000),
            ),
        },
        (_, "M_ROOM_IN_USE" | "M_USER_IN_USE") => ProviderError::Conflict(text),
        (_, "M_USER_DEACTIVATED") => ProviderError::InvalidCredentials,
        (404, _) | (_, "M_NOT_FOUND") => ProviderError::NotFound(text),
        (403, _) => ProviderError::Forbidden(text),
        (413, _) | (_, "M_TOO_LARGE") => ProviderError::Invalid {
            field: "file".into(),
            message: text,
        },
        (400..=499, _) => ProviderError::Invalid {
            field: "request".into(),
            message: text,
        },
        _ => ProviderError::Unavailable(format!("the homeserver answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(status: u16, body: Value, expected: ProviderError) {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(error_for(status, &body), expected, "{status} {body}");
    }

    #[test]
    fn matrix_errors_become_provider_errors() {
        check(
            401,
            json!({"errcode": "M_UNKNOWN_TOKEN", "error": "x"}),
            ProviderError::SessionExpired,
        );
        check(
            429,
            json!({"errcode": "M_LIMIT_EXCEEDED", "retry_after_ms": 2500}),
            ProviderError::RateLimited {
                retry_after: Duration::from_millis(2500),
            },
        );
        check(
            400,
            json!({"errcode": "M_ROOM_IN_USE", "error": "Room alias already taken"}),
            ProviderError::Conflict("Room alias already taken".into()),
        );
        check(
            403,
            json!({"errcode": "M_USER_DEACTIVATED", "error": "x"}),
            ProviderError::InvalidCredentials,
        );
        check(
            404,
            json!({"errcode": "M_NOT_FOUND", "error": "Event not found."}),
            ProviderError::NotFound("Event not found.".into()),
        );
        check(
            403,
            json!({"errcode": "M_FORBIDDEN", "error": "User not in room"}),
            ProviderError::Forbidden("User not in room".into()),
        );
        check(
            502,
            Value::Null,
            ProviderError::Unavailable("the homeserver answered 502 Bad Gateway".into()),
        );
    }
}
