//! The HTTP side: `/api/v1/*` through one dispatcher (faults, auth, rate limit, body
//! parsing, envelope), `/api/info`, `/file-upload/*` and the `/websocket` upgrade.

// REST v1 endpoint bodies, one module per concern, and the route table naming them all. Each
// body runs under the store lock and returns the payload keys; shapes follow
// docs/rocketchat-wire.md (7.x superset unless the version says otherwise).
mod auth;
mod chat;
mod params;
mod rooms;
mod routes;
mod settings;
mod subscriptions;
mod uploads;
mod users;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::faults::RestFaultKind;
use crate::limiter::{route_key, Verdict};
use crate::{Shared, Version};

/// Largest JSON body accepted.
const MAX_JSON: usize = 8 * 1024 * 1024;

/// Builds the actix server on `listener` and spawns it on the current runtime.
pub fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<ServerHandle> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/api/info", web::get().to(info))
            .route("/api/v1/{tail:.*}", web::route().to(api_v1))
            .route("/file-upload/{id}/{name:.*}", web::get().to(download))
            .route("/websocket", web::get().to(crate::ddp::upgrade))
            .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
    })
    .workers(workers.max(1))
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(error = %error, "rocketchat-sim server stopped with an error");
        }
    });
    Ok(handle)
}

/// A parsed REST call handed to endpoint functions.
pub struct Call {
    /// Authenticated user id, when headers were valid.
    pub uid: Option<String>,
    /// The raw token of the call (for `logout`).
    pub token: Option<String>,
    pub method: Method,
    /// Path segments after the endpoint name (`rooms.media/<rid>` -> `[rid]`).
    pub params: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Map<String, Value>,
    /// The `file` part of a multipart body.
    pub file: Option<FilePart>,
    pub version: Version,
}

/// An uploaded multipart file.
pub struct FilePart {
    pub name: String,
    pub content_type: String,
    pub data: bytes::Bytes,
}

/// What an endpoint answers.
pub enum Reply {
    /// Payload keys; the dispatcher adds `"success": true`.
    Ok(Value),
    /// A body sent exactly as given.
    Raw(Value),
}

impl Call {
    /// The authenticated user; endpoints only run after the dispatcher checked it.
    pub fn me(&self) -> Result<&str, ApiError> {
        self.uid.as_deref().ok_or(ApiError::NotLoggedIn)
    }

    /// A string parameter from the query (GET) or body (POST).
    pub fn arg(&self, key: &str) -> Option<String> {
        if self.method == Method::GET {
            return self.query.get(key).cloned();
        }
        match self.body.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            _ => self.query.get(key).cloned(),
        }
    }

    /// A boolean parameter (`true`/`"true"`).
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.body.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => Some(s == "true"),
            _ => self.query.get(key).map(|s| s == "true"),
        }
    }

    /// A required string parameter; ajv-style error when absent.
    pub fn required(&self, key: &str) -> Result<String, ApiError> {
        self.arg(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::InvalidParams(format!("must have required property '{key}'")))
    }
}

async fn info(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let full = shared.version == Version::V6 || {
        let st = shared.store();
        header_auth(&req)
            .and_then(|(u, t)| st.authenticate(&u, &t).map(|u| u.id.clone()))
            .is_some_and(|uid| st.has_permission(&uid, "view-statistics", None))
    };
    let version = shared.version.full();
    let mut body = if full {
        json!({"version": version})
    } else {
        let short: Vec<&str> = version.split('.').take(2).collect();
        json!({"version": short.join(".")})
    };
    if full && shared.version != Version::V6 {
        body["info"] = json!({"version": version, "build": {"nodeVersion": "v20", "arch": "x64", "platform": "linux"}, "commit": {}});
    }
    body["minimumClientVersions"] = json!({"desktop": "3.9.6", "mobile": "4.39.0"});
    body["success"] = json!(true);
    HttpResponse::Ok().json(body)
}

fn header_auth(req: &HttpRequest) -> Option<(String, String)> {
    let uid = req.headers().get("x-user-id")?.to_str().ok()?.to_string();
    let token = req
        .headers()
        .get("x-auth-token")?
        .to_str()
        .ok()?
        .to_string();
    Some((uid, token))
}

fn cookie_auth(req: &HttpRequest) -> Option<(String, String)> {
    let uid = req.cookie("rc_uid")?.value().to_string();
    let token = req.cookie("rc_token")?.value().to_string();
    Some((uid, token))
}

