//! Frameworks and requirements (seed 000): their endpoints, gRPC service, the import job, the
//! daily assessment watch, and `custos seed` / `custos framework import|export`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use custos_core::Problem;
use custos_core::RequestCtx;
use custos_frameworks::import::{self, IMPORT_MAX_BYTES};
use custos_frameworks::{assessment_watch, catalog, score_history};
use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_server::FrameworksServiceServer;
use futures::StreamExt;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, organisations, problem, problem_of};
use crate::config::Config;
use crate::op;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::rest::{Download, Endpoint, FileDownload, IncomingFile, Upload};
use crate::server::App;
use custos_frameworks::model::{ComplianceStatus, FrameworkType, Priority, RequirementType};

pub const DOMAIN: Domain =
    Domain { name: "frameworks", serve, cli: Some(crate::domain_cli!(FrameworksCommand, run, |_| false)) };

/// The whole of an uploaded document, as text: at most [`IMPORT_MAX_BYTES`], UTF-8.
async fn read_document(mut file: IncomingFile) -> Result<String, Problem> {
    let mut bytes = Vec::new();
    while let Some(chunk) = file.body.next().await {
        let chunk = chunk.map_err(|e| Problem::invalid("The upload was interrupted", e))?;
        if bytes.len() + chunk.len() > IMPORT_MAX_BYTES as usize {
            return Err(Problem::new(
                custos_core::ErrorKind::PayloadTooLarge,
                "The document is too large",
                format!("at most {IMPORT_MAX_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|e| {
        Problem::new(custos_core::ErrorKind::Unprocessable, "The document is not UTF-8 text", e.to_string())
    })
}

/// The daily watch announcing requirements whose next assessment date has passed.
pub const ASSESSMENT_WATCH_SCHEDULE: &str = "assessment-watch";
/// The daily snapshot of every active framework's score.
pub const SCORE_SNAPSHOT_SCHEDULE: &str = "score-snapshot";

const FW: &str = "/api/compliance/frameworks/";
const FW_ID: &str = "/api/compliance/frameworks/{id}/";
const REQ: &str = "/api/compliance/requirements/";
const REQ_ID: &str = "/api/compliance/requirements/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.frameworks;
    let referenced = "A requirement, checkpoint or evidence item still refers to it";
    let upload = {
        let s = s.clone();
        Upload::new(IMPORT_MAX_BYTES, move |ctx, mut req: pb::ImportFrameworkRequest, file| {
            let s = s.clone();
            async move {
                if req.file_name.as_deref().is_none_or(str::is_empty) {
                    req.file_name = Some(file.file_name.clone());
                }
                req.content = read_document(file).await?;
                s.import_framework(&ctx, req).await.map_err(Problem::from)
            }
        })
    };
    let download = {
        let s = s.clone();
        Download::new("export_framework", move |ctx, req: pb::ExportFrameworkRequest| {
            let s = s.clone();
            async move {
                let exported = s.export_framework(&ctx, req).await.map_err(Problem::from)?;
                let body = bytes::Bytes::from(exported.content);
                Ok(FileDownload {
                    content_type: exported.content_type,
                    size: body.len() as u64,
                    file_name: exported.file_name,
                    sha256: None,
                    blake3: None,
                    body: futures::stream::once(async move { Ok(body) }).boxed(),
                })
            }
        })
        .media_types(&["application/yaml", "application/json"])
    };
    Serving {
        endpoints: vec![
            Endpoint::get(FW, "List regulatory frameworks", op!(s, list_frameworks)).list(),
            Endpoint::post(FW, "Create a framework", op!(s, create_framework)).body_field("framework").created(),
            Endpoint::post(
                "/api/compliance/frameworks/import/",
                "Import a framework document (OSCAL catalog, framework or mapping library, Custos catalogue): \
                 JSON with the document in `content`, or multipart/form-data with a `file` part; whole or \
                 not at all, idempotent, large ones as a job",
                op!(s, import_framework),
            )
            .multipart_upload(upload)
            .fails(StatusCode::UNPROCESSABLE_ENTITY, "The document has problems: every one is listed in details")
            .fails(StatusCode::PAYLOAD_TOO_LARGE, "The document is larger than allowed"),
            Endpoint::download(
                "/api/compliance/frameworks/{id}/export/",
                "A framework as a document: ?format=custos (default), oscal-catalog or oscal-assessment-results",
                download,
            ),
            Endpoint::get(FW_ID, "Get a framework", op!(s, get_framework)),
            Endpoint::put(FW_ID, "Replace a framework", op!(s, update_framework)).body_field("framework"),
            Endpoint::patch(FW_ID, "Partially update a framework", op!(s, update_framework)).body_field("framework"),
            Endpoint::delete(FW_ID, "Delete a framework and its requirements", op!(s, delete_framework))
                .fails(StatusCode::CONFLICT, referenced),
            Endpoint::get(
                "/api/compliance/frameworks/{id}/requirements/",
                "List a framework's requirements",
                op!(s, list_framework_requirements),
            )
            .list(),
            Endpoint::get(
                "/api/compliance/frameworks/{id}/compliance_summary/",
                "Live compliance figures of a framework",
                op!(s, get_compliance_summary),
            ),
            Endpoint::get(
                "/api/compliance/frameworks/{id}/score_history/",
                "The framework's compliance score over time, oldest first (?after=, ?before=): for trend charts",
                op!(s, get_score_history),
            ),
            Endpoint::post(
                "/api/compliance/frameworks/{id}/score_history/",
                "Take a snapshot of the framework's score now (admins)",
                op!(s, take_score_snapshot),
            )
            .created(),
            Endpoint::get(REQ, "List compliance requirements", op!(s, list_requirements)).list(),
            Endpoint::post(REQ, "Create a requirement", op!(s, create_requirement))
                .body_field("requirement")
                .created()
                .fails(StatusCode::UNPROCESSABLE_ENTITY, "A referenced framework or parent was deleted meanwhile"),
            Endpoint::get(REQ_ID, "Get a requirement", op!(s, get_requirement)),
            Endpoint::put(REQ_ID, "Replace a requirement", op!(s, update_requirement)).body_field("requirement"),
            Endpoint::patch(REQ_ID, "Partially update a requirement", op!(s, update_requirement))
                .body_field("requirement"),
            Endpoint::delete(REQ_ID, "Delete a requirement", op!(s, delete_requirement))
                .fails(StatusCode::CONFLICT, referenced),
            Endpoint::post(
                "/api/compliance/frameworks/{id}/apply_mapping/",
                "Propose (dry run) or set the statuses another framework's compliant results carry over through mappings",
                op!(s, apply_mapping),
            ),
            Endpoint::get(
                "/api/compliance/requirements/{id}/mappings/",
                "The requirement's mappings to other frameworks' requirements, both directions, with their status",
                op!(s, list_requirement_mappings),
            )
            .list(),
            Endpoint::post(
                "/api/compliance/requirements/{id}/update_status/",
                "Record a requirement's compliance status",
                op!(s, update_requirement_status),
            ),
            Endpoint::post(
                "/api/compliance/requirements/{id}/schedule_assessment/",
                "Schedule a requirement's next assessment",
                op!(s, schedule_assessment),
            ),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<FrameworkType>(&[
                    "Framework.framework_type",
                    "FrameworkInput.framework_type",
                    "ListFrameworksRequest.framework_type",
                ]),
                ValueSet::of::<RequirementType>(&[
                    "Requirement.requirement_type",
                    "RequirementInput.requirement_type",
                    "ListRequirementsRequest.requirement_type",
                ]),
                ValueSet::of::<Priority>(&[
                    "Requirement.priority",
                    "RequirementInput.priority",
                    "ListRequirementsRequest.priority",
                    "ListFrameworkRequirementsRequest.priority",
                ]),
                ValueSet::of::<ComplianceStatus>(&[
                    "Requirement.compliance_status",
                    "RequirementInput.compliance_status",
                    "ListRequirementsRequest.compliance_status",
                    "ListFrameworkRequirementsRequest.compliance_status",
                    "UpdateStatusRequest.compliance_status",
                ]),
            ],
            required: vec![
                "FrameworkInput.name",
                "FrameworkInput.framework_type",
                "RequirementInput.framework",
                "RequirementInput.requirement_id",
                "RequirementInput.title",
                "RequirementInput.requirement_type",
                "RequirementInput.priority",
                "UpdateStatusRequest.compliance_status",
                "ScheduleAssessmentRequest.assessment_date",
                "ApplyMappingRequest.source_framework",
            ],
        },
        grpc: vec![GrpcService::new(
            FrameworksServiceServer::new(app.frameworks.clone())
                .max_decoding_message_size(IMPORT_MAX_BYTES as usize + 64 * 1024)
                .max_encoding_message_size(IMPORT_MAX_BYTES as usize + 64 * 1024),
        )],
        jobs: vec![
            import::import_job(),
            assessment_watch::assessment_watch_job(s.clone()),
            score_history::score_snapshot_job(s.clone()),
        ],
        schedules: vec![
            ScheduleDef::new(
                ASSESSMENT_WATCH_SCHEDULE,
                assessment_watch::ASSESSMENT_WATCH_JOB,
                Scope::Organization,
                "0 6 * * *",
                "Announces requirements whose next assessment date has passed (once per due date)",
            ),
            ScheduleDef::new(
                SCORE_SNAPSHOT_SCHEDULE,
                score_history::SCORE_SNAPSHOT_JOB,
                Scope::Organization,
                "30 0 * * *",
                "Keeps today's compliance score of every active framework (score history)",
            ),
        ],
        ..Serving::default()
    }
}

#[derive(Debug, Subcommand)]
pub enum FrameworksCommand {
    /// Load the built-in framework catalogue (and any --catalog-dir files) into organisations.
    /// Idempotent: only what is missing is created.
    Seed(SeedArgs),
    /// Import or export framework documents (OSCAL, framework libraries, Custos catalogues).
    #[command(subcommand)]
    Framework(FrameworkCommand),
}

#[derive(Debug, Subcommand)]
pub enum FrameworkCommand {
    /// Import a framework document into organisations: whole or not at all; importing it again
    /// creates nothing new. Every problem of a bad file is listed, with its line and column.
    Import {
        file: PathBuf,
        /// Only this organisation (default: every organisation).
        #[arg(long)]
        org: Option<String>,
        /// auto (default), custos, oscal or library.
        #[arg(long, default_value = "auto")]
        format: String,
        /// Report what the import would do and keep nothing.
        #[arg(long)]
        dry_run: bool,
        /// OSCAL: the catalogue key to file the framework under.
        #[arg(long)]
        catalog_key: Option<String>,
        /// OSCAL: withdrawn controls are marked (mark, the default) or left out (skip).
        #[arg(long, default_value = "mark")]
        withdrawn: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a framework out as a document (to stdout, or --output).
    Export {
        /// The framework's id.
        id: String,
        /// custos, oscal-catalog or oscal-assessment-results.
        #[arg(long, default_value = "custos")]
        format: String,
        /// The organisation that has it (default: whichever does).
        #[arg(long)]
        org: Option<String>,
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Only this organisation (default: every organisation).
    #[arg(long)]
    pub org: Option<String>,
    /// Also load every *.yaml catalogue file of this directory (format: custos-catalog/v1, or
    /// custos-mapping/v1 for mappings between frameworks).
    #[arg(long)]
    pub catalog_dir: Option<PathBuf>,
    /// Skip the built-in catalogue (load only --catalog-dir).
    #[arg(long)]
    pub no_builtin: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

async fn run(command: FrameworksCommand) -> anyhow::Result<()> {
    match command {
        FrameworksCommand::Seed(args) => seed(args).await,
        FrameworksCommand::Framework(FrameworkCommand::Import {
            file,
            org,
            format,
            dry_run,
            catalog_key,
            withdrawn,
            db,
        }) => {
            let content =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let app = app_for(&db).await?;
            let request = pb::ImportFrameworkRequest {
                content,
                format: Some(format),
                file_name: Some(file.display().to_string()),
                dry_run: Some(dry_run),
                catalog_key,
                withdrawn: Some(withdrawn),
                // The command is the worker: it imports within itself, whatever the size.
                as_job: Some(false),
            };
            for (org_id, slug) in organisations(&app, org.as_deref()).await? {
                let ctx = RequestCtx::operator(org_id, slug.clone());
                let outcome = app.frameworks.import_framework(&ctx, request.clone()).await.map_err(import_problem)?;
                print_outcome(&slug, &outcome);
            }
            Ok(())
        }
        FrameworksCommand::Framework(FrameworkCommand::Export { id, format, org, output, db }) => {
            let app = app_for(&db).await?;
            let request = pb::ExportFrameworkRequest { id: id.clone(), format };
            let mut last = None;
            for (org_id, slug) in organisations(&app, org.as_deref()).await? {
                let ctx = RequestCtx::operator(org_id, slug);
                match app.frameworks.export_framework(&ctx, request.clone()).await.map_err(Problem::from) {
                    Ok(exported) => {
                        match &output {
                            Some(path) => std::fs::write(path, exported.content)
                                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                            None => print!("{}", exported.content),
                        }
                        return Ok(());
                    }
                    Err(p) if p.kind == custos_core::ErrorKind::NotFound => last = Some(p),
                    Err(p) => return Err(problem_of(p)),
                }
            }
            Err(problem_of(last.unwrap_or_else(|| Problem::not_found("Framework", &id))))
        }
    }
}

/// A refused document's problems, one per line with where each is.
fn import_problem(e: custos_frameworks::FrameworksError) -> anyhow::Error {
    let p = Problem::from(e);
    let Some(issues) = p.details.as_array() else { return problem_of(p) };
    let mut text = p.error.clone();
    for issue in issues {
        let at = match (issue.get("line"), issue.get("column"), issue.get("path")) {
            (Some(l), Some(c), _) => format!("line {l}, column {c}"),
            (_, _, Some(path)) => path.as_str().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        let message = issue.get("message").and_then(|m| m.as_str()).unwrap_or_default();
        text.push_str(&format!("\n  {at}: {message}"));
    }
    anyhow::anyhow!(text)
}

fn print_outcome(slug: &str, o: &pb::ImportFrameworkResponse) {
    let would = if o.dry_run { " (dry run: nothing kept)" } else { "" };
    for f in &o.frameworks {
        println!(
            "{slug}: {} {} — framework {}, {} of {} requirements created{would}",
            f.key,
            f.version,
            if f.framework_created { "created" } else { "present" },
            f.requirements_created,
            f.requirements_total
        );
    }
    for m in &o.mapping_sets {
        println!(
            "{slug}: {} — {} mappings created, {} present, {} not resolved{would}",
            m.key,
            m.created,
            m.existing,
            m.unresolved.len()
        );
        for missing in m.unresolved.iter().take(5) {
            println!("{slug}: {} — not mapped: {missing}", m.key);
        }
    }
    for w in &o.warnings {
        println!("{slug}: note: {w}");
    }
}

async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let app = app_for(&args.db).await?;
    let mut catalogs = if args.no_builtin { Vec::new() } else { catalog::builtin().map_err(problem_of)? };
    let mut mappings = if args.no_builtin { Vec::new() } else { catalog::builtin_mappings().map_err(problem_of)? };
    if let Some(dir) = &args.catalog_dir {
        catalogs.extend(catalog::load_dir(dir).map_err(problem_of)?);
        mappings.extend(catalog::load_mappings_dir(dir).map_err(problem_of)?);
    }
    for (org_id, slug) in organisations(&app, args.org.as_deref()).await? {
        let ctx = RequestCtx::operator(org_id, slug.clone());
        for o in app.frameworks.seed(&ctx, &catalogs).await.map_err(problem)? {
            println!(
                "{slug}: {} — framework {}, {} of {} requirements created",
                o.key,
                if o.framework_created { "created" } else { "present" },
                o.requirements_created,
                o.requirements_total
            );
        }
        for o in app.frameworks.seed_mappings(&ctx, &mappings).await.map_err(problem)? {
            println!("{slug}: {} — {} mappings created, {} present", o.key, o.created, o.existing);
            for missing in o.unresolved.iter().take(5) {
                println!("{slug}: {} — not mapped: {missing}", o.key);
            }
            if o.unresolved.len() > 5 {
                println!("{slug}: {} — and {} more not mapped", o.key, o.unresolved.len() - 5);
            }
        }
        // The built-in workflow templates are part of what an organisation starts with.
        if !args.no_builtin {
            let workflows = custos_workflows::WorkflowsService::new(app.db.clone());
            for (key, now) in workflows.seed_templates(&ctx).await.map_err(problem)? {
                println!("{slug}: workflow template {key} {}", if now { "created" } else { "present" });
            }
        }
    }
    Ok(())
}
