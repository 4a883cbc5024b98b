//! The `users.*` endpoints.

use serde_json::{json, Value};

use super::params::{check_keys, pagination};
use super::{Call, Reply};
use crate::error::ApiError;
use crate::ids::random_id;
use crate::model::Dates;
use crate::store::{NewUser, Store};
use crate::Version;

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

pub(super) fn users_create(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn users_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn users_delete(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?.to_string();
    if !st.has_permission(&me, "delete-user", None) {
        return Err(ApiError::Unauthorized);
    }
    let uid = user_from_params(st, call)?;
    st.delete_user(&me, &uid, call.flag("confirmRelinquish").unwrap_or(false))?;
    Ok(Reply::Ok(json!({})))
}

pub(super) fn users_info(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn users_set_active(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn users_list(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
