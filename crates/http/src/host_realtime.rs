//! `/api/v1/hub/…`: the host back end's own realtime — push an invocation to a user's hub
//! connections or to everyone's, ask whether a user is online, close a user's connections.

use actix_web::{web, HttpResponse};
use imgate_domain::ports::{Audience, HostInvocation};
use imgate_domain::services::{push_refused, HostRealtime, UserPresence};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::openapi::schema::{ArrayBuilder, ArrayItems, ObjectBuilder, SchemaType, Type};

use crate::auth::HostBackend;
use crate::error::{ApiError, ErrorBody};
use crate::json::Json;
use crate::params::{self, Id};

/// The body of a push or broadcast: the client method to invoke and its arguments.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostPush {
    /// The client method: a letter, then at most 63 letters, digits, `_` or `.`; none of the
    /// hub's chat targets, in any case.
    #[schema(schema_with = target, example = "orderShipped")]
    pub target: String,
    /// Its arguments, delivered exactly as sent.
    #[schema(schema_with = arguments, example = json!([{"orderId": 42}]))]
    pub arguments: Box<RawValue>,
}

/// The longest target name, as `imgate_domain::services::target_name_problem` allows it.
const MAX_TARGET_LEN: usize = 64;

/// The targets of the hub's own chat events (the product contract), which a host push may not
/// use in any casing.
pub const HUB_CHAT_TARGETS: [&str; 4] = [
    "getRoomMessageNotification",
    "getRoomSubscriptionChangedNotification",
    "messageDeleted",
    "typing",
];

/// What `target_name_problem` accepts: the form, and none of [`HUB_CHAT_TARGETS`] in any case
/// (JSON Schema patterns have no flag for that, so each letter is a class of both cases).
fn target_pattern() -> String {
    let any_case = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    let reserved = HUB_CHAT_TARGETS.map(any_case).join("|");
    format!(
        "^(?!(?:{reserved})$)[A-Za-z][A-Za-z0-9_.]{{0,{}}}$",
        MAX_TARGET_LEN - 1
    )
}

fn target() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "The client method: a letter, then at most {} letters, digits, `_` or `.`; none of \
             the hub's chat targets ({}), in any case. With `hub.strict_targets` only the \
             targets declared in `hub.targets` are accepted.",
            MAX_TARGET_LEN - 1,
            HUB_CHAT_TARGETS.join(", ")
        )))
        .pattern(Some(target_pattern()))
}

fn arguments() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(ArrayItems::RefOrSchema(Box::new(
            ObjectBuilder::new()
                .schema_type(SchemaType::AnyValue)
                .into(),
        )))
        .description(Some(
            "Its arguments, any JSON values, delivered exactly as sent; those of a target \
             declared in `hub.targets` are checked against its schemas.",
        ))
}

/// Sends the accepted body to `audience`, counting a body refused before parsing finished.
async fn push(
    host: &HostRealtime,
    audience: &Audience,
    body: Result<Json<HostPush>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let body = body.inspect_err(|err| {
        push_refused(match err {
            ApiError::PayloadTooLarge(_) => "too_large",
            _ => "invalid_body",
        });
    })?;
    let HostPush { target, arguments } = body.into_inner();
    host.push(audience, &HostInvocation { target, arguments })
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// Invokes `target(...arguments)` on every hub connection of the user, on every node.
#[utoipa::path(post, path = "/api/v1/hub/users/{userId}", operation_id = "pushToUser", tag = "host realtime",
    params(("userId" = Id, Path, description = "The host's user id")),
    request_body = HostPush,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 202, description = "Accepted: the user's connections get it in the order pushes were accepted; nothing is kept for a user with none"),
        (status = 400, description = "`userId`, `target` or `arguments` is wrong, or the body is not JSON; the message names the field", body = ErrorBody),
        (status = 413, description = "The body is over `hub.max_push_bytes`", body = ErrorBody),
        (status = 503, description = "The other nodes cannot be reached; nothing was sent", body = ErrorBody)))]
pub async fn push_user(
    _: HostBackend,
    host: web::Data<HostRealtime>,
    user: web::Path<String>,
    body: Result<Json<HostPush>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let user = params::user("userId", &user)?;
    push(&host, &Audience::User(user), body).await
}

/// Invokes `target(...arguments)` on every hub connection of every user, on every node.
#[utoipa::path(post, path = "/api/v1/hub/broadcast", operation_id = "broadcast", tag = "host realtime",
    request_body = HostPush,
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 202, description = "Accepted"),
        (status = 400, description = "`target` or `arguments` is wrong, or the body is not JSON; the message names the field", body = ErrorBody),
        (status = 413, description = "The body is over `hub.max_push_bytes`", body = ErrorBody),
        (status = 503, description = "The other nodes cannot be reached; nothing was sent", body = ErrorBody)))]
pub async fn broadcast(
    _: HostBackend,
    host: web::Data<HostRealtime>,
    body: Result<Json<HostPush>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    push(&host, &Audience::All, body).await
}

/// Whether the user has hub connections, and how many, over every node.
#[utoipa::path(get, path = "/api/v1/hub/users/{userId}", operation_id = "getPresence", tag = "host realtime",
    params(("userId" = Id, Path, description = "The host's user id")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 200, body = UserPresence),
        (status = 503, description = "The shared store cannot be reached", body = ErrorBody)))]
pub async fn presence(
    _: HostBackend,
    host: web::Data<HostRealtime>,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = params::user("userId", &user)?;
    Ok(HttpResponse::Ok().json(host.presence(&user).await?))
}

/// Closes every hub connection of the user on every node, telling them why; they do not
/// reconnect by themselves.
#[utoipa::path(delete, path = "/api/v1/hub/users/{userId}/connections", operation_id = "closeConnections", tag = "host realtime",
    params(("userId" = Id, Path, description = "The host's user id")),
    security(("api_key" = []), ("bearer" = [])),
    responses(
        (status = 204, description = "Closed"),
        (status = 503, description = "This node's connections were closed, the other nodes could not be told; retry", body = ErrorBody)))]
pub async fn close(
    _: HostBackend,
    host: web::Data<HostRealtime>,
    user: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = params::user("userId", &user)?;
    host.close(&user)?;
    Ok(HttpResponse::NoContent().finish())
}
