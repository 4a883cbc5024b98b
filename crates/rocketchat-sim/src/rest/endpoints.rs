//! REST v1 endpoint bodies. Each runs under the store lock and returns the payload keys;
//! shapes follow docs/rocketchat-wire.md (7.x superset unless the version says otherwise).

use actix_web::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{Call, Reply};
use crate::error::ApiError;
use crate::ids::{password_digest, random_id};
use crate::model::{date, iso, Dates, Message, Room, RoomType, Upload};
use crate::store::{room_not_found, LoginSelector, NewRoom, NewUser, Store};
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

// ------------------------------------------------------------------------------- helpers

fn parse_date(text: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| ApiError::Failure(format!("Invalid date for `{what}`")))
}

/// `count`/`offset` as getPaginationItems reads them; `None` count means "all".
fn pagination(st: &Store, call: &Call, default: Option<i64>) -> (usize, Option<usize>) {
    let default_count = default.unwrap_or_else(|| st.setting_i64("API_Default_Count", 50));
    let upper = st.setting_i64("API_Upper_Count_Limit", 100);
    let infinite = st.setting_bool("API_Allow_Infinite_Count");
    let offset = call
        .arg("offset")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        .max(0) as usize;
    let count = call
        .arg("count")
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(default_count);
    let count = if count == 0 && infinite {
        None
    } else if count <= 0 {
        Some(default_count.max(1) as usize)
    } else {
        Some(count.min(upper) as usize)
    };
    (offset, count)
}

/// Finds a channel or group by `roomId`/`roomName` as `findChannelByIdOrName` does.
fn find_room<'a>(st: &'a Store, call: &Call, t: RoomType) -> Result<&'a Room, ApiError> {
    let room = match (call.arg("roomId"), call.arg("roomName")) {
        (Some(id), _) if !id.is_empty() => st.room(&id),
        (_, Some(name)) if !name.is_empty() => st.room_by_name(name.trim_start_matches('#')),
        _ => {
            return Err(ApiError::meteor(
                "error-room-param-not-provided",
                "The parameter \"roomId\" or \"roomName\" is required",
            ))
        }
    };
    let room = room.filter(|r| r.t == t).ok_or_else(|| room_not_found(t))?;
    // A private group the caller is not in is reported as missing, not forbidden.
    if t == RoomType::Group && !room.members.contains(call.me()?) {
        return Err(room_not_found(t));
    }
    Ok(room)
}

/// The DM (or any room for `t = None`) named by `roomId` or `username`.
fn find_any_room<'a>(
    st: &'a Store,
    call: &Call,
    t: Option<RoomType>,
) -> Result<&'a Room, ApiError> {
    match t {
        Some(t) => find_room(st, call, t),
        None => {
            let me = call.me()?;
            let room = if let Some(id) = call.arg("roomId") {
                st.room(&id)
            } else if let Some(name) = call.arg("username") {
                let other = st.uid_by_username(&name).ok_or_else(|| ApiError::meteor("error-room-not-found", "The required \"roomId\" or \"username\" params provided does not match any direct message"))?;
                let mut ids = [me.to_string(), other.clone()];
                ids.sort();
                st.room(&ids.concat())
            } else {
                return Err(ApiError::meteor(
                    "error-room-param-not-provided",
                    "Body param \"roomId\" or \"username\" is required",
                ));
            };
            let room = room
                .filter(|r| r.t == RoomType::Direct)
                .ok_or_else(|| ApiError::meteor("error-room-not-found", "The required \"roomId\" or \"username\" params provided does not match any direct message"))?;
            if !room.members.contains(me) {
                return Err(ApiError::Forbidden);
            }
            Ok(room)
        }
    }
}

fn room_key(t: RoomType) -> &'static str {
    match t {
        RoomType::Channel => "channel",
        RoomType::Group => "group",
        RoomType::Direct => "room",
    }
}

fn room_value(st: &Store, rid: &str) -> Result<Value, ApiError> {
    st.room_json(rid, Dates::Iso).ok_or(ApiError::Internal)
}

