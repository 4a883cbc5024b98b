//! The REST surface as a client sees it: host identity, the error envelope, operations routes.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{test, App};
use async_trait::async_trait;
use imgate_domain::ports::{
    Audience, BackplaneError, HealthCheck, HostChannel, HostInvocation, ImProvider,
};
use imgate_domain::services::{
    AdminAgent, ChatService, HostRealtime, PasswordPolicy, SessionService, UpstreamService,
    UserService,
};
use imgate_domain::Password;
use imgate_http::auth::{AuthSettings, Authenticator, JwtKey};
use imgate_http::ops::Readiness;
use imgate_http::ApiState;
use imgate_memory::MemoryTokenCache;
use imgate_testkit::scripted_provider::ScriptedProvider;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};

const SECRET: &[u8] = b"a-test-secret-that-is-long-enough-for-hs256";
const API_KEY: &str = "test-api-key";

fn settings(key: JwtKey) -> AuthSettings {
    AuthSettings {
        key,
        issuer: None,
        audience: None,
        leeway: Duration::from_secs(60),
        user_claim: "sub".into(),
        admin_claim: "roles".into(),
        admin_value: "im-admin".into(),
        api_key: Some(API_KEY.into()),
    }
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("one recorder per process")
        })
        .clone()
}

struct Failing;

#[async_trait]
impl HealthCheck for Failing {
    fn name(&self) -> &'static str {
        "provider"
    }
    async fn check(&self) -> Result<(), String> {
        Err("connection refused".into())
    }
}

struct Throttled;

#[async_trait]
impl HealthCheck for Throttled {
    fn name(&self) -> &'static str {
        "admin_agent"
    }
    async fn check(&self) -> Result<(), String> {
        Ok(())
    }
    async fn warnings(&self) -> Vec<(String, String)> {
        vec![(
            "rate_limiter".into(),
            "users share ten calls a minute".into(),
        )]
    }
}

/// What the host pushed, as the hub would have been handed it; refuses all when `down`.
#[derive(Default)]
struct Channel {
    sent: std::sync::Mutex<Vec<(Audience, String, String)>>,
    closed: std::sync::Mutex<Vec<String>>,
    down: bool,
}

#[async_trait]
impl HostChannel for Channel {
    async fn send(
        &self,
        audience: &Audience,
        invocation: &HostInvocation,
    ) -> Result<(), BackplaneError> {
        if self.down {
            return Err(BackplaneError::Unavailable("redis is not answering".into()));
        }
        self.sent.lock().unwrap().push((
            audience.clone(),
            invocation.target.clone(),
            invocation.arguments.get().to_owned(),
        ));
        Ok(())
    }

    fn close(&self, user: &imgate_domain::UserId, _: &str) -> Result<(), BackplaneError> {
        self.closed.lock().unwrap().push(user.as_str().to_owned());
        Ok(())
    }
}

fn state(auth: AuthSettings, checks: Vec<Arc<dyn HealthCheck>>) -> ApiState {
    state_with(auth, checks, Arc::new(Channel::default()))
}

fn state_with(
    auth: AuthSettings,
    checks: Vec<Arc<dyn HealthCheck>>,
    channel: Arc<Channel>,
) -> ApiState {
    let provider: Arc<dyn ImProvider> = ScriptedProvider::with_password("pw");
    let sessions = Arc::new(SessionService::new(
        provider.clone(),
        Arc::new(MemoryTokenCache::default()),
        PasswordPolicy::new(
            Password::new("pw"),
            Arc::new(imgate_memory::MemoryPasswordStore::default()),
        ),
        Duration::from_secs(3600),
    ));
    let admin = Arc::new(AdminAgent::new(
        provider.clone(),
        "admin".into(),
        Password::new("pw"),
    ));
    // The REST API under test opens no hub connection: nobody receives events.
    struct NoConnections;
    impl imgate_domain::ports::EventDelivery for NoConnections {
        fn deliver(
            &self,
            _: &imgate_domain::UserId,
            _: &imgate_domain::UserEvent,
            _: imgate_domain::ports::Reach,
        ) {
        }
        fn hold(&self, _: &imgate_domain::UserId) {}
        fn release(&self, _: &imgate_domain::UserId) {}
    }
    let ownership = imgate_domain::services::Ownership {
        lease: Arc::new(imgate_memory::MemoryLease::default()),
        node: "test".into(),
        ttl: Duration::from_secs(15),
    };
    let upstreams = UpstreamService::new(
        provider.clone(),
        sessions.clone(),
        Arc::new(NoConnections),
        ownership,
        Duration::from_secs(1),
    );
    ApiState {
        auth: Arc::new(Authenticator::new(auth).expect("test keys load")),
        readiness: Readiness::new(checks),
        metrics: metrics_handle(),
        max_body_bytes: 1024,
        users: Arc::new(UserService::new(
            provider.clone(),
            admin,
            sessions.clone(),
            upstreams.clone(),
        )),
        chat: Arc::new(ChatService::new(provider, sessions, upstreams)),
        uploads: imgate_http::files::UploadLimits {
            max_file_bytes: 1024,
        },
        frontend_mode: false,
        host: Arc::new(HostRealtime::new(
            channel,
            Arc::new(imgate_memory::MemoryPresence::new()),
            &["getRoomMessageNotification"],
            Arc::new(imgate_domain::ports::AnyTargets),
        )),
        max_push_bytes: 256,
    }
}

