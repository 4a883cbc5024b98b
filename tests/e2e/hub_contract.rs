//! The hub's contract: `/asyncapi.json` read by the official AsyncAPI parser, TypeScript
//! typings derived from it, and the host's declared targets checked on push.

use std::path::PathBuf;
use std::process::Command;

use imgate_testkit::hub_client::HubClient;
use serde_json::{json, Value};

use crate::clients::{self, Scratch};
use crate::helpers::{TestGateway, API_KEY};

/// Where the AsyncAPI parser and the typings script are installed.
fn clients() -> PathBuf {
    clients::installed("asyncapi", "node_modules/@asyncapi/parser/package.json")
}

/// Runs `script` of the clients folder on `document`, returning what it printed.
fn run(script: &str, document: &Value) -> String {
    let scratch = Scratch::new(&clients());
    let output = Command::new("node")
        .arg(clients().join(script))
        .arg(scratch.write("asyncapi.json", &document.to_string()))
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Type-checks `app` (strict) with `typings` as its `./hub-types`, against the official client.
fn compile(typings: &str, app: &str) -> Result<(), String> {
    let scratch = Scratch::new(&clients());
    scratch.write("hub-types.ts", typings);
    clients::type_check(&clients(), &scratch.write("typed-app.ts", app))
}

/// A gateway whose host declared `notify(notice)` and `orderShipped(order)` and sends no
/// other target.
async fn gateway_with_targets() -> TestGateway {
    TestGateway::start_edited(
        &[("auth.api_key", API_KEY), ("hub.strict_targets", "true")],
        |settings| {
            settings.hub.targets = serde_json::from_value(json!({
                "notify": {
                    "description": "A notice for the user.",
                    "arguments": [{
                        "type": "object",
                        "required": ["message"],
                        "properties": {"message": {"type": "string", "maxLength": 200}}
                    }]
                },
                "orderShipped": {
                    "arguments": [{"type": "integer", "minimum": 1}, {"type": "string"}]
                }
            }))
            .unwrap();
        },
    )
    .await
}

#[tokio::test]
async fn the_asyncapi_document_parses_and_lists_every_target_and_method() {
    let gw = gateway_with_targets().await;
    let (status, document) = gw.send(gw.get("/asyncapi.json")).await;
    assert_eq!(status, 200);
    let parsed: Value = serde_json::from_str(&run("check.mjs", &document)).unwrap();
    let problems: Vec<&Value> = parsed["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error" || d["severity"] == "warning")
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let operations = &parsed["operations"];
    for target in [
        "getRoomMessageNotification",
        "getRoomSubscriptionChangedNotification",
        "messageDeleted",
        "typing",
        "notify",
        "orderShipped",
    ] {
        let operation = &operations[format!("client.{target}")];
        assert_eq!(operation["action"], "send", "{target}: {operations:#}");
        assert_eq!(operation["messages"][0]["name"], target);
    }
    assert_eq!(
        operations["client.orderShipped"]["messages"][0]["payload"]["items"],
        json!([{"type": "integer", "minimum": 1}, {"type": "string"}])
    );
    // The parser resolved the chat events' references into the shared schemas.
    let message = &operations["client.getRoomMessageNotification"]["messages"][0]["payload"];
    assert_eq!(
        message["items"][0]["properties"]["sender"]["type"],
        "object"
    );
    for method in ["SendMessage", "MarkRead", "Typing"] {
        let operation = &operations[format!("hub.{method}")];
        assert_eq!(operation["action"], "receive", "{method}");
        assert_eq!(operation["reply"], json!([format!("{method} completion")]));
    }

    let typings = run("typings.mjs", &document);
    for line in [
        "getRoomMessageNotification: [Message];",
        "orderShipped: [number, string];",
        "arguments: [string, string];",
    ] {
        assert!(typings.contains(line), "{line} not in:\n{typings}");
    }
    // docs/hub.md's example app compiles against them, and a misspelt target does not.
    let app = std::fs::read_to_string(clients().join("typed-app.ts")).unwrap();
    assert_eq!(compile(&typings, &app), Ok(()));
    let misspelt = compile(&typings, &app.replace(r#""notify""#, r#""notfy""#)).unwrap_err();
    assert!(
        misspelt.contains(r#"'"notfy"' is not assignable"#),
        "{misspelt}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn declared_targets_are_checked_naming_the_argument_and_strictness_refuses_others() {
    let gw = gateway_with_targets().await;
    // bob is one of the embedded provider's demo users.
    let mut bob =
        HubClient::spawn_node(&format!("{}/hub", gw.base), &gw.token("bob"), "websockets");
    bob.connected().await;
    let push = |body: Value| {
        gw.post("/api/v1/hub/users/bob")
            .header("X-Api-Key", API_KEY)
            .json(&body)
    };
    // The metrics are the test process's, which other tests share: count what this one adds.
    let refusals = |metrics: String, reason: &str| -> u64 {
        let name = format!("imgate_host_pushes_refused_total{{reason=\"{reason}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name.as_str()))
            .map_or(0, |count| count.parse().unwrap())
    };
    let before = gw.metrics().await;
    let refused = |body: Value| async {
        let (status, answer) = gw.send(push(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_request");
        answer["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        refused(json!({"target": "notify", "arguments": [{"message": 7}]})).await,
        r#"arguments[0].message: 7 is not of type "string""#
    );
    assert_eq!(
        refused(json!({"target": "orderShipped", "arguments": [0, "x"]})).await,
        "arguments[0]: 0 is less than the minimum of 1"
    );
    assert!(refused(json!({"target": "orderShipped", "arguments": [1]}))
        .await
        .starts_with("arguments: 'orderShipped' takes 2 argument(s)"));
    assert!(refused(json!({"target": "other", "arguments": []}))
        .await
        .starts_with("target: 'other' is not declared"));

    let (status, answer) = gw
        .send(push(
            json!({"target": "notify", "arguments": [{"message": "hi"}]}),
        ))
        .await;
    assert_eq!(status, 202, "{answer}");
    let got = bob
        .wait_for("the valid notice", |v| v["target"] == "notify")
        .await;
    assert_eq!(got["args"], json!([{"message": "hi"}]));
    // Only the valid push arrived.
    assert_eq!(bob.received().len(), 1, "{:?}", bob.received());
    let after = gw.metrics().await;
    for (reason, count) in [("invalid_arguments", 3), ("undeclared_target", 1)] {
        assert_eq!(
            refusals(after.clone(), reason) - refusals(before.clone(), reason),
            count,
            "{reason}"
        );
    }
    gw.stop().await;
}
