//! Retention (seeds 000 and 004): retention policies, the explanation of one record's retention
//! by the precedence rules, runs (previews, executions as jobs, restore), the daily `retention`
//! schedule, and `custos retention execute`.

use clap::Subcommand;
use custos_core::RequestCtx;
use custos_db::values::{Category, DataClassification};
use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1 as pb;
use custos_proto::v1::retention_service_server::RetentionServiceServer;
use custos_retention::RetentionService;
use custos_retention::model::{DeletionMethod, EntityType, PolicyType, RetentionUnit};
use custos_retention::runs::{self, ItemAction, RunStatus};
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, organisations, problem};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "retention", serve, cli: Some(crate::domain_cli!(RetentionCommands, run, |_| false)) };

/// The daily run of every scheduled policy (seed 004: 02:00).
pub const RETENTION_SCHEDULE: &str = "retention";

const POLICIES: &str = "/api/compliance/retention-policies/";
const POLICY: &str = "/api/compliance/retention-policies/{id}/";
const RUNS: &str = "/api/compliance/retention-runs/";

/// The retention service over the server's database and hold check.
fn service(app: &App) -> RetentionService {
    RetentionService::new(app.db.clone(), app.holds.clone()).with_job_waker(app.jobs.waker())
}

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &service(app);
    let locked = "The policy is locked: it can be extended but never loosened, deactivated or deleted";
    Serving {
        endpoints: vec![
            Endpoint::get(POLICIES, "List retention policies", op!(s, list_retention_policies)).list(),
            Endpoint::post(POLICIES, "Create a retention policy (admins)", op!(s, create_retention_policy))
                .body_field("policy")
                .created()
                .fails(StatusCode::CONFLICT, "A retention policy with this name exists"),
            Endpoint::get(POLICY, "Get a retention policy", op!(s, get_retention_policy)),
            Endpoint::put(POLICY, "Replace a retention policy (admins)", op!(s, update_retention_policy))
                .body_field("policy")
                .fails(StatusCode::CONFLICT, locked),
            Endpoint::patch(POLICY, "Partially update a retention policy (admins)", op!(s, update_retention_policy))
                .body_field("policy")
                .fails(StatusCode::CONFLICT, locked),
            Endpoint::delete(
                POLICY,
                "Delete a retention policy (admins; never a locked one)",
                op!(s, delete_retention_policy),
            )
            .fails(StatusCode::CONFLICT, locked),
            Endpoint::get(
                "/api/compliance/retention/explain/",
                "Explain one record's retention: ?entity_type=incident|evidence|vulnerability|job&id= — the policies \
                 covering it, the longest retention, the deletion that applies, when it is eligible, and its holds",
                op!(s, explain_retention),
            ),
            Endpoint::post(
                "/api/compliance/retention-policies/{id}/execute/",
                "Run a policy (admins): {\"preview\": true} answers what it would do, changing nothing; \
                 otherwise the run starts as a job",
                op!(s, execute_retention_policy),
            )
            .fails(StatusCode::CONFLICT, "The policy is inactive, or its entity or method cannot run yet"),
            Endpoint::get(
                RUNS,
                "The retention log: runs, newest first (?policy=, ?status=, ?errors=, ?preview=)",
                op!(s, list_retention_runs),
            )
            .list(),
            Endpoint::get("/api/compliance/retention-runs/{id}/", "Get a retention run", op!(s, get_retention_run)),
            Endpoint::get(
                "/api/compliance/retention-runs/{id}/items/",
                "A run's records: what it did with each, and why it skipped any (?action=)",
                op!(s, list_retention_run_items),
            )
            .list(),
            Endpoint::post(
                "/api/compliance/retention-runs/{id}/restore/",
                "Bring back what a run soft-deleted: every record, or {\"record_id\"} (admins)",
                op!(s, restore_retention_run),
            )
            .fails(StatusCode::CONFLICT, "The record is not one the run soft-deleted and has not restored"),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<PolicyType>(&[
                    "RetentionPolicy.policy_type",
                    "RetentionPolicyInput.policy_type",
                    "ListRetentionPoliciesRequest.policy_type",
                ]),
                ValueSet::of::<EntityType>(&[
                    "RetentionPolicy.entity_type",
                    "RetentionPolicyInput.entity_type",
                    "ListRetentionPoliciesRequest.entity_type",
                    "RetentionExplanation.entity_type",
                ]),
                ValueSet::of::<RetentionUnit>(&[
                    "RetentionPolicy.retention_unit",
                    "RetentionPolicyInput.retention_unit",
                ]),
                ValueSet::of::<DeletionMethod>(&[
                    "RetentionPolicy.deletion_method",
                    "RetentionPolicyInput.deletion_method",
                    "CoveringPolicy.deletion_method",
                    "RetentionExplanation.deletion_method",
                ]),
                ValueSet::of::<DataClassification>(&[
                    "RetentionPolicy.data_classification_levels",
                    "RetentionPolicyInput.data_classification_levels",
                ]),
                ValueSet::of::<Category>(&[
                    "RetentionPolicy.incident_categories",
                    "RetentionPolicyInput.incident_categories",
                ]),
                ValueSet::of::<RunStatus>(&["RetentionRun.status", "ListRetentionRunsRequest.status"]),
                ValueSet::of::<ItemAction>(&["RetentionRunItem.action", "ListRetentionRunItemsRequest.action"]),
            ],
            required: vec![
                "RetentionPolicyInput.name",
                "RetentionPolicyInput.policy_type",
                "ExplainRetentionRequest.entity_type",
                "ExplainRetentionRequest.id",
            ],
        },
        grpc: vec![GrpcService::new(RetentionServiceServer::new(s.clone()))],
        jobs: vec![runs::execute_job(s.clone()), runs::scheduled_job(s.clone())],
        schedules: vec![ScheduleDef::new(
            RETENTION_SCHEDULE,
            runs::SCHEDULED_JOB,
            Scope::Organization,
            "0 2 * * *",
            "Runs every active retention policy that deletes by itself",
        )],
        ..Serving::default()
    }
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommands {
    /// Retention runs.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Policy documents (policy-as-code).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy document (seed 004's YAML): every problem with its line, column and
    /// path; entity types not known yet are warnings. Exit 0 valid, 1 not.
    Validate {
        /// The YAML file.
        #[arg(long)]
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Run one policy here, with progress (`--preview`: say what it would do, change nothing), or
    /// every scheduled policy of every organisation (`--all-scheduled`), as the daily run does.
    Execute {
        /// The policy's id.
        #[arg(long, conflicts_with = "all_scheduled", required_unless_present = "all_scheduled")]
        policy_id: Option<String>,
        #[arg(long, conflicts_with = "all_scheduled")]
        preview: bool,
        /// Every active policy that deletes by itself.
        #[arg(long)]
        all_scheduled: bool,
        /// Only this organisation (its slug).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn run(commands: RetentionCommands) -> anyhow::Result<()> {
    let command = match commands {
        RetentionCommands::Retention(command) => command,
        RetentionCommands::Policy(PolicyCommand::Validate { file }) => return validate_policy_file(&file),
    };
    let RetentionCommand::Execute { policy_id, preview, all_scheduled, org, db } = command;
    if all_scheduled {
        for (_, slug) in organisations(&app_for(&db).await?, org.as_deref()).await? {
            println!("retention of {slug}:");
            super::jobs::run_schedule(RETENTION_SCHEDULE, Some(slug), false, &db).await?;
        }
        return Ok(());
    }
    let raw = policy_id.unwrap_or_default();
    let id =
        uuid::Uuid::parse_str(raw.trim()).map_err(|_| anyhow::anyhow!("--policy-id {raw:?} is not a policy id"))?;
    let app = app_for(&db).await?;
    let s = service(&app);
    // The policy's organisation: the first whose policies hold it.
    for (org_id, slug) in organisations(&app, org.as_deref()).await? {
        let ctx = RequestCtx::operator(org_id, slug.clone());
        match s.get_retention_policy(&ctx, pb::GetRetentionPolicyRequest { id: id.to_string() }).await {
            Ok(policy) => {
                let started = s
                    .execute_retention_policy(&ctx, pb::ExecuteRetentionPolicyRequest { id: id.to_string(), preview })
                    .await
                    .map_err(problem)?;
                if preview {
                    println!("{}", serde_json::to_string_pretty(&started)?);
                    return Ok(());
                }
                println!("run {} of policy {:?} ({})", started.id, policy.name, slug);
                let job = started.job_id.unwrap_or_default();
                return super::jobs::run_queued(&job, &db).await;
            }
            Err(e) => {
                let p = custos_core::Problem::from(e);
                if p.kind == custos_core::ErrorKind::NotFound {
                    continue;
                }
                return Err(crate::cli::problem_of(p));
            }
        }
    }
    anyhow::bail!("no retention policy {id}")
}

/// `custos policy validate --file F`.
fn validate_policy_file(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let checked = custos_retention::document::validate(&text);
    let place = |i: &custos_core::Issue| match (i.line, i.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", file.display()),
        _ => file.display().to_string(),
    };
    for w in &checked.warnings {
        println!("{}: warning: {}: {}", place(w), w.path.as_deref().unwrap_or("$"), w.message);
    }
    for e in &checked.errors {
        println!("{}: error: {}: {}", place(e), e.path.as_deref().unwrap_or("$"), e.message);
    }
    match &checked.document {
        Some(doc) => {
            println!(
                "valid: {:?} version {} ({} rule{}, {} retention entr{}, enforcement {})",
                doc.name,
                doc.version,
                doc.rules.len(),
                if doc.rules.len() == 1 { "" } else { "s" },
                doc.retention.len(),
                if doc.retention.len() == 1 { "y" } else { "ies" },
                doc.enforcement_level
            );
            Ok(())
        }
        None => anyhow::bail!("{} is not a valid policy: {} problem(s)", file.display(), checked.errors.len()),
    }
}