macro_rules! app {
    ($state:expr) => {
        test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    imgate_http::telemetry::observe,
                ))
                .configure(imgate_http::configure($state)),
        )
        .await
    };
}

fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut base = json!({"sub": "alice", "name": "Alice", "exp": now + 600, "iat": now});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

async fn call<B: actix_web::body::MessageBody>(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
    req: test::TestRequest,
) -> (StatusCode, Value) {
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let body = test::read_body(resp).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&body)}));
    (status, json)
}

fn me(token: &str) -> test::TestRequest {
    test::TestRequest::get()
        .uri("/api/v1/me")
        .insert_header(("Authorization", format!("Bearer {token}")))
}

fn assert_unauthorized(result: (StatusCode, Value), needle: &str) {
    let (status, body) = result;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "message {message:?} should mention {needle:?}"
    );
}

#[actix_web::test]
async fn a_valid_token_identifies_the_user() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let (status, body) = call(&app, me(&hs256(&claims(json!({"email": "a@x.io"}))))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"kind": "user", "userId": "alice", "name": "Alice", "email": "a@x.io", "hostBackend": false})
    );
}

#[actix_web::test]
async fn every_jwt_failure_says_which() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let now = chrono::Utc::now().timestamp();
    assert_unauthorized(
        call(&app, test::TestRequest::get().uri("/api/v1/me")).await,
        "missing",
    );
    assert_unauthorized(
        call(
            &app,
            test::TestRequest::get()
                .uri("/api/v1/me")
                .insert_header(("Authorization", "Basic YTpi")),
        )
        .await,
        "Bearer",
    );
    assert_unauthorized(call(&app, me("not.a.jwt")).await, "malformed");
    assert_unauthorized(call(&app, me("")).await, "");
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        &claims(json!({})),
    );
    assert_unauthorized(call(&app, me(&forged)).await, "signature");
    // Expired beyond the 60 s leeway.
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"exp": now - 120}))))).await,
        "expired",
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"exp": null}))))).await,
        "`exp`",
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"nbf": now + 600}))))).await,
        "not valid yet",
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"sub": null}))))).await,
        "user claim `sub`",
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"sub": ""}))))).await,
        "user claim `sub`",
    );
    // An unsigned token: header {"alg":"none"}.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64_url(&claims(json!({})).to_string())
    );
    assert_unauthorized(call(&app, me(&unsigned)).await, "alg: none");
    // Within the leeway, an expired token still passes.
    let (status, _) = call(&app, me(&hs256(&claims(json!({"exp": now - 10}))))).await;
    assert_eq!(status, StatusCode::OK);
}

fn base64_url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let mut auth = settings(JwtKey::Hs256(SECRET.to_vec()));
    auth.issuer = Some("https://host.example".into());
    auth.audience = Some("imgate".into());
    let app = app!(state(auth, vec![]));
    let good = json!({"iss": "https://host.example", "aud": "imgate"});
    assert_eq!(
        call(&app, me(&hs256(&claims(good)))).await.0,
        StatusCode::OK
    );
    assert_unauthorized(
        call(
            &app,
            me(&hs256(&claims(
                json!({"iss": "https://evil.example", "aud": "imgate"}),
            ))),
        )
        .await,
        "issuer",
    );
    assert_unauthorized(
        call(
            &app,
            me(&hs256(&claims(
                json!({"iss": "https://host.example", "aud": "other"}),
            ))),
        )
        .await,
        "audience",
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({"aud": "imgate"}))))).await,
        "`iss`",
    );
}

