//! The host back end mirrors users, over real HTTP, into each provider.

use serde_json::json;

use crate::helpers::{each_provider, Provider, TestGateway, API_KEY};

each_provider!(users_are_upserted_idempotently_read_and_deleted);

async fn users_are_upserted_idempotently_read_and_deleted(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[]).await else {
        return;
    };
    let body = json!({"username": "dave", "name": "Dave", "email": "dave@example.com"});
    let (status, created) = gw
        .send(
            gw.put("/api/v1/users/dave-1")
                .header("X-Api-Key", API_KEY)
                .json(&body),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["id"].clone(),
            created["username"].clone(),
            created["email"].clone()
        ),
        (json!("dave-1"), json!("dave"), json!("dave@example.com"))
    );
    let (status, again) = gw
        .send(
            gw.put("/api/v1/users/dave-1")
                .header("X-Api-Key", API_KEY)
                .json(&body),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["providerUserId"], created["providerUserId"]);

    let (status, read) = gw
        .send(gw.get("/api/v1/users/dave-1").header("X-Api-Key", API_KEY))
        .await;
    assert_eq!(
        (status, read["name"].clone(), read["username"].clone()),
        (200, json!("Dave"), json!("dave")),
        "{read}"
    );

    let (status, _) = gw
        .send(
            gw.delete("/api/v1/users/dave-1")
                .header("X-Api-Key", API_KEY),
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = gw
        .send(gw.get("/api/v1/users/dave-1").header("X-Api-Key", API_KEY))
        .await;
    assert_eq!((status, body["error"].clone()), (404, json!("not_found")));
    gw.stop().await;
}

each_provider!(end_users_cannot_mirror_users_and_bad_bodies_lose_nothing);

async fn end_users_cannot_mirror_users_and_bad_bodies_lose_nothing(provider: Provider) {
    let Some(gw) = TestGateway::on(provider, &[]).await else {
        return;
    };
    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/eve")
                .bearer_auth(gw.token("eve"))
                .json(&json!({"username": "eve", "name": "Eve"})),
        )
        .await;
    assert_eq!((status, body["error"].clone()), (403, json!("forbidden")));

    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/eve")
                .header("X-Api-Key", API_KEY)
                .header("Content-Type", "application/json")
                .body("{\"username\":"),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_request"))
    );
    let huge = "x".repeat(100_000);
    let (status, body) = gw
        .send(
            gw.put("/api/v1/users/eve")
                .header("X-Api-Key", API_KEY)
                .json(&json!({"username": "eve", "name": huge})),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (413, json!("payload_too_large"))
    );
    // The gateway still serves, and nothing was created by the refused calls.
    let (status, _) = gw
        .send(gw.get("/api/v1/users/eve").header("X-Api-Key", API_KEY))
        .await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn a_password_the_host_sets_is_the_one_the_provider_gets_and_the_gateway_uses() {
    let gw = TestGateway::start(&[]).await;
    let body = json!({"username": "frank", "name": "Frank", "password": "franks-own-password"});
    let (status, _) = gw
        .send(
            gw.put("/api/v1/users/frank")
                .header("X-Api-Key", API_KEY)
                .json(&body),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = gw
        .send(gw.get("/api/v1/rooms").bearer_auth(gw.token("frank")))
        .await;
    assert_eq!(
        status, 200,
        "the gateway logs frank in with his own password: {body}"
    );
    let login = reqwest::Client::new()
        .post(format!("{}/api/v1/login", gw.gateway.provider_url))
        .json(&json!({"user": "frank", "password": "franks-own-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        login.status(),
        200,
        "the provider account has the host's password"
    );
    gw.stop().await;
}
