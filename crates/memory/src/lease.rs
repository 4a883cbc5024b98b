//! `Lease` within one process: enough for one node, where it always wins.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use imgate_domain::ports::{Lease, LeaseError, LeaseToken};
use imgate_domain::sync::lock;
use imgate_domain::UserId;
use tokio::time::Instant;

/// Leases in a map, expiring by the tokio clock.
#[derive(Default)]
pub struct MemoryLease {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    held: HashMap<UserId, (LeaseToken, Instant)>,
    fences: HashMap<UserId, u64>,
}

impl MemoryLease {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn current<'a>(state: &'a State, user: &UserId) -> Option<&'a LeaseToken> {
    state
        .held
        .get(user)
        .filter(|(_, expires)| *expires > Instant::now())
        .map(|(token, _)| token)
}

#[async_trait]
impl Lease for MemoryLease {
    async fn acquire(
        &self,
        user: &UserId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseToken>, LeaseError> {
        let mut state = self.lock();
        match current(&state, user) {
            Some(token) if token.holder == holder => {
                let token = token.clone();
                state
                    .held
                    .insert(user.clone(), (token.clone(), Instant::now() + ttl));
                Ok(Some(token))
            }
            Some(_) => Ok(None),
            None => {
                let fence = state.fences.entry(user.clone()).or_insert(0);
                *fence += 1;
                let token = LeaseToken {
                    holder: holder.to_owned(),
                    fence: *fence,
                };
                state
                    .held
                    .insert(user.clone(), (token.clone(), Instant::now() + ttl));
                Ok(Some(token))
            }
        }
    }

    async fn renew(
        &self,
        user: &UserId,
        token: &LeaseToken,
        ttl: Duration,
    ) -> Result<bool, LeaseError> {
        let mut state = self.lock();
        if current(&state, user) == Some(token) {
            state
                .held
                .insert(user.clone(), (token.clone(), Instant::now() + ttl));
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn release(&self, user: &UserId, token: &LeaseToken) -> Result<(), LeaseError> {
        let mut state = self.lock();
        if current(&state, user) == Some(token) {
            state.held.remove(user);
        }
        Ok(())
    }

    async fn expires_in(&self, user: &UserId) -> Result<Option<Duration>, LeaseError> {
        let state = self.lock();
        Ok(state
            .held
            .get(user)
            .map(|(_, expires)| expires.saturating_duration_since(Instant::now()))
            .filter(|left| !left.is_zero()))
    }

    async fn holder(&self, user: &UserId) -> Result<Option<String>, LeaseError> {
        let state = self.lock();
        Ok(state
            .held
            .get(user)
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(token, _)| token.holder.clone()))
    }
}
