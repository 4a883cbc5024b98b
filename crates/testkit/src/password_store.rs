//! The `PasswordStore` contract suite.
//!
//! The factory returns two stores on one backing store, standing for two nodes; an in-process
//! adapter returns the same store twice.

use std::future::Future;
use std::sync::Arc;

use imgate_domain::ports::PasswordStore;
use imgate_domain::Password;

use crate::user;

/// Runs every clause of the `PasswordStore` contract on fresh stores from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: PasswordStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = (Arc<S>, Arc<S>)>,
{
    let (a, b) = make().await;
    set_then_get_returns_it_on_every_node(&*a, &*b).await;
    let (a, _) = make().await;
    get_of_a_user_without_one_is_none(&*a).await;
    let (a, b) = make().await;
    set_replaces_the_password(&*a, &*b).await;
    let (a, b) = make().await;
    remove_drops_it_and_remove_of_absent_user_is_ok(&*a, &*b).await;
    let (a, _) = make().await;
    passwords_are_stored_as_given(&*a).await;
}

fn password(value: &str) -> Password {
    Password::new(value)
}

async fn set_then_get_returns_it_on_every_node(a: &dyn PasswordStore, b: &dyn PasswordStore) {
    a.set(&user("alice"), &password("alice-pw")).await.unwrap();
    assert_eq!(
        a.get(&user("alice")).await.unwrap(),
        Some(password("alice-pw"))
    );
    assert_eq!(
        b.get(&user("alice")).await.unwrap(),
        Some(password("alice-pw")),
        "another node reads what one node set"
    );
    assert_eq!(
        b.get(&user("bob")).await.unwrap(),
        None,
        "passwords are per user"
    );
}

async fn get_of_a_user_without_one_is_none(store: &dyn PasswordStore) {
    assert_eq!(store.get(&user("nobody")).await.unwrap(), None);
}

async fn set_replaces_the_password(a: &dyn PasswordStore, b: &dyn PasswordStore) {
    a.set(&user("alice"), &password("first")).await.unwrap();
    b.set(&user("alice"), &password("second")).await.unwrap();
    assert_eq!(
        a.get(&user("alice")).await.unwrap(),
        Some(password("second"))
    );
}

async fn remove_drops_it_and_remove_of_absent_user_is_ok(
    a: &dyn PasswordStore,
    b: &dyn PasswordStore,
) {
    a.set(&user("alice"), &password("alice-pw")).await.unwrap();
    a.set(&user("bob"), &password("bob-pw")).await.unwrap();
    b.remove(&user("alice")).await.unwrap();
    assert_eq!(a.get(&user("alice")).await.unwrap(), None);
    assert_eq!(
        a.get(&user("bob")).await.unwrap(),
        Some(password("bob-pw")),
        "removing one user's password leaves the others"
    );
    a.remove(&user("alice")).await.unwrap();
    a.remove(&user("nobody")).await.unwrap();
}

async fn passwords_are_stored_as_given(store: &dyn PasswordStore) {
    // The gateway logs in with it, so it must come back byte for byte, whatever it holds.
    for (n, value) in [
        "  spaces  ",
        "ünïcødé-パスワード",
        "quote\"back\\slash:colon{brace}",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let who = user(&format!("user-{n}"));
        store.set(&who, &password(value)).await.unwrap();
        assert_eq!(store.get(&who).await.unwrap(), Some(password(value)));
    }
}
