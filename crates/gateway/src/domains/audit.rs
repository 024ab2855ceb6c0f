//! The audit trail: its auditors' API, the sequencer and the resumer of interrupted
//! verifications that `custos serve` runs, daily retention, and the `custos verify-audit-chain`
//! and `custos audit …` commands.

use custos_core::RequestCtx;

use clap::{Args, Subcommand};
use custos_audit_chain::verify::Depth;
use custos_proto::v1::audit_service_server::AuditServiceServer;
use http::StatusCode;

use custos_audit_chain::{AuditError, ChainError};
use custos_jobs::{Job, JobError, Kind, ScheduleDef, Scope};

use super::{Domain, GrpcService, Serving, Task};
use crate::cli::{Broken, DbArgs, Ticker, audit_app_for, organisations, problem};
use crate::config::{AuditConfig, Config};
use crate::op;
use crate::rest::openapi::ApiDescription;
use crate::rest::{Endpoint, Operation};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "audit", serve, cli: Some(crate::domain_cli!(AuditCommands, run, AuditCommands::verifies)) };

const AUDIT: &str = "/api/compliance/audit-log/";
const CHECKPOINTS: &str = "/api/compliance/audit-log/checkpoints/";

/// The job kinds: daily retention per organisation, and the platform's resumer of interrupted
/// background verifications.
const RETENTION_KIND: &str = "audit.retention";
const RESUMER_KIND: &str = "audit.verification_resumer";

