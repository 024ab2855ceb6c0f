//! The `custos` command line: the server and the operator subcommands. Operator commands call
//! the same service methods as the API, in-process, as an `operator:<user>` actor.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use custos_core::{RequestCtx, Role};
use custos_frameworks::catalog;

use custos_audit_chain::keys::DEFAULT_ORIGIN;
use custos_audit_chain::note::NoteSigner;
use custos_audit_chain::verify::Depth;
use custos_audit_chain::{AuditChain, SequencerConfig};
use ed25519_dalek::SigningKey;

use crate::config::{AuditConfig, Config, EvidenceConfig, check_database_url, slas_from_env};
use crate::server::{self, App};

#[derive(Debug, Parser)]
#[command(name = "custos", version, about = "Custos — compliance & governance platform", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API (CUSTOS_HTTP_ADDR) and gRPC (CUSTOS_GRPC_ADDR).
    ///
    /// Environment: DATABASE_URL (required), CUSTOS_HTTP_ADDR (127.0.0.1:8080),
    /// CUSTOS_GRPC_ADDR (127.0.0.1:50051), CUSTOS_DATA_DIR (./data), CUSTOS_MIGRATE_ON_START (true),
    /// CUSTOS_DB_MAX_CONNECTIONS (16), CUSTOS_RATE_LIMIT_AUTH_PER_HOUR (1000),
    /// CUSTOS_RATE_LIMIT_ANON_PER_HOUR (100), CUSTOS_AUTH_CACHE_SECONDS (5), CUSTOS_JWT_HS256_SECRET or
    /// CUSTOS_JWT_RS256_PUBLIC_KEY / CUSTOS_JWT_RS256_PUBLIC_KEY_FILE, CUSTOS_JWT_ISSUER,
    /// CUSTOS_JWT_AUDIENCE, CUSTOS_LOG_FORMAT (text|json), RUST_LOG (info),
    /// CUSTOS_BLOB_STORE (file://<CUSTOS_DATA_DIR>/blobs), CUSTOS_MAX_UPLOAD_BYTES (10 GiB).
    ///
    /// Service levels: CUSTOS_INCIDENT_CRITICAL_SLA_MINUTES (15), CUSTOS_INCIDENT_NORMAL_SLA_MINUTES
    /// (30), CUSTOS_INCIDENT_RESOLUTION_SLA_HOURS (4), CUSTOS_VULN_SLA_CRITICAL_DAYS (3),
    /// CUSTOS_VULN_SLA_HIGH_DAYS (14), CUSTOS_VULN_SLA_MEDIUM_DAYS (30), CUSTOS_VULN_SLA_LOW_DAYS (90).
    Serve,
    /// Apply pending database migrations (creates the restricted `custos_app` role if needed).
    Migrate(DbArgs),
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Load the built-in framework catalogue (and any --catalog-dir files) into organisations.
    /// Idempotent: only what is missing is created.
    Seed(SeedArgs),
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