#[actix_web::test]
async fn rs256_and_es256_keys_verify_and_algorithm_confusion_fails() {
    let rsa_public = include_bytes!("keys/rsa-public.pem").to_vec();
    let app = app!(state(settings(JwtKey::Rs256(rsa_public.clone())), vec![]));
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("keys/rsa-private.pem")).unwrap();
    assert_eq!(
        call(&app, me(&sign(Algorithm::RS256, &rsa, &claims(json!({})))))
            .await
            .0,
        StatusCode::OK
    );
    // The classic attack: HS256 signed with the public key as the secret.
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&rsa_public),
        &claims(json!({})),
    );
    assert_unauthorized(call(&app, me(&confused)).await, "algorithm");

    let app = app!(state(
        settings(JwtKey::Es256(include_bytes!("keys/ec-public.pem").to_vec())),
        vec![]
    ));
    let ec = EncodingKey::from_ec_pem(include_bytes!("keys/ec-private.pem")).unwrap();
    assert_eq!(
        call(&app, me(&sign(Algorithm::ES256, &ec, &claims(json!({})))))
            .await
            .0,
        StatusCode::OK
    );
    assert_unauthorized(
        call(&app, me(&hs256(&claims(json!({}))))).await,
        "algorithm",
    );
}

#[actix_web::test]
async fn the_access_token_query_is_refused_outside_hub_paths() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let token = hs256(&claims(json!({})));
    let req = test::TestRequest::get().uri(&format!("/api/v1/me?access_token={token}"));
    assert_unauthorized(call(&app, req).await, "hub paths only");
}

#[actix_web::test]
async fn the_host_back_end_is_recognised_by_api_key_or_admin_claim() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let by_key = test::TestRequest::get()
        .uri("/api/v1/me")
        .insert_header(("X-Api-Key", API_KEY));
    let (status, body) = call(&app, by_key).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"kind": "host", "hostBackend": true}))
    );
    let wrong = test::TestRequest::get()
        .uri("/api/v1/me")
        .insert_header(("X-Api-Key", "nope"));
    assert_unauthorized(call(&app, wrong).await, "wrong API key");

    let admin = hs256(&claims(json!({"roles": ["im-admin"]})));
    assert_eq!(call(&app, me(&admin)).await.1["hostBackend"], true);

    let put = |auth: (&'static str, String)| {
        test::TestRequest::put()
            .uri("/api/v1/users/bob")
            .insert_header(auth)
            .set_json(json!({"username": "bob", "name": "Bob"}))
    };
    let plain_user = hs256(&claims(json!({})));
    let (status, body) = call(&app, put(("Authorization", format!("Bearer {plain_user}")))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("`roles` claim must contain `im-admin`"));
    // Authorised callers get through to the provider, which this test's double cannot serve.
    for auth in [
        ("Authorization", format!("Bearer {admin}")),
        ("X-Api-Key", API_KEY.to_owned()),
    ] {
        let (status, body) = call(&app, put(auth)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(
            body,
            json!({"error": "provider_unavailable", "message": "the chat provider is unavailable"})
        );
    }
}

#[actix_web::test]
async fn api_keys_are_refused_when_none_is_configured() {
    let mut auth = settings(JwtKey::Hs256(SECRET.to_vec()));
    auth.api_key = None;
    let app = app!(state(auth, vec![]));
    let req = test::TestRequest::get()
        .uri("/api/v1/me")
        .insert_header(("X-Api-Key", ""));
    assert_unauthorized(call(&app, req).await, "not enabled");
}

#[actix_web::test]
async fn bad_bodies_get_the_envelope_and_name_the_problem() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let put = || {
        test::TestRequest::put()
            .uri("/api/v1/users/bob")
            .insert_header(("X-Api-Key", API_KEY))
    };
    let cases = [
        (
            put()
                .insert_header(("Content-Type", "application/json"))
                .set_payload("{\"username\": "),
            400,
            "malformed JSON",
        ),
        (put().set_json(json!({"name": "Bob"})), 400, "username"),
        (
            put().set_json(json!({"username": "bob", "name": "Bob", "colour": "red"})),
            400,
            "colour",
        ),
        (
            put().set_json(json!({"username": 5, "name": "Bob"})),
            400,
            "invalid type",
        ),
        (
            put().set_json(json!({"username": " ", "name": "Bob"})),
            400,
            "username: must not be empty",
        ),
        (
            put().set_json(json!({"username": "bob", "name": "Bob", "email": "nope"})),
            400,
            "email",
        ),
        (
            put().set_json(json!({"username": "bob", "name": "Bob", "password": "short"})),
            400,
            "password",
        ),
        (
            put()
                .insert_header(("Content-Type", "text/plain"))
                .set_payload("{}"),
            400,
            "Content-Type",
        ),
        (
            put().set_json(json!({"username": "b".repeat(2000), "name": "Bob"})),
            413,
            "too large",
        ),
    ];
    for (req, status, needle) in cases {
        let (got, body) = call(&app, req).await;
        assert_eq!(got.as_u16(), status, "{body}");
        let code = if status == 413 {
            "payload_too_large"
        } else {
            "invalid_request"
        };
        assert_eq!(body["error"], code, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{body} should mention {needle}"
        );
    }
}

