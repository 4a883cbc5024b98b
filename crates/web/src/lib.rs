//! imgate's demo chat page. Static files (HTML, plain ES-module JavaScript, CSS and the
//! vendored `@microsoft/signalr` browser bundle) are built into the binary; nothing is read
//! from disk and no Node is needed to serve them.
//!
//! Mount with [`configure`] in the same scope as the REST API and the hub: the page uses
//! relative URLs (`api/v1/…`, `hub`), so it works under any `server.base_path`.
//!
//! ```no_run
//! # use actix_web::{web, App};
//! let app = App::new().service(web::scope("/chat").configure(imgate_web::configure));
//! ```

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

/// One file of the page.
struct Asset {
    /// The path below the mount point.
    path: &'static str,
    /// Its `Content-Type`.
    mime: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

/// The page's files, served under `assets/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        path: "api.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/api.js"),
    },
    Asset {
        path: "ddp.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/ddp.js"),
    },
    Asset {
        path: "style.css",
        mime: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        path: "signalr.min.js",
        mime: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/signalr.min.js"),
    },
];

/// The page itself.
const INDEX: &str = include_str!("../assets/index.html");

/// What the page may load: its own files, the gateway's API and hub, and (frontend mode) the
/// provider's realtime WebSocket wherever it is; file previews are `blob:` URLs.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' blob: data:; connect-src 'self' ws: wss: http: https:; \
object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

/// Registers `GET /` (the page) and `GET /assets/{file}` relative to the enclosing scope.
/// A request for the scope itself without its trailing slash (`/chat` under
/// `server.base_path = "/chat"`) is redirected to `/chat/` so relative URLs resolve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(redirect_to_slash))
        .route("/", web::get().to(index))
        .route("/assets/{file}", web::get().to(asset));
}

/// Mints a demo token for a user id.
type Mint = dyn Fn(&str) -> Option<String> + Send + Sync;

/// `GET /demo/token?user=ID` for demo mode only: mount it only when the gateway runs with
/// the public demo secret. `mint` returns a token for a valid user id, `None` for an invalid
/// one. Answers `200 {"token","userId"}` with `Cache-Control: no-store`, or `400` in the API's
/// error envelope. The page asks it first and falls back to a pasted token when it is absent.
///
/// ```no_run
/// # use actix_web::{web, App};
/// # fn mint_demo_jwt(user: &str) -> String { user.into() }
/// let app = App::new().configure(imgate_web::demo_token(|user: &str| Some(mint_demo_jwt(user))));
/// ```
pub fn demo_token<F>(mint: F) -> impl Fn(&mut web::ServiceConfig) + Clone
where
    F: Fn(&str) -> Option<String> + Send + Sync + 'static,
{
    let mint: Arc<Mint> = Arc::new(mint);
    move |cfg: &mut web::ServiceConfig| {
        let mint = mint.clone();
        cfg.route(
            "/demo/token",
            web::get().to(move |req: HttpRequest| {
                let mint = mint.clone();
                async move { demo_token_answer(&req, mint.as_ref()) }
            }),
        );
    }
}

fn demo_token_answer(req: &HttpRequest, mint: &Mint) -> HttpResponse {
    let user =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("user").cloned())
            .unwrap_or_default();
    let token = if user.is_empty() { None } else { mint(&user) };
    match token {
        Some(token) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/json")
            .body(format!(
                "{{\"token\":{},\"userId\":{}}}",
                json_string(&token),
                json_string(&user)
            )),
        None => HttpResponse::BadRequest()
            .content_type("application/json")
            .body(r#"{"error":"invalid_request","message":"user: give a valid user id, e.g. ?user=alice"}"#),
    }
}

/// A JSON string literal (the crate has no serde).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn redirect_to_slash(req: HttpRequest) -> HttpResponse {
    let mut location = format!("{}/", req.path());
    if !req.query_string().is_empty() {
        location.push('?');
        location.push_str(req.query_string());
    }
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, location))
        .finish()
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(INDEX)
}

async fn asset(req: HttpRequest, file: web::Path<String>) -> HttpResponse {
    let Some(asset) = ASSETS.iter().find(|a| a.path == file.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("application/json")
            .body(r#"{"error":"not_found","message":"no such asset"}"#);
    };
    let etag = etag(asset.body);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(asset.mime)))
        .insert_header((header::ETAG, etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if fresh {
        response.finish()
    } else {
        response.body(asset.body)
    }
}

/// A strong validator from the file's bytes (FNV-1a; the files never change at run time).
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    async fn get(scope: &str, path: &str) -> actix_web::dev::ServiceResponse {
        let app =
            test::init_service(App::new().service(web::scope(scope).configure(configure))).await;
        test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await
    }

    #[actix_web::test]
    async fn serves_the_page_at_the_root() {
        let res = get("", "/").await;
        assert_eq!(res.status(), 200);
        assert!(res
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let body = test::read_body(res).await;
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains("assets/app.js"));
        assert!(
            !body.contains("\"/assets/"),
            "asset URLs must be relative for base_path"
        );
    }

    #[actix_web::test]
    async fn serves_assets_with_their_types() {
        for (path, mime) in [
            ("/assets/app.js", "text/javascript"),
            ("/assets/signalr.min.js", "text/javascript"),
            ("/assets/style.css", "text/css"),
        ] {
            let res = get("", path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert!(
                res.headers()
                    .get("content-type")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(mime),
                "{path}"
            );
            assert!(res.headers().contains_key("etag"));
        }
        assert_eq!(get("", "/assets/nope.js").await.status(), 404);
    }

    #[actix_web::test]
    async fn answers_not_modified_for_a_known_etag() {
        let app = test::init_service(App::new().configure(configure)).await;
        let first = test::call_service(
            &app,
            test::TestRequest::get().uri("/assets/app.js").to_request(),
        )
        .await;
        let tag = first.headers().get("etag").unwrap().clone();
        let again = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/assets/app.js")
                .insert_header(("if-none-match", tag))
                .to_request(),
        )
        .await;
        assert_eq!(again.status(), 304);
    }

    #[actix_web::test]
    async fn demo_token_mints_for_valid_ids_only() {
        let app = test::init_service(App::new().service(web::scope("/chat").configure(
            demo_token(|user: &str| (user != "bad").then(|| format!("jwt-for-{user}"))),
        )))
        .await;
        let call = |uri: &'static str| test::TestRequest::get().uri(uri).to_request();
        let res = test::call_service(&app, call("/chat/demo/token?user=alice")).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
        let body = test::read_body(res).await;
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"token":"jwt-for-alice","userId":"alice"}"#
        );
        for uri in [
            "/chat/demo/token?user=bad",
            "/chat/demo/token",
            "/chat/demo/token?user=",
        ] {
            let res = test::call_service(&app, call(uri)).await;
            assert_eq!(res.status(), 400, "{uri}");
        }
    }

    #[actix_web::test]
    async fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), r#""a\"b\\c\u000a""#);
    }

    #[actix_web::test]
    async fn works_under_a_base_path() {
        assert_eq!(get("/chat", "/chat/").await.status(), 200);
        assert_eq!(get("/chat", "/chat/assets/style.css").await.status(), 200);
        let res = get("/chat", "/chat").await;
        assert_eq!(res.status(), 308);
        assert_eq!(res.headers().get("location").unwrap(), "/chat/");
    }
}
