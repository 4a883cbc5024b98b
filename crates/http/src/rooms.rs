//! `/api/v1/rooms…` and `/api/v1/unread`: rooms, membership, messages and read state, as the caller.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use imgate_domain::model::{
    HistoryPage, HistoryQuery, Message, NewMessage, NewRoom, Room, RoomKind, UnreadSummary,
};
use imgate_domain::services::ChatService;
use imgate_domain::UserId;
use serde::Deserialize;

use crate::auth::EndUser;
use crate::error::{ApiError, ErrorBody};
use crate::json::Json;
use crate::params;

const MAX_ROOM_NAME_CHARS: usize = 100;

/// The body of `POST /api/v1/rooms`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// `channel` (public) or `group` (private).
    pub kind: RoomKind,
    /// Room name.
    pub name: String,
    /// Host ids of the other members.
    #[serde(default)]
    pub members: Vec<String>,
}

/// A list of members.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// Host user ids.
    pub members: Vec<String>,
}

/// The body of `POST /api/v1/rooms/{roomId}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendMessage {
    /// The text.
    pub text: String,
    /// The thread's first message, to reply in a thread.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// A client-chosen key that makes a retry idempotent.
    #[serde(default)]
    pub client_message_id: Option<String>,
}

/// The body of `PATCH /api/v1/rooms/{roomId}/messages/{messageId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The new text.
    pub text: String,
}

/// The query of `GET /api/v1/rooms/{roomId}/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only messages older than this (RFC 3339).
    pub before: Option<String>,
    /// At most this many (1..=100, default 50).
    pub limit: Option<String>,
}

impl CreateRoom {
    /// The room to create for `caller`, or what is wrong with the body.
    pub(crate) fn validate(self, caller: &UserId) -> Result<NewRoom, ApiError> {
        if self.kind == RoomKind::Direct {
            return Err(ApiError::Invalid(
                "kind: must be channel or group; open direct rooms with POST /api/v1/rooms/direct"
                    .into(),
            ));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > MAX_ROOM_NAME_CHARS {
            return Err(ApiError::Invalid(format!(
                "name: must be 1 to {MAX_ROOM_NAME_CHARS} characters"
            )));
        }
        let members = params::members(&self.members, caller, true)?;
        Ok(NewRoom {
            kind: self.kind,
            name,
            members,
        })
    }
}

impl SendMessage {
    /// The message to send, or what is wrong with the body; the text itself is checked by
    /// the chat service.
    pub(crate) fn validate(self) -> Result<NewMessage, ApiError> {
        Ok(NewMessage {
            text: self.text,
            thread_id: self
                .thread_id
                .as_deref()
                .map(|id| params::message("threadId", id))
                .transpose()?,
            client_message_id: self
                .client_message_id
                .as_deref()
                .map(|id| params::text("clientMessageId", id, 128))
                .transpose()?,
        })
    }
}

impl HistoryParams {
    /// The page asked for, or which parameter is wrong.
    pub(crate) fn validate(&self) -> Result<HistoryQuery, ApiError> {
        let limit = match self.limit.as_deref() {
            None => 50,
            Some(raw) => raw
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    ApiError::Invalid("limit: must be a whole number between 1 and 100".into())
                })?,
        };
        let before = self
            .before
            .as_deref()
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::Invalid(
                            "before: must be an RFC 3339 date such as 2024-05-01T10:00:00Z".into(),
                        )
                    })
            })
            .transpose()?;
        Ok(HistoryQuery {
            before,
            after: None,
            limit,
        })
    }
}

fn created(room: Room) -> HttpResponse {
    HttpResponse::Created().json(room)
}

/// The caller's rooms with unread counts and last messages.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, body = Vec<Room>), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(user: EndUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(chat.rooms(&user.id).await?))
}

