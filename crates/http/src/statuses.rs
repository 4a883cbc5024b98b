//! Which error statuses each operation of the OpenAPI document can answer, derived in one place
//! from what the operation is, so that a client generated from the document knows every answer
//! it can get.
//!
//! The `#[utoipa::path]` attributes declare the successes and, where a route has something
//! particular to say about an error, its description; [`StatusRules`] adds every error status
//! the rules below derive, with the [`ErrorBody`](crate::error::ErrorBody) envelope (and
//! `Retry-After` on 429). The rules, with what each status means (docs/api.md has the same
//! table for readers):
//!
//! | status | the operation… |
//! |---|---|
//! | 400 | takes path parameters, a query or a body (a value is wrong, the message names it) |
//! | 401 | needs credentials |
//! | 403 | is for the host back end (an end user's token without the admin claim), or acts as an end user in the provider (no chat account, or the provider does not allow it) |
//! | 404 | reaches the provider and names something by id, in its path or its body |
//! | 409 | creates something in the provider whose name or e-mail must be unique |
//! | 413 | takes a body |
//! | 429 | is an end user's (the per-user rate limit), or reaches the provider (its rate limit) |
//! | 502 | reaches the provider (it answered something unreadable) |
//! | 503 | reaches the provider (down, too slow, or the gateway's token cache is down) or the other nodes (the backplane) |
//!
//! What the document cannot show (who may call, what an operation reaches, what must be
//! unique) is stated once per operation in `OPERATIONS`; the rest is read from the
//! operation's entry (its parameters and body).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Anyone: no credentials.
    Public,
    /// An end user by the host's JWT.
    EndUser,
    /// The host back end: the API key, or a JWT with the admin claim.
    HostBackend,
    /// Either of them (`GET /api/v1/me`).
    AnyIdentity,
}

/// What an operation depends on beyond the gateway's own memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaches {
    /// Nothing.
    Nothing,
    /// The chat provider (and the gateway's token cache, for the caller's provider session).
    Provider,
    /// The other nodes, through the backplane.
    Backplane,
}

/// What the rules need to know about an operation beyond its entry in the document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    pub caller: Caller,
    pub reaches: Reaches,
    /// It creates something in the provider whose name or e-mail must be unique.
    pub unique: bool,
}

const fn facts(caller: Caller, reaches: Reaches) -> Facts {
    Facts {
        caller,
        reaches,
        unique: false,
    }
}

const fn creates_unique(caller: Caller, reaches: Reaches) -> Facts {
    Facts {
        caller,
        reaches,
        unique: true,
    }
}

use Caller::{AnyIdentity, EndUser, HostBackend, Public};
use Reaches::{Backplane, Nothing, Provider};

/// Every operation by its `operationId`. A test checks that each operation of the document is
/// here, and that `caller` agrees with the operation's declared security.
pub(crate) const OPERATIONS: &[(&str, Facts)] = &[
    ("healthz", facts(Public, Nothing)),
    ("readyz", facts(Public, Nothing)),
    ("metrics", facts(Public, Nothing)),
    ("openapi", facts(Public, Nothing)),
    ("me", facts(AnyIdentity, Nothing)),
    ("upsertUser", creates_unique(HostBackend, Provider)),
    ("getUser", facts(HostBackend, Provider)),
    ("deleteUser", facts(HostBackend, Provider)),
    ("listRooms", facts(EndUser, Provider)),
    ("createRoom", creates_unique(EndUser, Provider)),
    ("openDirectRoom", facts(EndUser, Provider)),
    ("getRoom", facts(EndUser, Provider)),
    ("addMembers", facts(EndUser, Provider)),
    ("removeMember", facts(EndUser, Provider)),
    ("leaveRoom", facts(EndUser, Provider)),
    ("listMessages", facts(EndUser, Provider)),
    ("sendMessage", facts(EndUser, Provider)),
    ("editMessage", facts(EndUser, Provider)),
    ("deleteMessage", facts(EndUser, Provider)),
    ("markRead", facts(EndUser, Provider)),
    ("getUnread", facts(EndUser, Provider)),
    ("uploadFile", facts(EndUser, Provider)),
    ("downloadFile", facts(EndUser, Provider)),
    ("createSession", facts(EndUser, Provider)),
    ("deleteSession", facts(EndUser, Provider)),
    ("pushToUser", facts(HostBackend, Backplane)),
    ("broadcast", facts(HostBackend, Backplane)),
    ("getPresence", facts(HostBackend, Backplane)),
    ("closeConnections", facts(HostBackend, Backplane)),
];

/// The facts of the operation with this id.
pub(crate) fn facts_of(operation_id: &str) -> Option<Facts> {
    OPERATIONS
        .iter()
        .find(|(id, _)| *id == operation_id)
        .map(|(_, facts)| *facts)
}

/// What the rules read from an operation's entry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shape {
    /// It has path parameters.
    pub path: bool,
    /// It has query parameters.
    pub query: bool,
    /// It takes a request body.
    pub body: bool,
    /// Its body names something by id (it refers to the `Id` schema).
    pub ids_in_body: bool,
}

