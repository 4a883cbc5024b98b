//! Request logs and HTTP metrics. Only the path is logged, never the query string: on hub
//! paths it can carry an `access_token`. The client address is the one trusted proxies
//! vouch for ([`TrustedProxies`], registered as app data; without it, the peer's).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use crate::client_addr::TrustedProxies;

/// Logs each request once and counts it in `imgate_http_requests_total` and
/// `imgate_http_request_duration_seconds`, labelled by route pattern (never by id).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let client = match req.app_data::<web::Data<TrustedProxies>>() {
        Some(proxies) => proxies.client_of(&req),
        None => req.peer_addr().map(|addr| addr.ip()),
    };
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::info!(
        method = %method,
        path = %path,
        client = client.map(tracing::field::display),
        status,
        elapsed_ms = elapsed.as_secs_f64() * 1000.0,
        "http request"
    );
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("imgate_http_requests_total", &labels).increment(1);
    metrics::histogram!("imgate_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    Ok(response)
}
