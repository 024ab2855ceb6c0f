//! End-to-end scenarios: each test starts the real gateway over its own PostgreSQL database and
//! talks to it over REST or gRPC, as a client would.

mod access_reviews;
mod adding_a_domain;
mod audit_chain;
mod audit_contents;
mod audit_verification_runs;
mod auth_rest;
mod catalogue_import;
mod catalogue_versions;
mod checkpoints_plans_rest;
mod compliance_policies;
mod deadline_events;
mod edge;
mod evidence_grpc;
mod evidence_rest;
mod evidence_s3;
mod frameworks_grpc;
mod frameworks_rest;
mod identity_admin;
mod incidents_grpc;
mod incidents_rest;
mod jobs;
mod legal_holds;
mod lists;
mod mappings;
mod notifications;
mod openapi_fuzz;
mod oscal_model;
mod oscal_validator;
mod partial_updates;
mod platform;
mod reports;
mod requirements_rest;
mod residency;
mod retention;
mod retention_archives;
mod retention_runs;
mod schema_drift;
mod secrets;
mod tenancy;
mod test_receivers;
mod vault;
mod vulnerabilities_rest;
mod workflows;

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

/// `results[*].id` of a list page, sorted (for comparing result sets).
pub fn ids(page: &Value) -> Vec<String> {
    let mut ids = column(page, "id");
    ids.sort();
    ids
}

/// The given resources' ids, sorted.
pub fn sorted_ids(items: &[&Value]) -> Vec<String> {
    let mut ids: Vec<String> = items.iter().map(|v| id(v)).collect();
    ids.sort();
    ids
}

/// A timestamp `offset` from now, whole seconds, RFC 3339 (as a client would send it).
pub fn ts(offset: time::Duration) -> String {
    let t = (time::OffsetDateTime::now_utc() + offset).replace_nanosecond(0).expect("valid");
    t.format(&time::format_description::well_known::Rfc3339).expect("format")
}

pub fn parse_ts(v: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(v.as_str().expect("timestamp string"), &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// Runs SQL as the database superuser (bypassing RLS), e.g. to set up legal holds.
pub async fn superuser_sql(s: &TestServer, sql: &str) {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = s.db.superuser().await;
    conn.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The audit entries about one resource, newest first (queued entries are sequenced first).
pub async fn audit_entries(s: &TestServer, org: &TestOrg, resource_id: &str) -> Vec<Value> {
    let (status, cp) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
    assert_eq!(status, 201, "{cp}");
    let (status, page) = s.get(&format!("/api/compliance/audit-log/?resource_id={resource_id}"), &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    page["results"].as_array().expect("results").clone()
}

/// The user id behind a test token's role (users are `<role>@<slug>.test`).
pub async fn user_id(s: &TestServer, org: &TestOrg, role: &str) -> String {
    let (status, me) = s.get("/api/compliance/whoami/", org.token(role.parse().expect("role"))).await;
    assert_eq!(status, 200, "{me}");
    let _ = org;
    me["user_id"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("whoami has no user_id: {me}"))
}
