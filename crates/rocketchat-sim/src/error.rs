//! REST failures and their wire bodies, which differ by emulated version (reference §2, §7).

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::Version;

/// The text of the "not logged in" 401.
pub const NOT_LOGGED_IN: &str = "You must be logged in to do this.";

/// Why a REST call failed; each variant has one status and body per emulated version.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Missing, unknown or revoked token: 401.
    #[error("not logged in")]
    NotLoggedIn,
    /// `/login` refused: 401 with Meteor's `error`/`message`.
    #[error("login failed: {message}")]
    LoginFailed {
        /// Meteor error code (a string or a number such as 403).
        error: Value,
        /// Meteor reason.
        message: String,
    },
    /// An endpoint-level `unauthorized()`: 403 on 6.x, 401 `unauthorized` from 7.x.
    #[error("unauthorized")]
    Unauthorized,
    /// A route's permission list failed: 403.
    #[error("forbidden")]
    Forbidden,
    /// A thrown Meteor error: 400 with `errorType`.
    #[error("{reason} [{code}]")]
    Meteor {
        /// Error code, e.g. `error-room-not-found`.
        code: String,
        /// Human reason; may be empty.
        reason: String,
        /// Extra details.
        details: Option<Value>,
    },
    /// `failure("text", "code")`: 400 with `errorType`, the code not repeated in `error`.
    #[error("{error} [{error_type}]")]
    Typed {
        /// Human text.
        error: String,
        /// Error code, e.g. `error-invalid-role`.
        error_type: String,
    },
    /// A plain `failure("text")`: 400 without `errorType`.
    #[error("{0}")]
    Failure(String),
    /// Parameter validation: 400 `invalid-params`.
    #[error("{0} [invalid-params]")]
    InvalidParams(String),
    /// Unknown route or resource: 404.
    #[error("resource not found")]
    NotFound,
    /// Rate limited: 429.
    #[error("too many requests")]
    TooManyRequests {
        /// Seconds until the window resets.
        wait_secs: u64,
    },
    /// Anything else: 500.
    #[error("internal server error")]
    Internal,
}

impl ApiError {
    /// A Meteor error without details.
    pub fn meteor(code: &str, reason: impl Into<String>) -> Self {
        ApiError::Meteor {
            code: code.into(),
            reason: reason.into(),
            details: None,
        }
    }

    /// A Meteor error with details.
    pub fn meteor_with(code: &str, reason: impl Into<String>, details: Value) -> Self {
        ApiError::Meteor {
            code: code.into(),
            reason: reason.into(),
            details: Some(details),
        }
    }

    /// Status and JSON body as the emulated version writes them.
    pub fn render(&self, version: Version) -> (StatusCode, Value) {
        let v6 = version == Version::V6;
        match self {
            ApiError::NotLoggedIn => {
                let body = if v6 {
                    json!({"status": "error", "message": NOT_LOGGED_IN})
                } else {
                    json!({"success": false, "error": NOT_LOGGED_IN, "status": "error", "message": NOT_LOGGED_IN})
                };
                (StatusCode::UNAUTHORIZED, body)
            }
            ApiError::LoginFailed { error, message } => {
                let mut body = json!({"status": "error", "error": error, "message": message});
                if !v6 {
                    body["success"] = json!(false);
                }
                (StatusCode::UNAUTHORIZED, body)
            }
            ApiError::Unauthorized => {
                let status = if v6 {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::UNAUTHORIZED
                };
                (status, json!({"success": false, "error": "unauthorized"}))
            }
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"success": false, "error": "User does not have the permissions required for this action [error-unauthorized]"}),
            ),
            ApiError::Meteor {
                code,
                reason,
                details,
            } => {
                let error = if reason.is_empty() {
                    format!("[{code}]")
                } else {
                    format!("{reason} [{code}]")
                };
                let mut body = json!({"success": false, "error": error, "errorType": code});
                if let Some(d) = details {
                    body["details"] = d.clone();
                }
                (StatusCode::BAD_REQUEST, body)
            }
            ApiError::Typed { error, error_type } => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": error, "errorType": error_type}),
            ),
            // `failure()` without a text serialises as just `{"success":false}`.
            ApiError::Failure(text) if text.is_empty() => {
                (StatusCode::BAD_REQUEST, json!({"success": false}))
            }
            ApiError::Failure(text) => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": text}),
            ),
            ApiError::InvalidParams(text) => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": format!("{text} [invalid-params]"), "errorType": "invalid-params"}),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"success": false, "error": "Resource not found"}),
            ),
            ApiError::TooManyRequests { wait_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"success": false, "error": format!(
                    "Error, too many requests. Please slow down. You must wait {wait_secs} seconds before trying this endpoint again. [error-too-many-requests]"
                )}),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"success": false, "error": "Internal server error"}),
            ),
        }
    }

    /// The DDP method-error object for the same failure.
    pub fn ddp_error(&self) -> Value {
        let (error, reason): (Value, String) = match self {
            ApiError::NotLoggedIn => (json!("error-invalid-user"), "Invalid user".into()),
            ApiError::LoginFailed { error, message } => (error.clone(), message.clone()),
            ApiError::Unauthorized | ApiError::Forbidden => {
                (json!("error-not-allowed"), "Not allowed".into())
            }
            ApiError::Meteor { code, reason, .. } => (json!(code), reason.clone()),
            ApiError::Failure(t) => (json!("error"), t.clone()),
            ApiError::Typed { error, error_type } => (json!(error_type), error.clone()),
            ApiError::InvalidParams(t) => (json!(400), format!("Match failed: {t}")),
            ApiError::NotFound => (json!(404), "Not found".into()),
            ApiError::TooManyRequests { .. } => (
                json!("too-many-requests"),
                "Error, too many requests. Please slow down.".into(),
            ),
            ApiError::Internal => (json!(500), "Internal server error".into()),
        };
        let code_text = match &error {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = if reason.is_empty() {
            format!("[{code_text}]")
        } else {
            format!("{reason} [{code_text}]")
        };
        let mut e = json!({"isClientSafe": true, "error": error, "reason": reason, "message": message, "errorType": "Meteor.Error"});
        if let ApiError::Meteor {
            details: Some(d), ..
        } = self
        {
            e["details"] = d.clone();
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meteor_error_puts_code_in_brackets() {
        let (s, b) = ApiError::meteor("error-room-not-found", "no room").render(Version::V7);
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(b["error"], "no room [error-room-not-found]");
        assert_eq!(b["errorType"], "error-room-not-found");
        let (_, b) = ApiError::meteor("user-last-owner", "").render(Version::V7);
        assert_eq!(b["error"], "[user-last-owner]");
    }

    #[test]
    fn unauthorized_status_depends_on_version() {
        assert_eq!(
            ApiError::Unauthorized.render(Version::V6).0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ApiError::Unauthorized.render(Version::V7).0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn not_logged_in_is_superset_from_7() {
        let (_, b) = ApiError::NotLoggedIn.render(Version::V6);
        assert!(b.get("success").is_none());
        let (_, b) = ApiError::NotLoggedIn.render(Version::V8);
        assert_eq!(b["success"], false);
        assert_eq!(b["status"], "error");
        assert_eq!(b["error"], NOT_LOGGED_IN);
        assert_eq!(b["message"], NOT_LOGGED_IN);
    }
}