fn target_users(st: &Store, call: &Call) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    if let Some(id) = call.arg("userId") {
        out.push(id);
    }
    for key in ["username", "user"] {
        if let Some(name) = call.arg(key) {
            out.push(
                st.uid_by_username(&name)
                    .cloned()
                    .ok_or_else(|| ApiError::meteor("error-invalid-user", "Invalid user"))?,
            );
        }
    }
    for (key, by_name) in [("userIds", false), ("usernames", true)] {
        if let Some(Value::Array(list)) = call.body.get(key) {
            for v in list.iter().filter_map(Value::as_str) {
                if by_name {
                    out.push(
                        st.uid_by_username(v).cloned().ok_or_else(|| {
                            ApiError::meteor("error-invalid-user", "Invalid user")
                        })?,
                    );
                } else {
                    out.push(v.to_string());
                }
            }
        }
    }
    if out.is_empty() {
        return Err(ApiError::meteor(
            "error-empty-invite-list",
            "Cannot invite if no valid users are provided",
        ));
    }
    for id in &out {
        if !st.users.contains_key(id) {
            return Err(ApiError::meteor("error-invalid-user", "Invalid user"));
        }
    }
    Ok(out)
}

fn check_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(_) => Err(ApiError::InvalidParams(
            "must NOT have additional properties".into(),
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------- auth

fn login(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let body = &call.body;
    let (uid, token) = if let Some(Value::String(resume)) = body.get("resume") {
        let uid = st.login_resume(resume)?.id.clone();
        (uid, resume.clone())
    } else {
        let who = match (body.get("user"), body.get("username"), body.get("email")) {
            (Some(Value::String(u)), _, _) => LoginSelector::Either(u.clone()),
            (Some(Value::Object(o)), _, _) => match (o.get("username"), o.get("email")) {
                (Some(Value::String(u)), _) => LoginSelector::Username(u.clone()),
                (_, Some(Value::String(e))) => LoginSelector::Email(e.clone()),
                _ => return Err(unrecognized_login()),
            },
            (_, Some(Value::String(u)), _) => LoginSelector::Username(u.clone()),
            (_, _, Some(Value::String(e))) => LoginSelector::Email(e.clone()),
            _ => return Err(unrecognized_login()),
        };
        let digest = match body.get("password") {
            Some(Value::String(p)) => password_digest(p),
            Some(Value::Object(o)) => match (o.get("hashed"), o.get("digest")) {
                (Some(Value::String(h)), _) | (_, Some(Value::String(h))) => h.to_lowercase(),
                _ => return Err(unrecognized_login()),
            },
            _ => return Err(unrecognized_login()),
        };
        st.login_password(&who, &digest)?
    };
    let user = st.user(&uid)?;
    let me = user.me_json(&st.base_url, Dates::Iso);
    let mut reply =
        json!({"status": "success", "data": {"userId": uid, "authToken": token, "me": me}});
    if call.version != Version::V6 {
        reply["success"] = json!(true);
    }
    Ok(Reply::Raw(reply))
}

fn unrecognized_login() -> ApiError {
    ApiError::LoginFailed {
        error: json!(400),
        message: "Unrecognized options for login request".into(),
    }
}

fn logout(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?.to_string();
    if let Some(token) = &call.token {
        st.remove_token(&me, token);
    }
    Ok(Reply::Raw(
        json!({"status": "success", "data": {"message": "You've been logged out!"}}),
    ))
}

fn me(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let user = st.user(call.me()?)?;
    Ok(Reply::Ok(Value::Object(
        user.me_json(&st.base_url, Dates::Iso),
    )))
}

// --------------------------------------------------------------------------------- users

const USER_CREATE_KEYS: &[&str] = &[
    "username",
    "email",
    "password",
    "name",
    "active",
    "roles",
    "joinDefaultChannels",
    "requirePasswordChange",
    "setRandomPassword",
    "sendWelcomeEmail",
    "verified",
    "customFields",
    "nickname",
    "bio",
    "statusText",
    "fields",
];

fn users_create(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    check_keys(&call.body, USER_CREATE_KEYS)?;
    for key in ["username", "email", "name"] {
        call.required(key)?;
    }
    let random = call.flag("setRandomPassword").unwrap_or(false);
    let password = if random {
        Some(random_id())
    } else {
        call.arg("password")
    };
    if password.is_none() {
        return Err(ApiError::InvalidParams(
            "must have required property 'password'".into(),
        ));
    }
    let roles = match call.body.get("roles") {
        Some(Value::Array(list)) => Some(
            list.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect(),
        ),
        _ => None,
    };
    let new = NewUser {
        username: call.required("username")?,
        email: call.required("email")?,
        password,
        name: call.required("name")?,
        active: call.flag("active").unwrap_or(true),
        roles,
        verified: call.flag("verified").unwrap_or(false),
        join_default_channels: call.flag("joinDefaultChannels").unwrap_or(true),
        require_password_change: call.flag("requirePasswordChange").unwrap_or(false),
        custom_fields: call.body.get("customFields").cloned(),
        nickname: call
            .body
            .get("nickname")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let uid = st.create_user(new, Some(call.me()?))?;
    Ok(Reply::Ok(
        json!({"user": st.user(&uid)?.admin_json(Dates::Iso)}),
    ))
}

fn users_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let uid = call.required("userId")?;
    let data = match call.body.get("data") {
        Some(Value::Object(d)) => d.clone(),
        _ => {
            return Err(ApiError::InvalidParams(
                "must have required property 'data'".into(),
            ))
        }
    };
    st.update_user(call.me()?, &uid, &data)?;
    Ok(Reply::Ok(
        json!({"user": st.user(&uid)?.admin_json(Dates::Iso)}),
    ))
}

fn user_from_params(st: &Store, call: &Call) -> Result<String, ApiError> {
    if let Some(id) = call.arg("userId") {
        return st
            .users
            .contains_key(&id)
            .then_some(id)
            .ok_or_else(invalid_user_param);
    }
    for key in ["username", "user"] {
        if let Some(name) = call.arg(key) {
            return st
                .uid_by_username(&name)
                .cloned()
                .ok_or_else(invalid_user_param);
        }
    }
    Err(ApiError::meteor(
        "error-user-param-not-provided",
        "The required \"userId\" or \"username\" param was not provided",
    ))
}

fn invalid_user_param() -> ApiError {
    ApiError::meteor(
        "error-invalid-user",
        "The required \"userId\" or \"username\" param provided does not match any users",
    )
}

fn users_delete(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?.to_string();
    if !st.has_permission(&me, "delete-user", None) {
        return Err(ApiError::Unauthorized);
    }
    let uid = user_from_params(st, call)?;
    st.delete_user(&me, &uid, call.flag("confirmRelinquish").unwrap_or(false))?;
    Ok(Reply::Ok(json!({})))
}

fn users_info(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?;
    let user = if let Some(id) = call.arg("userId") {
        st.users.get(&id)
    } else if let Some(name) = call.arg("username") {
        st.user_by_username(&name)
    } else if let (Some(email), Version::V8) = (call.arg("email"), call.version) {
        st.user_by_email(&email)
    } else {
        return Err(ApiError::InvalidParams(
            "must have required property 'userId'".into(),
        ));
    };
    let user = user.ok_or_else(|| ApiError::Failure("User not found.".into()))?;
    let full = user.id == me || st.has_permission(me, "view-full-other-user-info", None);
    let mut info = user.info_json(full, Dates::Iso);
    let wants_rooms = call
        .arg("fields")
        .and_then(|f| serde_json::from_str::<Value>(&f).ok())
        .is_some_and(|f| f.get("userRooms").is_some());
    if wants_rooms && (user.id == me || full) {
        let rooms: Vec<Value> = st
            .rooms_of(&user.id)
            .iter()
            .filter_map(|rid| st.subscription(&user.id, rid))
            .map(|s| json!({"_id": s.id, "rid": s.rid, "name": s.name, "t": s.t.letter(), "unread": s.unread, "roles": s.roles}))
            .collect();
        info["rooms"] = json!(rooms);
    }
    Ok(Reply::Ok(json!({"user": info})))
}

fn users_set_active(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let uid = call.required("userId")?;
    let active = match call.body.get("activeStatus") {
        Some(Value::Bool(b)) => *b,
        _ => {
            return Err(ApiError::InvalidParams(
                "must have required property 'activeStatus'".into(),
            ))
        }
    };
    st.set_active(call.me()?, &uid, active)?;
    Ok(Reply::Ok(json!({"user": {"_id": uid, "active": active}})))
}

fn users_list(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?;
    if !st.has_permission(me, "view-full-other-user-info", None) {
        return Err(ApiError::Forbidden);
    }
    let (offset, count) = pagination(st, call, None);
    let mut users: Vec<_> = st.users.values().collect();
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let total = users.len();
    let page: Vec<Value> = users
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .map(|u| u.info_json(true, Dates::Iso))
        .collect();
    Ok(Reply::Ok(
        json!({"users": page, "count": page.len(), "offset": offset, "total": total}),
    ))
}

fn pat_generate(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let Some(name) = call.arg("tokenName").filter(|n| !n.is_empty()) else {
        return Err(ApiError::Failure(
            "The 'tokenName' param is required".into(),
        ));
    };
    let bypass = call.flag("bypassTwoFactor").unwrap_or(false);
    let token = st.generate_pat(call.me()?, &name, bypass)?;
    Ok(Reply::Ok(json!({"token": token})))
}

fn pat_remove(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let Some(name) = call.arg("tokenName").filter(|n| !n.is_empty()) else {
        return Err(ApiError::Failure(
            "The 'tokenName' param is required".into(),
        ));
    };
    st.remove_pat(call.me()?, &name)?;
    Ok(Reply::Ok(json!({})))
}

fn pat_list(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Ok(json!({"tokens": st.list_pats(call.me()?)})))
}

// --------------------------------------------------------------------------------- rooms

fn room_delete(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    st.delete_room(call.me()?, &rid)?;
    Ok(Reply::Ok(json!({})))
}

fn room_create(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let Some(name) = call.arg("name").filter(|n| !n.is_empty()) else {
        let text = if t == RoomType::Channel {
            "Param \"name\" is required"
        } else {
            "Body param \"name\" is required"
        };
        return Err(ApiError::Failure(text.into()));
    };
    let members: Vec<String> = match call.body.get("members") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    };
    let read_only = call.flag("readOnly").unwrap_or(false);
    let exclude_self = call.flag("excludeSelf").unwrap_or(false);
    let topic = call
        .body
        .get("extraData")
        .and_then(|e| e.get("topic"))
        .and_then(Value::as_str)
        .map(String::from);
    let spec = NewRoom {
        t,
        name: &name,
        members: &members,
        read_only,
        exclude_self,
        topic,
    };
    let rid = st.create_room(call.me()?, spec)?;
    Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? })))
}