#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation.
    Create {
        /// URL-safe identifier: lowercase letters, digits and dashes.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user (the user is created if missing; their role is set).
    /// The token is printed once, as the last line of output.
    Create {
        /// The organisation's slug.
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// viewer, editor, admin or auditor.
        #[arg(long)]
        role: String,
        /// A label for the token, shown in listings.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Only this organisation (default: every organisation).
    #[arg(long)]
    pub org: Option<String>,
    /// Also load every *.yaml catalogue file of this directory (format: custos-catalog/v1).
    #[arg(long)]
    pub catalog_dir: Option<PathBuf>,
    /// Skip the built-in catalogue (load only --catalog-dir).
    #[arg(long)]
    pub no_builtin: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

async fn connect(args: &DbArgs) -> anyhow::Result<custos_db::Db> {
    check_database_url(&args.database_url)?;
    let mut config = custos_db::DbConfig::new(&args.database_url);
    config.max_connections = 4;
    let db = custos_db::Db::connect(&config)?;
    db.ping()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the database at {}: {e}", server::redact(&args.database_url)))?;
    Ok(db)
}

/// The services for commands that only record audit entries (they are left for the server's
/// sequencer): no signing key is needed, so none is loaded or generated.
async fn app_for(args: &DbArgs) -> anyhow::Result<App> {
    let db = connect(args).await?;
    let unused_signer = NoteSigner::new(DEFAULT_ORIGIN, SigningKey::from_bytes(&rand::random()));
    let chain = AuditChain::new(db.clone(), unused_signer, vec![], SequencerConfig::default());
    chain.check_transaction_counter().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    App::new(db, chain, slas_from_env()?, &EvidenceConfig::from_env(&data_dir())?)
}

/// The services with the server's audit signing key, for the audit commands (which sign the
/// checkpoint covering what they verify or export). They never generate a key: a checkpoint
/// signed by a key the server does not trust would fail every later verification.
async fn audit_app_for(args: &DbArgs) -> anyhow::Result<App> {
    let db = connect(args).await?;
    let config = AuditConfig::from_env(&data_dir())?;
    let chain = server::audit_chain(db.clone(), &config, custos_audit_chain::keys::WhenMissing::Refuse)?;
    App::new(db, chain, slas_from_env()?, &EvidenceConfig::from_env(&data_dir())?)
}

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CUSTOS_DATA_DIR").unwrap_or_else(|_| "./data".into()))
}

/// What a verifying command found: the log or the file is not intact. Its exit status (1)
/// differs from that of a verification that could not be carried out (2), so that a script can
/// tell tampering from an unreachable database.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Broken(String);

impl Command {
    /// Whether the command verifies (see [`Broken`]).
    pub fn verifies(&self) -> bool {
        matches!(self, Command::VerifyAuditChain(_) | Command::Audit(AuditCommand::VerifyFile { .. }))
    }
}

/// Runs one subcommand. Output goes to stdout; errors are returned for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => {
            let config = Config::from_env()?;
            let server = server::start(&config).await?;
            println!(
                "REST  http://{}/api/compliance/   (docs: http://{}/api/docs/)",
                server.http_addr, server.http_addr
            );
            println!("gRPC  {}", server.grpc_addr);
            server.run_until_signal().await;
        }
        Command::Migrate(db) => {
            check_database_url(&db.database_url)?;
            let applied = custos_db::migrate(&db.database_url)
                .await
                .map_err(|e| anyhow::anyhow!("migrations failed on {}: {e}", server::redact(&db.database_url)))?;
            if applied.is_empty() {
                println!("database is up to date");
            }
            for m in applied {
                println!("applied {m}");
            }
        }
        Command::Org(OrgCommand::Create { slug, name, db }) => {
            let app = app_for(&db).await?;
            let org = app.identity.create_organization(&slug, &name).await.map_err(problem)?;
            println!("created organisation {} ({}) id={}", org.slug, org.name, org.id);
        }
        Command::Token(TokenCommand::Create { org, email, role, name, db }) => {
            let role: Role = role.parse().map_err(|p: custos_core::Problem| {
                anyhow::anyhow!("{}", p.details.as_str().unwrap_or("invalid role"))
            })?;
            let app = app_for(&db).await?;
            let issued = app.identity.issue_token(&org, &email, role, &name).await.map_err(problem)?;
            if issued.user_created {
                println!("created user {email} ({role}) id={}", issued.user_id);
            } else {
                println!("user {email} ({role}) id={}", issued.user_id);
            }
            println!("token id={} — store it now, it cannot be shown again:", issued.token_id);
            println!("{}", issued.token);
        }
        Command::Seed(args) => {
            let app = app_for(&args.db).await?;
            let mut catalogs = if args.no_builtin { Vec::new() } else { catalog::builtin().map_err(problem_of)? };
            if let Some(dir) = &args.catalog_dir {
                catalogs.extend(catalog::load_dir(dir).map_err(problem_of)?);
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
            }
        }
        Command::VerifyAuditChain(args) => verify_audit_chain(args).await?,
        Command::Audit(command) => audit(command).await?,
    }
    Ok(())
}

/// The organisations an operator command applies to: one by slug, or all.
async fn organisations(app: &App, slug: Option<&str>) -> anyhow::Result<Vec<(uuid::Uuid, String)>> {
    let orgs = match slug {
        Some(slug) => vec![app.identity.organization(slug).await.map_err(problem)?],
        None => app.identity.all_organizations().await.map_err(problem)?,
    };
    if orgs.is_empty() {
        anyhow::bail!("no organisations; create one with `custos org create`");
    }
    Ok(orgs)
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
            for (org_id, slug) in organisations(&app, org.as_deref()).await? {
                let outcome = app.audit.chain().prune(org_id, days).await?;
                println!(
                    "{slug}: {} entries older than {days} days pruned; the log now starts at {}",
                    outcome.removed, outcome.pruned_before
                );
            }
        }
    }
    Ok(())
}

fn problem_of(p: custos_core::Problem) -> anyhow::Error {
    match p.details.as_str() {
        Some(d) => anyhow::anyhow!("{}: {d}", p.error),
        None => anyhow::anyhow!("{}: {}", p.error, p.details),
    }
}

fn problem<E: Into<custos_core::Problem>>(e: E) -> anyhow::Error {
    problem_of(e.into())
}

/// When a long command's next progress line is due (once a second, on stderr).
struct Ticker {
    started: std::time::Instant,
    shown: std::time::Instant,
}

impl Ticker {
    fn new() -> Self {
        let now = std::time::Instant::now();
        Ticker { started: now, shown: now }
    }

    fn due(&mut self) -> bool {
        let due = self.shown.elapsed() >= std::time::Duration::from_secs(1);
        if due {
            self.shown = std::time::Instant::now();
        }
        due
    }

    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// `done` entries since the start, as a rate.
    fn rate(&self, done: u64) -> String {
        format!("{:.0} entries/s", done as f64 / self.seconds().max(1e-9))
    }
}
