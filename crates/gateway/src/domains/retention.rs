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
use custos_proto::v1::compliance_policies_service_server::CompliancePoliciesServiceServer;

pub const DOMAIN: Domain = Domain {
    name: "retention",
    serve,
    cli: Some(crate::domain_cli!(RetentionCommands, run, RetentionCommands::verifies)),
};

/// The daily run of every scheduled policy (seed 004: 02:00).
pub const RETENTION_SCHEDULE: &str = "retention";

const POLICIES: &str = "/api/compliance/retention-policies/";
const POLICY: &str = "/api/compliance/retention-policies/{id}/";
const RUNS: &str = "/api/compliance/retention-runs/";
const DOCUMENTS: &str = "/api/compliance/policies/";
const DOCUMENT: &str = "/api/compliance/policies/{id}/";

/// The retention service over the server's database and hold check.
pub(crate) fn service(app: &App) -> RetentionService {
    let s = RetentionService::new(app.db.clone(), app.holds.clone(), app.residency.clone())
        .with_job_waker(app.jobs.waker())
        .with_audit_chain(app.audit.chain().clone());
    match &app.archive_signer {
        Some(signer) => s.with_archive_signer(signer.clone()),
        None => s,
    }
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
            Endpoint::get(DOCUMENTS, "List policy documents (policy-as-code)", op!(s, list_compliance_policies)).list(),
            Endpoint::post(
                DOCUMENTS,
                "Store a policy document (admins): {\"content\": \"<YAML>\"}; 400 with every problem located",
                op!(s, create_compliance_policy),
            )
            .body_field("policy")
            .created()
            .fails(StatusCode::CONFLICT, "A policy document with this name exists"),
            Endpoint::get(DOCUMENT, "Get a policy document", op!(s, get_compliance_policy)),
            Endpoint::put(
                DOCUMENT,
                "Replace a policy document's content (admins; in effect once applied)",
                op!(s, update_compliance_policy),
            )
            .body_field("policy")
            .fails(StatusCode::CONFLICT, "A locked version is in effect and this content would loosen it"),
            Endpoint::delete(
                DOCUMENT,
                "Delete a policy document never applied (admins)",
                op!(s, delete_compliance_policy),
            )
            .fails(StatusCode::CONFLICT, "The document has been applied: it is kept with its versions"),
            Endpoint::post(
                "/api/compliance/policies/{id}/validate/",
                "Validate a stored policy document as applying would",
                op!(s, validate_compliance_policy),
            ),
            Endpoint::post(
                "/api/compliance/policies/{id}/dry_run/",
                "What applying would change, and the records it would delete or archive now (admins)",
                op!(s, dry_run_compliance_policy),
            )
            .fails(StatusCode::CONFLICT, "A locked version is in effect and applying would loosen it"),
            Endpoint::post(
                "/api/compliance/policies/{id}/apply/",
                "Apply a policy document as a new immutable version (admins; {\"dry_run\": true} for a dry run)",
                op!(s, apply_compliance_policy),
            )
            .fails(StatusCode::CONFLICT, "A locked version is in effect and applying would loosen it"),
            Endpoint::post(
                "/api/compliance/policies/{id}/rollback/",
                "Restore an earlier version's effective configuration exactly (admins; {\"to_version\"}, default the \
                 one before the version in effect)",
                op!(s, rollback_compliance_policy),
            )
            .fails(StatusCode::CONFLICT, "No version to roll back to, or the rollback would loosen a locked version"),
            Endpoint::get(
                "/api/compliance/policies/{id}/versions/",
                "A policy document's versions, newest first",
                op!(s, list_policy_versions),
            )
            .list(),
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
                "CompliancePolicyInput.content",
            ],
        },
        grpc: vec![
            GrpcService::new(RetentionServiceServer::new(s.clone())),
            GrpcService::new(CompliancePoliciesServiceServer::new(s.clone())),
        ],
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
    /// Archives written by retention runs.
    #[command(subcommand)]
    Archive(ArchiveCommand),
}