fn serve(app: &App, config: &Config) -> Serving {
    let s = &app.audit;
    let public_key = {
        let s = s.clone();
        Operation::public("get_public_key", move |ctx, req| {
            let s = s.clone();
            async move { s.get_public_key(ctx.as_ref(), req).await.map_err(custos_core::Problem::from) }
        })
    };
    let chain = app.audit.chain().clone();
    let (resumer, pruner) = (chain.clone(), chain.clone());
    let days = config.audit.retention_days;
    // Retention policies over the audit log and legal holds limit the platform's pruning too.
    let limits = super::retention::service(app);
    Serving {
        endpoints: vec![
            Endpoint::get(AUDIT, "The audit trail, newest first (auditors, admins)", op!(s, list_entries))
                .cursor_list(),
            Endpoint::get("/api/compliance/audit-log/{seq}/", "One audit entry", op!(s, get_entry)),
            Endpoint::get(CHECKPOINTS, "Signed checkpoints, newest first", op!(s, list_checkpoints)).cursor_list(),
            Endpoint::post(CHECKPOINTS, "Integrate committed entries and sign a checkpoint now", op!(s, create_checkpoint))
                .created(),
            Endpoint::get(
                "/api/compliance/audit-log/checkpoints/latest/",
                "The latest signed checkpoint",
                op!(s, latest_checkpoint),
            ),
            Endpoint::get(
                "/api/compliance/audit-log/proofs/inclusion/",
                "Merkle inclusion proof of an entry in a checkpoint (RFC 9162)",
                op!(s, get_inclusion_proof),
            )
            .fails(StatusCode::UNPROCESSABLE_ENTITY, "The entry was pruned, or the tree size is beyond the log"),
            Endpoint::get(
                "/api/compliance/audit-log/proofs/consistency/",
                "Merkle consistency proof between two tree sizes (RFC 9162)",
                op!(s, get_consistency_proof),
            )
            .fails(StatusCode::UNPROCESSABLE_ENTITY, "A size before the pruned boundary, or beyond the log"),
            Endpoint::post(
                "/api/compliance/audit-log/verify/",
                "Recompute every hash and the tree and check every checkpoint (a run whose progress is saved as it goes)",
                op!(s, verify_chain),
            )
            .fails(StatusCode::CONFLICT, "A verification of this depth is already running"),
            Endpoint::post(
                "/api/compliance/audit-log/verifications/",
                "Start a verification in the background; answers at once with the run to watch",
                op!(s, start_verification),
            )
            .accepted()
            .fails(StatusCode::CONFLICT, "A verification of this depth is already running"),
            Endpoint::get(
                "/api/compliance/audit-log/verifications/",
                "Verification runs, newest first: progress while running, result once finished",
                op!(s, list_verifications),
            )
            .cursor_list(),
            Endpoint::get(
                "/api/compliance/audit-log/verifications/{id}/",
                "One verification run: its progress or result",
                op!(s, get_verification),
            ),
            Endpoint::post(
                "/api/compliance/audit-log/verifications/{id}/resume/",
                "Take over an interrupted verification and run it to the end from where it stopped",
                op!(s, resume_verification),
            )
            .fails(StatusCode::CONFLICT, "The run is finished, or still held by its runner"),
            Endpoint::post(
                "/api/compliance/audit-log/{seq}/withhold/",
                "Withhold field values of an entry, keeping their commitments (admins)",
                op!(s, withhold_fields),
            )
            .fails(StatusCode::CONFLICT, "A legal hold preserves what the entry is about"),
            Endpoint::get("/api/compliance/audit-log/public-key/", "The checkpoint signing key (public)", public_key)
                .public(),
        ],
        description: ApiDescription {
            value_sets: vec![],
            required: vec!["InclusionProofRequest.seq", "WithholdFieldsRequest.fields", "WithholdFieldsRequest.reason"],
        },
        grpc: vec![GrpcService::new(AuditServiceServer::new(app.audit.clone())).public("GetPublicKey")],
        tasks: vec![Task::new("audit sequencer", move |stop| chain.run(stop))],
        jobs: vec![
            Kind::new(
                RETENTION_KIND,
                Scope::Organization,
                "Prunes the organisation's audit entries older than CUSTOS_AUDIT_RETENTION_DAYS",
                move |job: Job| {
                    let (pruner, limits) = (pruner.clone(), limits.clone());
                    async move {
                        let org = job.organization().ok_or_else(|| JobError::fatal("an organisation's job"))?;
                        let limit = limits
                            .audit_prune_limit(org, custos_core::timefmt::days_ago(days))
                            .await
                            .map_err(|e| JobError::from_problem(e.into()))?;
                        let outcome = pruner
                            .prune_before(org, limit.before)
                            .await
                            .map_err(|e| JobError::from_problem(AuditError::from(e).into()))?;
                        job.count("removed", outcome.removed as i64);
                        Ok(serde_json::json!({ "removed": outcome.removed, "pruned_before": outcome.pruned_before, "days": days,
                                               "limited_by": limit.reasons }))
                    }
                },
            ),
            Kind::new(
                RESUMER_KIND,
                Scope::System,
                "Resumes the background verifications whose runner stopped, to their result",
                move |job: Job| {
                    let resumer = resumer.clone();
                    async move {
                        let outcomes =
                            resumer.resume_interrupted(&Default::default()).await.map_err(|e| JobError::from_problem(AuditError::from(e).into()))?;
                        let mut report = serde_json::Map::new();
                        for (id, outcome) in outcomes {
                            let what = match outcome {
                                Ok(report) => {
                                    job.count("resumed", 1);
                                    if report.ok { "passed".to_owned() } else { "failed".to_owned() }
                                }
                                Err(ChainError::VerificationBusy(_) | ChainError::VerificationTakenOver(_)) => {
                                    job.count("taken_by_another", 1);
                                    "taken over by another runner".to_owned()
                                }
                                Err(e) => {
                                    job.count("unresumable", 1);
                                    tracing::warn!(verification = %id, error = %e, "an interrupted verification cannot be resumed; start a new one");
                                    format!("cannot be resumed: {e}")
                                }
                            };
                            report.insert(id.to_string(), what.into());
                        }
                        Ok(serde_json::Value::Object(report))
                    }
                },
            )
            .attempts(1),
        ],
        schedules: vec![
            ScheduleDef::new(
                "audit-retention",
                RETENTION_KIND,
                Scope::Organization,
                "30 3 * * *",
                "Daily: prune audit entries past the retention period (the log stays verifiable)",
            ),
            // Runs lapse a minute after their runner stops; a resumption within minutes is
            // soon enough for a result nobody is waiting on (an attached run's caller resumes it).
            ScheduleDef::new(
                "audit-verification-resumer",
                RESUMER_KIND,
                Scope::System,
                "*/5 * * * *",
                "At start and every five minutes: resume interrupted background verifications",
            )
            .at_start(),
        ],
    }
}

