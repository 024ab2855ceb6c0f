//! Compliance checkpoints and incident response plans over REST: CRUD, computed `overdue`,
//! filters (including the seed's `status__in` as a comma list), validation, tenancy, roles, audit.

use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

use crate::{audit_entries, create_framework, id, ids, seed_gdpr_body, sorted_ids, user_id};

const CP: &str = "/api/compliance/compliance-checkpoints/";
const PLAN: &str = "/api/compliance/incident-response-plans/";

async fn create(s: &TestServer, org: &TestOrg, path: &str, body: Value) -> Value {
    let (status, created) = s.post(path, &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn today_plus(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_crud_overdue_audit_tenancy_and_roles() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let owner = user_id(&s, &org, "editor").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let body = json!({
        "name": "ISO 27001 surveillance audit", "description": "Year 2", "framework": id(&fw),
        "scheduled_date": "2024-01-10", "due_date": "2024-01-31", "owner": owner, "notes": "Book auditor",
    });
    let cp = create(&s, &org, CP, body).await;
    assert_eq!(cp["status"], "PLANNED");
    assert_eq!(cp["framework"], id(&fw).as_str());
    assert_eq!(cp["owner"], owner.as_str());
    assert_eq!(cp["due_date"], "2024-01-31");
    assert_eq!(cp["completed_date"], Value::Null);
    assert_eq!(cp["overdue"], true, "planned and due in the past");
    let path = format!("{CP}{}/", id(&cp));
    let (status, got) = s.get(&path, &org.auditor).await;
    assert_eq!(status, 200);
    assert_eq!(got, cp);

    let (_, started) = s.patch(&path, &org.editor, json!({ "status": "IN_PROGRESS" })).await;
    assert_eq!(started["overdue"], true);
    let (_, later) = s.patch(&path, &org.editor, json!({ "due_date": today_plus(7) })).await;
    assert_eq!(later["overdue"], false, "due next week");
    let (_, done) = s.patch(&path, &org.editor, json!({ "status": "COMPLETED", "due_date": "2024-01-31" })).await;
    assert_eq!(done["completed_date"], today_plus(0), "completed today");
    assert_eq!(done["overdue"], false, "completed is never overdue");
    let (_, missed) = s.patch(&path, &org.editor, json!({ "status": "MISSED" })).await;
    assert_eq!(missed["completed_date"], Value::Null);
    assert_eq!(missed["overdue"], false);
    let (status, put) = s.put(&path, &org.admin, json!({ "name": "Renamed" })).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["framework"], Value::Null);
    assert_eq!(put["status"], "MISSED", "unset status keeps its value");
    assert_eq!(put["notes"], "");
    assert_eq!(s.audit_count(org.id, "update", "compliance_checkpoint").await, 5);
    let entries = audit_entries(&s, &org, &id(&cp)).await;
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[5]["after"], cp);
    assert_eq!(entries[0]["before"], missed);
    assert_eq!(entries[0]["after"], put);

    // Deleting the framework clears the reference instead of failing.
    let (_, linked) = s.patch(&path, &org.editor, json!({ "framework": id(&fw) })).await;
    assert_eq!(linked["framework"], id(&fw).as_str());
    let (status, _) = s.delete(&format!("/api/compliance/frameworks/{}/", id(&fw)), &org.editor).await;
    assert_eq!(status, 204);
    let (_, unlinked) = s.get(&path, &org.viewer).await;
    assert_eq!(unlinked["framework"], Value::Null);

    let b = s.org("globex").await;
    let (status, _) = s.get(&path, &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) = s.patch(&path, &b.admin, json!({ "name": "x" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&path, &b.admin).await;
    assert_eq!(status, 404);
    for token in [&org.viewer, &org.auditor] {
        let (status, _) = s.post(CP, token, json!({ "name": "x" })).await;
        assert_eq!(status, 403);
        let (status, _) = s.delete(&path, token).await;
        assert_eq!(status, 403);
    }
    let (status, _) = s.delete(&path, &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(s.audit_count(org.id, "delete", "compliance_checkpoint").await, 1);
    let (status, _) = s.get(&path, &org.viewer).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_filters_and_bad_input() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("other").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let foreign_fw = create_framework(&s, &other, seed_gdpr_body()).await;
    let a = create(&s, &org, CP, json!({ "name": "Q1 access review", "framework": id(&fw), "due_date": "2024-03-31" }))
        .await;
    let b = create(
        &s,
        &org,
        CP,
        json!({ "name": "DPIA refresh", "status": "IN_PROGRESS", "due_date": today_plus(30), "notes": "privacy team" }),
    )
    .await;
    let c = create(&s, &org, CP, json!({ "name": "Pen test", "status": "COMPLETED", "due_date": "2024-02-15" })).await;
    let d = create(&s, &org, CP, json!({ "name": "Tabletop exercise", "status": "CANCELLED" })).await;
    let by_fw = format!("framework={}", id(&fw));
    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("", vec![&a, &b, &c, &d]),
        ("status=PLANNED", vec![&a]),
        ("status=PLANNED,IN_PROGRESS", vec![&a, &b]),
        ("status=COMPLETED,%20CANCELLED", vec![&c, &d]),
        (&by_fw, vec![&a]),
        ("overdue=true", vec![&a]),
        ("overdue=false", vec![&b, &c, &d]),
        ("due_before=2024-03-31", vec![&a, &c]),
        ("due_after=2024-03-01", vec![&a, &b]),
        ("due_after=2024-02-15&due_before=2024-02-15", vec![&c]),
        // A timestamp stands for its date in UTC, as in the other time filters.
        ("due_after=2024-02-15T23:00:00-05:00&due_before=2024-02-16T00:30:00%2B01:00", vec![]),
        ("due_after=2024-02-15T10:00:00Z&due_before=2024-02-15T10:00:00Z", vec![&c]),
        ("search=privacy", vec![&b]),
        ("search=REVIEW", vec![&a]),
        ("status=PLANNED,IN_PROGRESS&overdue=false", vec![&b]),
    ];
    for (query, expected) in cases {
        let (status, page) = s.get(&format!("{CP}?{query}"), &org.viewer).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), sorted_ids(&expected), "{query}");
        assert_eq!(page["count"], expected.len(), "{query}");
    }
    // Earliest due first, undated last.
    let (_, page) = s.get(CP, &org.viewer).await;
    assert_eq!(crate::column(&page, "id"), [id(&c), id(&a), id(&b), id(&d)]);
    let (status, _) = s.get(&format!("{CP}?page=2"), &org.viewer).await;
    assert_eq!(status, 404);
    for (query, field) in [
        ("status=PLANNED,DONE", "status"),
        ("status=planned", "status"),
        ("framework=gdpr", "framework"),
        ("overdue=yes", "overdue"),
        ("due_before=2024-02-30", "due_before"),
        ("due_after=31/01/2024", "due_after"),
    ] {
        let (status, err) = s.get(&format!("{CP}?{query}"), &org.viewer).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{query}");
    }
    let stranger = user_id(&s, &other, "viewer").await;
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "x", "status": "DONE" }), "status"),
        (json!({ "name": "x", "due_date": "2024-13-01" }), "due_date"),
        (json!({ "name": "x", "scheduled_date": "tomorrow" }), "scheduled_date"),
        (json!({ "name": "x", "scheduled_date": "2024-02-01", "due_date": "2024-01-31" }), "due_date"),
        (json!({ "name": "x", "framework": uuid::Uuid::now_v7().to_string() }), "framework"),
        (json!({ "name": "x", "framework": id(&foreign_fw) }), "framework"),
        (json!({ "name": "x", "owner": stranger }), "owner"),
        (json!({ "name": "x", "completed_date": "yesterday" }), "completed_date"),
    ] {
        let (status, err) = s.post(CP, &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}");
    }
    assert_eq!(s.audit_count(org.id, "create", "compliance_checkpoint").await, 4);
}

