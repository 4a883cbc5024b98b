//! Parsing path and body values into domain ids, with messages that name the field.

use imgate_domain::ids::IdError;
use imgate_domain::{MessageId, RoomId, UserId};

use crate::error::ApiError;

/// The most members one request may name.
pub const MAX_MEMBERS: usize = 100;

fn parse<T>(
    field: &str,
    raw: &str,
    parse: impl Fn(&str) -> Result<T, IdError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|err| ApiError::Invalid(format!("{field}: {err}")))
}

/// A host user id from `field`.
pub fn user(field: &str, raw: &str) -> Result<UserId, ApiError> {
    parse(field, raw, |s| UserId::parse(s))
}

/// A room id from `field`.
pub fn room(field: &str, raw: &str) -> Result<RoomId, ApiError> {
    parse(field, raw, |s| RoomId::parse(s))
}

/// A message id from `field`.
pub fn message(field: &str, raw: &str) -> Result<MessageId, ApiError> {
    parse(field, raw, |s| MessageId::parse(s))
}

/// A list of member ids: at least one (unless `allow_empty`), at most [`MAX_MEMBERS`],
/// duplicates and the caller dropped.
pub fn members(
    raw: &[String],
    caller: &UserId,
    allow_empty: bool,
) -> Result<Vec<UserId>, ApiError> {
    if raw.len() > MAX_MEMBERS {
        return Err(ApiError::Invalid(format!(
            "members: at most {MAX_MEMBERS} per request"
        )));
    }
    let mut out: Vec<UserId> = Vec::with_capacity(raw.len());
    for (i, id) in raw.iter().enumerate() {
        let id = user(&format!("members[{i}]"), id)?;
        if &id != caller && !out.contains(&id) {
            out.push(id);
        }
    }
    if out.is_empty() && !allow_empty {
        return Err(ApiError::Invalid(
            "members: name at least one other user".into(),
        ));
    }
    Ok(out)
}

/// Message text: not blank, at most `max` characters.
pub fn text(field: &str, raw: &str, max: usize) -> Result<String, ApiError> {
    if raw.trim().is_empty() {
        return Err(ApiError::Invalid(format!("{field}: must not be empty")));
    }
    if raw.chars().count() > max {
        return Err(ApiError::Invalid(format!(
            "{field}: must be at most {max} characters"
        )));
    }
    Ok(raw.to_owned())
}
