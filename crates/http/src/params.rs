//! Parsing path and body values into domain ids, with messages that name the field, and the
//! JSON Schemas of those values for the OpenAPI document, built from the same rules.

use std::borrow::Cow;

use imgate_domain::ids::{id_pattern, IdError, CONTROL_CHARS, MAX_ID_LEN, WHITE_SPACE_CHARS};
use imgate_domain::{MessageId, RoomId, UserId};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::error::ApiError;

/// The most members one request may name.
pub const MAX_MEMBERS: usize = 100;

/// The schema of every id the API takes (users, rooms, messages, files), in paths and bodies:
/// what [`UserId::parse`] and its siblings accept.
pub struct Id;

impl utoipa::PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!(
                "An id: 1 to {MAX_ID_LEN} characters, not only white space, no control characters."
            )))
            .min_length(Some(1))
            .max_length(Some(MAX_ID_LEN))
            .pattern(Some(id_pattern()))
            .into()
    }
}

impl utoipa::ToSchema for Id {
    fn name() -> Cow<'static, str> {
        "Id".into()
    }
}

/// A reference to [`Id`].
pub(crate) fn id_ref() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Id"))
}

/// `schema` or `null`, for an optional field.
pub(crate) fn nullable(schema: impl Into<RefOr<Schema>>) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(schema)
        .into()
}

/// A list of 1 to [`MAX_MEMBERS`] user ids, as [`members`] takes it when it must not be empty.
pub(crate) fn members_schema() -> RefOr<Schema> {
    member_list(1).into()
}

/// A list of up to [`MAX_MEMBERS`] user ids, as [`members`] takes it when it may be empty.
pub(crate) fn optional_members_schema() -> RefOr<Schema> {
    member_list(0).into()
}

fn member_list(min: usize) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(id_ref())
        .min_items((min > 0).then_some(min))
        .max_items(Some(MAX_MEMBERS))
        .description(Some(format!(
            "Host user ids, at most {MAX_MEMBERS}; the caller and repeated ids are dropped."
        )))
}

/// A pattern for text that [`text`] accepts: at least one character that is not white space.
pub(crate) fn not_blank_pattern() -> String {
    format!("[^{WHITE_SPACE_CHARS}]")
}

/// A string of 1 to `max` characters that is not only white space, as [`text`] checks it.
pub(crate) fn text_schema(max: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(not_blank_pattern()))
}

/// A pattern for a name that, white space around it dropped, is not empty and holds no
/// control character.
pub(crate) fn trimmed_name_pattern() -> String {
    let (ws, cc) = (WHITE_SPACE_CHARS, CONTROL_CHARS);
    format!("^[{ws}]*(?:[^{ws}{cc}]|[^{ws}{cc}][^{cc}]*[^{ws}{cc}])[{ws}]*$")
}

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

#[cfg(test)]
mod tests {
    //! The document's request schemas against the validators the handlers run: for every body
    //! and query in a corpus of tricky values, the schema accepts it exactly when the server
    //! does, so neither can drift from the other.

    use serde_json::{json, Value};
    use utoipa::OpenApi;

    use crate::fuzzing;

    /// A validator for the document's component `name`, its references resolved in the document.
    fn schema(name: &str) -> jsonschema::Validator {
        let mut doc = serde_json::to_value(crate::ApiDoc::openapi()).unwrap();
        doc["$ref"] = json!(format!("#/components/schemas/{name}"));
        jsonschema::validator_for(&doc).unwrap()
    }

    /// Strings around every edge the rules have: each control and white-space character alone,
    /// inside and around text, and lengths at and past the limits.
    fn strings() -> Vec<String> {
        let mut edges: Vec<char> = (0u32..=0x20)
            .chain(0x7f..=0xa0)
            .filter_map(char::from_u32)
            .collect();
        edges.extend([
            '\u{1680}', '\u{180e}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{2028}', '\u{2029}',
            '\u{202f}', '\u{205f}', '\u{3000}', '\u{feff}', 'a', 'é', '😀', '@', '.', '_', '-',
        ]);
        let mut out = vec![String::new()];
        for c in edges {
            out.extend([
                c.to_string(),
                format!("a{c}"),
                format!("{c}a"),
                format!("a{c}b"),
                format!("{c}a{c}"),
                format!("{c}{c}"),
            ]);
        }
        for n in [
            7, 8, 63, 64, 65, 99, 100, 101, 119, 120, 121, 127, 128, 129, 5000, 5001,
        ] {
            out.push("x".repeat(n));
            out.push(format!(" {}", "x".repeat(n.saturating_sub(1))));
            out.push(format!("{} ", "x".repeat(n)));
            out.push("😀".repeat(n));
        }
        out.extend(
            [
                "a@b.io",
                " a@b.io ",
                "a@b",
                "@b.io",
                "a@.io",
                "a@b.",
                "a b@c.io",
                "a@@b.io",
                "a@b..io",
                "a@b.io\u{0}",
                "a.b@c.d.e",
                "typing",
                "TYPING",
                "Typing2",
                "orders.shipped",
                "messageDeleted",
                "getroommessagenotification",
                "9lives",
                "a-b",
            ]
            .map(str::to_owned),
        );
        out
    }

