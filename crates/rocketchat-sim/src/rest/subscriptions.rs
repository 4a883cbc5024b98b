//! The `subscriptions.*` endpoints.

use serde_json::{json, Value};

use super::params::since_arg;
use super::{Call, Reply};
use crate::error::ApiError;
use crate::model::Dates;
use crate::store::Store;
use crate::Version;

pub(super) fn subs_get(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let (update, remove) = st.subs_since(call.me()?, since_arg(call)?, Dates::Iso);
    Ok(Reply::Ok(json!({"update": update, "remove": remove})))
}

pub(super) fn subs_get_one(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let rid = call.required("roomId")?;
    let sub = st
        .subscription(call.me()?, &rid)
        .map(|s| s.to_json(Dates::Iso));
    Ok(Reply::Ok(json!({"subscription": sub})))
}

pub(super) fn subs_read(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn subs_unread(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
