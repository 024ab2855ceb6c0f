//! Policy documents (policy-as-code, seed 004) over REST and gRPC: stored with every problem
//! located, dry-run (exactly what an apply does, then nothing kept; the records that would go
//! now, as the retention preview counts them), applied as immutable versions that make the
//! retention policies and the data residency the document says, rolled back exactly, enforced
//! (hard: refused with a 409 naming the rule; soft: allowed and recorded), locked (extended but
//! never loosened), with roles and tenancy.

use custos_proto::v1 as pb;
use custos_proto::v1::compliance_policies_service_client::CompliancePoliciesServiceClient;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use serde_json::{Value, json};

use crate::id;
use crate::residency::Regions;

const DOCS: &str = "/api/compliance/policies/";
const RETENTION: &str = "/api/compliance/retention-policies/";
const RESIDENCY: &str = "/api/compliance/data-residency/";
const VIOLATIONS: &str = "/api/compliance/policy-violations/";

/// Seed 004's example, exactly as it stands.
const SEED: &str = include_str!("../../crates/retention/testdata/seed-004-policy.yaml");

/// A document governing incidents: kept 30 days then soft-deleted, never deleted younger than 7
/// days (rule r-keep), data in the EU only.
fn incidents_doc(days: u32, method: &str, residency: bool, locked: bool) -> String {
    let mut doc = format!(
        "name: Incident records
version: 1.{days}.0
type: gdpr
enforcement: {{level: hard, scope: company}}
locked: {locked}
rules:
  - {{id: r-keep, name: Keep a week, type: retention, condition: {{entity_type: incident, age_days: 7}}, action: retain, severity: high}}
retention:
  policies:
    - {{entity_type: incident, retention_days: {days}, deletion_method: {method}}}
"
    );
    if residency {
        doc.push_str("data_residency: {regions: [eu-west-1], enforce: true, storage_prefix: acme-eu}\n");
    }
    doc
}

async fn store(s: &TestServer, org: &TestOrg, content: &str) -> Value {
    let (status, created) = s.post(DOCS, &org.admin, json!({"content": content})).await;
    assert_eq!(status, 201, "{created}");
    created
}

