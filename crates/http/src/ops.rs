//! Operations endpoints: liveness, readiness, metrics and the OpenAPI document.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use imgate_domain::ports::HealthCheck;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::OpenApi;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The dependencies `/readyz` asks.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Arc<dyn HealthCheck>>,
}

impl Readiness {
    /// Readiness over these checks; all must pass.
    pub fn new(checks: Vec<Arc<dyn HealthCheck>>) -> Self {
        Self { checks }
    }
}

/// What `/healthz` and `/readyz` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// `ok`, `ready` or `not_ready`.
    pub status: &'static str,
    /// Each dependency: `ok` or why not.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<&'static str, String>,
    /// What an operator should change though the gateway is ready, e.g. a provider setting
    /// that throttles users (`rate_limiter`); never makes `/readyz` fail.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub warnings: BTreeMap<String, String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = HealthBody)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok",
        checks: BTreeMap::new(),
        warnings: BTreeMap::new(),
    })
}

/// The provider (and Redis, when used) answer and the admin agent is logged in; provider
/// settings the gateway would like changed are listed under `warnings`.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = HealthBody),
        (status = 503, description = "A dependency is not usable", body = HealthBody)))]
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let results = futures::future::join_all(readiness.checks.iter().map(|check| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        };
        // A warning that cannot be worked out in time is left out, not a failure.
        let warnings = tokio::time::timeout(CHECK_TIMEOUT, check.warnings())
            .await
            .unwrap_or_default();
        (check.name(), outcome, warnings)
    }))
    .await;
    let ready = results.iter().all(|(_, outcome, _)| outcome.is_ok());
    let mut checks = BTreeMap::new();
    let mut warnings = BTreeMap::new();
    for (name, outcome, found) in results {
        checks.insert(name, outcome.err().unwrap_or_else(|| "ok".into()));
        warnings.extend(found);
    }
    let body = HealthBody {
        status: if ready { "ready" } else { "not_ready" },
        checks,
        warnings,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// This API's OpenAPI document, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::ApiDoc::openapi())
}