fn room_invite(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    let me = call.me()?.to_string();
    for uid in target_users(st, call)? {
        st.add_member(&rid, &uid, Some(&me), true)?;
    }
    Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? })))
}

fn room_kick(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    let me = call.me()?.to_string();
    for uid in target_users(st, call)? {
        st.remove_member(&rid, &uid, Some(&me))?;
    }
    match t {
        RoomType::Group => Ok(Reply::Ok(json!({}))),
        _ => Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? }))),
    }
}

fn room_leave(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    st.remove_member(&rid, call.me()?, None)?;
    match t {
        RoomType::Group => Ok(Reply::Ok(json!({}))),
        _ => Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? }))),
    }
}

fn channel_join(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, RoomType::Channel)?.id.clone();
    let me = call.me()?.to_string();
    st.add_member(&rid, &me, None, false)?;
    Ok(Reply::Ok(json!({"channel": room_value(st, &rid)?})))
}

fn room_info(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? })))
}

fn room_members(st: &mut Store, call: &Call, t: Option<RoomType>) -> Result<Reply, ApiError> {
    let room = find_any_room(st, call, t)?;
    let me = call.me()?;
    if !st.can_access(me, room) {
        return Err(ApiError::Forbidden);
    }
    let (offset, count) = pagination(st, call, None);
    let filter = call.arg("filter").unwrap_or_default().to_lowercase();
    let mut members: Vec<_> = room
        .members
        .iter()
        .filter_map(|id| st.users.get(id))
        .filter(|u| {
            filter.is_empty()
                || u.username.to_lowercase().contains(&filter)
                || u.name.to_lowercase().contains(&filter)
        })
        .collect();
    members.sort_by(|a, b| a.username.cmp(&b.username));
    let total = members.len();
    let page: Vec<Value> = members
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .map(|u| {
            let mut m = json!({"_id": u.id, "username": u.username, "name": u.name, "status": u.status, "utcOffset": u.utc_offset});
            if t.is_none() {
                if let Some(sub) = st.subscription(&u.id, &room.id) {
                    m["subscription"] = json!({"_id": sub.id, "ts": iso(sub.ts), "roles": sub.roles});
                }
            }
            m
        })
        .collect();
    Ok(Reply::Ok(
        json!({"members": page, "count": page.len(), "offset": offset, "total": total}),
    ))
}

