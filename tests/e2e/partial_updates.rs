//! Partial updates, the same for every resource (one kit: `custos_core::update::apply`): a REST
//! PATCH of `{}` changes nothing, answers the resource and records nothing; a gRPC
//! `update_mask` naming no field is INVALID_ARGUMENT naming it; an empty mask changes nothing.

use custos_proto::FieldMask;
use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_proto::v1::incidents_service_client::IncidentsServiceClient;
use custos_testkit::TestServer;
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;

use crate::{create_framework, create_requirement, id, seed_gdpr_body};

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_patch_changes_nothing_and_records_nothing_on_every_resource() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let req = create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await;
    let (_, inc) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            json!({ "title": "Laptop lost", "severity": "HIGH", "category": "DATA_BREACH" }),
        )
        .await;
    let (_, vuln) =
        s.post("/api/compliance/vulnerabilities/", &org.editor, json!({ "title": "Old TLS", "severity": "LOW" })).await;
    let (_, cp) = s
        .post(
            "/api/compliance/compliance-checkpoints/",
            &org.editor,
            json!({ "name": "Audit", "scheduled_date": "2030-01-10", "due_date": "2030-01-31" }),
        )
        .await;
    let (_, plan) = s
        .post(
            "/api/compliance/incident-response-plans/",
            &org.editor,
            json!({ "name": "Breach plan", "incident_type": "DATA_BREACH", "severity": "HIGH" }),
        )
        .await;
    let (_, ev) = s
        .post("/api/compliance/evidence/", &org.editor, json!({ "title": "Screenshot", "evidence_type": "SCREENSHOT" }))
        .await;
    let (_, hold) = s
        .post("/api/compliance/legal-holds/", &org.admin, json!({ "case_name": "Inquiry", "start_date": "2024-01-01" }))
        .await;
    let resources = [
        ("frameworks", "framework", &fw),
        ("requirements", "requirement", &req),
        ("incidents", "incident", &inc),
        ("vulnerabilities", "vulnerability", &vuln),
        ("compliance-checkpoints", "compliance_checkpoint", &cp),
        ("incident-response-plans", "incident_response_plan", &plan),
        ("evidence", "evidence", &ev),
        ("legal-holds", "legal_hold", &hold),
    ];
    for (path, resource_type, created) in resources {
        assert!(created["id"].is_string(), "{path}: {created}");
        let url = format!("/api/compliance/{path}/{}/", id(created));
        let (_, before) = s.get(&url, &org.viewer).await;
        let updates = s.audit_count(org.id, "update", resource_type).await;
        let (status, patched) = s.patch(&url, &org.admin, json!({})).await;
        assert_eq!(status, 200, "{path}: {patched}");
        assert_eq!(patched, before, "{path}: the resource as it stands");
        // Output-only fields sent back alone change nothing either.
        let (status, patched) = s.patch(&url, &org.admin, json!({ "id": id(created) })).await;
        assert_eq!(status, 200, "{path}: {patched}");
        assert_eq!(patched["updated_at"], before["updated_at"], "{path}");
        assert_eq!(s.audit_count(org.id, "update", resource_type).await, updates, "{path}: nothing recorded");
        // A viewer still may not send one.
        let (status, _) = s.patch(&url, &org.viewer, json!({})).await;
        assert_eq!(status, 403, "{path}");
    }
    // Another organisation's resource stays invisible to an empty patch.
    let other = s.org("globex").await;
    let (status, _) = s.patch(&format!("/api/compliance/frameworks/{}/", id(&fw)), &other.admin, json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_update_mask_naming_no_field_is_invalid_argument() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let mut editor = FrameworksServiceClient::new(s.grpc(Some(&org.editor)).await);
    let input = pb::FrameworkInput { name: "Renamed".into(), framework_type: "GDPR".into(), ..Default::default() };
    let err = editor
        .update_framework(pb::UpdateFrameworkRequest {
            id: id(&fw),
            framework: Some(input.clone()),
            update_mask: Some(FieldMask::new(["name", "colour"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_error_details().bad_request().expect("BadRequest").field_violations.clone();
    assert_eq!(violations[0].field, "update_mask");
    assert!(violations[0].description.contains("\"colour\""), "{violations:?}");

    // An empty mask: nothing changes, nothing is recorded.
    let updates = s.audit_count(org.id, "update", "framework").await;
    let same = editor
        .update_framework(pb::UpdateFrameworkRequest {
            id: id(&fw),
            framework: Some(input.clone()),
            update_mask: Some(FieldMask::default()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.name, fw["name"].as_str().unwrap());
    assert_eq!(s.audit_count(org.id, "update", "framework").await, updates);
    // An output-only name is tolerated (what a client read and sends back).
    let renamed = editor
        .update_framework(pb::UpdateFrameworkRequest {
            id: id(&fw),
            framework: Some(input),
            update_mask: Some(FieldMask::new(["name", "created_at"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "Renamed");

    let mut incidents = IncidentsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let (_, inc) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            json!({ "title": "Laptop lost", "severity": "HIGH", "category": "DATA_BREACH" }),
        )
        .await;
    let err = incidents
        .update_incident(pb::UpdateIncidentRequest {
            id: id(&inc),
            incident: Some(pb::IncidentInput::default()),
            update_mask: Some(FieldMask::new(["sevérité"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Invalid value for 'update_mask'");
    let (_, unchanged) = s.get(&format!("/api/compliance/incidents/{}/", id(&inc)), &org.viewer).await;
    assert_eq!(unchanged, inc);
}