impl Shape {
    fn of(operation: &Operation, openapi: &OpenApi) -> Self {
        let located = |place: ParameterIn| {
            operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.parameter_in == place)
        };
        let body = operation.request_body.as_ref();
        Self {
            path: located(ParameterIn::Path),
            query: located(ParameterIn::Query),
            body: body.is_some(),
            ids_in_body: body.is_some_and(|body| {
                body.content.values().any(|content| {
                    content
                        .schema
                        .as_ref()
                        .is_some_and(|schema| refers_to_id(schema, openapi))
                })
            }),
        }
    }
}

/// Whether `schema`, or the component it refers to, refers to the `Id` schema.
fn refers_to_id(schema: &RefOr<Schema>, openapi: &OpenApi) -> bool {
    let mentions_id = |value: &dyn Fn() -> serde_json::Result<String>| {
        value().is_ok_and(|json| json.contains("\"#/components/schemas/Id\""))
    };
    match schema {
        RefOr::Ref(reference) => reference
            .ref_location
            .strip_prefix("#/components/schemas/")
            .and_then(|name| openapi.components.as_ref()?.schemas.get(name))
            .is_some_and(|component| mentions_id(&|| serde_json::to_string(component))),
        RefOr::T(inline) => mentions_id(&|| serde_json::to_string(inline)),
    }
}

/// The error statuses an operation can answer, each with what it means there.
pub(crate) fn derive(facts: Facts, shape: Shape) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let secured = facts.caller != Caller::Public;
    let provider = facts.reaches == Reaches::Provider;
    if shape.path || shape.query || shape.body {
        let mut what = Vec::new();
        if shape.path {
            what.push("a path parameter");
        }
        if shape.query {
            what.push("a query parameter");
        }
        if shape.body {
            what.push("the body or one of its fields");
        }
        out.push((
            400,
            format!(
                "`invalid_request`: {} is wrong; the message names it",
                what.join(" or ")
            ),
        ));
    }
    if secured {
        out.push((
            401,
            "`unauthorized`: missing, malformed, expired or wrongly signed credentials, or a wrong \
             `X-Api-Key` beside them; the message says which check failed"
                .into(),
        ));
    }
    let mut forbidden = Vec::new();
    if facts.caller == Caller::HostBackend {
        forbidden.push(
            "an end user's token without the admin claim: this call is for the host back end",
        );
    }
    if facts.caller == Caller::EndUser && provider {
        forbidden.push(
            "the user has no chat account (the host has not mirrored them), or the provider does \
             not allow this to them",
        );
    }
    if !forbidden.is_empty() {
        out.push((403, format!("`forbidden`: {}", forbidden.join("; or "))));
    }
    if provider && (shape.path || shape.ids_in_body) {
        out.push((
            404,
            "`not_found`: something the request names does not exist, or the caller cannot see it"
                .into(),
        ));
    }
    if provider && facts.unique {
        out.push((
            409,
            "`conflict`: the name or e-mail address is taken".into(),
        ));
    }
    if shape.body {
        out.push((
            413,
            "`payload_too_large`: the body is over `server.max_body_bytes`".into(),
        ));
    }
    let mut limited = Vec::new();
    if facts.caller == Caller::EndUser {
        limited.push("the user sent more requests than `server.user_rate_limit_per_s` allows");
    }
    if provider {
        limited.push("the provider is rate limiting for longer than the gateway waits");
    }
    if !limited.is_empty() {
        out.push((
            429,
            format!(
                "`rate_limited`: {}; retry after `Retry-After` seconds",
                limited.join(", or ")
            ),
        ));
    }
    if provider {
        out.push((
            502,
            "`provider_error`: the provider answered something unreadable".into(),
        ));
    }
    match facts.reaches {
        Reaches::Provider => out.push((
            503,
            "`provider_unavailable`: the provider is down or too slow; or `service_unavailable`: \
             the gateway's token cache is"
                .into(),
        )),
        Reaches::Backplane => out.push((
            503,
            "`service_unavailable`: the other nodes cannot be reached".into(),
        )),
        Reaches::Nothing => {}
    }
    out
}

/// Adds the derived error statuses to every operation (see the module documentation).
pub struct StatusRules;

impl utoipa::Modify for StatusRules {
    fn modify(&self, openapi: &mut OpenApi) {
        let shapes: Vec<(String, Shape)> = openapi
            .paths
            .paths
            .values()
            .flat_map(operations)
            .filter_map(|op| Some((op.operation_id.clone()?, Shape::of(op, openapi))))
            .collect();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let Some(id) = operation.operation_id.clone() else {
                    continue;
                };
                let (Some(facts), Some((_, shape))) =
                    (facts_of(&id), shapes.iter().find(|(known, _)| *known == id))
                else {
                    continue;
                };
                for (status, meaning) in derive(facts, *shape) {
                    let declared = operation.responses.responses.remove(&status.to_string());
                    let response = error_response(status, declared, meaning);
                    operation
                        .responses
                        .responses
                        .insert(status.to_string(), RefOr::T(response));
                }
            }
        }
    }
}

