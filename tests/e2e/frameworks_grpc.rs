//! The same operations over gRPC: same implementation, same rules, gRPC status codes.

use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_proto::v1::identity_service_client::IdentityServiceClient;
use custos_testkit::{ServerOptions, TestServer};
use tonic::Code;

fn gdpr() -> pb::FrameworkInput {
    pb::FrameworkInput {
        name: "GDPR Compliance Framework".into(),
        framework_type: "GDPR".into(),
        version: "1.0".into(),
        description: "GDPR compliance framework for EU data protection".into(),
        applicable_regions: vec!["EU".into(), "EEA".into(), "UK".into()],
        industry_sectors: vec!["Technology".into(), "Healthcare".into()],
        is_active: Some(true),
        effective_date: Some("2018-05-25".into()),
        review_date: None,
    }
}

fn requirement(framework: &str, rid: &str, status: Option<&str>, priority: &str) -> pb::RequirementInput {
    pb::RequirementInput {
        framework: framework.into(),
        requirement_id: rid.into(),
        title: format!("Requirement {rid}"),
        requirement_type: "TECHNICAL".into(),
        priority: priority.into(),
        compliance_status: status.map(str::to_owned),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_works_end_to_end() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut c = FrameworksServiceClient::new(s.grpc(Some(&org.editor)).await);

    let fw = c.create_framework(pb::CreateFrameworkRequest { framework: Some(gdpr()) }).await.unwrap().into_inner();
    assert_eq!(fw.framework_type_display, "General Data Protection Regulation");
    assert_eq!(fw.effective_date.as_deref(), Some("2018-05-25"));
    let got = c.get_framework(pb::GetFrameworkRequest { id: fw.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, fw);

    let list = c
        .list_frameworks(pb::ListFrameworksRequest {
            framework_type: Some("GDPR".into()),
            search: Some("eea".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.count, 1);
    assert_eq!(list.next_page, None);
    assert_eq!(list.results[0].id, fw.id);
    let none = c
        .list_frameworks(pb::ListFrameworksRequest { is_active: Some(false), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.count, 0);

    // A masked update changes only the named fields.
    let patch = pb::FrameworkInput { version: "2.0".into(), ..Default::default() };
    let updated = c
        .update_framework(pb::UpdateFrameworkRequest {
            id: fw.id.clone(),
            framework: Some(patch),
            update_mask: Some(custos_proto::FieldMask::new(["version"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, "2.0");
    assert_eq!(updated.name, fw.name);

    let r1 = c
        .create_requirement(pb::CreateRequirementRequest {
            requirement: Some(requirement(&fw.id, "Art. 5", Some("COMPLIANT"), "CRITICAL")),
        })
        .await
        .unwrap()
        .into_inner();
    let r2 = c
        .create_requirement(pb::CreateRequirementRequest {
            requirement: Some(requirement(&fw.id, "Art. 6", None, "LOW")),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r2.compliance_status, "NOT_ASSESSED");
    let nested = c
        .list_framework_requirements(pb::ListFrameworkRequirementsRequest {
            id: fw.id.clone(),
            priority: Some("LOW".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nested.results.iter().map(|r| r.requirement_id.as_str()).collect::<Vec<_>>(), ["Art. 6"]);
    let flat = c
        .list_requirements(pb::ListRequirementsRequest {
            compliance_status: Some("COMPLIANT".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(flat.results.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [r1.id.as_str()]);

    let status = c
        .update_requirement_status(pb::UpdateStatusRequest {
            id: r2.id.clone(),
            compliance_status: "PARTIALLY_COMPLIANT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.compliance_status, "PARTIALLY_COMPLIANT");
    assert!(status.last_assessment_date.is_some());
    let future = (time::OffsetDateTime::now_utc().date() + time::Duration::days(10)).to_string();
    let scheduled = c
        .schedule_assessment(pb::ScheduleAssessmentRequest { id: r2.id.clone(), assessment_date: future.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scheduled.next_assessment_date, Some(future));
    let got = c.get_requirement(pb::GetRequirementRequest { id: r2.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got, scheduled);
    let renamed = c
        .update_requirement(pb::UpdateRequirementRequest {
            id: r2.id.clone(),
            requirement: Some(pb::RequirementInput { title: "Lawfulness".into(), ..Default::default() }),
            update_mask: Some(custos_proto::FieldMask::new(["title"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.title, "Lawfulness");
    assert_eq!(renamed.priority, "LOW");

    let summary = c
        .get_compliance_summary(pb::ComplianceSummaryRequest { id: fw.id.clone(), include_mapped: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.total_requirements, summary.compliant, summary.partially_compliant), (2, 1, 1));
    assert_eq!(summary.compliance_percentage, 50.0);

    c.delete_requirement(pb::DeleteRequirementRequest { id: r1.id.clone() }).await.unwrap();
    let err = c.get_requirement(pb::GetRequirementRequest { id: r1.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    c.delete_framework(pb::DeleteFrameworkRequest { id: fw.id.clone() }).await.unwrap();
    let err = c.get_framework(pb::GetFrameworkRequest { id: fw.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // The same audit trail as REST.
    assert_eq!(s.audit_count(org.id, "create", "requirement").await, 2);
    assert_eq!(s.audit_count(org.id, "delete", "framework").await, 1);

    let mut id = IdentityServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let me = id.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.organization_slug.as_str(), me.role.as_str()), ("acme", "viewer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_errors_carry_the_same_rules() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("other").await;
    let mut editor = FrameworksServiceClient::new(s.grpc(Some(&org.editor)).await);
    let fw =
        editor.create_framework(pb::CreateFrameworkRequest { framework: Some(gdpr()) }).await.unwrap().into_inner();
    let r = editor
        .create_requirement(pb::CreateRequirementRequest {
            requirement: Some(requirement(&fw.id, "Art. 5", None, "LOW")),
        })
        .await
        .unwrap()
        .into_inner();

    let err = editor
        .update_requirement_status(pb::UpdateStatusRequest { id: r.id.clone(), compliance_status: "GREAT".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Invalid compliance status");
    // The details travel in a google.rpc.Status (ErrorInfo metadata), no longer as bare JSON.
    let details = tonic_types::StatusExt::get_error_details(&err);
    assert_eq!(
        details.error_info().expect("ErrorInfo").metadata["details"],
        "Status must be one of: COMPLIANT, PARTIALLY_COMPLIANT, NON_COMPLIANT, NOT_ASSESSED"
    );
    let err = editor
        .schedule_assessment(pb::ScheduleAssessmentRequest { id: r.id.clone(), assessment_date: "2001-01-01".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = editor
        .create_framework(pb::CreateFrameworkRequest {
            framework: Some(pb::FrameworkInput { framework_type: "NOPE".into(), ..gdpr() }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = editor
        .list_frameworks(pb::ListFrameworksRequest { effective_date_after: Some("x".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err =
        editor.list_frameworks(pb::ListFrameworksRequest { page: Some(7), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = editor
        .create_requirement(pb::CreateRequirementRequest {
            requirement: Some(requirement(&fw.id, "Art. 5", None, "LOW")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    let mut anonymous = FrameworksServiceClient::new(s.grpc(None).await);
    let err = anonymous.list_frameworks(pb::ListFrameworksRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut forged = FrameworksServiceClient::new(s.grpc(Some("cst_forged")).await);
    assert_eq!(
        forged.list_frameworks(pb::ListFrameworksRequest::default()).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let mut viewer = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    assert_eq!(
        viewer.get_framework(pb::GetFrameworkRequest { id: fw.id.clone() }).await.unwrap().into_inner().id,
        fw.id
    );
    let err = viewer.create_framework(pb::CreateFrameworkRequest { framework: Some(gdpr()) }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = viewer.delete_framework(pb::DeleteFrameworkRequest { id: fw.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let mut intruder = FrameworksServiceClient::new(s.grpc(Some(&other.admin)).await);
    assert_eq!(
        intruder.get_framework(pb::GetFrameworkRequest { id: fw.id.clone() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        intruder.delete_requirement(pb::DeleteRequirementRequest { id: r.id.clone() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(intruder.list_requirements(pb::ListRequirementsRequest::default()).await.unwrap().into_inner().count, 0);
    assert_eq!(
        intruder
            .get_compliance_summary(pb::ComplianceSummaryRequest { id: fw.id.clone(), include_mapped: None })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_rate_limit_health_and_reflection() {
    let s = TestServer::start_with(ServerOptions { rate_limit_auth_per_hour: Some(3), ..Default::default() }).await;
    let org = s.org("acme").await;
    let mut c = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    for _ in 0..3 {
        c.list_frameworks(pb::ListFrameworksRequest::default()).await.unwrap();
    }
    let err = c.list_frameworks(pb::ListFrameworksRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.metadata().get("retry-after").is_some());

    // Health checking answers without credentials.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", s.grpc_addr)).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest { service: "custos.v1.FrameworksService".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.status(), tonic_health::pb::health_check_response::ServingStatus::Serving);

    // Reflection lists the services without credentials, in both protocol versions (grpcurl
    // uses whichever the server offers).
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(s.grpc(None).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream =
            reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
        let reply = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
            panic!("unexpected reply")
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for svc in ["custos.v1.FrameworksService", "custos.v1.IdentityService", "grpc.health.v1.Health"] {
            assert!(names.iter().any(|n| n == svc), "{svc} in {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut reflection = ServerReflectionClient::new(s.grpc(None).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("custos.v1.FrameworksService".into())),
        };
        let mut stream =
            reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
        let reply = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = reply.message_response else {
            panic!("unexpected reply")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}
