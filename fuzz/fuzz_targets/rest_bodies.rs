//! Arbitrary bytes through the decoding and validation of every JSON request body of the REST
//! API, and as the query string of the history route.
//!
//! Properties: nothing panics; bad input is always `invalid_request` (400), never another
//! error; whatever is accepted meets the rules the handlers promise (trimmed, non-empty names,
//! no duplicate or self members, limits in range).

#![no_main]

use std::collections::HashSet;

use imgate_domain::model::RoomKind;
use imgate_domain::UserId;
use imgate_http::error::ApiError;
use imgate_http::fuzzing;
use imgate_http::params::MAX_MEMBERS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let caller = UserId::parse("alice").expect("a valid id");

    if let Some((profile, password)) = accepted(fuzzing::upsert_user(data)) {
        for field in [&profile.username, &profile.name] {
            assert_eq!(field.trim(), field);
            assert!(!field.is_empty() && field.chars().count() <= 120);
            assert!(!field.chars().any(char::is_control));
        }
        if let Some(email) = &profile.email {
            assert_eq!(email.trim(), email);
            assert!(email.contains('@'));
        }
        if let Some(password) = password {
            assert!(password.expose().chars().count() >= 8);
        }
    }
    if let Some(room) = accepted(fuzzing::create_room(data, &caller)) {
        assert_ne!(room.kind, RoomKind::Direct);
        assert_eq!(room.name.trim(), room.name);
        assert!(!room.name.is_empty() && room.name.chars().count() <= 100);
        check_members(&room.members, &caller);
    }
    if let Some(members) = accepted(fuzzing::members(data, &caller)) {
        assert!(!members.is_empty());
        check_members(&members, &caller);
    }
    if let Some(message) = accepted(fuzzing::send_message(data)) {
        if let Some(key) = &message.client_message_id {
            assert!(!key.trim().is_empty() && key.chars().count() <= 128);
        }
    }
    accepted(fuzzing::edit_message(data));
    let query = String::from_utf8_lossy(data);
    if let Some(page) = accepted(fuzzing::history(&query)) {
        assert!((1..=100).contains(&page.limit));
        assert_eq!(page.after, None);
    }
});

/// The value, or `None` for the only error bad input may cause: `invalid_request`.
fn accepted<T>(result: Result<T, ApiError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(ApiError::Invalid(message)) => {
            assert!(!message.is_empty());
            None
        }
        Err(other) => panic!("bad input became {other:?}"),
    }
}

fn check_members(members: &[UserId], caller: &UserId) {
    assert!(members.len() <= MAX_MEMBERS);
    assert!(!members.contains(caller));
    let unique: HashSet<&UserId> = members.iter().collect();
    assert_eq!(unique.len(), members.len(), "duplicate members");
}
