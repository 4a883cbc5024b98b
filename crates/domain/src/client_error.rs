//! [`ClientError`]: what a failed call means to the client that made it. This is the one table
//! from which both the REST answer (status, code, message) and the hub's completion error
//! derive, so a provider's refusal reads the same over both.

use std::time::Duration;

use crate::ports::{BackplaneError, CacheError, ProviderError};
use crate::services::{AdminError, HostRealtimeError, SessionError};

/// A failure as the client sees it. The texts of the first four are shown as they are; the
/// `detail` of the others is for the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// A value the client sent is wrong; the text names it.
    Invalid(String),
    /// The caller may not do this (or has no chat account).
    Forbidden(String),
    /// It does not exist, or the caller cannot see it.
    NotFound(String),
    /// It clashes with what exists.
    Conflict(String),
    /// The provider asks to slow down for this long.
    RateLimited {
        /// Until the provider accepts calls again.
        retry_after: Duration,
    },
    /// The provider is down or too slow.
    ProviderUnavailable(String),
    /// The provider answered something unreadable, or refused the gateway's own credentials.
    ProviderError(String),
    /// A part of the gateway itself (its token cache, its backplane) is down.
    ServiceUnavailable {
        /// Which part, for the client.
        what: &'static str,
        /// The cause, for the log.
        detail: String,
    },
}

impl ClientError {
    /// The text the client is shown, as REST `message` and as a hub completion's `error`.
    pub fn message(&self) -> String {
        match self {
            Self::Invalid(text)
            | Self::Forbidden(text)
            | Self::NotFound(text)
            | Self::Conflict(text) => text.clone(),
            Self::RateLimited { .. } => "the chat provider is rate limiting, retry later".into(),
            Self::ProviderUnavailable(_) => "the chat provider is unavailable".into(),
            Self::ProviderError(_) => "the chat provider answered something unexpected".into(),
            Self::ServiceUnavailable { what, .. } => format!("{what} is unavailable, retry later"),
        }
    }

    /// What only the log gets: the cause behind a message that hides it.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::ProviderUnavailable(detail)
            | Self::ProviderError(detail)
            | Self::ServiceUnavailable { detail, .. } => Some(detail),
            _ => None,
        }
    }
}

/// The gateway's token cache, for [`ClientError::ServiceUnavailable`].
const TOKEN_CACHE: &str = "the gateway's token cache";
/// The gateway's backplane, for [`ClientError::ServiceUnavailable`].
const BACKPLANE: &str = "the gateway's event backplane";

impl From<ProviderError> for ClientError {
    fn from(err: ProviderError) -> Self {
        match err {
            // A user's session is renewed before it gets here; one still refused means the
            // gateway's provider credentials for them are wrong.
            ProviderError::SessionExpired => {
                Self::ProviderError(format!("provider refused the gateway's credentials: {err}"))
            }
            // A user's login refused: the host never mirrored this user, or deleted them.
            ProviderError::InvalidCredentials => Self::Forbidden(
                "this user has no chat account; the host application must create it first".into(),
            ),
            ProviderError::Forbidden(text) => Self::Forbidden(text),
            ProviderError::NotFound(text) => Self::NotFound(text),
            ProviderError::Conflict(text) => Self::Conflict(text),
            ProviderError::Invalid { field, message } => {
                Self::Invalid(format!("{field}: {message}"))
            }
            ProviderError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            ProviderError::Unavailable(detail) => Self::ProviderUnavailable(detail),
            ProviderError::BadResponse(detail) => Self::ProviderError(detail),
        }
    }
}

impl From<CacheError> for ClientError {
    fn from(err: CacheError) -> Self {
        Self::ServiceUnavailable {
            what: TOKEN_CACHE,
            detail: err.to_string(),
        }
    }
}

impl From<BackplaneError> for ClientError {
    fn from(err: BackplaneError) -> Self {
        Self::ServiceUnavailable {
            what: BACKPLANE,
            detail: err.to_string(),
        }
    }
}

impl From<SessionError> for ClientError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Provider(err) => err.into(),
            SessionError::Cache(err) => err.into(),
        }
    }
}

impl From<AdminError> for ClientError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::LoginRefused => {
                Self::ProviderError("the provider refused the admin agent's credentials".into())
            }
            AdminError::Provider(err) => err.into(),
        }
    }
}

impl From<HostRealtimeError> for ClientError {
    fn from(err: HostRealtimeError) -> Self {
        match err {
            HostRealtimeError::Invalid(text) => Self::Invalid(text),
            HostRealtimeError::Unavailable(detail) => Self::ServiceUnavailable {
                what: BACKPLANE,
                detail,
            },
        }
    }
}
