//! The hub's contract as an AsyncAPI 3.1 document (`GET /asyncapi.json`): every server → client
//! target (the chat events and the host's declared targets) and every client → server method,
//! with their arguments' schemas derived from the same Rust types as `/openapi.json`.
//!
//! One channel, the hub. A message is one invocation and its payload is the invocation's
//! `arguments` array, so a client's handler for `target` gets exactly the payload's items.
//! The gateway `send`s the server → client targets and `receive`s the methods; a method's
//! `reply` is its completion's `result`.

use imgate_domain::model::Message;
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{OpenApi, PartialSchema};

use crate::backend::{
    MessageDeletion, RoomSubscriptionChange, TypingNotice, MESSAGE_DELETED, ROOM_MESSAGE,
    SUBSCRIPTION_CHANGED, TYPING,
};
use crate::HubConfig;

/// The schemas the hub's messages refer to, with everything they contain.
#[derive(OpenApi)]
#[openapi(components(schemas(Message, RoomSubscriptionChange, MessageDeletion, TypingNotice)))]
struct HubSchemas;

/// A reference to one of [`HubSchemas`].
fn named(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The schema of a plain Rust type.
fn of<T: PartialSchema>() -> Value {
    let schema: RefOr<Schema> = T::schema();
    serde_json::to_value(schema).unwrap_or(Value::Bool(true))
}

/// An invocation's `arguments`: exactly these, in order.
fn arguments(items: Vec<Value>) -> Value {
    let count = items.len();
    json!({ "type": "array", "items": items, "minItems": count, "maxItems": count })
}

/// The chat events' targets: name, what it says, its one argument.
fn chat_targets() -> [(&'static str, &'static str, Value); 4] {
    [
        (
            ROOM_MESSAGE,
            "A new or edited message in one of the user's rooms.",
            named("Message"),
        ),
        (
            SUBSCRIPTION_CHANGED,
            "The user joined, left, was added to or removed from a room, or its unread count changed.",
            named("RoomSubscriptionChange"),
        ),
        (
            MESSAGE_DELETED,
            "A message was deleted in one of the user's rooms.",
            named("MessageDeletion"),
        ),
        (
            TYPING,
            "Someone started or stopped typing in one of the user's rooms.",
            named("TypingNotice"),
        ),
    ]
}

/// A hub method: name, what it does, its arguments (name, schema), its completion's result.
type Method = (
    &'static str,
    &'static str,
    Vec<(&'static str, Value)>,
    Value,
);

/// The methods clients may invoke ([`crate::HubCall`]).
fn methods() -> [Method; 3] {
    [
        (
            "SendMessage",
            "Posts a message as the caller; completes with the message.",
            vec![("roomId", of::<String>()), ("text", of::<String>())],
            named("Message"),
        ),
        (
            "MarkRead",
            "Sets the caller's unread count of the room to 0; completes without a result.",
            vec![("roomId", of::<String>())],
            json!({ "type": "null" }),
        ),
        (
            "Typing",
            "The caller started (true) or stopped (false) typing; completes without a result.",
            vec![("roomId", of::<String>()), ("typing", of::<bool>())],
            json!({ "type": "null" }),
        ),
    ]
}

/// The AsyncAPI document of a hub with `config`'s declared host targets.
pub fn document(config: &HubConfig) -> Value {
    let mut messages = Map::new();
    let mut operations = Map::new();
    let mut add_target = |target: &str, summary: &str, payload: Value| {
        let id = format!("client.{target}");
        messages.insert(
            id.clone(),
            json!({
                "name": target,
                "summary": summary,
                "payload": payload,
            }),
        );
        operations.insert(
            id.clone(),
            json!({
                "action": "send",
                "channel": { "$ref": "#/channels/hub" },
                "summary": format!("Invokes `{target}` on the client."),
                "messages": [{ "$ref": format!("#/channels/hub/messages/{id}") }],
            }),
        );
    };
    for (target, summary, argument) in chat_targets() {
        add_target(target, summary, arguments(vec![argument]));
    }
    for (target, declaration) in &config.targets {
        let payload = match &declaration.arguments {
            Some(schemas) => arguments(schemas.clone()),
            None => json!({ "type": "array" }),
        };
        let summary = if declaration.description.is_empty() {
            "Pushed by the host application."
        } else {
            &declaration.description
        };
        add_target(target, summary, payload);
    }
    for (method, summary, parameters, result) in methods() {
        let id = format!("hub.{method}");
        let reply = format!("{id}.completion");
        let items = parameters
            .into_iter()
            .map(|(name, mut schema)| {
                if let Value::Object(fields) = &mut schema {
                    fields.insert("title".into(), name.into());
                }
                schema
            })
            .collect();
        messages.insert(
            id.clone(),
            json!({ "name": method, "summary": summary, "payload": arguments(items) }),
        );
        messages.insert(
            reply.clone(),
            json!({
                "name": format!("{method} completion"),
                "summary": format!("The `result` of the completion of `{method}`."),
                "payload": result,
            }),
        );
        operations.insert(
            id.clone(),
            json!({
                "action": "receive",
                "channel": { "$ref": "#/channels/hub" },
                "summary": summary,
                "messages": [{ "$ref": format!("#/channels/hub/messages/{id}") }],
                "reply": {
                    "channel": { "$ref": "#/channels/hub" },
                    "messages": [{ "$ref": format!("#/channels/hub/messages/{reply}") }],
                },
            }),
        );
    }
    let schemas = HubSchemas::openapi()
        .components
        .map(|components| serde_json::to_value(components.schemas).unwrap_or_default())
        .unwrap_or_default();
    json!({
        "asyncapi": "3.1.0",
        "info": {
            "title": "imgate hub",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The SignalR hub at /hub (JSON hub protocol; WebSockets, Server-Sent \
                Events, Long Polling). Each message is one invocation; its payload is the \
                invocation's arguments. Clients match target and method names ignoring case.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "hub": {
                "address": "/hub",
                "title": "The hub",
                "messages": messages
                    .keys()
                    .map(|id| (id.clone(), json!({ "$ref": format!("#/components/messages/{id}") })))
                    .collect::<Map<_, _>>(),
            }
        },
        "operations": operations,
        "components": { "messages": messages, "schemas": schemas },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{HubCall, CHAT_TARGETS};

    fn config(targets: Value) -> HubConfig {
        HubConfig {
            targets: serde_json::from_value(targets).unwrap(),
            ..HubConfig::default()
        }
    }

    #[test]
    fn every_chat_target_and_method_is_listed() {
        let doc = document(&HubConfig::default());
        let sent: Vec<&str> = doc["operations"]
            .as_object()
            .unwrap()
            .values()
            .filter(|op| op["action"] == "send")
            .map(|op| op["messages"][0]["$ref"].as_str().unwrap())
            .map(|reference| reference.trim_start_matches("#/channels/hub/messages/client."))
            .collect();
        let mut chat = CHAT_TARGETS.to_vec();
        chat.sort_unstable();
        assert_eq!(sent, chat);
        for (method, _, parameters, _) in methods() {
            let arguments: Vec<Value> = parameters
                .iter()
                .map(|(_, schema)| match schema["type"].as_str() {
                    Some("boolean") => json!(true),
                    _ => json!("r1"),
                })
                .collect();
            assert!(HubCall::parse(method, &arguments).is_ok(), "{method}");
            let message = &doc["components"]["messages"][format!("hub.{method}")];
            assert_eq!(message["payload"]["minItems"], parameters.len());
        }
        // Every schema a message refers to is in the document.
        let text = doc.to_string();
        for name in [
            "Message",
            "Room",
            "RoomSubscriptionChange",
            "SubscriptionChange",
        ] {
            assert!(
                text.contains(&format!("#/components/schemas/{name}\"")),
                "{name}"
            );
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    #[test]
    fn declared_host_targets_are_listed_with_their_schemas() {
        let doc = document(&config(json!({
            "orderShipped": {
                "description": "An order left the warehouse.",
                "arguments": [{"type": "integer"}, {"type": "string"}]
            },
            "ping": {}
        })));
        let messages = &doc["components"]["messages"];
        assert_eq!(
            messages["client.orderShipped"],
            json!({
                "name": "orderShipped",
                "summary": "An order left the warehouse.",
                "payload": {
                    "type": "array",
                    "items": [{"type": "integer"}, {"type": "string"}],
                    "minItems": 2,
                    "maxItems": 2
                }
            })
        );
        assert_eq!(messages["client.ping"]["payload"], json!({"type": "array"}));
        assert_eq!(doc["operations"]["client.ping"]["action"], "send");
    }
}
