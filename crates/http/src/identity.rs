//! `GET /api/v1/me`: who the gateway takes the caller to be, so an integrator can check the
//! JWT and API-key setup before anything else.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::auth::Authenticator;
use crate::error::ApiError;

/// The caller as the gateway sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `user` (a host JWT) or `host` (the host back end by API key).
    pub kind: &'static str,
    /// The host user id from the JWT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The `name` claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The `email` claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the caller may use the host back-end routes.
    pub host_backend: bool,
}

/// Who the caller is: an end user by JWT, or the host back end by API key.
#[utoipa::path(get, path = "/api/v1/me", operation_id = "me", tag = "identity",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The caller", body = Identity)))]
pub async fn me(
    req: HttpRequest,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    if req.headers().contains_key(crate::auth::API_KEY_HEADER) {
        auth.host_backend(&req)?;
        return Ok(HttpResponse::Ok().json(Identity {
            kind: "host",
            user_id: None,
            name: None,
            email: None,
            host_backend: true,
        }));
    }
    let user = auth.end_user(&req)?;
    Ok(HttpResponse::Ok().json(Identity {
        kind: "user",
        user_id: Some(user.id.to_string()),
        name: user.name,
        email: user.email,
        host_backend: user.admin,
    }))
}
