//! Every error a service can fail with reaches a client the same way over REST and over the
//! hub: the status and code REST gives follow its class in `ClientError`, and the message is
//! the same text in the REST body and in the hub completion's `error`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::ResponseError;
use imgate_domain::ports::{BackplaneError, CacheError, ProviderError};
use imgate_domain::services::{AdminError, HostRealtimeError, SessionError};
use imgate_domain::ClientError;
use imgate_http::error::ApiError;
use imgate_signalr::HubError;

/// One failure of each kind every service can return, with the class it must fall in.
fn every_failure() -> Vec<(&'static str, ClientError, ApiError, HubError)> {
    fn case<E: Clone + Into<ClientError> + Into<ApiError> + Into<HubError>>(
        name: &'static str,
        err: E,
    ) -> (&'static str, ClientError, ApiError, HubError) {
        (name, err.clone().into(), err.clone().into(), err.into())
    }
    let provider = || {
        [
            ProviderError::SessionExpired,
            ProviderError::InvalidCredentials,
            ProviderError::Forbidden("not a member".into()),
            ProviderError::NotFound("room r1 not found".into()),
            ProviderError::Conflict("name taken".into()),
            ProviderError::Invalid {
                field: "name".into(),
                message: "too long".into(),
            },
            ProviderError::RateLimited {
                retry_after: Duration::from_secs(3),
            },
            ProviderError::Unavailable("10.0.0.1 refused".into()),
            ProviderError::BadResponse("<html>".into()),
        ]
    };
    let mut cases: Vec<_> = provider()
        .into_iter()
        .map(|err| case("provider", err))
        .collect();
    cases.extend(
        provider()
            .into_iter()
            .map(|err| case("session", SessionError::Provider(err))),
    );
    cases.extend(
        provider()
            .into_iter()
            .map(|err| case("admin", AdminError::Provider(err))),
    );
    cases.push(case("admin", AdminError::LoginRefused));
    for cache in [
        CacheError::Unavailable("redis down".into()),
        CacheError::Corrupt("bad entry".into()),
    ] {
        cases.push(case("cache", cache.clone()));
        cases.push(case("session", SessionError::Cache(cache)));
    }
    cases.push(case(
        "backplane",
        BackplaneError::Unavailable("redis down".into()),
    ));
    cases.push(case(
        "host realtime",
        HostRealtimeError::Invalid("target: bad".into()),
    ));
    cases.push(case(
        "host realtime",
        HostRealtimeError::Unavailable("redis down".into()),
    ));
    cases
}

#[test]
fn every_failure_reads_the_same_over_rest_and_the_hub() {
    for (source, class, rest, hub) in every_failure() {
        let (status, code) = match &class {
            ClientError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ClientError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ClientError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ClientError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ClientError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ClientError::ProviderUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable")
            }
            ClientError::ProviderError(_) => (StatusCode::BAD_GATEWAY, "provider_error"),
            ClientError::ServiceUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
        };
        let what = format!("{source}: {class:?}");
        assert_eq!(rest.status_code(), status, "{what}");
        assert_eq!(rest.code(), code, "{what}");
        assert_eq!(rest.to_string(), class.message(), "{what}");
        assert_eq!(hub.client_message(), class.message(), "{what}");
        // Internals go to the log, never to a client, whichever way it asked.
        if let Some(detail) = class.detail() {
            assert!(!class.message().contains(detail), "{what}");
            assert!(hub.is_fault(), "{what}");
        }
    }
}

#[test]
fn a_refused_login_and_a_clash_mean_the_same_everywhere() {
    // The two that used to differ: no chat account was an internal error over the hub, and a
    // clash was an invalid argument there.
    let no_account = HubError::from(ProviderError::InvalidCredentials);
    assert_eq!(
        no_account.client_message(),
        "this user has no chat account; the host application must create it first"
    );
    let clash = ApiError::from(ProviderError::Conflict("name taken".into()));
    assert_eq!(clash.status_code(), StatusCode::CONFLICT);
    assert_eq!(
        HubError::from(ProviderError::Conflict("name taken".into())),
        HubError::Client(ClientError::Conflict("name taken".into()))
    );
}
