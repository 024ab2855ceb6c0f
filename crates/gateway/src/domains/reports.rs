//! Compliance reports (seeds 000 and 003): prepared, generated from the live state as a job,
//! submitted, signed off on the SHA-256 of their exact content, published, rendered.

use custos_proto::v1::compliance_reports_service_server::ComplianceReportsServiceServer;
use custos_reports::ReportsService;
use custos_reports::model::{Decision, ReportStatus, ReportType};
use custos_reports::service::generate_job;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, organisations, problem};
use crate::config::Config;
use crate::op;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::rest::{Download, Endpoint, FileDownload};
use crate::server::App;
use clap::{Args, Subcommand, ValueEnum};
use custos_core::Problem;
use custos_core::RequestCtx;
use custos_proto::v1 as pb;
use futures::StreamExt;
use std::io::{IsTerminal, Write};

pub const DOMAIN: Domain =
    Domain { name: "reports", serve, cli: Some(crate::domain_cli!(ReportCommands, run, |_| false)) };

const REPORTS: &str = "/api/compliance/reports/";
const REPORT: &str = "/api/compliance/reports/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &ReportsService::new(app.db.clone()).with_job_waker(app.jobs.waker());
    let frozen = "The report is not a DRAFT (approved content is frozen)";
    let render = {
        let s = s.clone();
        Download::new("render_compliance_report", move |ctx, req: pb::RenderComplianceReportRequest| {
            let s = s.clone();
            async move {
                let id = req.id.trim().to_owned();
                let rendered = s.render_compliance_report(&ctx, req).await.map_err(Problem::from)?;
                let extension = if rendered.format == "text" { "txt" } else { rendered.format.as_str() };
                let file_name = format!("compliance-report-{id}.{extension}");
                let body = bytes::Bytes::from(rendered.body);
                Ok(FileDownload {
                    content_type: rendered.content_type,
                    size: body.len() as u64,
                    file_name,
                    sha256: None,
                    blake3: None,
                    body: futures::stream::once(async move { Ok(body) }).boxed(),
                })
            }
        })
        .media_types(&["application/json", "text/plain", "application/pdf"])
    };
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
            Endpoint::download(
                "/api/compliance/reports/{id}/render/",
                "The report as a document: ?format=json|text|pdf (PDF/A-2b)",
                render,
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

#[derive(Debug, Subcommand)]
pub enum ReportCommands {
    /// Generate a compliance report now (seed 003's `generate_compliance_report`): prepared,
    /// generated from the live state and kept as a DRAFT report (its id on stderr), then printed
    /// or written to --out.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The organisation (its slug; required when there are several).
    #[arg(long)]
    org: Option<String>,
    /// The framework: its id, or its type (GDPR, ISO27001, …) when the organisation has one
    /// active framework of that type. Default: the organisation as a whole.
    #[arg(long)]
    framework: Option<String>,
    /// ASSESSMENT, GAP_ANALYSIS, AUDIT, EXECUTIVE_SUMMARY or STATEMENT_OF_APPLICABILITY.
    #[arg(long = "type", default_value = "ASSESSMENT")]
    report_type: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    /// PDF/A-2b; written to --out, or to standard output when that is not a terminal.
    Pdf,
}

async fn run(command: ReportCommands) -> anyhow::Result<()> {
    let ReportCommands::Report(args) = command;
    if matches!(args.format, ReportFormat::Pdf) && args.out.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("a PDF is not for a terminal: write it with --out FILE (or redirect standard output)");
    }
    let app = app_for(&args.db).await?;
    let orgs = organisations(&app, args.org.as_deref()).await?;
    let [(org_id, slug)] = orgs.as_slice() else {
        anyhow::bail!("{} organisations: name one with --org", orgs.len());
    };
    let ctx = RequestCtx::operator(*org_id, slug.clone());
    let framework = match args.framework.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) if uuid::Uuid::parse_str(raw).is_ok() => Some(raw.to_owned()),
        Some(kind) => {
            let found = app
                .frameworks
                .list_frameworks(
                    &ctx,
                    pb::ListFrameworksRequest {
                        framework_type: Some(kind.to_uppercase()),
                        is_active: Some(true),
                        page_size: Some(10),
                        ..Default::default()
                    },
                )
                .await
                .map_err(problem)?;
            match found.results.as_slice() {
                [one] => Some(one.id.clone()),
                [] => anyhow::bail!("{slug} has no active {kind} framework"),
                many => anyhow::bail!(
                    "{slug} has {} active {kind} frameworks: name one by id ({})",
                    many.len(),
                    many.iter().map(|f| format!("{} {}", f.id, f.name)).collect::<Vec<_>>().join(", ")
                ),
            }
        }
    };
    let s = ReportsService::new(app.db.clone());
    let title = format!("{} report — {slug}", args.report_type.trim().to_uppercase().replace('_', " ").to_lowercase());
    let report = s
        .create_compliance_report(
            &ctx,
            pb::CreateComplianceReportRequest {
                report: Some(pb::ComplianceReportInput {
                    title,
                    report_type: args.report_type.trim().to_uppercase(),
                    framework,
                    ..Default::default()
                }),
            },
        )
        .await
        .map_err(problem)?;
    let id = uuid::Uuid::parse_str(&report.id)?;
    s.generate_now(&ctx, id, None).await.map_err(problem)?;
    let format = match args.format {
        ReportFormat::Text => "text",
        ReportFormat::Json => "json",
        ReportFormat::Pdf => "pdf",
    };
    let rendered = s
        .render_compliance_report(
            &ctx,
            pb::RenderComplianceReportRequest { id: report.id.clone(), format: format.into() },
        )
        .await
        .map_err(problem)?;
    match &args.out {
        Some(path) => std::fs::write(path, &rendered.body).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&rendered.body).and_then(|()| out.flush())?;
        }
    }
    eprintln!("report {} (DRAFT, content sha256 {})", report.id, rendered.content_sha256);
    Ok(())
}
