//! Argument helpers shared by the endpoints: dates, pagination, room and user lookups.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::Call;
use crate::error::ApiError;
use crate::model::{Dates, Room, RoomType};
use crate::store::{room_not_found, Store};

pub(super) fn parse_date(text: &str, what: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| ApiError::Failure(format!("Invalid date for `{what}`")))
}

/// `count`/`offset` as getPaginationItems reads them; `None` count means "all".
pub(super) fn pagination(st: &Store, call: &Call, default: Option<i64>) -> (usize, Option<usize>) {
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
pub(super) fn find_room<'a>(st: &'a Store, call: &Call, t: RoomType) -> Result<&'a Room, ApiError> {
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
/// The room a call names, if the caller may read it: a member, or a channel they may preview.
pub(super) fn readable_room<'a>(
    st: &'a Store,
    call: &Call,
    t: Option<RoomType>,
) -> Result<&'a Room, ApiError> {
    let room = find_any_room(st, call, t)?;
    if !st.can_access(call.me()?, room) {
        return Err(ApiError::Forbidden);
    }
    Ok(room)
}

pub(super) fn find_any_room<'a>(
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

pub(super) fn room_key(t: RoomType) -> &'static str {
    match t {
        RoomType::Channel => "channel",
        RoomType::Group => "group",
        RoomType::Direct => "room",
    }
}

pub(super) fn room_value(st: &Store, rid: &str) -> Result<Value, ApiError> {
    st.room_json(rid, Dates::Iso).ok_or(ApiError::Internal)
}

pub(super) fn target_users(st: &Store, call: &Call) -> Result<Vec<String>, ApiError> {
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

pub(super) fn check_keys(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(_) => Err(ApiError::InvalidParams(
            "must NOT have additional properties".into(),
        )),
        None => Ok(()),
    }
}

pub(super) fn since_arg(call: &Call) -> Result<Option<DateTime<Utc>>, ApiError> {
    call.arg("updatedSince")
        .map(|s| parse_date(&s, "updatedSince"))
        .transpose()
}
