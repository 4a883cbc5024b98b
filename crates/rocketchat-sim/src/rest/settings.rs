//! `settings` and the `permissions.*` endpoints.

use actix_web::http::Method;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::ApiError;
use crate::store::Store;

pub(super) fn settings(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
pub(super) fn permissions_list_all(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
pub(super) fn permissions_update(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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
