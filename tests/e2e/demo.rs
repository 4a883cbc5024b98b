//! What demo mode starts with: the demo users in `#general`, greeted by one of them, so the
//! first view is a conversation. A real provider is never seeded.

use imgate::demo::{DEMO_CHANNEL, DEMO_USERS, WELCOME_FROM, WELCOME_TEXT};
use rocketchat_sim::{Sim, SimConfig};
use serde_json::{json, Value};

use crate::helpers::{Provider, TestGateway};

/// `user`'s rooms named `name`.
async fn rooms_named(gw: &TestGateway, user: &str, name: &str) -> Vec<Value> {
    let (status, rooms) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.token(user)))
        .await;
    assert_eq!(status, 200, "{user}: {rooms}");
    rooms
        .as_array()
        .expect("a list of rooms")
        .iter()
        .filter(|room| room["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn demo_users_open_on_general_with_a_welcome_message() {
    let gw = TestGateway::start(&[]).await;

    let (status, rooms) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.token("alice")))
        .await;
    assert_eq!(status, 200, "{rooms}");
    let rooms = rooms.as_array().expect("a list of rooms");
    assert_eq!(
        rooms.len(),
        1,
        "alice's first view is #general alone: {rooms:?}"
    );
    let general = &rooms[0];
    assert_eq!(
        (general["name"].clone(), general["kind"].clone()),
        (json!(DEMO_CHANNEL), json!("channel"))
    );
    assert_eq!(
        (
            general["lastMessage"]["text"].clone(),
            general["lastMessage"]["sender"]["id"].clone()
        ),
        (json!(WELCOME_TEXT), json!(WELCOME_FROM)),
        "{general}"
    );
    let id = general["id"].as_str().expect("a room id");

    // Every demo user is a member: the same room, the greeting unread by all but its author.
    for (user, _, _) in DEMO_USERS {
        let theirs = rooms_named(&gw, user, DEMO_CHANNEL).await;
        assert_eq!(theirs.len(), 1, "{user}: {theirs:?}");
        assert_eq!(theirs[0]["id"], id, "{user}");
        assert_eq!(theirs[0]["lastMessage"]["text"], WELCOME_TEXT, "{user}");
        let unread = if *user == WELCOME_FROM { 0 } else { 1 };
        assert_eq!(theirs[0]["unread"], unread, "{user}: {}", theirs[0]);
        let (_, summary) = gw
            .send(gw.get("/api/v1/unread").bearer_auth(gw.token(user)))
            .await;
        assert_eq!(summary["total"], unread, "{user}: {summary}");
    }

    // The greeting is the newest message of the history, sent once.
    let (status, page) = gw
        .send(
            gw.get(&format!("/api/v1/rooms/{id}/messages"))
                .bearer_auth(gw.token("bob")),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(
        (
            messages[0]["text"].clone(),
            messages[0]["sender"]["id"].clone(),
            messages[0]["system"].clone()
        ),
        (json!(WELCOME_TEXT), json!(WELCOME_FROM), Value::Null),
        "{page}"
    );
    let greetings = messages.iter().filter(|m| m["text"] == WELCOME_TEXT);
    assert_eq!(greetings.count(), 1, "{page}");
    gw.stop().await;
}

#[tokio::test]
async fn a_rocket_chat_at_provider_url_is_not_seeded() {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let gw = TestGateway::against(&sim, &[]).await;
    assert!(!gw.gateway.demo);
    let demo_users: Vec<&str> = DEMO_USERS.iter().map(|(id, _, _)| *id).collect();
    gw.mirror(&demo_users).await;
    for user in demo_users {
        let (status, rooms) = gw
            .send(gw.get("/api/v1/rooms").bearer_auth(gw.host_token(user)))
            .await;
        assert_eq!((status, rooms), (200, json!([])), "{user} is in no room");
    }
    // The provider's own #general (the sim starts with one, as Rocket.Chat does) is left alone.
    let general = sim.messages("GENERAL");
    assert!(
        general
            .iter()
            .all(|m| m["msg"] != WELCOME_TEXT && m["t"].is_string()),
        "only the provider's own system messages: {general:?}"
    );
    gw.stop().await;
    sim.stop().await;
}

#[tokio::test]
async fn a_matrix_homeserver_is_not_seeded() {
    let Some(gw) = TestGateway::on(Provider::Matrix, &[]).await else {
        return;
    };
    for (user, _, _) in DEMO_USERS {
        let (status, rooms) = gw
            .send(gw.get("/api/v1/rooms").bearer_auth(gw.host_token(user)))
            .await;
        assert_eq!((status, rooms), (200, json!([])), "{user} is in no room");
    }
    gw.stop().await;
}