/// The retention policies the organisation has (name, retention_days, deletion_method, managed).
async fn retention_policies(s: &TestServer, org: &TestOrg) -> Vec<Value> {
    let (_, page) = s.get(RETENTION, &org.viewer).await;
    page["results"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_documents_validate_dry_run_apply_roll_back_and_enforce() {
    let regions = Regions::new();
    let s = TestServer::start_with(ServerOptions { blob_stores: Some(regions.spec()), ..Default::default() }).await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;

    // Seed 004's example is stored as it stands, with warnings for the entities not known yet.
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(DOCS, token, json!({"content": SEED})).await.0, 403);
    }
    let seed = store(&s, &org, SEED).await;
    assert_eq!((seed["name"].clone(), seed["version"].clone()), (json!("GDPR Compliance Policy"), json!("1.0.0")));
    assert_eq!(seed["enforcement_level"], "hard");
    assert_eq!(seed["warnings"].as_array().unwrap().len(), 3, "{seed}");
    assert!(seed["applied_version"].is_null());
    assert_eq!(s.post(DOCS, &org.admin, json!({"content": SEED})).await.0, 409, "the name is taken");
    // Every problem at once, each located.
    let (status, err) =
        s.post(DOCS, &org.admin, json!({"content": "name: x\nversion: 1\ntype: nope\ncolour: red\n"})).await;
    assert_eq!(status, 400, "{err}");
    let errors = err["details"]["errors"].as_array().unwrap();
    assert!(errors.len() >= 3, "{err}");
    assert!(errors.iter().any(|e| e["path"] == "$.colour" && e["line"] == 4 && e["column"] == 1), "{err}");
    assert_eq!(s.post(DOCS, &org.admin, json!({"content": "{{{"})).await.0, 400);
    assert_eq!(s.post(DOCS, &org.admin, json!({})).await.0, 400);
    // The seed's regions: us-east-1 is the primary (the first), and this server stores it.
    let (status, v) = s.post(&format!("{DOCS}{}/validate/", id(&seed)), &org.viewer, json!({})).await;
    assert_eq!((status.as_u16(), v["valid"].clone()), (200, json!(true)), "{v}");

    // Another organisation sees none of it.
    assert_eq!(s.get(&format!("{DOCS}{}/", id(&seed)), &other.admin).await.0, 404);
    assert_eq!(s.post(&format!("{DOCS}{}/apply/", id(&seed)), &other.admin, json!({})).await.0, 404);
    assert_eq!(s.get(DOCS, &other.admin).await.1["count"], 0);

    // A document governing incidents; five closed long ago, one held.
    s.insert_closed_incidents(org.id, 5, "2020-01-01T00:00:00Z").await;
    let doc = store(&s, &org, &incidents_doc(30, "soft", true, false)).await;
    let path = format!("{DOCS}{}/", id(&doc));
    assert_eq!(s.post(&format!("{path}dry_run/"), &org.editor, json!({})).await.0, 403);

    // Dry run: the apply's changes, and what would go now — then nothing kept.
    let audit_before = s.audit_count(org.id, "create", "retention_policy").await;
    let (status, dry) = s.post(&format!("{path}dry_run/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{dry}");
    let impact = &dry["impact"];
    assert_eq!(impact["version"], 1);
    assert_eq!(impact["retention_policies"][0]["action"], "create", "{dry}");
    assert_eq!(impact["retention_policies"][0]["would_delete_now"], 5, "{dry}");
    assert_eq!(impact["records_deleted_now"], 5);
    assert_eq!(impact["data_residency"]["action"], "create");
    assert!(dry["version"].is_null());
    assert!(retention_policies(&s, &org).await.is_empty(), "a dry run keeps nothing");
    assert_eq!(s.get(RESIDENCY, &org.viewer).await.1["count"], 0);
    assert_eq!(s.audit_count(org.id, "create", "retention_policy").await, audit_before);

    // Apply: version 1, the retention policy and residency it says, each audited.
    let (status, applied) = s.post(&format!("{path}apply/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["version"]["version"], 1);
    assert_eq!(applied["version"]["action"], "apply");
    assert_eq!(applied["policy"]["applied_version"], 1);
    assert_eq!(applied["policy"]["pending_changes"], false);
    let managed = retention_policies(&s, &org).await;
    assert_eq!(managed.len(), 1);
    assert_eq!(
        (managed[0]["name"].clone(), managed[0]["retention_days"].clone(), managed[0]["deletion_method"].clone()),
        (json!("Incident records: incident"), json!(30), json!("soft"))
    );
    assert_eq!(managed[0]["managed_by_policy"], id(&doc));
    let residency = s.get(RESIDENCY, &org.viewer).await.1["results"][0].clone();
    assert_eq!(
        (residency["primary_region"].clone(), residency["policy"].clone()),
        (json!("eu-west-1"), json!(id(&doc)))
    );
    assert_eq!(s.audit_count(org.id, "apply", "compliance_policy").await, 1);
    // The dry run said what the retention run now does.
    let (_, preview) =
        s.post(&format!("{RETENTION}{}/execute/", id(&managed[0])), &org.admin, json!({"preview": true})).await;
    assert_eq!(preview["soft_deleted"], impact["records_deleted_now"], "{preview}");

    // Hard enforcement: hand changes that break the document are refused, named and recorded.
    let managed_path = format!("{RETENTION}{}/", id(&managed[0]));
    let (status, err) = s.patch(&managed_path, &org.admin, json!({"retention_days": 90})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["details"]["rule"], "retention.policies", "{err}");
    assert_eq!(s.delete(&managed_path, &org.admin).await.0, 409);
    let (status, err) = s
        .post(
            RETENTION,
            &org.admin,
            json!({"name": "Quick purge", "policy_type": "INCIDENT_DATA", "retention_days": 3,
                                            "deletion_method": "hard", "auto_delete": true}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["details"]["rule"], "r-keep", "{err}");
    let (status, err) =
        s.patch(&format!("{RESIDENCY}{}/", id(&residency)), &org.admin, json!({"enforce_region": false})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["details"]["rule"], "data_residency", "{err}");
    let (_, blocked) = s.get(&format!("{VIOLATIONS}?policy={}&outcome=blocked", id(&doc)), &org.auditor).await;
    assert_eq!(blocked["count"], 4, "{blocked}");
    // A hand-made policy the rules allow is fine.
    let (status, fine) = s
        .post(
            RETENTION,
            &org.admin,
            json!({"name": "Vulnerabilities", "policy_type": "VULNERABILITY_DATA",
                                            "retention_days": 400}),
        )
        .await;
    assert_eq!(status, 201, "{fine}");

    // Version 2: longer retention, hard deletion, no residency section (the residency it set goes).
    let (status, updated) = s.put(&path, &org.admin, json!({"content": incidents_doc(60, "hard", false, false)})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["pending_changes"], true);
    let (status, applied) = s.post(&format!("{path}apply/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["version"]["version"], 2);
    let change = &applied["impact"]["retention_policies"][0];
    assert_eq!(change["action"], "update", "{applied}");
    let fields: Vec<&str> =
        change["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"retention_period") && fields.contains(&"deletion_method"), "{fields:?}");
    assert_eq!(applied["impact"]["data_residency"]["action"], "remove");
    assert_eq!(s.get(RESIDENCY, &org.viewer).await.1["count"], 0);
    let v1_effective: Value = {
        let (_, versions) = s.get(&format!("{path}versions/"), &org.viewer).await;
        assert_eq!(versions["count"], 2);
        assert_eq!(versions["results"][0]["version"], 2, "newest first");
        serde_json::from_str(versions["results"][1]["effective"].as_str().unwrap()).unwrap()
    };

    // Rollback: version 1's effective configuration, exactly, recorded as version 3.
    assert_eq!(s.post(&format!("{path}rollback/"), &org.editor, json!({})).await.0, 403);
    let (status, rolled) = s.post(&format!("{path}rollback/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(
        (rolled["version"]["version"].clone(), rolled["version"]["restored_version"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(rolled["version"]["action"], "rollback");
    let v3_effective: Value = serde_json::from_str(rolled["version"]["effective"].as_str().unwrap()).unwrap();
    assert_eq!(v3_effective, v1_effective);
    let now = retention_policies(&s, &org).await;
    let restored = now.iter().find(|p| p["managed_by_policy"] == id(&doc)).unwrap();
    assert_eq!(
        (restored["retention_days"].clone(), restored["deletion_method"].clone(), restored["id"].clone()),
        (json!(30), json!("soft"), managed[0]["id"].clone())
    );
    let residency = s.get(RESIDENCY, &org.viewer).await.1["results"][0].clone();
    assert_eq!(
        (residency["primary_region"].clone(), residency["storage_prefix"].clone()),
        (json!("eu-west-1"), json!("acme-eu"))
    );
    assert_eq!(rolled["policy"]["version"], "1.30.0", "the content in effect is version 1's");
    assert_eq!(s.post(&format!("{path}rollback/"), &org.admin, json!({"to_version": 9})).await.0, 409);
    assert_eq!(s.post(&format!("{path}rollback/"), &org.admin, json!({"to_version": 3})).await.0, 400);

    // A locked version: extended, never loosened (content, apply or rollback).
    let (status, locked) = s.put(&path, &org.admin, json!({"content": incidents_doc(90, "soft", true, true)})).await;
    assert_eq!(status, 200, "{locked}");
    let (status, applied) = s.post(&format!("{path}apply/"), &org.admin, json!({})).await;
    assert_eq!((status.as_u16(), applied["version"]["version"].clone()), (200, json!(4)), "{applied}");
    let (status, err) = s.put(&path, &org.admin, json!({"content": incidents_doc(10, "soft", true, true)})).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().contains("shorten the retention of incident records"), "{err}");
    let (status, err) = s.put(&path, &org.admin, json!({"content": incidents_doc(90, "soft", true, false)})).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().contains("lift its lock"), "{err}");
    let (status, err) = s.post(&format!("{path}rollback/"), &org.admin, json!({"to_version": 2})).await;
    assert_eq!(status, 409, "{err}");
    let (status, longer) = s.put(&path, &org.admin, json!({"content": incidents_doc(365, "soft", true, true)})).await;
    assert_eq!(status, 200, "extending is fine: {longer}");
    // An applied document stays with its versions; one never applied may go.
    assert_eq!(s.delete(&path, &org.admin).await.0, 409);
    assert_eq!(s.delete(&format!("{DOCS}{}/", id(&seed)), &org.editor).await.0, 403);
    assert_eq!(s.delete(&format!("{DOCS}{}/", id(&seed)), &org.admin).await.0.as_u16() / 100, 2);

    // Filters.
    let (_, applied_only) = s.get(&format!("{DOCS}?applied=true"), &org.viewer).await;
    assert_eq!(applied_only["count"], 1);
    assert_eq!(s.get(&format!("{DOCS}?enforcement_level=medium"), &org.viewer).await.0, 400);
    assert_eq!(s.get(&format!("{DOCS}?search=incident"), &org.viewer).await.1["count"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn soft_enforcement_allows_and_records_and_grpc_keeps_roles_and_tenancy() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let content = "name: Job records
version: '1'
type: custom
enforcement: {level: soft, scope: company}
retention:
  policies:
    - {entity_type: job, retention_days: 90, deletion_method: hard}
";
    let mut viewer = CompliancePoliciesServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let input = pb::CompliancePolicyInput { content: content.into() };
    let denied = viewer
        .create_compliance_policy(pb::CreateCompliancePolicyRequest { policy: Some(input.clone()) })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut admin = CompliancePoliciesServiceClient::new(s.grpc(Some(&org.admin)).await);
    let doc = admin
        .create_compliance_policy(pb::CreateCompliancePolicyRequest { policy: Some(input) })
        .await
        .unwrap()
        .into_inner();
    let bad = admin
        .create_compliance_policy(pb::CreateCompliancePolicyRequest {
            policy: Some(pb::CompliancePolicyInput { content: "name: [".into() }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let dry = admin
        .dry_run_compliance_policy(pb::DryRunCompliancePolicyRequest { id: doc.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.impact.as_ref().unwrap().retention_policies[0].action, "create");
    let applied = admin
        .apply_compliance_policy(pb::ApplyCompliancePolicyRequest { id: doc.id.clone(), dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.version.as_ref().map(|v| v.version), Some(1));
    let mut stranger = CompliancePoliciesServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = stranger
        .apply_compliance_policy(pb::ApplyCompliancePolicyRequest { id: doc.id.clone(), dry_run: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = stranger.get_compliance_policy(pb::GetCompliancePolicyRequest { id: doc.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = viewer
        .rollback_compliance_policy(pb::RollbackCompliancePolicyRequest { id: doc.id.clone(), to_version: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let versions = viewer
        .list_policy_versions(pb::ListPolicyVersionsRequest { id: doc.id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(versions.count, 1);
    // Rolling back with no earlier version is a clear refusal.
    let err = admin
        .rollback_compliance_policy(pb::RollbackCompliancePolicyRequest { id: doc.id.clone(), to_version: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    // Soft: the hand change goes ahead, and is recorded.
    let (_, page) = s.get(RETENTION, &org.viewer).await;
    let managed = &page["results"][0];
    let (status, changed) =
        s.patch(&format!("{RETENTION}{}/", id(managed)), &org.admin, json!({"retention_days": 30})).await;
    assert_eq!((status.as_u16(), changed["retention_days"].clone()), (200, json!(30)), "{changed}");
    let (_, allowed) = s.get(&format!("{VIOLATIONS}?outcome=allowed"), &org.admin).await;
    assert_eq!(allowed["count"], 1, "{allowed}");
    assert_eq!(allowed["results"][0]["enforcement"], "soft");
    assert_eq!(allowed["results"][0]["policy"], doc.id);
    assert_eq!(s.audit_count(org.id, "violation", "policy_violation").await, 1);
    // Applying again puts the document's word back.
    let again = admin
        .apply_compliance_policy(pb::ApplyCompliancePolicyRequest { id: doc.id.clone(), dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.impact.unwrap().retention_policies[0].action, "update");
    let (_, page) = s.get(RETENTION, &org.viewer).await;
    assert_eq!(page["results"][0]["retention_days"], 90);
}
