//! Meteor-style ids and login tokens.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Alphabet of Meteor's `Random.id` (no look-alike characters such as 0/O, 1/l/I).
const ID_ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
/// Alphabet of Meteor's `Random.secret` (base64url without padding).
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A 17-character id as Meteor's `Random.id()` makes for documents.
pub fn random_id() -> String {
    random_from(ID_ALPHABET, 17)
}

/// A 43-character login token as Meteor's `Random.secret()` makes.
pub fn random_token() -> String {
    random_from(SECRET_ALPHABET, 43)
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The stored form of a login token: base64 of its SHA-256, as Meteor's `_hashLoginToken`.
pub fn hash_token(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(token.as_bytes()))
}

/// Lower-case hex SHA-256 of a password, the digest DDP password logins send.
pub fn password_digest(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_meteor_alphabet_and_length() {
        let id = random_id();
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|b| ID_ALPHABET.contains(&b)));
    }

    #[test]
    fn tokens_are_43_url_safe_chars() {
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn token_hash_is_stable_base64() {
        assert_eq!(
            hash_token("abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn password_digest_is_lower_hex_sha256() {
        assert_eq!(
            password_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
