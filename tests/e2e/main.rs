//! End-to-end scenarios: each test starts the real gateway over its own PostgreSQL database and
//! talks to it over REST or gRPC, as a client would.

mod audit_chain;
mod auth_rest;
mod evidence_grpc;
mod evidence_rest;
mod frameworks_grpc;
mod frameworks_rest;
mod legal_holds;
mod platform;
mod requirements_rest;
mod schema_drift;
mod tenancy;

use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

/// The seed's example body for creating a GDPR framework.
pub fn seed_gdpr_body() -> Value {
    json!({
        "name": "GDPR Compliance Framework",
        "framework_type": "GDPR",
        "version": "1.0",
        "description": "GDPR compliance framework for EU data protection",
        "applicable_regions": ["EU", "EEA", "UK"],
        "industry_sectors": ["Technology", "Healthcare"],
        "is_active": true,
        "effective_date": "2018-05-25"
    })
}

pub async fn create_framework(s: &TestServer, org: &TestOrg, body: Value) -> Value {
    let (status, created) = s.post("/api/compliance/frameworks/", &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

pub async fn create_requirement(
    s: &TestServer,
    org: &TestOrg,
    framework: &str,
    requirement_id: &str,
    extra: Value,
) -> Value {
    let mut body = json!({
        "framework": framework,
        "requirement_id": requirement_id,
        "title": format!("Requirement {requirement_id}"),
        "requirement_type": "TECHNICAL",
        "priority": "HIGH",
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, created) = s.post("/api/compliance/requirements/", &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

pub fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// `results[*].<field>` of a list page, as strings.
pub fn column(page: &Value, field: &str) -> Vec<String> {
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
