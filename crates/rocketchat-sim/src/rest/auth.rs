//! Login, logout, `me` and the personal access token endpoints.

use serde_json::{json, Value};

use super::{Call, Reply};
use crate::error::ApiError;
use crate::ids::password_digest;
use crate::model::Dates;
use crate::store::{LoginSelector, Store};
use crate::Version;

pub(super) fn login(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
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

pub(super) fn logout(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let me = call.me()?.to_string();
    if let Some(token) = &call.token {
        st.remove_token(&me, token);
    }
    Ok(Reply::Raw(
        json!({"status": "success", "data": {"message": "You've been logged out!"}}),
    ))
}

pub(super) fn me(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let user = st.user(call.me()?)?;
    Ok(Reply::Ok(Value::Object(
        user.me_json(&st.base_url, Dates::Iso),
    )))
}

pub(super) fn pat_generate(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let Some(name) = call.arg("tokenName").filter(|n| !n.is_empty()) else {
        return Err(ApiError::Failure(
            "The 'tokenName' param is required".into(),
        ));
    };
    let bypass = call.flag("bypassTwoFactor").unwrap_or(false);
    let token = st.generate_pat(call.me()?, &name, bypass)?;
    Ok(Reply::Ok(json!({"token": token})))
}

pub(super) fn pat_remove(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    let Some(name) = call.arg("tokenName").filter(|n| !n.is_empty()) else {
        return Err(ApiError::Failure(
            "The 'tokenName' param is required".into(),
        ));
    };
    st.remove_pat(call.me()?, &name)?;
    Ok(Reply::Ok(json!({})))
}

pub(super) fn pat_list(st: &mut Store, call: &Call) -> Result<Reply, ApiError> {
    Ok(Reply::Ok(json!({"tokens": st.list_pats(call.me()?)})))
}