impl RetentionCommands {
    /// Whether the command verifies: an archive not intact exits 1, a verification that could
    /// not be carried out 2.
    fn verifies(&self) -> bool {
        matches!(self, RetentionCommands::Archive(_))
    }
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Verify an archive offline: the manifest's signature by the platform's key, every record's
    /// and file's SHA-256, nothing missing or added. Exit 0 intact, 1 not. Pin the key you
    /// obtained out of band with --public-key (GET /api/compliance/audit-log/public-key/);
    /// without it, only the file's internal consistency is proven.
    Verify {
        file: std::path::PathBuf,
        #[arg(long)]
        public_key: Vec<String>,
    },
    /// Bring an archive's records back (after verifying it, by the server's key unless
    /// --public-key names others); records present already are left as they are.
    Restore {
        file: std::path::PathBuf,
        #[arg(long)]
        public_key: Vec<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy document (seed 004's YAML): every problem with its line, column and
    /// path; entity types not known yet are warnings. A stored document (`--policy-id`) is also
    /// checked as applying would. Exit 0 valid, 1 not.
    Validate {
        /// The YAML file.
        #[arg(long, conflicts_with = "policy_id", required_unless_present = "policy_id")]
        file: Option<std::path::PathBuf>,
        /// A stored document's id (needs the database).
        #[arg(long)]
        policy_id: Option<String>,
        /// Only this organisation (its slug).
        #[arg(long)]
        org: Option<String>,
        /// PostgreSQL URL (for `--policy-id`).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
    /// Apply a stored policy document as a new version (`--dry-run`: say exactly what applying
    /// would change and how many records its retention policies would delete or archive now).
    Apply {
        /// The document's id.
        policy_id: String,
        #[arg(long)]
        dry_run: bool,
        /// Only this organisation (its slug).
        #[arg(long)]
        org: Option<String>,
        #[command(flatten)]
        db: DbArgs,
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
        RetentionCommands::Policy(PolicyCommand::Validate { file: Some(file), .. }) => {
            return validate_policy_file(&file);
        }
        RetentionCommands::Policy(PolicyCommand::Validate { file: None, policy_id, org, database_url }) => {
            let Some(database_url) = database_url else {
                anyhow::bail!("--policy-id reads the database: set DATABASE_URL or --database-url");
            };
            return validate_stored_policy(policy_id.unwrap_or_default(), org, &DbArgs { database_url }).await;
        }
        RetentionCommands::Policy(PolicyCommand::Apply { policy_id, dry_run, org, db }) => {
            return apply_policy(policy_id, dry_run, org, &db).await;
        }
        RetentionCommands::Archive(ArchiveCommand::Verify { file, public_key }) => {
            return verify_archive(&file, &public_key);
        }
        RetentionCommands::Archive(ArchiveCommand::Restore { file, public_key, db }) => {
            return restore_archive(&file, &public_key, &db).await;
        }
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

/// The organisation holding policy document `raw` (the first whose documents hold it).
async fn policy_owner(app: &App, s: &RetentionService, raw: &str, org: Option<&str>) -> anyhow::Result<RequestCtx> {
    let id = uuid::Uuid::parse_str(raw.trim()).map_err(|_| anyhow::anyhow!("{raw:?} is not a policy id"))?;
    for (org_id, slug) in organisations(app, org).await? {
        let ctx = RequestCtx::operator(org_id, slug);
        match s.get_compliance_policy(&ctx, pb::GetCompliancePolicyRequest { id: id.to_string() }).await {
            Ok(_) => return Ok(ctx),
            Err(e) => {
                let p = custos_core::Problem::from(e);
                if p.kind != custos_core::ErrorKind::NotFound {
                    return Err(crate::cli::problem_of(p));
                }
            }
        }
    }
    anyhow::bail!("no policy document {id}")
}

/// `custos policy validate --policy-id ID`.
async fn validate_stored_policy(raw: String, org: Option<String>, db: &DbArgs) -> anyhow::Result<()> {
    let app = app_for(db).await?;
    let s = service(&app);
    let ctx = policy_owner(&app, &s, &raw, org.as_deref()).await?;
    let checked = s
        .validate_compliance_policy(&ctx, pb::ValidateCompliancePolicyRequest { id: raw.trim().to_owned() })
        .await
        .map_err(problem)?;
    let place = |i: &pb::PolicyIssue| match (i.line, i.column) {
        (Some(l), Some(c)) => format!("policy {}:{l}:{c}", raw.trim()),
        _ => format!("policy {}", raw.trim()),
    };
    for w in &checked.warnings {
        println!("{}: warning: {}: {}", place(w), w.path.as_deref().unwrap_or("$"), w.message);
    }
    for e in &checked.errors {
        println!("{}: error: {}: {}", place(e), e.path.as_deref().unwrap_or("$"), e.message);
    }
    if checked.valid {
        println!("valid");
        Ok(())
    } else {
        anyhow::bail!("policy {} is not valid: {} problem(s)", raw.trim(), checked.errors.len())
    }
}

/// `custos policy apply ID [--dry-run]`.
async fn apply_policy(raw: String, dry_run: bool, org: Option<String>, db: &DbArgs) -> anyhow::Result<()> {
    let app = app_for(db).await?;
    let s = service(&app);
    let ctx = policy_owner(&app, &s, &raw, org.as_deref()).await?;
    let applied = s
        .apply_compliance_policy(&ctx, pb::ApplyCompliancePolicyRequest { id: raw.trim().to_owned(), dry_run })
        .await
        .map_err(problem)?;
    if let Some(v) = &applied.version {
        eprintln!("applied as version {} ({})", v.version, ctx.organization_slug);
    }
    println!("{}", serde_json::to_string_pretty(&applied.impact)?);
    Ok(())
}

fn pinned(keys: &[String]) -> anyhow::Result<Vec<custos_audit_chain::note::NoteVerifier>> {
    keys.iter()
        .map(|k| custos_audit_chain::note::NoteVerifier::parse(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--public-key: {e}"))
}

/// `custos archive verify FILE`.
fn verify_archive(file: &std::path::Path, keys: &[String]) -> anyhow::Result<()> {
    let keys = pinned(keys)?;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?,
    );
    let verified = custos_retention::archive_file::verify(reader, &keys)
        .map_err(|e| crate::cli::Broken(format!("FAILED: {}: {e}", file.display())))?;
    let m = &verified.manifest;
    println!(
        "intact: {} record(s) and {} file(s) of {} ({}), run {}, policy {:?}",
        m.records.len(),
        m.files.len(),
        m.entity_type,
        m.organization,
        m.run,
        m.policy_name
    );
    match &verified.signed_by {
        Some(key) => println!("signed by {key}"),
        None => println!("signature not checked: pin the platform's key with --public-key"),
    }
    Ok(())
}

/// `custos archive restore FILE`.
async fn restore_archive(file: &std::path::Path, keys: &[String], db: &DbArgs) -> anyhow::Result<()> {
    let keys = pinned(keys)?;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?,
    );
    // Whose records: the manifest says (checked again, with the signature, by the restore).
    let organization = custos_retention::archive_file::verify(reader, &[])
        .map_err(|e| crate::cli::Broken(format!("FAILED: {}: {e}", file.display())))?
        .manifest
        .organization;
    let app = crate::cli::audit_app_for(db).await?;
    let (_, slug) = organisations(&app, None)
        .await?
        .into_iter()
        .find(|(id, _)| *id == organization)
        .ok_or_else(|| anyhow::anyhow!("the archive's organisation {organization} is not on this server"))?;
    let ctx = RequestCtx::operator(organization, slug.clone());
    let (restored, present) = service(&app).restore_archive(&ctx, file, keys).await.map_err(problem)?;
    println!("restored {restored} record(s) of {slug}; {present} present already");
    Ok(())
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
