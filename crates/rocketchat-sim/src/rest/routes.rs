//! The route table: which endpoint body answers each method and name in the emulated version.

use actix_web::http::Method;

use super::auth::{login, logout, me, pat_generate, pat_list, pat_remove};
use super::chat::{chat_delete, chat_get, chat_post, chat_send, chat_update};
use super::rooms::{
    channel_join, im_create, list_joined, room_create, room_delete, room_history, room_info,
    room_invite, room_kick, room_leave, room_members, room_messages, rooms_get, rooms_info,
};
use super::settings::{permissions_list_all, permissions_update, settings};
use super::subscriptions::{subs_get, subs_get_one, subs_read, subs_unread};
use super::uploads::{rooms_media, rooms_media_confirm, rooms_upload};
use super::users::{
    users_create, users_delete, users_info, users_list, users_set_active, users_update,
};
use super::{Call, Reply};
use crate::error::ApiError;
use crate::model::RoomType;
use crate::store::Store;
use crate::Version;

type Handler = fn(&mut Store, &Call) -> Result<Reply, ApiError>;

/// One routed endpoint.
pub struct Route {
    /// Whether valid `X-User-Id`/`X-Auth-Token` headers are required.
    pub auth: bool,
    /// Whether the route is `twoFactorRequired` (reference §1.5).
    pub two_factor: bool,
    pub handler: Handler,
}

const fn authed(handler: Handler) -> Route {
    Route {
        auth: true,
        two_factor: false,
        handler,
    }
}

/// The endpoint for a method and name, as the emulated version has it.
pub fn route(method: &Method, name: &str, version: Version) -> Option<Route> {
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    Some(match name {
        "login" if post => Route {
            auth: false,
            two_factor: false,
            handler: login,
        },
        "logout" if post || get => authed(logout),
        "me" if get => authed(me),
        "users.create" if post => authed(users_create),
        "users.update" if post => Route {
            two_factor: true,
            ..authed(users_update)
        },
        "users.delete" if post => authed(users_delete),
        "users.info" if get => authed(users_info),
        "users.setActiveStatus" if post => authed(users_set_active),
        "users.list" if get => authed(users_list),
        "users.generatePersonalAccessToken" if post => Route {
            two_factor: true,
            ..authed(pat_generate)
        },
        "users.removePersonalAccessToken" if post => Route {
            two_factor: true,
            ..authed(pat_remove)
        },
        "users.getPersonalAccessTokens" if get => authed(pat_list),
        "channels.delete" if post => authed(|st, c| room_delete(st, c, RoomType::Channel)),
        "groups.delete" if post => authed(|st, c| room_delete(st, c, RoomType::Group)),
        "channels.create" if post => authed(|st, c| room_create(st, c, RoomType::Channel)),
        "groups.create" if post => authed(|st, c| room_create(st, c, RoomType::Group)),
        "channels.invite" if post => authed(|st, c| room_invite(st, c, RoomType::Channel)),
        "groups.invite" if post => authed(|st, c| room_invite(st, c, RoomType::Group)),
        "channels.kick" if post => authed(|st, c| room_kick(st, c, RoomType::Channel)),
        "groups.kick" if post => authed(|st, c| room_kick(st, c, RoomType::Group)),
        "channels.leave" if post => authed(|st, c| room_leave(st, c, RoomType::Channel)),
        "groups.leave" if post => authed(|st, c| room_leave(st, c, RoomType::Group)),
        "channels.join" if post => authed(channel_join),
        "channels.info" if get => authed(|st, c| room_info(st, c, RoomType::Channel)),
        "groups.info" if get => authed(|st, c| room_info(st, c, RoomType::Group)),
        "channels.members" if get => authed(|st, c| room_members(st, c, Some(RoomType::Channel))),
        "groups.members" if get => authed(|st, c| room_members(st, c, Some(RoomType::Group))),
        "im.members" | "dm.members" if get => authed(|st, c| room_members(st, c, None)),
        "channels.history" if get => authed(|st, c| room_history(st, c, Some(RoomType::Channel))),
        "groups.history" if get => authed(|st, c| room_history(st, c, Some(RoomType::Group))),
        "im.history" | "dm.history" if get => authed(|st, c| room_history(st, c, None)),
        "channels.messages" if get => authed(|st, c| room_messages(st, c, Some(RoomType::Channel))),
        "groups.messages" if get => authed(|st, c| room_messages(st, c, Some(RoomType::Group))),
        "im.messages" | "dm.messages" if get => authed(|st, c| room_messages(st, c, None)),
        "channels.list.joined" if get => authed(|st, c| list_joined(st, c, RoomType::Channel)),
        "groups.list" if get => authed(|st, c| list_joined(st, c, RoomType::Group)),
        "im.list" | "dm.list" if get => authed(|st, c| list_joined(st, c, RoomType::Direct)),
        "im.create" | "dm.create" if post => authed(im_create),
        "chat.sendMessage" if post => authed(chat_send),
        "chat.postMessage" if post => authed(chat_post),
        "chat.update" if post => authed(chat_update),
        "chat.delete" if post => authed(chat_delete),
        "chat.getMessage" if get => authed(chat_get),
        "rooms.get" if get => authed(rooms_get),
        "rooms.info" if get => authed(rooms_info),
        "rooms.media" if post => authed(rooms_media),
        "rooms.mediaConfirm" if post => authed(rooms_media_confirm),
        "rooms.upload" if post && version != Version::V8 => authed(rooms_upload),
        "subscriptions.get" if get => authed(subs_get),
        "subscriptions.getOne" if get => authed(subs_get_one),
        "subscriptions.read" if post => authed(subs_read),
        "subscriptions.unread" if post => authed(subs_unread),
        "permissions.listAll" if get => authed(permissions_list_all),
        "permissions.update" if post => authed(permissions_update),
        "settings" if get => authed(settings),
        "settings" if post => Route {
            two_factor: true,
            ..authed(settings)
        },
        _ => return None,
    })
}
