//! How a host user id becomes a Rocket.Chat username, and back.
//!
//! Rocket.Chat usernames allow `[0-9a-zA-Z-_.]` (setting `UTF8_User_Names_Validation`).
//! The rule: ASCII letters, digits, `-` and `.` stay as they are; every other byte of the
//! id's UTF-8 (including `_`, which is the escape character) becomes `_` followed by two
//! upper-case hex digits. So `alice` stays `alice`, `alice_b` becomes `alice_5Fb`, and
//! `zoë@x` becomes `zo_C3_AB_40x`. The mapping is one-to-one (`IdEscaping`), so the gateway
//! needs no table.

use imgate_domain::id_escaping::IdEscaping;
use imgate_domain::UserId;

const RULE: IdEscaping = IdEscaping {
    escape: b'_',
    upper_hex: true,
    plain: |byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.',
};

/// The Rocket.Chat username for a host user id.
pub fn username_for(user: &UserId) -> String {
    RULE.escape(user.as_str())
}

/// The host user id behind a Rocket.Chat username, when it follows the rule.
pub fn user_for(username: &str) -> Option<UserId> {
    RULE.user_for(username)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, username: &str) {
        let user = UserId::parse(id).unwrap();
        assert_eq!(username_for(&user), username, "{id}");
        assert_eq!(user_for(username), Some(user), "{username}");
    }

    #[test]
    fn ids_map_to_usernames_and_back() {
        check("alice", "alice");
        check("Bob.Smith-2", "Bob.Smith-2");
        check("alice_b", "alice_5Fb");
        check("zoë@x", "zo_C3_AB_40x");
        check("a b/c", "a_20b_2Fc");
        check("42", "42");
    }

    #[test]
    fn foreign_usernames_are_not_host_users() {
        for username in ["bad_zz", "trailing_4", "lower_5f", "sp ace", "_", "_61lice"] {
            assert_eq!(user_for(username), None, "{username}");
        }
    }
}
