//! The `custos` command line: the server, migrations, and every domain's operator subcommands
//! (declared by the domain, `crate::domains`). Operator commands call the same service methods as
//! the API, in-process, as an `operator:<user>` actor. What they share is here.

use clap::{Args, FromArgMatches, Subcommand};
use custos_audit_chain::keys::DEFAULT_ORIGIN;
use custos_audit_chain::note::NoteSigner;
use custos_audit_chain::{AuditChain, SequencerConfig};
use ed25519_dalek::SigningKey;

use crate::config::{AuditConfig, Config, EvidenceConfig, check_database_url, slas_from_env};
use crate::domains;
use crate::server::{self, App};

/// The platform's own commands; the domains add theirs.
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
    /// Connections: CUSTOS_HTTP_HEADER_TIMEOUT_SECS (15), CUSTOS_HTTP_BODY_TIMEOUT_SECS (60),
    /// CUSTOS_HTTP_IDLE_TIMEOUT_SECS (75), CUSTOS_MAX_CONNECTIONS (10000),
    /// CUSTOS_MAX_CONNECTIONS_PER_CLIENT (256).
    ///
    /// Service levels: CUSTOS_INCIDENT_CRITICAL_SLA_MINUTES (15), CUSTOS_INCIDENT_NORMAL_SLA_MINUTES
    /// (30), CUSTOS_INCIDENT_RESOLUTION_SLA_HOURS (4), CUSTOS_VULN_SLA_CRITICAL_DAYS (3),
    /// CUSTOS_VULN_SLA_HIGH_DAYS (14), CUSTOS_VULN_SLA_MEDIUM_DAYS (30), CUSTOS_VULN_SLA_LOW_DAYS (90).
    ///
    /// Jobs: CUSTOS_JOBS (true), CUSTOS_JOB_CONCURRENCY (8), CUSTOS_JOB_POLL_MS (1000),
    /// CUSTOS_JOB_LEASE_SECS (30), CUSTOS_JOB_RETRY_BASE_SECS (30), CUSTOS_SCHEDULER_TICK_MS (1000),
    /// CUSTOS_SCHEDULE_<NAME> (a cron expression or off; see `custos jobs schedules`).
    Serve,
    /// Apply pending database migrations (creates the restricted `custos_app` role if needed).
    Migrate(DbArgs),
}

/// A parsed command line.
pub struct Cli {
    matches: clap::ArgMatches,
}

impl Cli {
    /// The whole `custos` command: the platform's subcommands and every domain's.
    pub fn command() -> clap::Command {
        let mut command = clap::Command::new("custos")
            .version(env!("CARGO_PKG_VERSION"))
            .about("Custos — compliance & governance platform")
            .subcommand_required(true)
            .arg_required_else_help(true);
        command = Command::augment_subcommands(command);
        for cli in domains::ALL.iter().filter_map(|d| d.cli.as_ref()) {
            command = (cli.augment)(command);
        }
        // Each `augment_subcommands` sets the command's about to its enum's doc: set ours last.
        command.about("Custos — compliance & governance platform")
    }

    pub fn parse() -> Cli {
        Cli { matches: Self::command().get_matches() }
    }

    pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Ok(Cli { matches: Self::command().try_get_matches_from(args)? })
    }

    /// `custos serve` (it logs at info by default; the others at warn).
    pub fn is_serve(&self) -> bool {
        self.matches.subcommand_name() == Some("serve")
    }

    /// Whether the command verifies (see [`Broken`]).
    pub fn verifies(&self) -> bool {
        domains::ALL.iter().filter_map(|d| d.cli.as_ref()).any(|cli| (cli.verifies)(&self.matches))
    }
}

/// Runs one subcommand. Output goes to stdout; errors are returned for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Ok(command) = Command::from_arg_matches(&cli.matches) {
        return platform(command).await;
    }
    for domain_cli in domains::ALL.iter().filter_map(|d| d.cli.as_ref()) {
        if let Some(running) = (domain_cli.run)(&cli.matches) {
            return running.await;
        }
    }
    anyhow::bail!("unknown command; see `custos --help`")
}

