//! `PasswordStore` within one process: enough for one node; lost on restart.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use imgate_domain::ports::{PasswordStore, PasswordStoreError};
use imgate_domain::{Password, UserId};

/// Host-chosen passwords in a map.
#[derive(Default)]
pub struct MemoryPasswordStore {
    passwords: RwLock<HashMap<UserId, Password>>,
}

#[async_trait]
impl PasswordStore for MemoryPasswordStore {
    async fn get(&self, user: &UserId) -> Result<Option<Password>, PasswordStoreError> {
        // Each write is one map operation, so a poisoned lock still holds a consistent map.
        let passwords = self
            .passwords
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(passwords.get(user).cloned())
    }

    async fn set(&self, user: &UserId, password: &Password) -> Result<(), PasswordStoreError> {
        self.passwords
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(user.clone(), password.clone());
        Ok(())
    }

    async fn remove(&self, user: &UserId) -> Result<(), PasswordStoreError> {
        self.passwords
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(user);
        Ok(())
    }
}
