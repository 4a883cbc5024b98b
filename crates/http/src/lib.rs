//! imgate's REST API on actix-web: the routes of the product contract, host identity
//! extractors ([`auth::EndUser`], [`auth::HostBackend`]), the JSON error envelope
//! ([`error::ApiError`]) and the OpenAPI document generated from the handlers.
//!
//! It holds no business logic: handlers parse, call a domain service, and map the result.
//! The document lists every status each route can answer ([`statuses`]) and the constraints
//! the routes check on what they take ([`params`]).
//! The app mounts everything with [`configure`].

pub mod auth;
pub mod client_addr;
pub mod error;
pub mod files;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod host_realtime;
pub mod identity;
pub mod json;
pub mod ops;
pub mod params;
pub mod rate_limit;
pub mod rooms;
pub mod session;
pub mod statuses;
pub mod telemetry;
pub mod users;

use std::sync::Arc;

use actix_web::http::header::{HeaderValue, ALLOW};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use imgate_domain::services::{ChatService, HostRealtime, UserService};
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::OpenApi;

use crate::auth::Authenticator;
use crate::error::{ApiError, ErrorBody};
use crate::ops::Readiness;
use crate::statuses::StatusRules;

/// The generated OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(title = "imgate", description = "An IM gateway: the host's users chat through one REST API and one SignalR hub, whatever the chat provider."),
    paths(ops::healthz, ops::readyz, ops::metrics, ops::openapi, identity::me, users::upsert, users::get, users::delete,
        rooms::list, rooms::create, rooms::direct, rooms::get, rooms::add_members, rooms::remove_member, rooms::leave,
        rooms::history, rooms::send, rooms::edit, rooms::delete, rooms::read, rooms::unread,
        files::upload, files::download, session::create, session::delete,
        host_realtime::push_user, host_realtime::broadcast, host_realtime::presence, host_realtime::close),
    components(schemas(
        ErrorBody,
        params::Id,
        ops::HealthBody,
        identity::Identity,
        users::UpsertUser,
        rooms::CreateRoom,
        rooms::Members,
        rooms::SendMessage,
        rooms::EditMessage,
        session::SessionBody,
        host_realtime::HostPush,
        imgate_domain::services::UserPresence,
        imgate_domain::model::User,
        imgate_domain::model::Room,
        imgate_domain::model::RoomKind,
        imgate_domain::model::Message,
        imgate_domain::model::Sender,
        imgate_domain::model::FileRef,
        imgate_domain::model::HistoryPage,
        imgate_domain::model::UnreadSummary,
    )),
    modifiers(&SecuritySchemes, &StatusRules),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

/// What the routes need, built once by the app.
#[derive(Clone)]
pub struct ApiState {
    /// Checks host identities.
    pub auth: Arc<Authenticator>,
    /// What `/readyz` asks.
    pub readiness: Readiness,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The largest JSON body accepted, in bytes.
    pub max_body_bytes: usize,
    /// User mirroring.
    pub users: Arc<UserService>,
    /// The end users' chat operations.
    pub chat: Arc<ChatService>,
    /// Upload limits.
    pub uploads: files::UploadLimits,
    /// Whether `POST /api/v1/session` hands out provider credentials.
    pub frontend_mode: bool,
    /// The host's own realtime.
    pub host: Arc<HostRealtime>,
    /// The largest body of a host push, in bytes.
    pub max_push_bytes: usize,
}