/// Creates a channel or private group.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", security(("bearer" = [])), request_body = CreateRoom,
    responses((status = 201, body = Room), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    user: EndUser,
    chat: web::Data<ChatService>,
    body: Json<CreateRoom>,
) -> Result<HttpResponse, ApiError> {
    let new_room = body.into_inner().validate(&user.id)?;
    Ok(created(chat.create_room(&user.id, &new_room).await?))
}

/// Opens the direct room of the caller and the members, or returns the existing one.
#[utoipa::path(post, path = "/api/v1/rooms/direct", tag = "rooms", security(("bearer" = [])), request_body = Members,
    responses((status = 201, description = "Created", body = Room), (status = 200, description = "It existed", body = Room)))]
pub async fn direct(
    user: EndUser,
    chat: web::Data<ChatService>,
    body: Json<Members>,
) -> Result<HttpResponse, ApiError> {
    let members = params::members(&body.members, &user.id, false)?;
    let (room, was_created) = chat.open_direct(&user.id, &members).await?;
    Ok(if was_created {
        created(room)
    } else {
        HttpResponse::Ok().json(room)
    })
}

/// One room.
#[utoipa::path(get, path = "/api/v1/rooms/{roomId}", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = String, Path)), responses((status = 200, body = Room), (status = 404, body = ErrorBody)))]
pub async fn get(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    Ok(HttpResponse::Ok().json(chat.room(&user.id, &room).await?))
}

/// Adds members.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/members", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = String, Path)), request_body = Members, responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add_members(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
    body: Json<Members>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    let members = params::members(&body.members, &user.id, false)?;
    chat.add_members(&user.id, &room, &members).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Removes a member.
#[utoipa::path(delete, path = "/api/v1/rooms/{roomId}/members/{userId}", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = String, Path), ("userId" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path.0)?;
    let member = params::user("userId", &path.1)?;
    chat.remove_member(&user.id, &room, &member).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller leaves the room.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/leave", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn leave(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    chat.leave(&user.id, &room).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A page of history, newest first.
#[utoipa::path(get, path = "/api/v1/rooms/{roomId}/messages", tag = "messages", security(("bearer" = [])),
    params(("roomId" = String, Path), HistoryParams), responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
    query: web::Query<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    let page = chat.history(&user.id, &room, &query.validate()?).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Posts a message; a repeated `clientMessageId` returns the first message instead of a second.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/messages", tag = "messages", security(("bearer" = [])),
    params(("roomId" = String, Path)), request_body = SendMessage, responses((status = 201, body = Message), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn send(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
    body: Json<SendMessage>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    let message = body.into_inner().validate()?;
    Ok(HttpResponse::Created().json(chat.send(&user.id, &room, &message).await?))
}

/// Edits a message's text.
#[utoipa::path(patch, path = "/api/v1/rooms/{roomId}/messages/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("roomId" = String, Path), ("messageId" = String, Path)), request_body = EditMessage,
    responses((status = 200, body = Message), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn edit(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<(String, String)>,
    body: Json<EditMessage>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path.0)?;
    let message = params::message("messageId", &path.1)?;
    let text = &body.text;
    Ok(HttpResponse::Ok().json(chat.edit(&user.id, &room, &message, text).await?))
}

/// Deletes a message.
#[utoipa::path(delete, path = "/api/v1/rooms/{roomId}/messages/{messageId}", tag = "messages", security(("bearer" = [])),
    params(("roomId" = String, Path), ("messageId" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path.0)?;
    let message = params::message("messageId", &path.1)?;
    chat.delete(&user.id, &room, &message).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Sets the room's unread count to 0 for the caller.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/read", tag = "messages", security(("bearer" = [])),
    params(("roomId" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn read(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    chat.mark_read(&user.id, &room).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's unread counts.
#[utoipa::path(get, path = "/api/v1/unread", tag = "messages", security(("bearer" = [])),
    responses((status = 200, body = UnreadSummary)))]
pub async fn unread(user: EndUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(chat.unread(&user.id).await?))
}