fn room_history(st: &mut Store, call: &Call, t: Option<RoomType>) -> Result<Reply, ApiError> {
    let room = find_any_room(st, call, t)?;
    let me = call.me()?;
    if !st.can_access(me, room) {
        return Err(ApiError::Forbidden);
    }
    let latest = call
        .arg("latest")
        .map(|l| parse_date(&l, "latest"))
        .transpose()?;
    let oldest = call
        .arg("oldest")
        .map(|o| parse_date(&o, "oldest"))
        .transpose()?;
    let inclusive = call.flag("inclusive").unwrap_or(false);
    // 6.x history paths default to 20 messages; later ones use API_Default_Count.
    let default = if call.version == Version::V6 {
        Some(20)
    } else {
        None
    };
    let (offset, count) = pagination(st, call, default);
    let msgs: Vec<Value> = st
        .history(&room.id, latest, oldest, inclusive, offset, count)
        .into_iter()
        .map(|m| m.to_json(Dates::Iso))
        .collect();
    let mut reply = json!({"messages": msgs});
    if call.flag("unreads").unwrap_or(false) {
        let sub = st.subscription(me, &room.id);
        let ls = sub.and_then(|s| s.ls);
        let unread: Vec<&Message> = match ls {
            Some(ls) => st.history(&room.id, None, Some(ls), false, 0, None),
            None => Vec::new(),
        };
        reply["firstUnread"] = unread
            .last()
            .map(|m| m.to_json(Dates::Iso))
            .unwrap_or(Value::Null);
        reply["unreadNotLoaded"] = json!(unread.len().saturating_sub(count.unwrap_or(usize::MAX)));
    }
    Ok(Reply::Ok(reply))
}

