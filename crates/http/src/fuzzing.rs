//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz): each request body and query
//! goes through the same decoding and validation as in its handler. Compiled only for tests
//! and with the `fuzzing` feature, so no real build widens the crate's API.

use actix_web::web;
use imgate_domain::model::{HistoryQuery, NewMessage, NewRoom, UserProfile};
use imgate_domain::{Password, UserId};

use crate::error::ApiError;
use crate::json;
use crate::params;
use crate::rooms::{CreateRoom, EditMessage, HistoryParams, Members, SendMessage};
use crate::users::UpsertUser;

/// The body of `PUT /api/v1/users/{id}`.
pub fn upsert_user(body: &[u8]) -> Result<(UserProfile, Option<Password>), ApiError> {
    json::parse::<UpsertUser>(body)?.validate()
}

/// The body of `POST /api/v1/rooms`, sent by `caller`.
pub fn create_room(body: &[u8], caller: &UserId) -> Result<NewRoom, ApiError> {
    json::parse::<CreateRoom>(body)?.validate(caller)
}

/// The body of `POST /api/v1/rooms/direct` and `POST /api/v1/rooms/{roomId}/members`.
pub fn members(body: &[u8], caller: &UserId) -> Result<Vec<UserId>, ApiError> {
    params::members(&json::parse::<Members>(body)?.members, caller, false)
}

/// The body of `POST /api/v1/rooms/{roomId}/messages`.
pub fn send_message(body: &[u8]) -> Result<NewMessage, ApiError> {
    json::parse::<SendMessage>(body)?.validate()
}

/// The body of `PATCH /api/v1/rooms/{roomId}/messages/{messageId}`.
pub fn edit_message(body: &[u8]) -> Result<String, ApiError> {
    Ok(json::parse::<EditMessage>(body)?.text)
}

/// The query string of `GET /api/v1/rooms/{roomId}/messages`, as actix's `Query` extractor
/// and the handler read it.
pub fn history(query: &str) -> Result<HistoryQuery, ApiError> {
    web::Query::<HistoryParams>::from_query(query)
        .map_err(|err| ApiError::Invalid(format!("invalid query: {err}")))?
        .validate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_and_validate_as_in_their_handlers() {
        let alice = UserId::parse("alice").unwrap();
        let (profile, password) = upsert_user(br#"{"username":" dave ","name":"Dave"}"#).unwrap();
        assert_eq!((profile.username.as_str(), password), ("dave", None));
        let room = create_room(
            br#"{"kind":"group","name":"team","members":["bob","alice","bob"]}"#,
            &alice,
        )
        .unwrap();
        assert_eq!(room.members, vec![UserId::parse("bob").unwrap()]);
        assert!(matches!(
            create_room(br#"{"kind":"direct","name":"x"}"#, &alice),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            members(br#"{"members":["alice"]}"#, &alice),
            Err(ApiError::Invalid(_))
        ));
        assert!(matches!(
            send_message(br#"{"text":"hi","threadId":""}"#),
            Err(ApiError::Invalid(message)) if message.starts_with("threadId")
        ));
        assert_eq!(edit_message(br#"{"text":"edited"}"#).unwrap(), "edited");
        assert_eq!(history("limit=10").unwrap().limit, 10);
        assert!(matches!(history("limit=0"), Err(ApiError::Invalid(_))));
        assert!(matches!(history("page=2"), Err(ApiError::Invalid(_))));
    }
}
