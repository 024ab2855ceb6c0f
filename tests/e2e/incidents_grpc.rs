//! Incident response over gRPC: the same methods, gRPC status codes.

use custos_proto::v1 as pb;
use custos_proto::v1::incidents_service_client::IncidentsServiceClient;
use custos_testkit::TestServer;
use tonic::Code;

use crate::superuser_sql;

fn incident(title: &str, severity: &str, category: &str) -> pb::IncidentInput {
    pb::IncidentInput {
        title: title.into(),
        severity: severity.into(),
        category: category.into(),
        detected_at: Some("2024-03-01T09:00:00Z".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_incident_rpc_works_end_to_end() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut c = IncidentsServiceClient::new(s.grpc(Some(&org.editor)).await);

    let inc = c
        .create_incident(pb::CreateIncidentRequest { incident: Some(incident("Breach", "CRITICAL", "DATA_BREACH")) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(inc.response_due_at, "2024-03-01T09:15:00.000000Z");
    assert_eq!(inc.resolution_due_at, "2024-03-01T13:00:00.000000Z");
    assert_eq!(inc.status, "OPEN");
    assert_eq!(inc.data_classification, "INTERNAL");
    assert!(inc.reported_by.starts_with("user:"));
    let other = c
        .create_incident(pb::CreateIncidentRequest { incident: Some(incident("Outage", "LOW", "SERVICE_OUTAGE")) })
        .await
        .unwrap()
        .into_inner();

    let got = c.get_incident(pb::GetIncidentRequest { id: inc.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, inc);
    let list = c
        .list_incidents(pb::ListIncidentsRequest { category: Some("SERVICE_OUTAGE".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.count, 1);
    assert_eq!(list.results, vec![other.clone()]);
    let list = c
        .list_incidents(pb::ListIncidentsRequest { search: Some("brea".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.results.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [inc.id.as_str()]);

    let updated = c
        .update_incident(pb::UpdateIncidentRequest {
            id: inc.id.clone(),
            incident: Some(pb::IncidentInput { status: Some("RESOLVED".into()), ..Default::default() }),
            update_mask: Some(custos_proto::FieldMask::new(["status"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.status, "RESOLVED");
    assert!(updated.resolved_at.is_some());
    assert_eq!(updated.title, "Breach");
    // Without a mask, an update replaces every writable field.
    let replaced = c
        .update_incident(pb::UpdateIncidentRequest {
            id: inc.id.clone(),
            incident: Some(incident("Breach (confirmed)", "HIGH", "DATA_BREACH")),
            update_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.title, "Breach (confirmed)");
    assert_eq!(replaced.status, "RESOLVED", "an unset status keeps its value");
    assert_eq!(s.audit_count(org.id, "update", "incident").await, 2);

    c.delete_incident(pb::DeleteIncidentRequest { id: other.id.clone() }).await.unwrap();
    let err = c.get_incident(pb::GetIncidentRequest { id: other.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Errors: bad values, holds, roles, tenants.
    let err = c
        .create_incident(pb::CreateIncidentRequest { incident: Some(incident("x", "SEVERE", "OTHER")) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("severity"), "{}", err.message());
    let err = c
        .list_incidents(pb::ListIncidentsRequest { detected_after: Some("last week".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("detected_after"), "{}", err.message());

    let hold = uuid::Uuid::now_v7();
    superuser_sql(
        &s,
        &format!(
            "INSERT INTO legal_holds (id, organization_id, case_name, status, start_date, created_by)
             VALUES ('{hold}', '{org}', 'Regulator inquiry', 'ACTIVE', '2024-01-01', 'user:test');
             INSERT INTO legal_hold_items (organization_id, hold_id, resource_type, resource_id, added_by)
             VALUES ('{org}', '{hold}', 'incident', '{inc}', 'user:test')",
            org = org.id,
            inc = inc.id
        ),
    )
    .await;
    let err = c.delete_incident(pb::DeleteIncidentRequest { id: inc.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a state conflict, not a duplicate");
    assert_eq!(err.message(), "Resource is under legal hold");
    let details = String::from_utf8_lossy(err.details()).into_owned();
    assert!(details.contains("Regulator inquiry"), "{details}");

    let mut viewer = IncidentsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    assert_eq!(
        viewer.get_incident(pb::GetIncidentRequest { id: inc.id.clone() }).await.unwrap().into_inner(),
        replaced
    );
    let err = viewer
        .create_incident(pb::CreateIncidentRequest { incident: Some(incident("x", "LOW", "OTHER")) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let b = s.org("globex").await;
    let mut stranger = IncidentsServiceClient::new(s.grpc(Some(&b.admin)).await);
    let err = stranger.get_incident(pb::GetIncidentRequest { id: inc.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = stranger.delete_incident(pb::DeleteIncidentRequest { id: inc.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_vulnerability_rpc_works_end_to_end() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut c = IncidentsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let inc = c
        .create_incident(pb::CreateIncidentRequest { incident: Some(incident("Breach", "HIGH", "DATA_BREACH")) })
        .await
        .unwrap()
        .into_inner();
    let input = pb::VulnerabilityInput {
        title: "OpenSSH regreSSHion".into(),
        severity: "HIGH".into(),
        cve_id: Some("CVE-2024-6387".into()),
        cvss_score: Some(8.1),
        discovered_at: Some("2024-07-01T00:00:00Z".into()),
        incident: Some(inc.id.clone()),
        ..Default::default()
    };
    let v = c
        .create_vulnerability(pb::CreateVulnerabilityRequest { vulnerability: Some(input) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.sla_days, 14);
    assert_eq!(v.due_at, "2024-07-15T00:00:00.000000Z");
    assert!(v.overdue && v.sla_breached);
    assert_eq!(c.get_vulnerability(pb::GetVulnerabilityRequest { id: v.id.clone() }).await.unwrap().into_inner(), v);
    let list = c
        .list_vulnerabilities(pb::ListVulnerabilitiesRequest { overdue: Some(true), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.results, vec![v.clone()]);
    let none = c
        .list_vulnerabilities(pb::ListVulnerabilitiesRequest { overdue: Some(false), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.count, 0);
    let fixed = c
        .update_vulnerability(pb::UpdateVulnerabilityRequest {
            id: v.id.clone(),
            vulnerability: Some(pb::VulnerabilityInput {
                status: Some("REMEDIATED".into()),
                remediated_at: Some("2024-07-10T00:00:00Z".into()),
                ..Default::default()
            }),
            update_mask: Some(custos_proto::FieldMask::new(["status", "remediated_at"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!fixed.overdue && !fixed.sla_breached);
    assert_eq!(fixed.cve_id.as_deref(), Some("CVE-2024-6387"));
    let err = c.delete_incident(pb::DeleteIncidentRequest { id: inc.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "Incident has linked records");
    let err = c
        .create_vulnerability(pb::CreateVulnerabilityRequest {
            vulnerability: Some(pb::VulnerabilityInput {
                title: "x".into(),
                severity: "LOW".into(),
                cvss_score: Some(11.0),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("cvss_score"));
    c.delete_vulnerability(pb::DeleteVulnerabilityRequest { id: v.id.clone() }).await.unwrap();
    c.delete_incident(pb::DeleteIncidentRequest { id: inc.id.clone() }).await.unwrap();
    let mut viewer = IncidentsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = viewer.delete_vulnerability(pb::DeleteVulnerabilityRequest { id: v.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(s.audit_count(org.id, "delete", "vulnerability").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoint_and_plan_rpcs_work_end_to_end() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut c = IncidentsServiceClient::new(s.grpc(Some(&org.editor)).await);

    let cp = c
        .create_compliance_checkpoint(pb::CreateComplianceCheckpointRequest {
            checkpoint: Some(pb::ComplianceCheckpointInput {
                name: "SOC 2 readiness".into(),
                due_date: Some("2024-06-30".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cp.status, "PLANNED");
    assert!(cp.overdue);
    let got = c
        .get_compliance_checkpoint(pb::GetComplianceCheckpointRequest { id: cp.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, cp);
    let list = c
        .list_compliance_checkpoints(pb::ListComplianceCheckpointsRequest {
            status: Some("PLANNED,IN_PROGRESS".into()),
            overdue: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.results, vec![cp.clone()]);
    let done = c
        .update_compliance_checkpoint(pb::UpdateComplianceCheckpointRequest {
            id: cp.id.clone(),
            checkpoint: Some(pb::ComplianceCheckpointInput {
                status: Some("COMPLETED".into()),
                completed_date: Some("2024-06-28".into()),
                ..Default::default()
            }),
            update_mask: Some(custos_proto::FieldMask::new(["status", "completed_date"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.completed_date.as_deref(), Some("2024-06-28"));
    assert!(!done.overdue);
    let err = c
        .list_compliance_checkpoints(pb::ListComplianceCheckpointsRequest {
            status: Some("PLANNED,NOPE".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    c.delete_compliance_checkpoint(pb::DeleteComplianceCheckpointRequest { id: cp.id.clone() }).await.unwrap();

    let plan = c
        .create_incident_response_plan(pb::CreateIncidentResponsePlanRequest {
            plan: Some(pb::IncidentResponsePlanInput {
                name: "Ransomware".into(),
                incident_type: "MALWARE".into(),
                severity: "CRITICAL".into(),
                initial_response: "Disconnect hosts".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(plan.is_active);
    assert_eq!(plan.version, "1.0");
    let got = c
        .get_incident_response_plan(pb::GetIncidentResponsePlanRequest { id: plan.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, plan);
    let list = c
        .list_incident_response_plans(pb::ListIncidentResponsePlansRequest {
            incident_type: Some("MALWARE".into()),
            is_active: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.results, vec![plan.clone()]);
    let updated = c
        .update_incident_response_plan(pb::UpdateIncidentResponsePlanRequest {
            id: plan.id.clone(),
            plan: Some(pb::IncidentResponsePlanInput { is_active: Some(false), ..Default::default() }),
            update_mask: Some(custos_proto::FieldMask::new(["is_active"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!updated.is_active);
    assert_eq!(updated.initial_response, "Disconnect hosts");
    let mut viewer = IncidentsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = viewer
        .delete_incident_response_plan(pb::DeleteIncidentResponsePlanRequest { id: plan.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    c.delete_incident_response_plan(pb::DeleteIncidentResponsePlanRequest { id: plan.id.clone() }).await.unwrap();
    let err = c.get_incident_response_plan(pb::GetIncidentResponsePlanRequest { id: plan.id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(s.audit_count(org.id, "create", "compliance_checkpoint").await, 1);
    assert_eq!(s.audit_count(org.id, "delete", "incident_response_plan").await, 1);
}