async fn platform(command: Command) -> anyhow::Result<()> {
    match command {
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
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

pub(crate) async fn connect(args: &DbArgs) -> anyhow::Result<custos_db::Db> {
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
pub(crate) async fn app_for(args: &DbArgs) -> anyhow::Result<App> {
    let db = connect(args).await?;
    let unused_signer = NoteSigner::new(DEFAULT_ORIGIN, SigningKey::from_bytes(&rand::random()));
    let chain = AuditChain::new(db.clone(), unused_signer, vec![], SequencerConfig::default());
    chain.check_transaction_counter().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = crate::domains::vault::key_provider(&crate::config::VaultConfig::from_env(), &data_dir(), false)?;
    let mut app = App::new(db, chain, slas_from_env()?, &EvidenceConfig::from_env(&data_dir())?, keys)?;
    // Its signer is a throwaway: nothing may be signed with it.
    app.archive_signer = None;
    Ok(app)
}

/// The services with the server's audit signing key, for the audit commands (which sign the
/// checkpoint covering what they verify or export). They never generate a key: a checkpoint
/// signed by a key the server does not trust would fail every later verification.
pub(crate) async fn audit_app_for(args: &DbArgs) -> anyhow::Result<App> {
    let db = connect(args).await?;
    let config = AuditConfig::from_env(&data_dir())?;
    let chain = server::audit_chain(db.clone(), &config, custos_audit_chain::keys::WhenMissing::Refuse)?;
    let keys = crate::domains::vault::key_provider(&crate::config::VaultConfig::from_env(), &data_dir(), false)?;
    App::new(db, chain, slas_from_env()?, &EvidenceConfig::from_env(&data_dir())?, keys)
}

pub(crate) fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var("CUSTOS_DATA_DIR").unwrap_or_else(|_| "./data".into()))
}

/// What a verifying command found: the log or the file is not intact. Its exit status (1)
/// differs from that of a verification that could not be carried out (2), so that a script can
/// tell tampering from an unreachable database.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Broken(pub String);

/// The organisations an operator command applies to: one by slug, or all.
pub(crate) async fn organisations(app: &App, slug: Option<&str>) -> anyhow::Result<Vec<(uuid::Uuid, String)>> {
    let orgs = match slug {
        Some(slug) => vec![app.identity.organization(slug).await.map_err(problem)?],
        None => app.identity.all_organizations().await.map_err(problem)?,
    };
    if orgs.is_empty() {
        anyhow::bail!("no organisations; create one with `custos org create`");
    }
    Ok(orgs)
}

pub(crate) fn problem_of(p: custos_core::Problem) -> anyhow::Error {
    match p.details.as_str() {
        Some(d) => anyhow::anyhow!("{}: {d}", p.error),
        None => anyhow::anyhow!("{}: {}", p.error, p.details),
    }
}

pub(crate) fn problem<E: Into<custos_core::Problem>>(e: E) -> anyhow::Error {
    problem_of(e.into())
}

/// When a long command's next progress line is due (once a second, on stderr).
pub(crate) struct Ticker {
    started: std::time::Instant,
    shown: std::time::Instant,
}

impl Ticker {
    pub(crate) fn new() -> Self {
        let now = std::time::Instant::now();
        Ticker { started: now, shown: now }
    }

    pub(crate) fn due(&mut self) -> bool {
        let due = self.shown.elapsed() >= std::time::Duration::from_secs(1);
        if due {
            self.shown = std::time::Instant::now();
        }
        due
    }

    pub(crate) fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// `done` entries since the start, as a rate.
    pub(crate) fn rate(&self, done: u64) -> String {
        format!("{:.0} entries/s", done as f64 / self.seconds().max(1e-9))
    }
}
