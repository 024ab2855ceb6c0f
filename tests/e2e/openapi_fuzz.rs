//! The OpenAPI document describes what the server does: a schema-based fuzzer (Schemathesis)
//! generates requests from it against the running server, and every answer must be no 5xx, a
//! documented status, the documented content type and a body matching the documented schema.
//!
//! Schemathesis is a Python tool; `cargo xtask test` installs it with pip when missing (set
//! `CUSTOS_SCHEMATHESIS` to use another executable).

use std::process::Command;

use custos_testkit::{ServerOptions, TestServer};
use serde_json::json;

use crate::{create_framework, create_requirement, id, seed_gdpr_body};

fn schemathesis() -> String {
    std::env::var("CUSTOS_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_based_fuzzer_finds_no_server_error_or_schema_violation() {
    let found = Command::new(schemathesis()).arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "Schemathesis is not installed: run the suite with `cargo xtask test` (it installs it with pip), \
         or `pip install schemathesis`"
    );
    let s = TestServer::start_with(ServerOptions {
        rate_limit_auth_per_hour: Some(10_000_000),
        rate_limit_anon_per_hour: Some(10_000_000),
        ..Default::default()
    })
    .await;
    let org = s.org("acme").await;
    // Something to find: ids the fuzzer's examples can hit.
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await;
    let (_, _) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            json!({ "title": "Laptop lost", "severity": "HIGH", "category": "DATA_BREACH" }),
        )
        .await;

    let base = s.base.clone();
    let token = org.admin.clone();
    let report = std::env::temp_dir().join(format!("custos-schemathesis-{}", std::process::id()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis())
            .args(["run", &format!("{base}/api/schema/"), "--url", &base])
            .args(["--header", &format!("Authorization: Token {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--workers", "2"])
            .args(["--seed", "27", "--generation-deterministic", "--no-color", "--suppress-health-check", "all"])
            .args(["--request-timeout", "30"])
            // Any token may revoke itself (so may the fuzzer's, once it finds its id in a
            // listing), which would leave every later request a 401; identity_admin tests it.
            .args(["--exclude-operation-id", "revokeApiToken"])
            .args(["--report-dir", &report.display().to_string()])
            // It keeps a cache of examples in the working directory: not in the source tree.
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "Schemathesis found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("passed"), "{stdout}");
}
