//! Compliance reports (seeds 000 and 003): prepared, generated from the live state as a job,
//! submitted, signed off on the SHA-256 of their exact content, published, rendered.

use custos_proto::v1::compliance_reports_service_server::ComplianceReportsServiceServer;
use custos_reports::ReportsService;
use custos_reports::model::{Decision, ReportStatus, ReportType};
use custos_reports::service::generate_job;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "reports", serve, cli: None };

const REPORTS: &str = "/api/compliance/reports/";
const REPORT: &str = "/api/compliance/reports/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &ReportsService::new(app.db.clone()).with_job_waker(app.jobs.waker());
    let frozen = "The report is not a DRAFT (approved content is frozen)";
    Serving {
        endpoints: vec![
            Endpoint::get(REPORTS, "List compliance reports", op!(s, list_compliance_reports)).list(),
            Endpoint::post(REPORTS, "Prepare a report (editors, admins)", op!(s, create_compliance_report))
                .body_field("report")
                .created(),
            Endpoint::get(REPORT, "Get a compliance report", op!(s, get_compliance_report)),
            Endpoint::put(REPORT, "Replace a DRAFT report's details", op!(s, update_compliance_report))
                .body_field("report")
                .fails(StatusCode::CONFLICT, frozen),
            Endpoint::patch(REPORT, "Partially update a DRAFT report's details", op!(s, update_compliance_report))
                .body_field("report")
                .fails(StatusCode::CONFLICT, frozen),
            Endpoint::delete(REPORT, "Delete a report not approved", op!(s, delete_compliance_report))
                .fails(StatusCode::CONFLICT, frozen),
            Endpoint::post(
                "/api/compliance/reports/{id}/generate/",
                "Fill a DRAFT report from the live state, as a job",
                op!(s, generate_compliance_report),
            )
            .fails(StatusCode::CONFLICT, frozen),
            Endpoint::post(
                "/api/compliance/reports/{id}/submit/",
                "Submit a generated DRAFT for review",
                op!(s, submit_compliance_report),
            )
            .fails(StatusCode::CONFLICT, "Not a generated DRAFT"),
            Endpoint::post(
                "/api/compliance/reports/{id}/sign_off/",
                "Approve or reject a report in review (admins): {\"decision\": \"APPROVED\", \"comment\": …}",
                op!(s, sign_off_compliance_report),
            )
            .fails(StatusCode::CONFLICT, "The report is not IN_REVIEW"),
            Endpoint::post(
                "/api/compliance/reports/{id}/publish/",
                "Publish an approved report (admins)",
                op!(s, publish_compliance_report),
            )
            .fails(StatusCode::CONFLICT, "The report is not APPROVED"),
            Endpoint::get(
                "/api/compliance/reports/{id}/render/",
                "The report rendered: ?format=json|text",
                op!(s, render_compliance_report),
            )
            .fails(StatusCode::CONFLICT, "The report has not been generated"),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<ReportType>(&[
                    "ComplianceReport.report_type",
                    "ComplianceReportInput.report_type",
                    "ListComplianceReportsRequest.report_type",
                ]),
                ValueSet::of::<ReportStatus>(&["ComplianceReport.status", "ListComplianceReportsRequest.status"]),
                ValueSet::of::<Decision>(&["ReportSignOff.decision", "SignOffComplianceReportRequest.decision"]),
            ],
            required: vec![
                "ComplianceReportInput.title",
                "ComplianceReportInput.report_type",
                "SignOffComplianceReportRequest.decision",
            ],
        },
        grpc: vec![GrpcService::new(ComplianceReportsServiceServer::new(s.clone()))],
        jobs: vec![generate_job(s.clone())],
        ..Serving::default()
    }
}
