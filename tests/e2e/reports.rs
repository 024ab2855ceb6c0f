//! Compliance reports over REST and gRPC: prepared, generated as a job against a known state
//! (scores, gaps by priority, overdue assessments, vulnerabilities past SLA, incidents, evidence,
//! the score trend and mapped coverage), submitted, signed off on the SHA-256 of the exact content
//! (an auditor recomputes it), approved content frozen (service and trigger), published, rendered
//! as JSON, text and PDF/A-2b (read back with poppler); filters, roles, tenancy and audit entries.

use custos_proto::v1 as pb;
use custos_proto::v1::compliance_reports_service_client::ComplianceReportsServiceClient;
use custos_testkit::TestServer;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{create_framework, create_requirement, id, seed_gdpr_body};

const REPORTS: &str = "/api/compliance/reports/";

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_generated_frozen_signed_off_and_rendered() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let fw_id = id(&fw);
    let art30 = create_requirement(&s, &org, &fw_id, "Art. 30", json!({"priority": "HIGH"})).await;
    create_requirement(&s, &org, &fw_id, "Art. 32", json!({"priority": "CRITICAL"})).await;
    create_requirement(&s, &org, &fw_id, "Art. 33", json!({"priority": "LOW", "next_assessment_date": "2020-01-01"}))
        .await;
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{}/update_status/", id(&art30)),
            &org.editor,
            json!({"compliance_status": "COMPLIANT"}),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 2);
    // A snapshot for the trend and the mapped coverage.
    assert_eq!(
        s.post(&format!("/api/compliance/frameworks/{fw_id}/score_history/"), &org.admin, json!({})).await.0,
        201
    );

    let body = json!({"title": "GDPR assessment Q4", "description": "Quarterly", "report_type": "ASSESSMENT", "framework": fw_id});
    assert_eq!(s.post(REPORTS, &org.viewer, body.clone()).await.0, 403);
    assert_eq!(s.post(REPORTS, &org.editor, json!({"title": "x", "report_type": "BOOK"})).await.0, 400);
    let (status, bad) = s.post(REPORTS, &other.editor, body.clone()).await;
    assert_eq!(status, 400, "another organisation's framework: {bad}");
    let (status, report) = s.post(REPORTS, &org.editor, body).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["status"], "DRAFT");
    let path = format!("{REPORTS}{}/", id(&report));
    assert_eq!(s.get(&path, &other.admin).await.0, 404);
    assert_eq!(s.post(&format!("{path}submit/"), &org.editor, json!({})).await.0, 409, "not generated yet");
    assert_eq!(s.get(&format!("{path}render/?format=text"), &org.viewer).await.0, 409);

    // Generated as a job, against the known state.
    let (status, queued) = s.post(&format!("{path}generate/"), &org.editor, json!({})).await;
    assert_eq!(status, 200, "{queued}");
    let job = s.wait_for_job(&org.admin, queued["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, generated) = s.get(&path, &org.viewer).await;
    let c = &generated["content"];
    assert_eq!(c["summary"]["total_requirements"], 3, "{c}");
    assert_eq!(c["summary"]["compliant"], 1);
    assert_eq!(c["summary"]["compliance_percentage"], 33.3);
    let gaps: Vec<&str> = c["gaps"].as_array().unwrap().iter().map(|g| g["requirement_id"].as_str().unwrap()).collect();
    assert_eq!(gaps, ["Art. 32", "Art. 33"], "by priority: critical first");
    assert_eq!(c["overdue_assessments"][0]["requirement_id"], "Art. 33");
    assert_eq!(c["score_trend"].as_array().unwrap().len(), 1);
    assert_eq!(c["mapped_coverage"]["covered_through_mappings"], 0);
    assert_eq!(c["framework"]["name"], fw["name"]);
    assert!(generated["generated_at"].is_string());

    // Submitted, signed off on the exact content: an auditor recomputes its SHA-256.
    assert_eq!(s.post(&format!("{path}submit/"), &org.editor, json!({})).await.0, 200);
    for token in [&org.editor, &org.auditor, &org.viewer] {
        assert_eq!(s.post(&format!("{path}sign_off/"), token, json!({"decision": "APPROVED"})).await.0, 403);
    }
    assert_eq!(s.post(&format!("{path}sign_off/"), &org.admin, json!({"decision": "MAYBE"})).await.0, 400);
    let (status, approved) = s
        .post(
            &format!("{path}sign_off/"),
            &org.admin,
            json!({"decision": "APPROVED", "comment": "Board review 12 Dec"}),
        )
        .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "APPROVED");
    let sign_off = &approved["sign_offs"][0];
    assert_eq!(
        (sign_off["decision"].clone(), sign_off["comment"].clone()),
        (json!("APPROVED"), json!("Board review 12 Dec"))
    );
    let (_, rendered) = s.get(&format!("{path}render/?format=json"), &org.auditor).await;
    let exact: String = {
        let (_, r) = s.get(&path, &org.auditor).await;
        serde_json::to_string(&r["content"]).unwrap()
    };
    let recomputed: String = Sha256::digest(exact.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sign_off["content_sha256"], recomputed, "the signature names the exact content");
    assert_eq!(rendered["content_sha256"], recomputed);

    // Frozen: no change, no regeneration, no deletion — and the database refuses too.
    assert_eq!(s.patch(&path, &org.editor, json!({"title": "Changed"})).await.0, 409);
    assert_eq!(s.post(&format!("{path}generate/"), &org.editor, json!({})).await.0, 409);
    assert_eq!(s.delete(&path, &org.admin).await.0, 409);
    let err = s
        .superuser_sql(&format!("UPDATE compliance_reports SET content = '{{}}' WHERE id = '{}'", id(&report)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");

    // Published; rendered as text with the figures.
    assert_eq!(s.post(&format!("{path}publish/"), &org.editor, json!({})).await.0, 403);
    let (status, published) = s.post(&format!("{path}publish/"), &org.admin, json!({})).await;
    assert_eq!((status.as_u16(), published["status"].clone()), (200, json!("PUBLISHED")));
    let (status, headers, text) = s.download(&format!("{path}render/?format=text"), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    let body = String::from_utf8(text).unwrap();
    for expected in [
        "GDPR assessment Q4",
        &format!("Content SHA-256: {recomputed}"),
        "Compliance: 33.3% (1 of 3 requirements compliant)",
        "[CRITICAL] Art. 32",
        "Overdue assessments (1):",
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
    assert_eq!(s.get(&format!("{path}render/?format=docx"), &org.viewer).await.0, 400);

    // As PDF/A-2b, read back by a real PDF reader (poppler): the figures, the tables, the chart's
    // axis, the sign-off, the content's digest, every page numbered, the font embedded.
    let (status, headers, pdf) = s.download(&format!("{path}render/?format=pdf"), &org.viewer).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&pdf));
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(headers["content-disposition"].to_str().unwrap().contains(".pdf"), "{headers:?}");
    let read = custos_testkit::read_pdf(&pdf);
    assert_eq!(read.info("PDF version"), Some("1.7"));
    assert_eq!(read.info("Title"), Some("GDPR assessment Q4"));
    let pages = read.pages();
    assert_eq!(read.info("Pages"), Some(pages.len().to_string().as_str()));
    assert!(pages.len() >= 2, "a title page and the report: {}", read.text);
    for (i, page) in pages.iter().enumerate() {
        assert!(page.contains(&format!("Page {} of {}", i + 1, pages.len())), "page {}: {page}", i + 1);
    }
    let fonts: Vec<&str> = read.fonts.lines().skip(2).collect();
    assert!(
        !fonts.is_empty() && fonts.iter().all(|f| f.contains("DejaVuSans") && f.contains(" yes yes yes ")),
        "{}",
        read.fonts
    );
    let text = &read.text;
    for expected in [
        "GDPR assessment Q4",
        "Published",
        "Compliance score trend",
        "100%",
        "Gaps (2)",
        "Critical",
        "Art. 32",
        "Overdue assessments (1)",
        "2020-01-01",
        "Board review 12 Dec",
    ] {
        assert!(text.contains(expected), "{expected:?} in the PDF's text:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("Compliance ") && l.trim_end().ends_with("33.3%")),
        "the score beside its label:\n{text}"
    );
    assert!(text.lines().any(|l| l.contains("Approved") && l.contains("UTC")), "who approved, when:\n{text}");
    let unspaced: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(unspaced.contains(&recomputed), "the content's SHA-256 is on the title page:\n{text}");
    // The same content renders to the same bytes, over gRPC too.
    let mut grpc = ComplianceReportsServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let again = grpc
        .render_compliance_report(pb::RenderComplianceReportRequest { id: id(&report), format: "pdf".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.content_type.as_str(), again.content_sha256.as_str()), ("application/pdf", recomputed.as_str()));
    assert!(again.body == pdf, "a rendering can be made again and compared");
    // Another organisation renders nothing of it, over either transport.
    assert_eq!(s.download(&format!("{path}render/?format=pdf"), &other.admin).await.0, 404);
    let mut stranger = ComplianceReportsServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = stranger
        .render_compliance_report(pb::RenderComplianceReportRequest { id: id(&report), format: "pdf".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A rejection sends a report back to DRAFT, recorded.
    let (_, second) =
        s.post(REPORTS, &org.editor, json!({"title": "Gap analysis", "report_type": "GAP_ANALYSIS"})).await;
    let p2 = format!("{REPORTS}{}/", id(&second));
    let (_, q) = s.post(&format!("{p2}generate/"), &org.editor, json!({})).await;
    s.wait_for_job(&org.admin, q["job_id"].as_str().unwrap()).await;
    s.post(&format!("{p2}submit/"), &org.editor, json!({})).await;
    let (_, rejected) =
        s.post(&format!("{p2}sign_off/"), &org.admin, json!({"decision": "REJECTED", "comment": "add scope"})).await;
    assert_eq!(
        (rejected["status"].clone(), rejected["sign_offs"][0]["decision"].clone()),
        (json!("DRAFT"), json!("REJECTED"))
    );

    // Filters.
    let (_, page) = s
        .get(&format!("{REPORTS}?framework={fw_id}&report_type=ASSESSMENT&status=PUBLISHED&search=q4"), &org.viewer)
        .await;
    assert_eq!(page["count"], 1, "{page}");
    let editor = crate::user_id(&s, &org, "editor").await;
    for preparer in [editor.clone(), format!("user:{editor}")] {
        let (_, page) = s.get(&format!("{REPORTS}?prepared_by={preparer}"), &org.viewer).await;
        assert_eq!(page["count"], 2, "a user's id or label: {page}");
    }
    assert_eq!(s.get(&format!("{REPORTS}?status=SIGNED"), &org.viewer).await.0, 400);
    assert_eq!(s.get(REPORTS, &other.viewer).await.1["count"], 0);
    assert_eq!(s.audit_count(org.id, "sign_off", "compliance_report").await, 2);
    assert_eq!(s.audit_count(org.id, "generate", "compliance_report").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_over_grpc_keep_roles_and_tenancy() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let input = pb::ComplianceReportInput {
        title: "Executive summary".into(),
        report_type: "EXECUTIVE_SUMMARY".into(),
        ..Default::default()
    };
    let mut viewer = ComplianceReportsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = viewer
        .create_compliance_report(pb::CreateComplianceReportRequest { report: Some(input.clone()) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut editor = ComplianceReportsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let r = editor
        .create_compliance_report(pb::CreateComplianceReportRequest { report: Some(input) })
        .await
        .unwrap()
        .into_inner();
    let mut stranger = ComplianceReportsServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = stranger.get_compliance_report(pb::GetComplianceReportRequest { id: r.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err =
        editor.submit_compliance_report(pb::SubmitComplianceReportRequest { id: r.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let listed =
        viewer.list_compliance_reports(pb::ListComplianceReportsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.count, 1);
}

/// ISO 27001's Statement of Applicability: every control of the framework, applicable or not with
/// its justification (an exclusion without one is refused), and its implementation.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_of_applicability_lists_every_control_with_its_justification() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (status, fw) = s
        .post(
            "/api/compliance/frameworks/",
            &org.editor,
            json!({"name": "ISO/IEC 27001:2022", "framework_type": "ISO27001", "version": "2022"}),
        )
        .await;
    assert_eq!(status, 201, "{fw}");
    let fw_id = id(&fw);
    let (status, err) = s
        .post(
            "/api/compliance/requirements/",
            &org.editor,
            json!({"framework": fw_id, "requirement_id": "A.7.4", "title": "Physical security monitoring",
                     "requirement_type": "PHYSICAL", "priority": "LOW", "is_applicable": false}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("applicability_justification"), "{err}");
    let (status, excluded) = s
        .post(
            "/api/compliance/requirements/",
            &org.editor,
            json!({"framework": fw_id, "requirement_id": "A.7.4", "title": "Physical security monitoring",
                     "requirement_type": "PHYSICAL", "priority": "LOW", "is_applicable": false,
                     "applicability_justification": "Fully remote organisation: no premises"}),
        )
        .await;
    assert_eq!(status, 201, "{excluded}");
    assert_eq!(excluded["is_applicable"], false);
    create_requirement(&s, &org, &fw_id, "A.5.1", json!({"is_implemented": true})).await;
    assert_eq!(
        s.post(REPORTS, &org.editor, json!({"title": "SoA", "report_type": "STATEMENT_OF_APPLICABILITY"})).await.0,
        400,
        "a SoA is of one framework"
    );
    let (_, report) = s
        .post(
            REPORTS,
            &org.editor,
            json!({"title": "SoA 2026", "report_type": "STATEMENT_OF_APPLICABILITY", "framework": fw_id}),
        )
        .await;
    let (_, queued) = s.post(&format!("{REPORTS}{}/generate/", id(&report)), &org.editor, json!({})).await;
    assert_eq!(s.wait_for_job(&org.admin, queued["job_id"].as_str().unwrap()).await["status"], "succeeded");
    let (_, generated) = s.get(&format!("{REPORTS}{}/", id(&report)), &org.viewer).await;
    let soa = generated["content"]["statement_of_applicability"].as_array().unwrap().clone();
    assert_eq!(soa.len(), 2, "{soa:?}");
    let a74 = soa.iter().find(|c| c["requirement_id"] == "A.7.4").unwrap();
    assert_eq!(
        (a74["applicable"].clone(), a74["justification"].clone()),
        (json!(false), json!("Fully remote organisation: no premises"))
    );
    let a51 = soa.iter().find(|c| c["requirement_id"] == "A.5.1").unwrap();
    assert_eq!((a51["applicable"].clone(), a51["implemented"].clone()), (json!(true), json!(true)));
    let (_, _, text) = s.download(&format!("{REPORTS}{}/render/?format=text", id(&report)), &org.viewer).await;
    let body = String::from_utf8(text).unwrap();
    assert!(body.contains("Statement of Applicability (2 controls):"), "{body}");
    assert!(body.contains("A.7.4 Physical security monitoring — not applicable: Fully remote organisation"), "{body}");
    let (status, _, pdf) = s.download(&format!("{REPORTS}{}/render/?format=pdf", id(&report)), &org.viewer).await;
    assert_eq!(status, 200);
    let read = custos_testkit::read_pdf(&pdf);
    for expected in ["Statement of Applicability (2 controls)", "A.7.4", "Fully remote organisation", "Implemented"] {
        assert!(read.text.contains(expected), "{expected:?} in the PDF's text:\n{}", read.text);
    }
    // Other reports carry no SoA.
    let (_, plain) =
        s.post(REPORTS, &org.editor, json!({"title": "Plain", "report_type": "AUDIT", "framework": fw_id})).await;
    let (_, q) = s.post(&format!("{REPORTS}{}/generate/", id(&plain)), &org.editor, json!({})).await;
    s.wait_for_job(&org.admin, q["job_id"].as_str().unwrap()).await;
    let (_, plain) = s.get(&format!("{REPORTS}{}/", id(&plain)), &org.viewer).await;
    assert!(plain["content"].get("statement_of_applicability").is_none(), "{plain}");
}