fn room_messages(st: &mut Store, call: &Call, t: Option<RoomType>) -> Result<Reply, ApiError> {
    let room = find_any_room(st, call, t)?;
    let me = call.me()?;
    if !st.can_access(me, room) {
        return Err(ApiError::Forbidden);
    }
    let (offset, count) = pagination(st, call, None);
    let ascending = call
        .arg("sort")
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|s| s.get("ts").and_then(Value::as_i64))
        == Some(1);
    let total = st.message_total(&room.id);
    let mut all = st.history(&room.id, None, None, false, 0, None);
    if ascending {
        all.reverse();
    }
    let page: Vec<Value> = all
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .map(|m| m.to_json(Dates::Iso))
        .collect();
    Ok(Reply::Ok(
        json!({"messages": page, "count": page.len(), "offset": offset, "total": total}),
    ))
}

fn list_joined(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let me = call.me()?;
    let (offset, count) = pagination(st, call, None);
    let rooms: Vec<Value> = st
        .rooms_of(me)
        .iter()
        .filter_map(|rid| st.room(rid))
        .filter(|r| r.t == t)
        .filter_map(|r| st.room_json(&r.id, Dates::Iso))
        .collect();
    let total = rooms.len();
    let page: Vec<Value> = rooms
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .collect();
    let key = match t {
        RoomType::Channel => "channels",
        RoomType::Group => "groups",
        RoomType::Direct => "ims",
    };
    Ok(Reply::Ok(
        json!({ key: page, "count": page.len(), "offset": offset, "total": total }),
    ))
}

fn im_create(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let names: Vec<String> = match (call.arg("usernames"), call.arg("username")) {
        (Some(list), _) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(one)) => vec![one],
        (None, None) => {
            return Err(ApiError::InvalidParams(
                "must have required property 'username'".into(),
            ))
        }
    };
    let exclude_self = call.flag("excludeSelf").unwrap_or(false);
    let (rid, inserted) = st.create_dm(call.me()?, &names, exclude_self)?;
    let room = st.room(&rid).ok_or(ApiError::Internal)?;
    let value = if call.version == Version::V6 {
        let mut v = room_value(st, &rid)?;
        v["rid"] = json!(rid);
        v
    } else {
        json!({"_id": rid, "rid": rid, "t": "d", "usernames": room.usernames, "inserted": inserted})
    };
    Ok(Reply::Ok(json!({"room": value})))
}

// ---------------------------------------------------------------------------------- chat

const MESSAGE_EXTRA_KEYS: &[&str] = &[
    "alias",
    "emoji",
    "avatar",
    "attachments",
    "customFields",
    "tshow",
    "groupable",
    "parseUrls",
    "blocks",
];

