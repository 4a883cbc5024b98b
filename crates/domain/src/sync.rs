//! Locking a `std` mutex the way this workspace does: held for a few map edits or sends, never
//! across an `.await`, and taken over after a panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking the data over from a thread that panicked while holding it. Every
/// critical section here is one edit or a few non-blocking sends, so the data is consistent
/// even then, and refusing it would turn one panic into a dead node.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
