//! The one place where errors become HTTP answers: the JSON envelope of the contract,
//! `{"error": "<code>", "message": "<human text>"}`.

use std::time::Duration;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use imgate_domain::ports::{BackplaneError, CacheError, ProviderError};
use imgate_domain::services::{AdminError, HostRealtimeError, SessionError};
use serde::Serialize;

/// The error body every non-2xx answer carries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid_request`,
    /// `payload_too_large`, `rate_limited`, `provider_unavailable`, `provider_error`, …
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Clashes with what exists.
    #[error("{0}")]
    Conflict(String),
    /// Malformed JSON, a missing field or a bad value; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The body is over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many requests; retry after the given time.
    #[error("{message}")]
    RateLimited {
        /// For the person.
        message: String,
        /// For the `Retry-After` header.
        retry_after: Duration,
    },
    /// The caller already holds as many hub connections as allowed.
    #[error("{0}")]
    TooManyConnections(String),
    /// The provider is down or too slow; the detail goes to the log only.
    #[error("the chat provider is unavailable")]
    ProviderUnavailable(String),
    /// The provider answered garbage; the detail goes to the log only.
    #[error("the chat provider answered something unexpected")]
    ProviderError(String),
    /// A dependency of the gateway itself (Redis) is down; the detail goes to the log only.
    #[error("{what} is unavailable, retry later")]
    ServiceUnavailable {
        /// Which part of the gateway, for the person.
        what: &'static str,
        /// The cause, for the log.
        detail: String,
    },
    /// A bug; the detail goes to the log only.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::Invalid(_) => "invalid_request",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::ProviderUnavailable(_) => "provider_unavailable",
            Self::ProviderError(_) => "provider_error",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } | Self::TooManyConnections(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::ProviderUnavailable(_) | Self::ServiceUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::ProviderError(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::ProviderUnavailable(detail)
            | Self::ProviderError(detail)
            | Self::ServiceUnavailable { detail, .. }
            | Self::Internal(detail) => {
                tracing::warn!(code = self.code(), error = %detail, "request failed");
            }
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after, .. } = self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.insert_header((header::RETRY_AFTER, seconds.max(1).to_string()));
        }
        response.json(ErrorBody {
            error: self.code(),
            message: self.to_string(),
        })
    }
}

impl From<ProviderError> for ApiError {
    fn from(err: ProviderError) -> Self {
        match err {
            // A user's session is renewed before we get here; one that is still refused, or a
            // refused login, means the gateway's provider credentials for them are wrong.
            ProviderError::SessionExpired => {
                Self::ProviderError(format!("provider refused the gateway's credentials: {err}"))
            }
            // A user login refused: the host never mirrored this user, or deleted them.
            ProviderError::InvalidCredentials => Self::Forbidden(
                "this user has no chat account; the host application must create it first".into(),
            ),
            ProviderError::Forbidden(message) => Self::Forbidden(message),
            ProviderError::NotFound(message) => Self::NotFound(message),
            ProviderError::Conflict(message) => Self::Conflict(message),
            ProviderError::Invalid { field, message } => {
                Self::Invalid(format!("{field}: {message}"))
            }
            ProviderError::RateLimited { retry_after } => Self::RateLimited {
                message: "the chat provider is rate limiting, retry later".into(),
                retry_after,
            },
            ProviderError::Unavailable(detail) => Self::ProviderUnavailable(detail),
            ProviderError::BadResponse(detail) => Self::ProviderError(detail),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(err: CacheError) -> Self {
        Self::ServiceUnavailable {
            what: "the gateway's token cache",
            detail: err.to_string(),
        }
    }
}

impl From<BackplaneError> for ApiError {
    fn from(err: BackplaneError) -> Self {
        Self::ServiceUnavailable {
            what: "the gateway's event backplane",
            detail: err.to_string(),
        }
    }
}

impl From<HostRealtimeError> for ApiError {
    fn from(err: HostRealtimeError) -> Self {
        match err {
            HostRealtimeError::Invalid(message) => Self::Invalid(message),
            HostRealtimeError::Unavailable(detail) => Self::ServiceUnavailable {
                what: "the gateway's event backplane",
                detail,
            },
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Provider(err) => err.into(),
            SessionError::Cache(err) => err.into(),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::LoginRefused => {
                Self::ProviderError("the provider refused the admin agent's credentials".into())
            }
            AdminError::Provider(err) => err.into(),
        }
    }
}

/// Bad query strings become `invalid_request` naming the parameter.
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Invalid(format!("invalid query: {err}")).into()
}

/// Bad path segments become `invalid_request`.
pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Invalid(format!("invalid path: {err}")).into()
}
