//! The one place where errors become HTTP answers: the JSON envelope of the contract,
//! `{"error": "<code>", "message": "<human text>"}`.

use std::time::Duration;

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use imgate_domain::ports::{BackplaneError, CacheError, ProviderError};
use imgate_domain::services::{AdminError, HostRealtimeError, SessionError};
use imgate_domain::ClientError;
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
    /// The envelope's stable `error` code.
    pub fn code(&self) -> &'static str {
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

impl From<ClientError> for ApiError {
    fn from(err: ClientError) -> Self {
        match err {
            ClientError::Invalid(text) => Self::Invalid(text),
            ClientError::Forbidden(text) => Self::Forbidden(text),
            ClientError::NotFound(text) => Self::NotFound(text),
            ClientError::Conflict(text) => Self::Conflict(text),
            limited @ ClientError::RateLimited { retry_after } => Self::RateLimited {
                message: limited.message(),
                retry_after,
            },
            ClientError::ProviderUnavailable(detail) => Self::ProviderUnavailable(detail),
            ClientError::ProviderError(detail) => Self::ProviderError(detail),
            ClientError::ServiceUnavailable { what, detail } => {
                Self::ServiceUnavailable { what, detail }
            }
        }
    }
}

/// Every domain error reaches a client through [`ClientError`]'s one table.
macro_rules! through_client_error {
    ($($error:ty),*) => {$(
        impl From<$error> for ApiError {
            fn from(err: $error) -> Self {
                ClientError::from(err).into()
            }
        }
    )*};
}

through_client_error!(
    ProviderError,
    CacheError,
    BackplaneError,
    HostRealtimeError,
    SessionError,
    AdminError
);

/// Bad query strings become `invalid_request` naming the parameter.
pub fn query_error(err: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Invalid(format!("invalid query: {err}")).into()
}

/// Bad path segments become `invalid_request`.
pub fn path_error(err: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::Invalid(format!("invalid path: {err}")).into()
}
