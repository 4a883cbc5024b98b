//! `/api/v1/rooms…` and `/api/v1/unread`: rooms, membership, messages and read state, as the caller.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use imgate_domain::model::{
    HistoryPage, HistoryQuery, Message, NewMessage, NewRoom, Room, RoomKind, UnreadSummary,
    MAX_TEXT_CHARS,
};
use imgate_domain::services::ChatService;
use imgate_domain::UserId;
use serde::Deserialize;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;

use crate::auth::EndUser;
use crate::error::{ApiError, ErrorBody};
use crate::json::Json;
use crate::params::{self, Id};

/// The longest room name, in characters as sent.
pub const MAX_ROOM_NAME_CHARS: usize = 100;

/// The longest `clientMessageId`, in characters.
pub const MAX_CLIENT_MESSAGE_ID_CHARS: usize = 128;

/// The most messages one page of history holds, and how many when the caller does not say.
pub const MAX_HISTORY_LIMIT: u16 = 100;
const DEFAULT_HISTORY_LIMIT: u16 = 50;

/// The body of `POST /api/v1/rooms`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// `channel` (public) or `group` (private).
    #[schema(schema_with = creatable_kind)]
    pub kind: RoomKind,
    /// Room name.
    #[schema(schema_with = room_name)]
    pub name: String,
    /// Host ids of the other members.
    #[serde(default)]
    #[schema(schema_with = params::optional_members_schema)]
    pub members: Vec<String>,
}

/// A list of members.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    /// Host user ids.
    #[schema(schema_with = params::members_schema)]
    pub members: Vec<String>,
}

/// The body of `POST /api/v1/rooms/{roomId}/messages`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendMessage {
    /// The text.
    #[schema(schema_with = message_text)]
    pub text: String,
    /// The thread's first message, to reply in a thread.
    #[serde(default)]
    #[schema(schema_with = thread_id)]
    pub thread_id: Option<String>,
    /// A client-chosen key that makes a retry idempotent.
    #[serde(default)]
    #[schema(schema_with = client_message_id)]
    pub client_message_id: Option<String>,
}

/// The body of `PATCH /api/v1/rooms/{roomId}/messages/{messageId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The new text.
    #[schema(schema_with = message_text)]
    pub text: String,
}

/// The query of `GET /api/v1/rooms/{roomId}/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only messages older than this (RFC 3339).
    #[param(schema_with = history_before)]
    pub before: Option<String>,
    /// At most this many.
    #[param(schema_with = history_limit)]
    pub limit: Option<String>,
}

/// `kind` of a new room: direct rooms are opened elsewhere, so not `direct`.
fn creatable_kind() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some([RoomKind::Channel, RoomKind::Group].map(|kind| {
            serde_json::to_value(kind).expect("a room kind serializes to a string")
        })))
        .description(Some(
            "`channel` (public) or `group` (private); direct rooms are opened with `POST /api/v1/rooms/direct`.",
        ))
}

/// The rule of [`CreateRoom::validate`] for `name`.
fn room_name() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "1 to {MAX_ROOM_NAME_CHARS} characters as sent, no control characters; white space \
             around it is dropped. The provider may refuse more (Rocket.Chat by default accepts \
             letters, digits, `-`, `_` and `.` only): 400 naming `name`."
        )))
        .min_length(Some(1))
        .max_length(Some(MAX_ROOM_NAME_CHARS))
        .pattern(Some(params::trimmed_name_pattern()))
}

/// Message text as the chat service checks it (`imgate_domain::model::check_text`).
fn message_text() -> ObjectBuilder {
    params::text_schema(
        MAX_TEXT_CHARS,
        &format!("1 to {MAX_TEXT_CHARS} characters, not only white space."),
    )
}

fn thread_id() -> RefOr<Schema> {
    params::nullable(params::id_ref())
}

fn client_message_id() -> RefOr<Schema> {
    params::nullable(params::text_schema(
        MAX_CLIENT_MESSAGE_ID_CHARS,
        &format!("1 to {MAX_CLIENT_MESSAGE_ID_CHARS} characters, not only white space."),
    ))
}

fn history_before() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some("Only messages older than this (RFC 3339)."))
}

fn history_limit() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_HISTORY_LIMIT))
        .default(Some(DEFAULT_HISTORY_LIMIT.into()))
        .description(Some(format!(
            "At most this many, 1 to {MAX_HISTORY_LIMIT} (default {DEFAULT_HISTORY_LIMIT})."
        )))
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
        // The limit counts the name as sent, as the document's `maxLength` does.
        let name = self.name.trim().to_owned();
        if name.is_empty() || self.name.chars().count() > MAX_ROOM_NAME_CHARS {
            return Err(ApiError::Invalid(format!(
                "name: must be 1 to {MAX_ROOM_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::Invalid(
                "name: must not contain control characters".into(),
            ));
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
                .map(|id| params::text("clientMessageId", id, MAX_CLIENT_MESSAGE_ID_CHARS))
                .transpose()?,
        })
    }
}

