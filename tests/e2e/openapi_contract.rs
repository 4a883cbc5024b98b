//! The REST contract as a generated client sees it: schemathesis, a third-party fuzzer, reads
//! `/openapi.json` and checks the gateway against it — every status answered is documented
//! for its route, every request the document allows is accepted and every one it forbids is
//! refused, bodies match their schemas, no 5xx — once as an end user and once as the host
//! back end.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::clients::{self, Scratch};
use crate::helpers::{TestGateway, API_KEY};

/// Where schemathesis and its settings are.
fn schemathesis_dir() -> PathBuf {
    clients::installed("schemathesis", ".venv/bin/schemathesis")
}

/// Runs schemathesis against a fresh gateway with `header` on every request; fails with its
/// report unless it found nothing.
async fn fuzz_as(identity: &str, header: impl FnOnce(&TestGateway) -> String) {
    // The per-user rate limit stays documented (429 with `Retry-After` on every end-user
    // route, checked by the http crate's tests) but is off here: hundreds of requests a second
    // from one user would otherwise be refused depending on timing, not on the contract.
    let gw = TestGateway::start(&[
        ("auth.api_key", API_KEY),
        ("server.user_rate_limit_per_s", "0"),
    ])
    .await;
    let header = header(&gw);
    let dir = schemathesis_dir();
    let schema = format!("{}/openapi.json", gw.base);
    // Its own working directory, so nothing it writes lands in the checkout.
    let work = std::env::temp_dir().join(format!(
        "imgate-schemathesis-{}-{identity}",
        std::process::id()
    ));
    std::fs::create_dir_all(&work).unwrap();
    let run = {
        let work = work.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(dir.join(".venv/bin/schemathesis"))
                .current_dir(&work)
                .arg("--config-file")
                .arg(dir.join("schemathesis.toml"))
                .args(["--no-color", "run", &schema, "-H", &header])
                // Every check; a fixed seed and no database of examples from earlier runs make
                // a run repeat itself; one worker keeps the order of requests fixed; the
                // examples per operation bound the run to about ten seconds.
                .args(["--checks", "all", "--seed", "1", "--max-examples", "20"])
                .args(["--generation-database", "none"])
                .args(["--workers", "1", "--request-timeout", "10"])
                .output()
                .expect("schemathesis runs")
        })
    };
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("schemathesis finishes within 3 minutes")
        .unwrap();
    std::fs::remove_dir_all(&work).ok();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && !report.contains("Server error"),
        "schemathesis as {identity} found failures:\n{report}"
    );
    // "Selected: 28/28" and "Tested: 28" in its summary: every operation was exercised.
    let field = |name: &str| {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .map(|rest| {
                rest.trim()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
    };
    let (selected, tested) = (field("Selected:"), field("Tested:"));
    assert!(
        report.contains("Seed: 1") && selected.is_some() && selected == tested,
        "schemathesis as {identity} did not test every operation:\n{report}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_document_holds_for_an_end_user() {
    fuzz_as("end-user", |gw| {
        format!("Authorization: Bearer {}", gw.token("alice"))
    })
    .await;
}

#[tokio::test]
async fn the_document_holds_for_the_host_back_end() {
    fuzz_as("host", |_| format!("X-Api-Key: {API_KEY}")).await;
}

/// Where openapi-typescript, openapi-fetch and TypeScript are.
fn typescript_dir() -> PathBuf {
    clients::installed("openapi", "node_modules/.bin/openapi-typescript")
}

/// Type-checks `client` (strict) against the types openapi-typescript generates from
/// `document`; the compiler's complaints when it does not.
fn type_check(document: &serde_json::Value, client: &str) -> Result<(), String> {
    let dir = typescript_dir();
    let scratch = Scratch::new(&dir);
    let generated = Command::new(dir.join("node_modules/.bin/openapi-typescript"))
        .arg(scratch.write("openapi.json", &document.to_string()))
        .arg("--output")
        .arg(scratch.path("api-types.ts"))
        .output()
        .expect("openapi-typescript runs");
    assert!(
        generated.status.success(),
        "openapi-typescript: {}",
        String::from_utf8_lossy(&generated.stderr)
    );
    clients::type_check(&dir, &scratch.write("typed-client.ts", client))
}

#[tokio::test]
async fn a_typescript_client_generated_from_the_document_type_checks() {
    let gw = TestGateway::start(&[]).await;
    let (status, document) = gw.send(gw.get("/openapi.json")).await;
    assert_eq!(status, 200);
    let client = std::fs::read_to_string(typescript_dir().join("typed-client.ts")).unwrap();
    assert_eq!(type_check(&document, &client), Ok(()));
    // The types hold the contract: a misspelt route and a body of the wrong shape are errors.
    let misspelt = client.replace("/api/v1/unread", "/api/v1/unreads");
    assert!(type_check(&document, &misspelt).is_err());
    let wrong_body = client.replace(r#"text: "hello""#, "text: 42");
    let complaint = type_check(&document, &wrong_body).unwrap_err();
    assert!(complaint.contains("number"), "{complaint}");
    gw.stop().await;
}