/// The audit trail's commands.
#[derive(Debug, Subcommand)]
pub enum AuditCommands {
    /// Verify the audit chain: recompute every entry's hashes and the Merkle tree and check every
    /// signed checkpoint. Exits 0 when intact; otherwise names the first bad sequence number and
    /// what is wrong, and exits 1. Committed entries not yet sequenced are integrated first.
    ///
    /// Checkpoint signatures are checked with the configured key (CUSTOS_SIGNING_KEY,
    /// CUSTOS_SIGNING_KEY_FILE or the generated key under CUSTOS_DATA_DIR) and any
    /// CUSTOS_AUDIT_TRUSTED_KEYS.
    VerifyAuditChain(VerifyArgs),
    /// Export, verify offline and prune the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

impl AuditCommands {
    /// Whether the command verifies (see [`Broken`]).
    pub fn verifies(&self) -> bool {
        matches!(self, AuditCommands::VerifyAuditChain(_) | AuditCommands::Audit(AuditCommand::VerifyFile { .. }))
    }
}

async fn run(command: AuditCommands) -> anyhow::Result<()> {
    match command {
        AuditCommands::VerifyAuditChain(args) => verify_audit_chain(args).await,
        AuditCommands::Audit(command) => audit(command).await,
    }
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write an organisation's audit log — entries, signed checkpoints and the public key — to a
    /// file that `custos audit verify-file` checks with no database.
    Export {
        #[arg(long)]
        org: String,
        /// Output file (JSON Lines, format custos-audit-export/v2).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Verify an export offline: every hash, the Merkle tree and every checkpoint signature.
    /// Exits 0 when intact. Pin the public key you obtained out of band with --public-key;
    /// without it, only the file's internal consistency is proven.
    VerifyFile {
        file: std::path::PathBuf,
        /// The log's verifier key (<name>+<key id>+<base64 key>, from GET
        /// /api/compliance/audit-log/public-key/); again for each key it was rotated from.
        #[arg(long)]
        public_key: Vec<String>,
    },
    /// Remove entries older than the retention period; what remains stays verifiable.
    Prune {
        /// Only this organisation (default: every organisation).
        #[arg(long)]
        org: Option<String>,
        /// Retention in days (default CUSTOS_AUDIT_RETENTION_DAYS, 2555).
        #[arg(long)]
        retention_days: Option<u32>,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Only this organisation (default: every organisation).
    #[arg(long)]
    pub org: Option<String>,
    /// Only entries recorded in the last N days (earlier ones anchor the check).
    #[arg(long)]
    pub days: Option<u32>,
    /// Check the log's structure only (stored leaves chained, tree, checkpoint signatures and
    /// roots), not each entry's content: much faster; catches deleted, inserted or truncated
    /// entries, altered or reordered leaf hashes and forged checkpoints, but not an edited field.
    #[arg(long)]
    pub structure_only: bool,
    /// Carry on with an interrupted verification run (its id was printed when it started) from
    /// where it stopped, instead of starting over.
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["days", "structure_only"])]
    pub resume: Option<uuid::Uuid>,
    #[command(flatten)]
    pub db: DbArgs,
}

async fn verify_audit_chain(args: VerifyArgs) -> anyhow::Result<()> {
    let app = audit_app_for(&args.db).await?;
    let chain = app.audit.chain();
    let mut failed = Vec::new();
    let mut resumed = false;
    for (org, slug) in organisations(&app, args.org.as_deref()).await? {
        let (report, secs) = match verify_organisation(chain, &args, org, &slug).await {
            Ok(Some(done)) => done,
            // A resumed run is in one of the organisations: the others do not know it.
            Ok(None) => continue,
            // A log too damaged to be read as far as the verifier is a finding, not an outage.
            Err(custos_audit_chain::ChainError::Corrupt(_, problem)) => {
                resumed = true;
                println!("{slug}: FAILED — {problem}");
                failed.push(slug.clone());
                continue;
            }
            // An outage stops the run without hiding what was already found.
            Err(e) if !failed.is_empty() => {
                return Err(Broken(format!(
                    "audit chain verification failed for {}, and then could not verify {slug}: {e}",
                    failed.join(", ")
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        resumed = true;
        if report.ok {
            println!(
                "{slug}: OK — {} entries ({}..{}) and {} checkpoints verified in {secs:.2}s{}",
                report.entries_checked,
                report.first_seq,
                report.tree_size,
                report.checkpoints_checked,
                if report.content_checked { "" } else { " (structure only)" }
            );
        } else {
            println!(
                "{slug}: FAILED at sequence number {} — {}",
                report.first_bad_seq.map_or("?".into(), |s| s.to_string()),
                report.problem.as_deref().unwrap_or("unknown problem")
            );
            failed.push(slug.clone());
        }
        for note in &report.notes {
            println!("{slug}: note: {note}");
        }
    }
    if let Some(id) = args.resume.filter(|_| !resumed) {
        anyhow::bail!("no verification run {id}{}", args.org.map(|o| format!(" in {o}")).unwrap_or_default());
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Broken(format!("audit chain verification failed for {}", failed.join(", "))).into())
    }
}

/// One organisation's verification, started (after sequencing what is committed) or resumed, run
/// to its end with its progress on stderr: its report and how long it took; `None` when the run
/// to resume is not this one's.
async fn verify_organisation(
    chain: &custos_audit_chain::AuditChain,
    args: &VerifyArgs,
    org: uuid::Uuid,
    slug: &str,
) -> Result<Option<(custos_audit_chain::verify::VerifyReport, f64)>, custos_audit_chain::ChainError> {
    let ctx = RequestCtx::operator(org, slug.to_owned());
    let run = match args.resume {
        Some(id) => match chain.resume_verification(&ctx, id).await {
            Err(custos_audit_chain::ChainError::NoSuchVerification(_)) => return Ok(None),
            run => run?,
        },
        None => {
            chain.sync(org).await?;
            let depth = Depth::structure_only(args.structure_only);
            chain.start_verification(&ctx, args.days, depth, custos_audit_chain::runs::Launch::Attached).await?
        }
    };
    eprintln!(
        "{slug}: verification {id} {verb}; should it be interrupted, carry on with `custos verify-audit-chain --resume {id}` (a minute after it stopped)",
        id = run.id(),
        verb = if args.resume.is_some() { "resumed" } else { "started" },
    );
    let mut ticker = Ticker::new();
    let (_, report) = run
        .run_to_end(|run| {
            if ticker.due() {
                let (next, checked, _) = run.progress();
                let report = run.report();
                let span = report.tree_size.saturating_sub(report.first_seq).max(1);
                eprintln!(
                    "{slug}: {checked} entries verified, up to {next} of {} ({:.0}%), {}",
                    report.tree_size,
                    100.0 * next.saturating_sub(report.first_seq) as f64 / span as f64,
                    ticker.rate(checked)
                );
            }
        })
        .await?;
    Ok(Some((report, ticker.seconds())))
}

async fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Export { org, out, db } => {
            let app = audit_app_for(&db).await?;
            let (org_id, _) = app.identity.organization(&org).await.map_err(problem)?;
            // Written beside the destination and renamed into place once complete and on disk,
            // so that an export cut short never passes for a whole one.
            let partial = out.with_file_name(format!(
                "{}.partial",
                out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ));
            let file = std::fs::File::create(&partial)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", partial.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let mut ticker = Ticker::new();
            let exported = app
                .audit
                .chain()
                .export(org_id, &mut writer, |written, total| {
                    if ticker.due() {
                        eprintln!("{org}: {written} of {total} entries exported ({})", ticker.rate(written));
                    }
                })
                .await;
            let finished = exported.map_err(anyhow::Error::from).and_then(|n| {
                let file = writer.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                std::fs::rename(&partial, &out)?;
                Ok(n)
            });
            let n = finished.inspect_err(|_| {
                let _ = std::fs::remove_file(&partial);
            })?;
            println!("exported {n} entries of {org} to {}", out.display());
            println!("verifier key: {}", app.audit.chain().signer().verifier().to_note_key());
        }
        AuditCommand::VerifyFile { file, public_key } => {
            let pinned = public_key
                .iter()
                .map(|k| custos_audit_chain::note::NoteVerifier::parse(k))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?,
            );
            let mut ticker = Ticker::new();
            let verified = custos_audit_chain::export::verify_file(reader, pinned, |checked, total| {
                if ticker.due() {
                    eprintln!("{checked} of {total} entries verified ({})", ticker.rate(checked));
                }
            });
            let report = match verified {
                Ok(report) => report,
                // A line that is not what an export writes: the file is not intact.
                Err(e @ custos_audit_chain::export::FileError::Malformed { .. }) => {
                    return Err(Broken(format!("FAILED: {e}")).into());
                }
                Err(e) => return Err(e.into()),
            };
            if !report.ok {
                return Err(Broken(format!(
                    "FAILED at sequence number {}: {}",
                    report.first_bad_seq.map_or("?".into(), |s| s.to_string()),
                    report.problem.unwrap_or_default()
                ))
                .into());
            }
            println!(
                "OK — organisation {}: {} entries (from {}) and {} checkpoints verified",
                report.organization_id, report.entries, report.first_seq, report.checkpoints
            );
            if report.key_pinned {
                println!("checkpoint signatures verified against the pinned public key");
            } else {
                println!(
                    "no --public-key given: signatures were checked against the key inside the file, so only the file's consistency was proven, not who signed it"
                );
            }
        }
        AuditCommand::Prune { org, retention_days, db } => {
            let app = audit_app_for(&db).await?;
            let days = match retention_days {
                Some(d) => d,
                None => AuditConfig::from_env(std::path::Path::new("."))?.retention_days,
            };
            let limits = super::retention::service(&app);
            for (org_id, slug) in organisations(&app, org.as_deref()).await? {
                let limit =
                    limits.audit_prune_limit(org_id, custos_core::timefmt::days_ago(days)).await.map_err(problem)?;
                let outcome = app.audit.chain().prune_before(org_id, limit.before).await?;
                println!(
                    "{slug}: {} entries older than {days} days pruned; the log now starts at {}",
                    outcome.removed, outcome.pruned_before
                );
                for reason in &limit.reasons {
                    println!("{slug}: kept longer: {reason}");
                }
            }
        }
    }
    Ok(())
}