impl HistoryParams {
    /// The page asked for, or which parameter is wrong.
    pub(crate) fn validate(&self) -> Result<HistoryQuery, ApiError> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_HISTORY_LIMIT,
            Some(raw) => raw
                .parse::<u16>()
                .ok()
                .filter(|n| (1..=MAX_HISTORY_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::Invalid(format!(
                        "limit: must be a whole number between 1 and {MAX_HISTORY_LIMIT}"
                    ))
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
#[utoipa::path(get, path = "/api/v1/rooms", operation_id = "listRooms", tag = "rooms", security(("bearer" = [])),
    responses((status = 200, description = "The caller's rooms, newest activity first", body = Vec<Room>)))]
pub async fn list(user: EndUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(chat.rooms(&user.id).await?))
}

/// Creates a channel or private group.
#[utoipa::path(post, path = "/api/v1/rooms", operation_id = "createRoom", tag = "rooms", security(("bearer" = [])), request_body = CreateRoom,
    responses((status = 201, description = "Created", body = Room),
        (status = 409, description = "A room with that name exists already", body = ErrorBody)))]
pub async fn create(
    user: EndUser,
    chat: web::Data<ChatService>,
    body: Json<CreateRoom>,
) -> Result<HttpResponse, ApiError> {
    let new_room = body.into_inner().validate(&user.id)?;
    Ok(created(chat.create_room(&user.id, &new_room).await?))
}

/// Opens the direct room of the caller and the members, or returns the existing one.
#[utoipa::path(post, path = "/api/v1/rooms/direct", operation_id = "openDirectRoom", tag = "rooms", security(("bearer" = [])), request_body = Members,
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
#[utoipa::path(get, path = "/api/v1/rooms/{roomId}", operation_id = "getRoom", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = Id, Path)), responses((status = 200, body = Room)))]
pub async fn get(
    user: EndUser,
    chat: web::Data<ChatService>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let room = params::room("roomId", &path)?;
    Ok(HttpResponse::Ok().json(chat.room(&user.id, &room).await?))
}

/// Adds members.
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/members", operation_id = "addMembers", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = Id, Path)), request_body = Members, responses((status = 204, description = "Added")))]
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
#[utoipa::path(delete, path = "/api/v1/rooms/{roomId}/members/{userId}", operation_id = "removeMember", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = Id, Path), ("userId" = Id, Path)), responses((status = 204, description = "Removed")))]
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
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/leave", operation_id = "leaveRoom", tag = "rooms", security(("bearer" = [])),
    params(("roomId" = Id, Path)), responses((status = 204, description = "Left")))]
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
#[utoipa::path(get, path = "/api/v1/rooms/{roomId}/messages", operation_id = "listMessages", tag = "messages", security(("bearer" = [])),
    params(("roomId" = Id, Path), HistoryParams), responses((status = 200, body = HistoryPage)))]
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
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/messages", operation_id = "sendMessage", tag = "messages", security(("bearer" = [])),
    params(("roomId" = Id, Path)), request_body = SendMessage, responses((status = 201, description = "Sent, or sent before with this `clientMessageId`", body = Message)))]
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
#[utoipa::path(patch, path = "/api/v1/rooms/{roomId}/messages/{messageId}", operation_id = "editMessage", tag = "messages", security(("bearer" = [])),
    params(("roomId" = Id, Path), ("messageId" = Id, Path)), request_body = EditMessage,
    responses((status = 200, description = "Edited", body = Message)))]
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
#[utoipa::path(delete, path = "/api/v1/rooms/{roomId}/messages/{messageId}", operation_id = "deleteMessage", tag = "messages", security(("bearer" = [])),
    params(("roomId" = Id, Path), ("messageId" = Id, Path)), responses((status = 204, description = "Deleted")))]
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
#[utoipa::path(post, path = "/api/v1/rooms/{roomId}/read", operation_id = "markRead", tag = "messages", security(("bearer" = [])),
    params(("roomId" = Id, Path)), responses((status = 204, description = "Unread count set to 0")))]
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
#[utoipa::path(get, path = "/api/v1/unread", operation_id = "getUnread", tag = "messages", security(("bearer" = [])),
    responses((status = 200, body = UnreadSummary)))]
pub async fn unread(user: EndUser, chat: web::Data<ChatService>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(chat.unread(&user.id).await?))
}
