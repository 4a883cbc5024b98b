//! `PasswordStore`: the provider passwords the host chose for its users, kept where every node
//! can read them.

use async_trait::async_trait;

use crate::ids::{Password, UserId};

/// The password store failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordStoreError {
    /// The backing store cannot be reached.
    #[error("the password store is unavailable: {0}")]
    Unavailable(String),
}

/// The provider password the host set for a user (`PUT /api/v1/users/{id}` with `password`),
/// which the gateway needs again whenever it logs that user in. Users on the configured
/// default password have no entry.
///
/// The password must be stored as given, not hashed: the gateway sends it to the provider.
///
/// Contract (checked by `imgate_testkit::password_store::run_all`):
/// - `get` after `set` returns that password, on this instance and on every other instance
///   sharing the same backing store; it does not expire.
/// - `get` of a user without a password is `None`; passwords are per user.
/// - `set` replaces the user's password.
/// - `remove` drops it, so `get` is `None` again; `remove` of a user without one is `Ok(())`.
/// - When the backing store cannot be reached, every method fails with `Unavailable` (checked
///   by each adapter's own outage tests); it never answers `None` for a password it could not
///   read.
#[async_trait]
pub trait PasswordStore: Send + Sync {
    /// The password the host set for `user`, if any.
    async fn get(&self, user: &UserId) -> Result<Option<Password>, PasswordStoreError>;
    /// Stores `password` for `user`, replacing any earlier one.
    async fn set(&self, user: &UserId, password: &Password) -> Result<(), PasswordStoreError>;
    /// Forgets the user's password.
    async fn remove(&self, user: &UserId) -> Result<(), PasswordStoreError>;
}