fn chat_send(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    check_keys(&call.body, &["message", "previewUrls"])?;
    let Some(Value::Object(msg)) = call.body.get("message") else {
        return Err(ApiError::InvalidParams(
            "must have required property 'message'".into(),
        ));
    };
    let Some(Value::String(rid)) = msg.get("rid") else {
        return Err(ApiError::InvalidParams(
            "must have required property 'rid'".into(),
        ));
    };
    if msg.contains_key("t") {
        return Err(ApiError::meteor(
            "error-invalid-params",
            "Invalid parameters",
        ));
    }
    if let Some(ts) = msg.get("ts") {
        let at = match ts {
            Value::String(s) => parse_date(s, "ts").ok(),
            Value::Object(o) => o
                .get("$date")
                .and_then(Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis),
            Value::Number(n) => n.as_i64().and_then(chrono::DateTime::from_timestamp_millis),
            _ => None,
        };
        if let Some(at) = at {
            if (Utc::now() - at).num_seconds().abs() > 60 {
                return Err(ApiError::meteor(
                    "error-message-ts-out-of-sync",
                    "Message timestamp is out of sync",
                ));
            }
        }
    }
    let text = msg
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let client_id = msg.get("_id").and_then(Value::as_str).map(String::from);
    let tmid = msg.get("tmid").and_then(Value::as_str).map(String::from);
    let extra: Map<String, Value> = msg
        .iter()
        .filter(|(k, _)| MESSAGE_EXTRA_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = st.send_message(call.me()?, rid, &text, client_id, tmid, extra)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&id].to_json(Dates::Iso)}),
    ))
}

fn chat_post(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?.to_string();
    let (target, rid) = if let Some(rid) = call.arg("roomId") {
        (rid.clone(), rid)
    } else {
        let channel = match call.body.get("channel") {
            Some(Value::String(c)) => c.clone(),
            Some(Value::Array(list)) => list
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            _ => return Err(ApiError::meteor("error-invalid-channel", "Invalid channel")),
        };
        let rid = if let Some(name) = channel.strip_prefix('#') {
            st.room_by_name(name)
                .map(|r| r.id.clone())
                .ok_or_else(|| ApiError::meteor("error-invalid-channel", "Invalid channel"))?
        } else if let Some(username) = channel.strip_prefix('@') {
            st.create_dm(&me, &[username.to_string()], false)?.0
        } else {
            st.room(&channel)
                .map(|r| r.id.clone())
                .or_else(|| st.room_by_name(&channel).map(|r| r.id.clone()))
                .ok_or_else(|| ApiError::meteor("error-invalid-channel", "Invalid channel"))?
        };
        (channel, rid)
    };
    let text = call
        .arg("text")
        .or_else(|| call.arg("msg"))
        .unwrap_or_default();
    let extra: Map<String, Value> = call
        .body
        .iter()
        .filter(|(k, _)| MESSAGE_EXTRA_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let tmid = call.arg("tmid");
    let id = st.send_message(&me, &rid, &text, None, tmid, extra)?;
    Ok(Reply::Ok(json!({
        "ts": Utc::now().timestamp_millis(),
        "channel": target,
        "message": st.messages[&id].to_json(Dates::Iso),
    })))
}

fn chat_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = call.required("roomId")?;
    let msg_id = call.required("msgId")?;
    let text = call
        .arg("text")
        .ok_or_else(|| ApiError::InvalidParams("must have required property 'text'".into()))?;
    st.update_message(call.me()?, &rid, &msg_id, &text)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&msg_id].to_json(Dates::Iso)}),
    ))
}

fn chat_delete(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = call.required("roomId")?;
    let msg_id = call.required("msgId")?;
    let m = st.delete_message(call.me()?, &rid, &msg_id)?;
    Ok(Reply::Ok(json!({
        "_id": m.id,
        "ts": Utc::now().timestamp_millis().to_string(),
        "message": {"_id": m.id, "rid": m.rid, "u": m.u.to_json()},
    })))
}

fn chat_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let msg_id = call.required("msgId")?;
    let m = st
        .messages
        .get(&msg_id)
        .ok_or_else(|| ApiError::Failure("Message not found".into()))?;
    let room = st.room(&m.rid).ok_or(ApiError::Internal)?;
    if !st.can_access(call.me()?, room) {
        return Err(ApiError::meteor("error-not-allowed", "Not allowed"));
    }
    Ok(Reply::Ok(json!({"message": m.to_json(Dates::Iso)})))
}