/// Mounts every route, the extractor error handlers and the 404 fallback.
pub fn configure(state: ApiState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(state.auth))
            .app_data(web::Data::new(state.readiness))
            .app_data(web::Data::new(state.metrics))
            .app_data(web::Data::from(state.users))
            .app_data(web::Data::from(state.chat))
            .app_data(web::Data::from(state.host))
            .app_data(web::Data::new(state.uploads))
            .app_data(web::Data::new(session::FrontendMode(state.frontend_mode)))
            .app_data(web::Data::new(json::BodyLimit(state.max_body_bytes)))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .service(resource("/healthz", [(Method::GET, web::to(ops::healthz))]))
            .service(resource("/readyz", [(Method::GET, web::to(ops::readyz))]))
            .service(resource("/metrics", [(Method::GET, web::to(ops::metrics))]))
            .service(resource(
                "/openapi.json",
                [(Method::GET, web::to(ops::openapi))],
            ))
            .service(resource(
                "/api/v1/me",
                [(Method::GET, web::to(identity::me))],
            ))
            .service(resource(
                "/api/v1/users/{id}",
                [
                    (Method::PUT, web::to(users::upsert)),
                    (Method::GET, web::to(users::get)),
                    (Method::DELETE, web::to(users::delete)),
                ],
            ))
            .service(resource(
                "/api/v1/session",
                [
                    (Method::POST, web::to(session::create)),
                    (Method::DELETE, web::to(session::delete)),
                ],
            ))
            .service(resource(
                "/api/v1/unread",
                [(Method::GET, web::to(rooms::unread))],
            ))
            .service(resource(
                "/api/v1/rooms",
                [
                    (Method::GET, web::to(rooms::list)),
                    (Method::POST, web::to(rooms::create)),
                ],
            ))
            .service(resource(
                "/api/v1/rooms/direct",
                [(Method::POST, web::to(rooms::direct))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}",
                [(Method::GET, web::to(rooms::get))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/members",
                [(Method::POST, web::to(rooms::add_members))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/members/{userId}",
                [(Method::DELETE, web::to(rooms::remove_member))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/leave",
                [(Method::POST, web::to(rooms::leave))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/read",
                [(Method::POST, web::to(rooms::read))],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/messages",
                [
                    (Method::GET, web::to(rooms::history)),
                    (Method::POST, web::to(rooms::send)),
                ],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/messages/{messageId}",
                [
                    (Method::PATCH, web::to(rooms::edit)),
                    (Method::DELETE, web::to(rooms::delete)),
                ],
            ))
            .service(resource(
                "/api/v1/rooms/{roomId}/files",
                [(Method::POST, web::to(files::upload))],
            ))
            .service(resource(
                "/api/v1/files/{fileId}/{name}",
                [(Method::GET, web::to(files::download))],
            ))
            .service(
                resource(
                    "/api/v1/hub/users/{userId}",
                    [
                        (Method::POST, web::to(host_realtime::push_user)),
                        (Method::GET, web::to(host_realtime::presence)),
                    ],
                )
                .app_data(web::Data::new(json::BodyLimit(state.max_push_bytes))),
            )
            .service(resource(
                "/api/v1/hub/users/{userId}/connections",
                [(Method::DELETE, web::to(host_realtime::close))],
            ))
            .service(
                resource(
                    "/api/v1/hub/broadcast",
                    [(Method::POST, web::to(host_realtime::broadcast))],
                )
                .app_data(web::Data::new(json::BodyLimit(state.max_push_bytes))),
            )
            .default_service(web::to(not_found));
    }
}

/// The methods a resource serves, for the `Allow` header of its 405s.
struct Allow(String);

/// A resource serving each of `routes` on its method; any other method gets the envelope's
/// 405 with `Allow` naming these.
fn resource<const N: usize>(
    path: &str,
    routes: [(Method, actix_web::Route); N],
) -> actix_web::Resource {
    let allow = routes
        .iter()
        .map(|(method, _)| method.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    routes.into_iter().fold(
        web::resource(path)
            .app_data(web::Data::new(Allow(allow)))
            .default_service(web::to(method_not_allowed)),
        |resource, (method, route)| resource.route(route.method(method)),
    )
}

/// The envelope's 404 for any path no route matches.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

async fn method_not_allowed(req: HttpRequest, allow: web::Data<Allow>) -> HttpResponse {
    let mut response = ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; allowed: {}",
        req.method(),
        req.path(),
        allow.0
    ))
    .error_response();
    if let Ok(value) = HeaderValue::from_str(&allow.0) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}
