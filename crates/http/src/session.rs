//! `/api/v1/session`: frontend mode hands the browser its provider credentials; logout.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use imgate_domain::services::ChatService;
use serde::Serialize;

use crate::auth::EndUser;
use crate::error::{ApiError, ErrorBody};

/// Whether frontend mode is on (`realtime.mode` is `frontend` or `both`).
#[derive(Debug, Clone, Copy)]
pub struct FrontendMode(pub bool);

/// The provider credentials a browser uses in frontend mode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody {
    /// Which provider, e.g. `rocketchat`.
    pub provider: &'static str,
    /// The user's id inside the provider.
    pub user_id: String,
    /// The provider session token.
    pub auth_token: String,
    /// The provider's realtime endpoint.
    pub realtime_url: String,
    /// When the gateway stops vouching for this token.
    pub expires_at: DateTime<Utc>,
}

/// Frontend mode: the caller's provider credentials for the provider's own realtime API.
#[utoipa::path(post, path = "/api/v1/session", operation_id = "createSession", tag = "session", security(("bearer" = [])),
    responses((status = 200, body = SessionBody),
        (status = 403, description = "Frontend mode is off (`realtime.mode` is `backend`), or the user has no chat account", body = ErrorBody)))]
pub async fn create(
    user: EndUser,
    chat: web::Data<ChatService>,
    mode: web::Data<FrontendMode>,
) -> Result<HttpResponse, ApiError> {
    if !mode.0 {
        return Err(ApiError::Forbidden(
            "frontend mode is off on this gateway (realtime.mode is backend); use the hub".into(),
        ));
    }
    let session = chat.frontend_session(&user.id).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(SessionBody {
            provider: session.provider,
            user_id: session.user_id.to_string(),
            auth_token: session.token.expose().to_owned(),
            realtime_url: session.realtime_url,
            expires_at: session.expires_at,
        }))
}

/// Logs the caller out of the provider and drops the cached session.
#[utoipa::path(delete, path = "/api/v1/session", operation_id = "deleteSession", tag = "session", security(("bearer" = [])),
    responses((status = 204, description = "Logged out of the provider")))]
pub async fn delete(user: EndUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    chat.logout(&user.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