// ----------------------------------------------------------------------- sync and files

fn since_arg(call: &Call) -> Result<Option<DateTime<Utc>>, ApiError> {
    call.arg("updatedSince")
        .map(|s| parse_date(&s, "updatedSince"))
        .transpose()
}

fn rooms_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let (update, remove) = st.rooms_since(call.me()?, since_arg(call)?);
    Ok(Reply::Ok(json!({"update": update, "remove": remove})))
}

fn rooms_info(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let room = match (call.arg("roomId"), call.arg("roomName")) {
        (Some(id), _) => st.room(&id),
        (_, Some(name)) => st.room_by_name(&name),
        _ => {
            return Err(ApiError::InvalidParams(
                "must have required property 'roomId'".into(),
            ))
        }
    };
    let room = room.ok_or_else(|| ApiError::Failure("not-allowed".into()))?;
    if !st.can_access(call.me()?, room) {
        return Err(ApiError::Failure("not-allowed".into()));
    }
    let rid = room.id.clone();
    Ok(Reply::Ok(json!({"room": room_value(st, &rid)?})))
}

fn upload_room(st: &Store, call: &Call) -> Result<String, ApiError> {
    let rid = call.params.first().cloned().ok_or(ApiError::NotFound)?;
    let room = st.room(&rid).ok_or(ApiError::Forbidden)?;
    if !room.members.contains(call.me()?) {
        return Err(ApiError::Forbidden);
    }
    Ok(rid)
}

fn store_upload(st: &mut Store, call: &Call, rid: &str) -> Result<String, ApiError> {
    let file = call
        .file
        .as_ref()
        .ok_or_else(|| ApiError::meteor("invalid-field", ""))?;
    let id = random_id();
    st.uploads.insert(
        id.clone(),
        Upload {
            id: id.clone(),
            name: file.name.clone(),
            content_type: file.content_type.clone(),
            data: file.data.clone(),
            rid: rid.into(),
            uid: call.me()?.into(),
            uploaded_at: Utc::now(),
            confirmed: false,
        },
    );
    Ok(id)
}

fn rooms_media(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    let id = store_upload(st, call, &rid)?;
    let url = st.uploads[&id].path();
    Ok(Reply::Ok(json!({"file": {"_id": id, "url": url}})))
}

fn confirm_upload(
    st: &mut Store,
    call: &Call,
    rid: &str,
    file_id: &str,
    fields: &Map<String, Value>,
) -> Result<String, ApiError> {
    let me = call.me()?.to_string();
    let up = st
        .uploads
        .get_mut(file_id)
        .filter(|u| u.rid == rid && u.uid == me)
        .ok_or_else(|| ApiError::meteor("invalid-file", "Invalid file"))?;
    up.confirmed = true;
    let up = up.clone();
    let description = fields
        .get("description")
        .and_then(Value::as_str)
        .map(String::from);
    let text = fields
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let tmid = fields
        .get("tmid")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from);
    let path = up.path();
    let file = json!({"_id": up.id, "name": up.name, "type": up.content_type, "size": up.data.len(), "format": up.name.rsplit_once('.').map(|(_, e)| e.to_uppercase()).unwrap_or_default()});
    let mut attachment = json!({
        "ts": date(up.uploaded_at, Dates::Iso), "title": up.name, "title_link": path,
        "title_link_download": true, "type": "file",
    });
    if let Some(d) = &description {
        attachment["description"] = json!(d);
    }
    if up.content_type.starts_with("image/") {
        attachment["image_url"] = json!(path);
        attachment["image_type"] = json!(up.content_type);
        attachment["image_size"] = json!(up.data.len());
    }
    let mut extra = Map::new();
    extra.insert("file".into(), file.clone());
    extra.insert("files".into(), json!([file]));
    extra.insert("attachments".into(), json!([attachment]));
    st.send_message(&me, rid, &text, None, tmid, extra)
}

fn rooms_media_confirm(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    let file_id = call.params.get(1).cloned().ok_or(ApiError::NotFound)?;
    let id = confirm_upload(st, call, &rid, &file_id, &call.body)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&id].to_json(Dates::Iso)}),
    ))
}

fn rooms_upload(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = upload_room(st, call)?;
    if call.file.is_none() {
        return Err(ApiError::Failure("File required".into()));
    }
    let file_id = store_upload(st, call, &rid)?;
    let id = confirm_upload(st, call, &rid, &file_id, &call.body)?;
    Ok(Reply::Ok(
        json!({"message": st.messages[&id].to_json(Dates::Iso)}),
    ))
}