/// `GET /file-upload/<id>/<name>`: credentials from query `rc_uid`/`rc_token`, cookies or headers.
async fn download(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, _) = path.into_inner();
    let query = parse_query(req.query_string());
    let st = shared.store();
    let Some(upload) = st.uploads.get(&id) else {
        return HttpResponse::NotFound().finish();
    };
    if st.setting_bool("FileUpload_ProtectFiles") {
        let candidates = [
            query
                .get("rc_uid")
                .cloned()
                .zip(query.get("rc_token").cloned()),
            cookie_auth(&req),
            header_auth(&req),
        ];
        let caller = candidates
            .into_iter()
            .flatten()
            .find_map(|(u, t)| st.authenticate(&u, &t).map(|_| u));
        let Some(caller) = caller else {
            return HttpResponse::Forbidden().finish();
        };
        // Rocket.Chat's `FileUpload_Restrict_to_room_members` (default on): only members of
        // the file's room may download it.
        if st.setting_bool("FileUpload_Restrict_to_room_members")
            && !st.is_member(&caller, &upload.rid)
        {
            return HttpResponse::Forbidden().finish();
        }
    }
    let name: String = url::form_urlencoded::byte_serialize(upload.name.as_bytes()).collect();
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, upload.content_type.clone()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename*=UTF-8''{name}"),
        ))
        .insert_header(("Content-Security-Policy", "default-src 'none'"))
        .insert_header((header::CACHE_CONTROL, "max-age=31536000"))
        .body(upload.data.clone())
}

fn parse_query(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn render_error(err: &ApiError, version: Version) -> HttpResponse {
    let (status, body) = err.render(version);
    let mut resp = HttpResponse::build(status);
    if let ApiError::TooManyRequests { .. } = err {
        let reset = chrono::Utc::now().timestamp_millis() + 60_000;
        resp.insert_header(("X-RateLimit-Limit", "0"));
        resp.insert_header(("X-RateLimit-Remaining", "0"));
        resp.insert_header(("X-RateLimit-Reset", reset.to_string()));
    }
    resp.json(body)
}

fn injected(kind: &RestFaultKind, version: Version) -> HttpResponse {
    match kind {
        RestFaultKind::InternalError => render_error(&ApiError::Internal, version),
        RestFaultKind::TooManyRequests => render_error(&ApiError::TooManyRequests { wait_secs: 60 }, version),
        RestFaultKind::Garbage => HttpResponse::Ok()
            .content_type("text/html")
            .body("<html><body>upstream garbage \u{0}\u{1}{{not json</body></html>"),
        RestFaultKind::BadGateway => HttpResponse::build(StatusCode::BAD_GATEWAY)
            .content_type("text/html")
            .body("<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>"),
        RestFaultKind::Truncated => HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"success":true,"update":[{"_id":"GENERAL","t":"c","name":"gen"#),
        // A body stream that fails before its first chunk makes actix close the connection
        // without writing even the status line.
        RestFaultKind::Disconnect => HttpResponse::Ok()
            .content_type("application/json")
            .streaming(futures::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("injected disconnect"))
            })),
    }
}

/// Splits `rooms.media/abc` into (`rooms.media`, [`abc`]).
fn split_endpoint(tail: &str) -> (String, Vec<String>) {
    let mut parts = tail.trim_end_matches('/').split('/');
    let name = parts.next().unwrap_or_default().to_string();
    (name, parts.map(String::from).collect())
}

/// The limiter's verdict on a call, once auth is known: `None` when the call is not limited
/// (limiter off, rules disabled, or the caller holds `api-bypass-rate-limit`).
fn rate_limit(
    shared: &Shared,
    ip: &str,
    route: &str,
    method: &Method,
    uid: Option<&str>,
) -> Option<Verdict> {
    let (numbers, limited) = {
        let st = shared.store();
        let limited = st.setting_bool("API_Enable_Rate_Limiter")
            && !uid.is_some_and(|u| st.has_permission(u, "api-bypass-rate-limit", None));
        (crate::limiter_numbers(&st), limited)
    };
    let now = chrono::Utc::now().timestamp_millis();
    if !limited {
        // The rules still follow the settings while the limiter is off.
        shared.limiter.sync(numbers, now);
        return None;
    }
    shared
        .limiter
        .hit(&route_key(route, method.as_str()), ip, numbers, now)
}

