//! How a host user id becomes a Matrix localpart, and back.
//!
//! Matrix localparts allow only `[a-z0-9._=/+-]`. The rule: lower-case ASCII letters, digits,
//! `-` and `.` stay as they are; every other byte of the id's UTF-8 (upper-case letters, `=`,
//! which is the escape character, and `_`) becomes `=` and two lower-case hex digits. So
//! `alice` stays `alice`, `Bob` becomes `=42ob` and `zoë@x` becomes `zo=c3=ab=40x`. A
//! namespace (configured per gateway) goes in front, so several gateways can share one
//! homeserver. The mapping is one-to-one, so the gateway needs no table.

use imgate_domain::id_escaping::IdEscaping;
use imgate_domain::UserId;

/// Whether `byte` stands for itself in a localpart.
fn plain(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'.'
}

const RULE: IdEscaping = IdEscaping {
    escape: b'=',
    upper_hex: false,
    plain,
};

/// Escapes `text` by the rule above (also used for room alias names).
pub fn escape(text: &str) -> String {
    RULE.escape(text)
}

/// Whether `namespace` can stand in front of localparts.
pub fn valid_namespace(namespace: &str) -> bool {
    namespace.bytes().all(|b| plain(b) || b == b'_')
}

/// The Matrix localpart for a host user id.
pub fn localpart_for(namespace: &str, user: &UserId) -> String {
    format!("{namespace}{}", escape(user.as_str()))
}

/// The host user id behind a localpart, when it is in `namespace` and follows the rule.
pub fn user_for(namespace: &str, localpart: &str) -> Option<UserId> {
    RULE.user_for(localpart.strip_prefix(namespace)?)
}

/// The localpart of a Matrix user id (`@alice:example.org` → `alice`).
pub fn localpart_of(matrix_id: &str) -> Option<&str> {
    matrix_id.strip_prefix('@')?.split_once(':').map(|(l, _)| l)
}

/// The server name of a Matrix user id (`@alice:example.org` → `example.org`).
pub fn server_of(matrix_id: &str) -> Option<&str> {
    matrix_id.split_once(':').map(|(_, s)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(namespace: &str, id: &str, localpart: &str) {
        let user = UserId::parse(id).unwrap();
        assert_eq!(localpart_for(namespace, &user), localpart, "{id}");
        assert_eq!(user_for(namespace, localpart), Some(user), "{localpart}");
    }

    #[test]
    fn ids_map_to_localparts_and_back() {
        check("", "alice", "alice");
        check("", "Bob", "=42ob");
        check("", "a_b=c", "a=5fb=3dc");
        check("", "zoë@x", "zo=c3=ab=40x");
        check("t1_", "ann", "t1_ann");
        check("", "42", "42");
    }

    #[test]
    fn foreign_localparts_are_not_host_users() {
        for localpart in [
            "bad=zz",
            "trailing=4",
            "upper=5F",
            "plain=61",
            "under_score",
            "=",
        ] {
            assert_eq!(user_for("", localpart), None, "{localpart}");
        }
        assert_eq!(user_for("t1_", "t2_ann"), None);
    }

    #[test]
    fn matrix_ids_split_into_localpart_and_server() {
        assert_eq!(localpart_of("@a=40b:host:8008"), Some("a=40b"));
        assert_eq!(server_of("@a:host:8008"), Some("host:8008"));
        assert_eq!(localpart_of("alice"), None);
    }
}