fn subs_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let (update, remove) = st.subs_since(call.me()?, since_arg(call)?, Dates::Iso);
    Ok(Reply::Ok(json!({"update": update, "remove": remove})))
}

fn subs_get_one(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = call.required("roomId")?;
    let sub = st
        .subscription(call.me()?, &rid)
        .map(|s| s.to_json(Dates::Iso));
    Ok(Reply::Ok(json!({"subscription": sub})))
}

fn subs_read(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = match (call.arg("rid"), call.arg("roomId"), call.version) {
        (Some(rid), _, _) => rid,
        (None, Some(rid), Version::V8) => rid,
        _ => {
            return Err(ApiError::InvalidParams(
                "must have required property 'rid'".into(),
            ))
        }
    };
    st.mark_read(call.me()?, &rid)?;
    Ok(Reply::Ok(json!({})))
}

fn subs_unread(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let first = call
        .body
        .get("firstUnreadMessage")
        .and_then(|m| m.get("_id"))
        .and_then(Value::as_str)
        .map(String::from);
    let rid = call.arg("roomId");
    st.mark_unread(call.me()?, rid.as_deref(), first.as_deref())?;
    Ok(Reply::Ok(json!({})))
}

fn settings(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let id = call.params.first().cloned().ok_or(ApiError::NotFound)?;
    let me = call.me()?;
    // permissionsRequired on the route: a 403, not `unauthorized()`.
    let needed = if call.method == Method::GET {
        "view-privileged-setting"
    } else {
        "edit-privileged-setting"
    };
    if !st.has_permission(me, needed, None) {
        return Err(ApiError::Forbidden);
    }
    if call.method == Method::GET {
        let value = st
            .settings
            .get(&id)
            .cloned()
            .ok_or(ApiError::Failure(String::new()))?;
        return Ok(Reply::Ok(json!({"_id": id, "value": value})));
    }
    let Some(value) = call.body.get("value").cloned() else {
        return Err(ApiError::InvalidParams(
            "must have required property 'value'".into(),
        ));
    };
    if !st.settings.contains_key(&id) {
        return Err(ApiError::Failure(String::new()));
    }
    st.settings.insert(id, value);
    Ok(Reply::Ok(json!({})))
}

/// `GET permissions.listAll`: every logged-in user may read the permission table.
fn permissions_list_all(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let since = match call.arg("updatedSince").filter(|s| !s.is_empty()) {
        Some(text) => Some(
            DateTime::parse_from_rfc3339(&text)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::meteor(
                        "error-roomId-param-invalid",
                        "The \"updatedSince\" query parameter must be a valid date.",
                    )
                })?,
        ),
        None => None,
    };
    Ok(Reply::Ok(
        json!({"update": st.permissions_json(since), "remove": []}),
    ))
}

/// `POST permissions.update` (`access-permissions`): replaces the roles of the listed permissions.
fn permissions_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let invalid = |text: &str| ApiError::InvalidParams(text.into());
    let list = match call.body.get("permissions") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(invalid("must be array")),
        None => return Err(invalid("must have required property 'permissions'")),
    };
    if call.body.len() > 1 {
        return Err(invalid("must NOT have additional properties"));
    }
    let mut changes = Vec::with_capacity(list.len());
    for item in list {
        let Some(item) = item.as_object() else {
            return Err(invalid("must be object"));
        };
        let id = item
            .get("_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("must have required property '_id'"))?;
        let roles = item
            .get("roles")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("must have required property 'roles'"))?;
        let roles: Vec<String> = roles
            .iter()
            .map(|r| {
                r.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid("must be string"))
            })
            .collect::<Result<_, _>>()?;
        let unique: std::collections::BTreeSet<&String> = roles.iter().collect();
        if unique.len() != roles.len() || item.len() > 2 {
            return Err(invalid(
                "must NOT have duplicate items or additional properties",
            ));
        }
        changes.push((id.to_string(), roles));
    }
    // permissionsRequired on the route: a 403, checked after the body schema.
    if !st.has_permission(call.me()?, "access-permissions", None) {
        return Err(ApiError::Forbidden);
    }
    st.set_permission_roles(&changes)?;
    Ok(Reply::Ok(json!({"permissions": st.permissions_json(None)})))
}