fn seed_plan() -> Value {
    json!({
        "name": "Data Breach Response",
        "incident_type": "SECURITY_BREACH",
        "severity": "CRITICAL",
        "detection_procedures": "Monitor for unauthorized data access",
        "initial_response": "Isolate affected systems",
        "escalation_path": "Notify CISO and legal team",
        "investigation_procedures": "Conduct forensic analysis",
        "recovery_procedures": "Restore from verified backups",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn response_plans_crud_filters_and_rules() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let lead = user_id(&s, &org, "admin").await;
    let mut body = seed_plan();
    body["primary_contact"] = json!(lead);
    let plan = create(&s, &org, PLAN, body).await;
    assert_eq!(plan["name"], "Data Breach Response");
    assert_eq!(plan["incident_type"], "SECURITY_BREACH");
    assert_eq!(plan["escalation_path"], "Notify CISO and legal team");
    assert_eq!(plan["primary_contact"], lead.as_str());
    assert_eq!(plan["is_active"], true);
    assert_eq!(plan["version"], "1.0");
    assert_eq!(plan["review_date"], Value::Null);
    let path = format!("{PLAN}{}/", id(&plan));
    let (_, got) = s.get(&path, &org.viewer).await;
    assert_eq!(got, plan);

    let phishing = create(
        &s,
        &org,
        PLAN,
        json!({ "name": "Phishing playbook", "incident_type": "PHISHING", "severity": "MEDIUM", "is_active": false,
                "recovery_procedures": "Reset credentials", "review_date": "2025-01-15", "version": "2.1" }),
    )
    .await;
    assert_eq!(phishing["version"], "2.1");
    assert_eq!(phishing["review_date"], "2025-01-15");

    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("", vec![&plan, &phishing]),
        ("incident_type=PHISHING", vec![&phishing]),
        ("incident_type=MALWARE", vec![]),
        ("severity=CRITICAL", vec![&plan]),
        ("is_active=true", vec![&plan]),
        ("is_active=false", vec![&phishing]),
        ("search=forensic", vec![&plan]),
        ("search=credentials", vec![&phishing]),
        ("search=playbook", vec![&phishing]),
    ];
    for (query, expected) in cases {
        let (status, page) = s.get(&format!("{PLAN}?{query}"), &org.viewer).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), sorted_ids(&expected), "{query}");
    }
    for (query, field) in
        [("incident_type=FIRE", "incident_type"), ("severity=NONE", "severity"), ("is_active=maybe", "is_active")]
    {
        let (status, err) = s.get(&format!("{PLAN}?{query}"), &org.viewer).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"));
    }
    let mut bad_contact = seed_plan();
    bad_contact["primary_contact"] = json!(uuid::Uuid::now_v7().to_string());
    for (body, field) in [
        (json!({ "incident_type": "PHISHING", "severity": "LOW" }), "name"),
        (json!({ "name": "x", "severity": "LOW" }), "incident_type"),
        (json!({ "name": "x", "incident_type": "security_breach", "severity": "LOW" }), "incident_type"),
        (json!({ "name": "x", "incident_type": "OTHER", "severity": "LOWEST" }), "severity"),
        (
            json!({ "name": "x", "incident_type": "OTHER", "severity": "LOW", "review_date": "2025-02-30" }),
            "review_date",
        ),
        (json!({ "name": "x", "incident_type": "OTHER", "severity": "LOW", "is_active": "no" }), "is_active"),
        (bad_contact, "primary_contact"),
    ] {
        let (status, err) = s.post(PLAN, &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}");
    }

    let (_, patched) = s.patch(&path, &org.editor, json!({ "version": "1.1", "is_active": false })).await;
    assert_eq!(patched["version"], "1.1");
    assert_eq!(patched["is_active"], false);
    assert_eq!(patched["initial_response"], plan["initial_response"]);
    let (status, put) =
        s.put(&path, &org.editor, json!({ "name": "DBR", "incident_type": "DATA_BREACH", "severity": "HIGH" })).await;
    assert_eq!(status, 200);
    assert_eq!(put["initial_response"], "");
    assert_eq!(put["is_active"], true);
    assert_eq!(put["primary_contact"], Value::Null);
    let entries = audit_entries(&s, &org, &id(&plan)).await;
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["update", "update", "create"]);
    assert_eq!(entries[0]["resource_type"], "incident_response_plan");
    assert_eq!(entries[1]["before"], plan);
    assert_eq!(entries[1]["after"], patched);

    let b = s.org("globex").await;
    let (status, _) = s.get(&path, &b.viewer).await;
    assert_eq!(status, 404);
    let (status, _) = s.put(&path, &b.admin, seed_plan()).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&path, &b.admin).await;
    assert_eq!(status, 404);
    for token in [&org.viewer, &org.auditor] {
        let (status, _) = s.post(PLAN, token, seed_plan()).await;
        assert_eq!(status, 403);
        let (status, _) = s.patch(&path, token, json!({ "name": "x" })).await;
        assert_eq!(status, 403);
    }
    let (status, _) = s.delete(&path, &org.admin).await;
    assert_eq!(status, 204);
    assert_eq!(s.audit_count(org.id, "delete", "incident_response_plan").await, 1);
    let (status, _) = s.get(&path, &org.viewer).await;
    assert_eq!(status, 404);
}
