//! Retention policies over REST and gRPC (both seeds' shapes, bad input, roles, tenancy, the
//! preservation lock) and the explanation of one record's retention on worked examples of every
//! precedence rule.

use custos_proto::v1 as pb;
use custos_proto::v1::retention_service_client::RetentionServiceClient;
use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

use crate::{create_framework, id, seed_gdpr_body};

const POLICIES: &str = "/api/compliance/retention-policies/";
const EXPLAIN: &str = "/api/compliance/retention/explain/";

async fn create(s: &TestServer, org: &TestOrg, body: Value) -> Value {
    let (status, created) = s.post(POLICIES, &org.admin, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_policies_take_both_seeds_shapes_and_keep_roles_tenancy_and_locks() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let gdpr = create_framework(&s, &org, seed_gdpr_body()).await;

    // Seed 000's fields.
    let seed000 = json!({"name": "Incident data", "description": "Keep incident records for seven years",
                         "policy_type": "INCIDENT_DATA", "retention_period": 7, "retention_unit": "YEARS",
                         "auto_archive": true, "data_classification_levels": ["CONFIDENTIAL", "RESTRICTED"],
                         "incident_categories": ["DATA_BREACH"], "applicable_frameworks": [id(&gdpr)],
                         "legal_hold_override": false});
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(POLICIES, token, seed000.clone()).await.0, 403);
    }
    let p000 = create(&s, &org, seed000.clone()).await;
    assert_eq!(p000["entity_type"], "incident");
    assert_eq!(p000["deletion_method"], "archive");
    assert_eq!(p000["explicit_scope"], true);
    assert!(p000["retention_days"].is_null(), "years have no fixed number of days: {p000}");
    assert_eq!(s.post(POLICIES, &org.admin, seed000).await.0, 409, "the name is taken");
    // Seed 004's fields.
    let p004 = create(
        &s,
        &org,
        json!({"name": "Job records", "policy_type": "JOB_RECORDS", "retention_days": 365, "deletion_method": "hard",
               "auto_delete": true, "is_active": true}),
    )
    .await;
    assert_eq!((p004["retention_period"].clone(), p004["retention_unit"].clone()), (json!(365), json!("DAYS")));
    assert_eq!(p004["retention_days"], 365);
    assert_eq!(p004["entity_type"], "job");
    assert_eq!(p004["explicit_scope"], false);

    // Bad input: a clear 400 naming the field.
    for (bad, field) in [
        (json!({"name": "x", "policy_type": "EVERYTHING", "retention_days": 1}), "policy_type"),
        (json!({"name": "x", "policy_type": "CUSTOM", "retention_days": 1}), "entity_type"),
        (json!({"name": "x", "policy_type": "EVIDENCE"}), "retention_period"),
        (json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 0}), "retention_days"),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_period": 101, "retention_unit": "YEARS"}),
            "retention_period",
        ),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "retention_period": 2, "retention_unit": "YEARS"}),
            "retention_days",
        ),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "retention_unit": "FORTNIGHTS"}),
            "retention_unit",
        ),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "auto_archive": true, "deletion_method": "hard"}),
            "auto_archive",
        ),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "deletion_method": "shred"}),
            "deletion_method",
        ),
        (
            json!({"name": "x", "policy_type": "VULNERABILITY_DATA", "retention_days": 30, "incident_categories": ["MALWARE"]}),
            "incident_categories",
        ),
        (
            json!({"name": "x", "policy_type": "INCIDENT_DATA", "retention_days": 30, "data_classification_levels": ["SECRET"]}),
            "data_classification_levels",
        ),
        (
            json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "applicable_frameworks": ["not-a-uuid"]}),
            "applicable_frameworks",
        ),
        (json!({"name": "", "policy_type": "EVIDENCE", "retention_days": 30}), "name"),
        (
            json!({"name": "x", "policy_type": "JOB_RECORDS", "retention_days": 30, "deletion_method": "soft"}),
            "deletion_method",
        ),
    ] {
        let (status, err) = s.post(POLICIES, &org.admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{bad}: {err}");
    }
    // Another organisation's framework is no framework here.
    let theirs = create_framework(&s, &other, seed_gdpr_body()).await;
    let (status, err) = s
        .post(POLICIES, &org.admin, json!({"name": "x", "policy_type": "EVIDENCE", "retention_days": 30, "applicable_frameworks": [id(&theirs)]}))
        .await;
    assert_eq!(status.as_u16() / 100, 4, "{err}");
    assert_ne!(status, 201);

    // Reads: every role; filters; tenancy.
    let (_, all) = s.get(POLICIES, &org.viewer).await;
    assert_eq!(all["count"], 2);
    for (query, n) in [
        ("?policy_type=INCIDENT_DATA", 1),
        ("?is_active=true", 2),
        (&format!("?applicable_frameworks={}", id(&gdpr)) as &str, 1),
        ("?entity_type=job", 1),
        ("?search=seven", 1),
    ] {
        let (status, page) = s.get(&format!("{POLICIES}{query}"), &org.auditor).await;
        assert_eq!((status.as_u16(), page["count"].clone()), (200, json!(n)), "{query}: {page}");
    }
    assert_eq!(s.get(&format!("{POLICIES}?policy_type=NOPE"), &org.viewer).await.0, 400);
    let (_, none) = s.get(POLICIES, &other.admin).await;
    assert_eq!(none["count"], 0);
    let p000_url = format!("{POLICIES}{}/", id(&p000));
    assert_eq!(s.get(&p000_url, &other.admin).await.0, 404);
    assert_eq!(s.patch(&p000_url, &other.admin, json!({"retention_period": 1})).await.0, 404);
    assert_eq!(s.delete(&p000_url, &other.admin).await.0, 404);
    assert_eq!(s.patch(&p000_url, &org.editor, json!({"retention_period": 8})).await.0, 403);

    // Updates; then the preservation lock: extend yes, loosen never.
    let (status, patched) = s.patch(&p000_url, &org.admin, json!({"retention_period": 6})).await;
    assert_eq!((status.as_u16(), patched["retention_period"].clone()), (200, json!(6)), "{patched}");
    let (status, locked) = s.patch(&p000_url, &org.admin, json!({"locked": true})).await;
    assert_eq!(status, 200, "{locked}");
    assert!(locked["locked_at"].is_string() && locked["locked_by"].as_str().unwrap().starts_with("user:"));
    assert_eq!(s.audit_count(org.id, "lock", "retention_policy").await, 1);
    let (status, extended) = s
        .patch(
            &p000_url,
            &org.admin,
            json!({"retention_period": 10, "incident_categories": ["DATA_BREACH", "MALWARE"]}),
        )
        .await;
    assert_eq!((status.as_u16(), extended["retention_period"].clone()), (200, json!(10)), "{extended}");
    for (loosen, says) in [
        (json!({"retention_period": 9}), "shorten its retention"),
        (json!({"retention_unit": "MONTHS"}), "shorten its retention"),
        (json!({"locked": false}), "unlock it"),
        (json!({"is_active": false}), "deactivate it"),
        (json!({"incident_categories": ["DATA_BREACH"]}), "narrow its scope"),
        (json!({"data_classification_levels": ["RESTRICTED"]}), "narrow its scope"),
        (json!({"auto_archive": false, "auto_delete": true, "deletion_method": "hard"}), "delete more destructively"),
        (json!({"legal_hold_override": true}), "override legal holds"),
    ] {
        let (status, err) = s.patch(&p000_url, &org.admin, loosen.clone()).await;
        assert_eq!(status, 409, "{loosen}: {err}");
        assert!(err["details"].as_str().unwrap().contains(says), "{loosen}: {err}");
    }
    assert_eq!(s.delete(&p000_url, &org.admin).await.0, 409);
    let tamper = s
        .superuser_sql(&format!(
            "UPDATE retention_policies SET locked = false, locked_at = NULL WHERE id = '{}'",
            id(&p000)
        ))
        .await;
    assert!(tamper.unwrap_err().to_string().contains("locked"));
    // An unlocked policy is deleted, and audited.
    let p004_url = format!("{POLICIES}{}/", id(&p004));
    assert_eq!(s.delete(&p004_url, &org.admin).await.0.as_u16() / 100, 2);
    assert_eq!(s.get(&p004_url, &org.admin).await.0, 404);
    assert_eq!(s.audit_count(org.id, "delete", "retention_policy").await, 1);
    assert_eq!(s.audit_count(org.id, "create", "retention_policy").await, 2);

    // gRPC: the same rules.
    let mut viewer = RetentionServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let listed =
        viewer.list_retention_policies(pb::ListRetentionPoliciesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.results.len(), 1);
    let mut editor = RetentionServiceClient::new(s.grpc(Some(&org.editor)).await);
    let denied = editor
        .create_retention_policy(pb::CreateRetentionPolicyRequest {
            policy: Some(pb::RetentionPolicyInput {
                name: "g".into(),
                policy_type: "EVIDENCE".into(),
                retention_days: Some(30),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut stranger = RetentionServiceClient::new(s.grpc(Some(&other.admin)).await);
    let hidden = stranger.get_retention_policy(pb::GetRetentionPolicyRequest { id: id(&p000) }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let mut admin = RetentionServiceClient::new(s.grpc(Some(&org.admin)).await);
    let refused = admin.delete_retention_policy(pb::DeleteRetentionPolicyRequest { id: id(&p000) }).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
}

/// An incident resolved on a known date.
async fn resolved_incident(s: &TestServer, org: &TestOrg, category: &str, resolved_at: &str) -> String {
    let (status, incident) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            json!({"title": format!("{category} incident"), "description": "d", "severity": "HIGH", "category": category,
                   "data_classification": "CONFIDENTIAL", "detected_at": "2019-12-01T00:00:00Z",
                   "responded_at": "2019-12-01T01:00:00Z", "resolved_at": resolved_at, "status": "RESOLVED"}),
        )
        .await;
    assert_eq!(status, 201, "{incident}");
    id(&incident)
}

async fn explain(s: &TestServer, token: &str, entity: &str, record: &str) -> Value {
    let (status, got) = s.get(&format!("{EXPLAIN}?entity_type={entity}&id={record}"), token).await;
    assert_eq!(status, 200, "{got}");
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_answers_every_precedence_rule_on_worked_examples() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let breach = resolved_incident(&s, &org, "DATA_BREACH", "2020-01-31T10:00:00Z").await;
    let outage = resolved_incident(&s, &org, "SERVICE_OUTAGE", "2020-01-31T10:00:00Z").await;

    // No policy yet.
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(got["verdict"], "no_policy", "{got}");
    assert_eq!(got["retention_starts_at"], "2020-01-31T10:00:00.000000Z");

    // An implicit policy deleting after 2 years: eligible since 2022-01-31.
    let two = create(
        &s,
        &org,
        json!({"name": "Two years", "policy_type": "INCIDENT_DATA", "retention_period": 2,
                                        "retention_unit": "YEARS", "auto_delete": true}),
    )
    .await;
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(
        (got["verdict"].as_str(), got["eligible_at"].as_str()),
        (Some("eligible"), Some("2022-01-31T10:00:00.000000Z")),
        "{got}"
    );
    assert_eq!(got["deletion_policy"], two["id"]);

    // Rule 2: a retain-only policy of 10 years keeps it (retention wins over deletion, the
    // longest retention wins); the deletion still applies afterwards.
    let ten = create(
        &s,
        &org,
        json!({"name": "Ten years", "policy_type": "INCIDENT_DATA", "retention_period": 10,
                                        "retention_unit": "YEARS"}),
    )
    .await;
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(got["verdict"], "retained", "{got}");
    assert_eq!(
        (got["retained_by"].clone(), got["retained_until"].as_str()),
        (ten["id"].clone(), Some("2030-01-31T10:00:00.000000Z"))
    );
    assert_eq!(got["deletion_policy"], two["id"]);
    assert_eq!(got["eligible_at"], "2030-01-31T10:00:00.000000Z");
    assert!(got["reasons"][0].as_str().unwrap().contains("longest retention wins"), "{got}");
    let flags: Vec<(bool, bool)> = got["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["longest_retention"].as_bool().unwrap(), p["deletion_applies"].as_bool().unwrap()))
        .collect();
    assert_eq!(flags, [(false, true), (true, false)]);
    s.patch(&format!("{POLICIES}{}/", id(&ten)), &org.admin, json!({"is_active": false})).await;

    // Rule 3: an explicitly scoped deletion (data breaches: archive after 3 years) beats the
    // implicit one for the breach, not for the outage.
    let breaches = create(
        &s,
        &org,
        json!({"name": "Breaches", "policy_type": "INCIDENT_DATA", "retention_period": 3,
                                             "retention_unit": "YEARS", "auto_archive": true,
                                             "incident_categories": ["DATA_BREACH"]}),
    )
    .await;
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(
        (got["deletion_policy"].clone(), got["deletion_method"].as_str()),
        (breaches["id"].clone(), Some("archive")),
        "{got}"
    );
    assert_eq!(got["eligible_at"], "2023-01-31T10:00:00.000000Z");
    assert!(
        got["reasons"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("explicit scope beats")),
        "{got}"
    );
    let got = explain(&s, &org.viewer, "incident", &outage).await;
    assert_eq!(got["deletion_policy"], two["id"], "{got}");
    assert_eq!(got["policies"].as_array().unwrap().len(), 1, "the breach policy does not cover an outage: {got}");

    // Rule 4: of two explicit deletions the shorter applies (hard after 30 months); the
    // longest retention (3 years) still decides when.
    let shorter = create(
        &s,
        &org,
        json!({"name": "Breaches, short", "policy_type": "INCIDENT_DATA", "retention_period": 30,
                                            "retention_unit": "MONTHS", "auto_delete": true, "deletion_method": "hard",
                                            "data_classification_levels": ["CONFIDENTIAL"]}),
    )
    .await;
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(
        (got["deletion_policy"].clone(), got["deletion_method"].as_str()),
        (shorter["id"].clone(), Some("hard")),
        "{got}"
    );
    assert_eq!(got["eligible_at"], "2023-01-31T10:00:00.000000Z");

    // Rule 1: a legal hold beats any deletion.
    let (_, hold) = s
        .post("/api/compliance/legal-holds/", &org.editor, json!({"case_name": "Smith v. Acme", "case_number": "CV-1"}))
        .await;
    let (status, _) = s
        .post(
            &format!("/api/compliance/legal-holds/{}/add_incident/", id(&hold)),
            &org.editor,
            json!({"incident_id": breach}),
        )
        .await;
    assert_eq!(status, 200);
    let got = explain(&s, &org.viewer, "incident", &breach).await;
    assert_eq!(got["verdict"], "held", "{got}");
    assert_eq!(got["holds"][0]["case_name"], "Smith v. Acme");
    assert_eq!(got["holds"][0]["case_number"], "CV-1");
    assert!(got["reasons"].as_array().unwrap().last().unwrap().as_str().unwrap().contains("legal hold beats"), "{got}");

    // Not started: an open incident.
    let (_, open) = s
        .post("/api/compliance/incidents/", &org.editor, json!({"title": "Open", "description": "d", "severity": "LOW",
                                                                  "category": "OTHER", "data_classification": "INTERNAL"}))
        .await;
    let got = explain(&s, &org.viewer, "incident", &id(&open)).await;
    assert_eq!(got["verdict"], "not_started", "{got}");
    assert!(got["retention_starts_at"].is_null());

    // Evidence: its own retention_period is the longest retention when it is.
    create(
        &s,
        &org,
        json!({"name": "Evidence", "policy_type": "EVIDENCE", "retention_period": 1, "retention_unit": "YEARS",
                            "auto_delete": true}),
    )
    .await;
    let (status, item) = s
        .post(
            "/api/compliance/evidence/",
            &org.editor,
            json!({"title": "Firewall log", "evidence_type": "LOG_FILE", "retention_period": 3650}),
        )
        .await;
    assert_eq!(status, 201, "{item}");
    let got = explain(&s, &org.viewer, "evidence", &id(&item)).await;
    assert_eq!(
        (got["verdict"].as_str(), got["retained_by"].as_str()),
        (Some("retained"), Some("evidence.retention_period")),
        "{got}"
    );

    // Bad requests, tenancy.
    for bad in ["?entity_type=audit_log&id=00000000-0000-0000-0000-000000000000", "?entity_type=lead&id=x", "?id=x"] {
        assert_eq!(s.get(&format!("{EXPLAIN}{bad}"), &org.viewer).await.0, 400, "{bad}");
    }
    assert_eq!(s.get(&format!("{EXPLAIN}?entity_type=incident&id={breach}"), &other.admin).await.0, 404);
    assert_eq!(s.get(&format!("{EXPLAIN}?entity_type=incident&id=nope"), &org.viewer).await.0, 404);
    let mut stranger = RetentionServiceClient::new(s.grpc(Some(&other.viewer)).await);
    let hidden = stranger
        .explain_retention(pb::ExplainRetentionRequest { entity_type: "incident".into(), id: breach.clone() })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let mut viewer = RetentionServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let got = viewer
        .explain_retention(pb::ExplainRetentionRequest { entity_type: "incident".into(), id: outage.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.verdict, "eligible");
}