    fn agree(name: &str, bodies: impl IntoIterator<Item = Value>, server: impl Fn(&Value) -> bool) {
        let validator = schema(name);
        let mut checked = 0;
        for body in bodies {
            assert_eq!(
                validator.is_valid(&body),
                server(&body),
                "{name}: the schema and the server disagree on {body}"
            );
            checked += 1;
        }
        assert!(checked > 100, "{name}: only {checked} cases");
    }

    fn bytes(body: &Value) -> Vec<u8> {
        serde_json::to_vec(body).unwrap()
    }

    #[test]
    fn ids_in_paths_and_bodies_follow_the_id_rule() {
        agree("Id", strings().into_iter().map(Value::from), |id| {
            crate::params::user("id", id.as_str().unwrap()).is_ok()
        });
    }

    #[test]
    fn room_bodies_follow_their_validators() {
        let caller = imgate_domain::UserId::parse("caller").unwrap();
        let mut bodies = Vec::new();
        for s in strings() {
            bodies.push(json!({"kind": "group", "name": s}));
            bodies.push(json!({"kind": "channel", "name": "team", "members": [s]}));
        }
        for kind in ["channel", "group", "direct", "party"] {
            bodies.push(json!({"kind": kind, "name": "team"}));
        }
        for n in [0, 1, 100, 101] {
            let members: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
            bodies.push(json!({"kind": "group", "name": "team", "members": members}));
        }
        bodies.push(json!({"kind": "group", "name": "team", "topic": "x"}));
        agree("CreateRoom", bodies, |body| {
            fuzzing::create_room(&bytes(body), &caller).is_ok()
        });

        let mut bodies: Vec<Value> = strings()
            .into_iter()
            .map(|s| json!({"members": [s]}))
            .collect();
        for n in [0, 1, 100, 101] {
            let members: Vec<String> = (0..n).map(|i| format!("user{i}")).collect();
            bodies.push(json!({ "members": members }));
        }
        agree("Members", bodies, |body| {
            fuzzing::members(&bytes(body), &caller).is_ok()
        });
    }

    #[test]
    fn message_bodies_follow_their_validators() {
        let mut bodies = Vec::new();
        for s in strings() {
            bodies.push(json!({"text": s}));
            bodies.push(json!({"text": "hi", "threadId": s}));
            bodies.push(json!({"text": "hi", "clientMessageId": s}));
        }
        bodies.push(json!({"text": "hi", "threadId": null, "clientMessageId": null}));
        // The text is checked by the chat service (`check_text`), after the body's fields.
        let text_ok = |body: &Value| {
            imgate_domain::model::check_text(body["text"].as_str().unwrap_or_default()).is_ok()
        };
        agree("SendMessage", bodies.clone(), |body| {
            fuzzing::send_message(&bytes(body)).is_ok() && text_ok(body)
        });
        let edits = bodies
            .into_iter()
            .filter(|b| b.as_object().unwrap().len() == 1);
        agree("EditMessage", edits, |body| {
            fuzzing::edit_message(&bytes(body)).is_ok() && text_ok(body)
        });
    }

    #[test]
    fn user_bodies_follow_their_validator() {
        let mut bodies = Vec::new();
        for s in strings() {
            bodies.push(json!({"username": s, "name": "Dave"}));
            bodies.push(json!({"username": "dave", "name": s}));
            bodies.push(json!({"username": "dave", "name": "Dave", "email": s}));
            bodies.push(json!({"username": "dave", "name": "Dave", "password": s}));
        }
        bodies.push(json!({"username": "dave", "name": "Dave", "email": null, "password": null}));
        agree("UpsertUser", bodies, |body| {
            fuzzing::upsert_user(&bytes(body)).is_ok()
        });
    }

    #[test]
    fn push_bodies_follow_the_target_rule() {
        let mut bodies: Vec<Value> = strings()
            .into_iter()
            .map(|s| json!({"target": s, "arguments": [1, "two", {"three": 3}, null]}))
            .collect();
        for target in crate::host_realtime::HUB_CHAT_TARGETS {
            bodies.push(json!({"target": target.to_uppercase(), "arguments": []}));
        }
        bodies.push(json!({"target": "ok", "arguments": {}}));
        agree("HostPush", bodies, |body| {
            let target = body["target"].as_str().unwrap();
            body["arguments"].is_array()
                && imgate_domain::services::target_name_problem(
                    target,
                    &crate::host_realtime::HUB_CHAT_TARGETS,
                )
                .is_none()
        });
    }

    #[test]
    fn the_history_query_follows_its_validator() {
        let doc = serde_json::to_value(crate::ApiDoc::openapi()).unwrap();
        let parameters = doc["paths"]["/api/v1/rooms/{roomId}/messages"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        let param = |name: &str| {
            let p = parameters.iter().find(|p| p["name"] == name).unwrap();
            assert_eq!(
                (p["in"].as_str(), p["required"].as_bool()),
                (Some("query"), Some(false))
            );
            jsonschema::validator_for(&p["schema"]).unwrap()
        };
        let limit = param("limit");
        for n in -2..=102 {
            assert_eq!(
                limit.is_valid(&json!(n)),
                fuzzing::history(&format!("limit={n}")).is_ok(),
                "limit={n}"
            );
        }
        let before = param("before");
        for date in ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.5+02:00"] {
            assert!(before.is_valid(&json!(date)));
            assert!(fuzzing::history(&format!("before={}", date.replace('+', "%2B"))).is_ok());
        }
    }
}