#[actix_web::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let (status, body) = call(&app, test::TestRequest::get().uri("/api/v1/nothing-here")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": "not_found", "message": "no route for GET /api/v1/nothing-here"})
    );
    let (status, body) = call(&app, test::TestRequest::post().uri("/healthz")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method_not_allowed");
    // RFC 9110: a 405 says which methods the resource has.
    for (uri, allow) in [
        ("/healthz", "GET"),
        ("/api/v1/users/bob", "PUT, GET, DELETE"),
        ("/api/v1/hub/users/bob", "POST, GET"),
    ] {
        let response =
            test::call_service(&app, test::TestRequest::patch().uri(uri).to_request()).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{uri}");
        assert_eq!(response.headers().get("allow").unwrap(), allow, "{uri}");
    }
}

#[actix_web::test]
async fn a_wrong_credential_is_refused_even_beside_a_right_one() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let user = hs256(&claims(json!({})));
    let with = |uri: &str, key: &str, bearer: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header(("X-Api-Key", key.to_owned()))
            .insert_header(("Authorization", format!("Bearer {bearer}")))
    };
    // The right key with a forged token, and the right token with a wrong key.
    assert_unauthorized(call(&app, with("/api/v1/me", API_KEY, "forged")).await, "");
    assert_unauthorized(
        call(&app, with("/api/v1/hub/users/bob", API_KEY, "forged")).await,
        "",
    );
    assert_unauthorized(
        call(&app, with("/api/v1/unread", "nope", &user)).await,
        "wrong API key",
    );
    // Both right: the key makes it the host back end.
    let (status, body) = call(&app, with("/api/v1/me", API_KEY, &user)).await;
    assert_eq!(
        (status, body["kind"].clone()),
        (StatusCode::OK, json!("host"))
    );
}

#[actix_web::test]
async fn operations_routes_answer() {
    let app = app!(state(
        settings(JwtKey::Hs256(SECRET.to_vec())),
        vec![Arc::new(Failing)]
    ));
    assert_eq!(
        call(&app, test::TestRequest::get().uri("/healthz")).await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let (status, body) = call(&app, test::TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"status": "not_ready", "checks": {"provider": "connection refused"}})
    );

    let (status, doc) = call(&app, test::TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/me",
        "/api/v1/users/{id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("Message").is_some());

    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(text.contains("imgate_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/healthz\""), "{text}");
}

#[actix_web::test]
async fn readiness_warnings_show_without_failing_it() {
    let app = app!(state(
        settings(JwtKey::Hs256(SECRET.to_vec())),
        vec![Arc::new(Throttled)]
    ));
    let (status, body) = call(&app, test::TestRequest::get().uri("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "ready", "checks": {"admin_agent": "ok"},
               "warnings": {"rate_limiter": "users share ten calls a minute"}})
    );
}

#[actix_web::test]
async fn a_key_that_does_not_parse_is_refused() {
    let err = Authenticator::new(settings(JwtKey::Rs256(b"not a pem".to_vec())))
        .err()
        .unwrap();
    assert!(err.to_string().contains("RSA public key"), "{err}");
}

fn host_call(method: &str, uri: &str, body: Option<&str>) -> test::TestRequest {
    let mut req = match method {
        "POST" => test::TestRequest::post(),
        "GET" => test::TestRequest::get(),
        _ => test::TestRequest::delete(),
    }
    .uri(uri)
    .insert_header(("X-Api-Key", API_KEY));
    if let Some(body) = body {
        req = req
            .insert_header(("Content-Type", "application/json"))
            .set_payload(body.to_owned());
    }
    req
}