/// The envelope's response for `status`: the route's own description when its attribute
/// gives one, the rule's `meaning` otherwise.
fn error_response(status: u16, declared: Option<RefOr<Response>>, meaning: String) -> Response {
    let description = match declared {
        Some(RefOr::T(response)) if !response.description.is_empty() => response.description,
        _ => meaning,
    };
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    if status == 429 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds to wait before sending again"))
                .build(),
        );
    }
    response.build()
}

fn operations(item: &PathItem) -> impl Iterator<Item = &Operation> {
    [
        &item.get,
        &item.put,
        &item.post,
        &item.delete,
        &item.options,
        &item.head,
        &item.patch,
        &item.trace,
    ]
    .into_iter()
    .flatten()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;
    use utoipa::OpenApi;

    use super::*;

    fn document() -> Value {
        serde_json::to_value(crate::ApiDoc::openapi()).unwrap()
    }

    /// Every operation of the document: method, path, entry.
    fn operations_of(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                out.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_unique_id_and_facts_that_match_its_security() {
        let doc = document();
        let mut ids = BTreeSet::new();
        for (method, path, operation) in operations_of(&doc) {
            let id = operation["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "{id} is used twice");
            let facts =
                facts_of(&id).unwrap_or_else(|| panic!("{method} {path}: {id} has no facts"));
            let schemes: BTreeSet<&str> = operation["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|requirement| requirement.as_object().unwrap().keys())
                .map(String::as_str)
                .collect();
            let expected: BTreeSet<&str> = match facts.caller {
                Caller::Public => BTreeSet::new(),
                Caller::EndUser => ["bearer"].into(),
                Caller::HostBackend | Caller::AnyIdentity => ["api_key", "bearer"].into(),
            };
            assert_eq!(schemes, expected, "{method} {path}");
        }
        assert_eq!(
            ids.len(),
            OPERATIONS.len(),
            "OPERATIONS names an operation the document lacks"
        );
    }

    #[test]
    fn every_error_status_is_derived_documented_with_the_envelope() {
        let openapi = crate::ApiDoc::openapi();
        let doc = serde_json::to_value(&openapi).unwrap();
        for (method, path, operation) in operations_of(&doc) {
            let id = operation["operationId"].as_str().unwrap();
            let entry = openapi.paths.paths[&path].clone();
            let op = operations(&entry)
                .find(|op| op.operation_id.as_deref() == Some(id))
                .unwrap();
            let derived: BTreeSet<u16> = derive(facts_of(id).unwrap(), Shape::of(op, &openapi))
                .into_iter()
                .map(|(status, _)| status)
                .collect();
            let responses = operation["responses"].as_object().unwrap();
            let errors: BTreeSet<u16> = responses
                .keys()
                .map(|status| status.parse::<u16>().unwrap())
                .filter(|status| *status >= 400)
                .collect();
            if id == "readyz" {
                // Its 503 is the readiness report itself, not an error envelope.
                assert_eq!(errors, [503].into());
                continue;
            }
            assert_eq!(
                errors, derived,
                "{method} {path}: declared and derived differ"
            );
            for status in errors {
                let response = &responses[&status.to_string()];
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
                assert!(
                    !response["description"].as_str().unwrap().is_empty(),
                    "{method} {path} {status}"
                );
                if status == 429 {
                    assert!(
                        response["headers"]["Retry-After"].is_object(),
                        "{method} {path}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_rules_give_each_kind_of_operation_its_statuses() {
        let check = |facts: Facts, shape: Shape, expected: &[u16]| {
            let got: Vec<u16> = derive(facts, shape).into_iter().map(|(s, _)| s).collect();
            assert_eq!(got, expected, "{facts:?} {shape:?}");
        };
        let none = Shape::default();
        let path = Shape { path: true, ..none };
        let body = Shape { body: true, ..none };
        check(facts(Public, Nothing), none, &[]);
        check(facts(AnyIdentity, Nothing), none, &[401]);
        check(facts(EndUser, Provider), none, &[401, 403, 429, 502, 503]);
        check(
            facts(EndUser, Provider),
            path,
            &[400, 401, 403, 404, 429, 502, 503],
        );
        check(
            creates_unique(EndUser, Provider),
            Shape {
                ids_in_body: true,
                ..body
            },
            &[400, 401, 403, 404, 409, 413, 429, 502, 503],
        );
        check(facts(HostBackend, Backplane), path, &[400, 401, 403, 503]);
        check(
            facts(HostBackend, Backplane),
            body,
            &[400, 401, 403, 413, 503],
        );
        check(
            facts(HostBackend, Provider),
            path,
            &[400, 401, 403, 404, 429, 502, 503],
        );
    }
}
