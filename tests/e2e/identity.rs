//! Host identity over real HTTP.

use serde_json::json;

use crate::helpers::TestGateway;

#[tokio::test]
async fn demo_tokens_pass_and_bad_ones_are_told_apart() {
    let gw = TestGateway::start(&[]).await;
    let (status, body) = gw
        .send(gw.get("/api/v1/me").bearer_auth(gw.token("alice")))
        .await;
    assert_eq!((status, body["userId"].clone()), (200, json!("alice")));

    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "alice", "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(imgate::demo::DEMO_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let (status, body) = gw.send(gw.get("/api/v1/me").bearer_auth(expired)).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "unauthorized", "message": "token expired"})
    );

    let (status, body) = gw.send(gw.get("/api/v1/me")).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("unauthorized"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_configured_secret_replaces_the_demo_secret() {
    let secret = "0123456789abcdef0123456789abcdef-host";
    let gw = TestGateway::start(&[("auth.jwt_secret", secret), ("auth.audience", "imgate")]).await;
    let demo_token = imgate::demo::token("sub", "alice", std::time::Duration::from_secs(60));
    let (status, body) = gw.send(gw.get("/api/v1/me").bearer_auth(demo_token)).await;
    assert_eq!(
        status, 401,
        "the public demo secret must stop working: {body}"
    );
    let token = imgate_http::auth::mint_hs256(
        secret.as_bytes(),
        "sub",
        "alice",
        std::time::Duration::from_secs(60),
    );
    let (status, body) = gw.send(gw.get("/api/v1/me").bearer_auth(token)).await;
    assert_eq!(
        (status, body["message"].clone()),
        (401, json!("token has no `aud` claim"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn operations_routes_report_a_ready_gateway() {
    let gw = TestGateway::start(&[]).await;
    let (status, body) = gw.send(gw.get("/readyz")).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"status": "ready", "checks": {"admin_agent": "ok", "provider": "ok"}})
        )
    );
    let (status, body) = gw.send(gw.get("/api/v1/nowhere")).await;
    assert_eq!((status, body["error"].clone()), (404, json!("not_found")));
    let (status, doc) = gw.send(gw.get("/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/users/{id}"]["put"].is_object());
    gw.stop().await;
}

#[tokio::test]
async fn routes_move_under_the_base_path() {
    let gw = TestGateway::start(&[("server.base_path", "/chat")]).await;
    assert_eq!(gw.send(gw.get("/chat/healthz")).await.0, 200);
    let (status, body) = gw.send(gw.get("/healthz")).await;
    assert_eq!((status, body["error"].clone()), (404, json!("not_found")));
    gw.stop().await;
}