#[actix_web::test]
async fn host_pushes_are_accepted_and_handed_over_as_sent() {
    let channel = Arc::new(Channel::default());
    let app = app!(state_with(
        settings(JwtKey::Hs256(SECRET.to_vec())),
        vec![],
        channel.clone()
    ));
    let body = r#"{"target":"orders.shipped","arguments":[{"id":7},"x y",null]}"#;
    let (status, _) = call(&app, host_call("POST", "/api/v1/hub/users/bob", Some(body))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = call(&app, host_call("POST", "/api/v1/hub/broadcast", Some(body))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let bob = Audience::User(imgate_domain::UserId::parse("bob").unwrap());
    let args = r#"[{"id":7},"x y",null]"#.to_owned();
    assert_eq!(
        channel.sent.lock().unwrap().as_slice(),
        [
            (bob, "orders.shipped".to_owned(), args.clone()),
            (Audience::All, "orders.shipped".to_owned(), args)
        ]
    );
    let (status, _) = call(
        &app,
        host_call("DELETE", "/api/v1/hub/users/bob/connections", None),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(channel.closed.lock().unwrap().as_slice(), ["bob"]);
    let (status, body) = call(&app, host_call("GET", "/api/v1/hub/users/bob", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"userId": "bob", "online": false, "connections": 0})
    );
}

#[actix_web::test]
async fn bad_host_pushes_are_refused_naming_the_field_and_nothing_is_sent() {
    let channel = Arc::new(Channel::default());
    let app = app!(state_with(
        settings(JwtKey::Hs256(SECRET.to_vec())),
        vec![],
        channel.clone()
    ));
    let big = format!(r#"{{"target":"t","arguments":["{}"]}}"#, "x".repeat(300));
    let cases = [
        (
            r#"{"target":"9lives","arguments":[]}"#,
            StatusCode::BAD_REQUEST,
            "target: ",
        ),
        (
            r#"{"target":"getroommessagenotification","arguments":[]}"#,
            StatusCode::BAD_REQUEST,
            "target: ",
        ),
        (
            r#"{"target":"ok","arguments":{"a":1}}"#,
            StatusCode::BAD_REQUEST,
            "arguments: ",
        ),
        (r#"{"target":"ok"}"#, StatusCode::BAD_REQUEST, "arguments"),
        (r#"{"arguments":[]}"#, StatusCode::BAD_REQUEST, "target"),
        (
            r#"{"target":"ok","arguments":[1,"#,
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            r#"{"target":"ok","arguments":[],"extra":1}"#,
            StatusCode::BAD_REQUEST,
            "extra",
        ),
        (big.as_str(), StatusCode::PAYLOAD_TOO_LARGE, "too large"),
    ];
    for (body, expected, needle) in cases {
        for uri in ["/api/v1/hub/users/bob", "/api/v1/hub/broadcast"] {
            let (status, answer) = call(&app, host_call("POST", uri, Some(body))).await;
            assert_eq!(status, expected, "{uri} {body}: {answer}");
            let message = answer["message"].as_str().unwrap();
            assert!(
                message.contains(needle),
                "{body}: {message:?} should mention {needle:?}"
            );
        }
    }
    assert!(channel.sent.lock().unwrap().is_empty());
}

#[actix_web::test]
async fn host_realtime_is_for_the_host_back_end_only() {
    let app = app!(state(settings(JwtKey::Hs256(SECRET.to_vec())), vec![]));
    let body = r#"{"target":"t","arguments":[]}"#;
    for (method, uri) in [
        ("POST", "/api/v1/hub/users/bob"),
        ("POST", "/api/v1/hub/broadcast"),
        ("GET", "/api/v1/hub/users/bob"),
        ("DELETE", "/api/v1/hub/users/bob/connections"),
    ] {
        let anonymous = host_call(method, uri, Some(body)).insert_header(("X-Api-Key", ""));
        let mut anonymous = anonymous.to_request();
        anonymous.headers_mut().remove("X-Api-Key");
        let resp = test::call_service(&app, anonymous).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {uri}");
        let end_user = host_call(method, uri, Some(body)).insert_header((
            "Authorization",
            format!("Bearer {}", hs256(&claims(json!({})))),
        ));
        let mut end_user = end_user.to_request();
        end_user.headers_mut().remove("X-Api-Key");
        let resp = test::call_service(&app, end_user).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {uri}");
    }
}

#[actix_web::test]
async fn a_push_while_the_backplane_is_down_is_503_and_not_accepted() {
    let channel = Arc::new(Channel {
        down: true,
        ..Channel::default()
    });
    let app = app!(state_with(
        settings(JwtKey::Hs256(SECRET.to_vec())),
        vec![],
        channel
    ));
    let (status, body) = call(
        &app,
        host_call(
            "POST",
            "/api/v1/hub/users/bob",
            Some(r#"{"target":"t","arguments":[]}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "service_unavailable");
}