fn with_limit_headers(mut resp: HttpResponse, limit: Option<&Verdict>) -> HttpResponse {
    if let Some(l) = limit {
        let h = resp.headers_mut();
        let pairs = [
            ("x-ratelimit-limit", l.limit.to_string()),
            ("x-ratelimit-remaining", l.remaining.to_string()),
            ("x-ratelimit-reset", l.reset_ms.to_string()),
        ];
        for (k, v) in pairs {
            if let Ok(v) = header::HeaderValue::from_str(&v) {
                h.insert(header::HeaderName::from_static(k), v);
            }
        }
    }
    resp
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max_file: usize,
) -> Result<(Map<String, Value>, Option<FilePart>), ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        let mut form = actix_multipart::Multipart::new(req.headers(), payload);
        let mut fields = Map::new();
        let mut file = None;
        while let Some(item) = form.next().await {
            let mut field = item.map_err(|_| ApiError::Failure("invalid multipart body".into()))?;
            let name = field.name().unwrap_or_default().to_string();
            let filename = field
                .content_disposition()
                .and_then(|cd| cd.get_filename())
                .map(String::from);
            let content_type = field.content_type().map(|m| m.to_string());
            let mut data = bytes::BytesMut::new();
            while let Some(chunk) = field.next().await {
                let chunk =
                    chunk.map_err(|_| ApiError::Failure("invalid multipart body".into()))?;
                if data.len() + chunk.len() > max_file {
                    return Err(ApiError::meteor(
                        "error-file-too-large",
                        "File size exceeds allowed size",
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            match filename {
                Some(filename) if name == "file" => {
                    file = Some(FilePart {
                        name: filename,
                        content_type: content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        data: data.freeze(),
                    });
                }
                Some(_) => return Err(ApiError::meteor("invalid-field", "")),
                None => {
                    fields.insert(
                        name,
                        Value::String(String::from_utf8_lossy(&data).into_owned()),
                    );
                }
            }
        }
        return Ok((fields, file));
    }
    let mut data = bytes::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::Failure("invalid body".into()))?;
        if data.len() + chunk.len() > MAX_JSON {
            return Err(ApiError::Failure("body too large".into()));
        }
        data.extend_from_slice(&chunk);
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok((Map::new(), None));
    }
    if ctype.starts_with("application/x-www-form-urlencoded") {
        let map = url::form_urlencoded::parse(&data)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        return Ok((map, None));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(map)) => Ok((map, None)),
        Ok(_) => Err(ApiError::InvalidParams("must be object".into())),
        Err(_) => Err(ApiError::Failure("Invalid JSON body".into())),
    }
}

async fn api_v1(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let version = shared.version;
    if let Some(delay) = shared.faults.delay() {
        tokio::time::sleep(delay).await;
    }
    if let Some(kind) = shared.faults.take_rest(req.path()) {
        return injected(&kind, version);
    }
    let (name, params) = split_endpoint(&path.into_inner());
    let method = req.method().clone();
    let Some(route) = routes::route(&method, &name, version) else {
        return render_error(&ApiError::NotFound, version);
    };

    // Authentication first: a bad token is a 401 even when the bucket is empty.
    let auth = header_auth(&req);
    let uid = auth
        .as_ref()
        .and_then(|(u, t)| shared.store().authenticate(u, t).map(|u| u.id.clone()));
    if route.auth && uid.is_none() {
        return render_error(&ApiError::NotLoggedIn, version);
    }

    let ip = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let limit = rate_limit(&shared, &ip, &name, &method, uid.as_deref());
    if let Some(refused) = limit.filter(|l| !l.allowed) {
        let wait_secs = (refused.time_to_reset_ms.max(0) as u64).div_ceil(1000);
        let err = ApiError::TooManyRequests { wait_secs };
        return with_limit_headers(render_error(&err, version), Some(&refused));
    }

    if route.two_factor {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (code, method) = (header("x-2fa-code"), header("x-2fa-method"));
        let checked = match (&uid, &auth) {
            (Some(uid), Some((_, token))) => {
                shared
                    .store()
                    .two_factor_check(uid, token, code.as_deref(), method.as_deref())
            }
            _ => Ok(()),
        };
        if let Err(e) = checked {
            return with_limit_headers(render_error(&e, version), limit.as_ref());
        }
    }

    let max_file = shared
        .store()
        .setting_i64("FileUpload_MaxFileSize", 104_857_600)
        .max(0) as usize;
    let (body, file) = match read_body(&req, payload, max_file).await {
        Ok(b) => b,
        Err(e) => return with_limit_headers(render_error(&e, version), limit.as_ref()),
    };
    let call = Call {
        uid,
        token: auth.map(|(_, t)| t),
        method,
        params,
        query: parse_query(req.query_string()),
        body,
        file,
        version,
    };
    let result = shared.with_store(|st| (route.handler)(st, &call));
    if name == "settings" && call.method == Method::POST && result.is_ok() {
        // A changed limiter setting rebuilds the rules now, not at the next limited call.
        let numbers = crate::limiter_numbers(&shared.store());
        shared
            .limiter
            .sync(numbers, chrono::Utc::now().timestamp_millis());
    }
    let resp = match result {
        Ok(Reply::Ok(mut v)) => {
            if let Value::Object(m) = &mut v {
                m.insert("success".into(), Value::Bool(true));
            }
            HttpResponse::Ok().json(v)
        }
        Ok(Reply::Raw(v)) => HttpResponse::Ok().json(v),
        Err(e) => {
            tracing::debug!(endpoint = %name, error = %e, "rest call failed");
            render_error(&e, version)
        }
    };
    with_limit_headers(resp, limit.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_split_keeps_path_params() {
        assert_eq!(
            split_endpoint("rooms.media/R1"),
            ("rooms.media".into(), vec!["R1".into()])
        );
        assert_eq!(split_endpoint("me"), ("me".into(), vec![]));
        assert_eq!(
            split_endpoint("rooms.mediaConfirm/R/F"),
            ("rooms.mediaConfirm".into(), vec!["R".into(), "F".into()])
        );
    }
}
