//! The `chat.*` endpoints.

use chrono::Utc;
use serde_json::{json, Map, Value};

use super::params::{check_keys, parse_date};
use super::{Call, Reply};
use crate::error::ApiError;
use crate::model::Dates;
use crate::store::Store;

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

pub(super) fn chat_send(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn chat_post(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn chat_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn chat_delete(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = call.required("roomId")?;
    let msg_id = call.required("msgId")?;
    let m = st.delete_message(call.me()?, &rid, &msg_id)?;
    Ok(Reply::Ok(json!({
        "_id": m.id,
        "ts": Utc::now().timestamp_millis().to_string(),
        "message": {"_id": m.id, "rid": m.rid, "u": m.u.to_json()},
    })))
}

pub(super) fn chat_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
