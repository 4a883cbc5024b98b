//! The `channels.*`, `groups.*`, `im.*`/`dm.*` endpoints and `rooms.get`/`rooms.info`.

use serde_json::{json, Value};

use super::params::{
    find_room, pagination, parse_date, readable_room, room_key, room_value, since_arg, target_users,
};
use super::{Call, Reply};
use crate::error::ApiError;
use crate::model::{iso, Dates, Message, RoomType};
use crate::store::{NewRoom, Store};
use crate::Version;

pub(super) fn room_delete(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    st.delete_room(call.me()?, &rid)?;
    Ok(Reply::Ok(json!({})))
}

pub(super) fn room_create(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
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

pub(super) fn room_invite(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    let me = call.me()?.to_string();
    for uid in target_users(st, call)? {
        st.add_member(&rid, &uid, Some(&me), true)?;
    }
    Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? })))
}

pub(super) fn room_kick(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
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

pub(super) fn room_leave(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    st.remove_member(&rid, call.me()?, None)?;
    match t {
        RoomType::Group => Ok(Reply::Ok(json!({}))),
        _ => Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? }))),
    }
}

pub(super) fn channel_join(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, RoomType::Channel)?.id.clone();
    let me = call.me()?.to_string();
    st.add_member(&rid, &me, None, false)?;
    Ok(Reply::Ok(json!({"channel": room_value(st, &rid)?})))
}

pub(super) fn room_info(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
    let rid = find_room(st, call, t)?.id.clone();
    Ok(Reply::Ok(json!({ room_key(t): room_value(st, &rid)? })))
}

pub(super) fn room_members(
    st: &mut Store,
    call: &Call,
    t: Option<RoomType>,
) -> Result<Reply, ApiError> {
    let room = readable_room(st, call, t)?;
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

pub(super) fn room_history(
    st: &mut Store,
    call: &Call,
    t: Option<RoomType>,
) -> Result<Reply, ApiError> {
    let room = readable_room(st, call, t)?;
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
        let sub = st.subscription(call.me()?, &room.id);
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

pub(super) fn room_messages(
    st: &mut Store,
    call: &Call,
    t: Option<RoomType>,
) -> Result<Reply, ApiError> {
    let room = readable_room(st, call, t)?;
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

pub(super) fn list_joined(st: &mut Store, call: &Call, t: RoomType) -> Result<Reply, ApiError> {
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

pub(super) fn im_create(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn rooms_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let (update, remove) = st.rooms_since(call.me()?, since_arg(call)?);
    Ok(Reply::Ok(json!({"update": update, "remove": remove})))
}

pub(super) fn rooms_info(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
