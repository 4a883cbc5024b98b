//! Demo mode: the embedded defaults with no host key material. Its secret is public, so it
//! must never face a network; start-up says so loudly.

use std::time::Duration;

/// The HS256 secret of demo mode, known to everyone reading this file.
pub const DEMO_JWT_SECRET: &str = "imgate-demo-secret-not-for-production-use";
/// The host back end's API key in demo mode.
pub const DEMO_API_KEY: &str = "imgate-demo-api-key";
/// The password of users mirrored in demo mode.
pub const DEMO_USER_PASSWORD: &str = "imgate-demo-password";
/// Host users created at start-up in demo mode: (id, username, display name).
pub const DEMO_USERS: &[(&str, &str, &str)] = &[
    ("alice", "alice", "Alice Liddell"),
    ("bob", "bob", "Bob Builder"),
    ("carol", "carol", "Carol Danvers"),
];

/// A demo JWT for `user`, valid for `ttl`.
pub fn token(user_claim: &str, user: &str, ttl: Duration) -> String {
    imgate_http::auth::mint_hs256(DEMO_JWT_SECRET.as_bytes(), user_claim, user, ttl)
}
