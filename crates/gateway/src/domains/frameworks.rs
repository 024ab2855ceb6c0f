//! Frameworks and requirements (seed 000): their endpoints, gRPC service and `custos seed`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use custos_core::RequestCtx;
use custos_frameworks::catalog;
use custos_proto::v1::frameworks_service_server::FrameworksServiceServer;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, organisations, problem, problem_of};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;
use custos_frameworks::model::{ComplianceStatus, FrameworkType, Priority, RequirementType};

pub const DOMAIN: Domain =
    Domain { name: "frameworks", serve, cli: Some(crate::domain_cli!(FrameworksCommand, run, |_| false)) };

const FW: &str = "/api/compliance/frameworks/";
const FW_ID: &str = "/api/compliance/frameworks/{id}/";
const REQ: &str = "/api/compliance/requirements/";
const REQ_ID: &str = "/api/compliance/requirements/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.frameworks;
    let referenced = "A requirement, checkpoint or evidence item still refers to it";
    Serving {
        endpoints: vec![
            Endpoint::get(FW, "List regulatory frameworks", op!(s, list_frameworks)).list(),
            Endpoint::post(FW, "Create a framework", op!(s, create_framework)).body_field("framework").created(),
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
        grpc: vec![GrpcService::new(FrameworksServiceServer::new(app.frameworks.clone()))],
        ..Serving::default()
    }
}

#[derive(Debug, Subcommand)]
pub enum FrameworksCommand {
    /// Load the built-in framework catalogue (and any --catalog-dir files) into organisations.
    /// Idempotent: only what is missing is created.
    Seed(SeedArgs),
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
    let FrameworksCommand::Seed(args) = command;
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
    }
    Ok(())
}
