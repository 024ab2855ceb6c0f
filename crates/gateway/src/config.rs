//! Configuration, read once from the environment. Every variable is listed in `docs/configuration.md`
//! and in `custos serve --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use custos_audit_chain::SequencerConfig;
use custos_audit_chain::keys::{DEFAULT_ORIGIN, KeyConfig};
use custos_identity::{JwtConfig, JwtKey};
pub use custos_incidents::Slas;
use custos_jobs::RunnerConfig;

pub use crate::listener::ConnectionLimits;

#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub migrate_on_start: bool,
    pub db_max_connections: usize,
    pub rate_limit_auth_per_hour: u32,
    pub rate_limit_anon_per_hour: u32,
    /// `CUSTOS_TRUSTED_PROXIES`: addresses or networks of the proxies in front of this server,
    /// whose `X-Forwarded-For` names the client (else the connecting address is the client's).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub jwt: Option<JwtConfig>,
    /// `CUSTOS_AUTH_CACHE_SECONDS`: how long a successful API-token lookup is reused.
    pub auth_cache_seconds: u64,
    pub log_json: bool,
    pub audit: AuditConfig,
    pub evidence: EvidenceConfig,
    /// Incident response and vulnerability remediation SLAs.
    pub slas: Slas,
    /// Timeouts and connection caps of both listeners (`CUSTOS_HTTP_*_TIMEOUT_SECS`,
    /// `CUSTOS_MAX_CONNECTIONS`, `CUSTOS_MAX_CONNECTIONS_PER_CLIENT`).
    pub connections: ConnectionLimits,
    /// Background jobs and their schedules (`CUSTOS_JOB_*`, `CUSTOS_SCHEDULE_*`).
    pub jobs: JobsConfig,
    /// The vault's master keys (`CUSTOS_MASTER_KEY*`, `CUSTOS_ENV`).
    pub vault: VaultConfig,
    /// E-mail notifications' SMTP server (`CUSTOS_SMTP_URL`, `CUSTOS_SMTP_FROM`).
    pub smtp: custos_notify::service::SmtpConfig,
    /// Access reviews (`CUSTOS_ACCESS_REVIEW_STALE_DAYS`: days without use that make a user or
    /// token stale, 90 by default).
    pub access_reviews: custos_identity::reviews::ReviewSettings,
}

/// The settings the vault's master keys are read from, as given (never shown: `Debug` names
/// only which are set).
#[derive(Clone, Default)]
pub struct VaultConfig {
    pub vars: Vec<(String, String)>,
}

impl VaultConfig {
    pub const VARS: &[&str] = &[
        "CUSTOS_MASTER_KEY",
        "CUSTOS_MASTER_KEY_FILE",
        "CUSTOS_MASTER_KEY_PREVIOUS",
        "CUSTOS_MASTER_KEY_PREVIOUS_FILE",
        "CUSTOS_ENV",
    ];

    pub fn from_env() -> VaultConfig {
        VaultConfig { vars: Self::VARS.iter().filter_map(|n| var(n).map(|v| ((*n).to_owned(), v))).collect() }
    }

    /// The setting `name`, if set and not blank.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).filter(|v| !v.trim().is_empty())
    }

    /// Sets (or, with `None`, removes) the setting `name`.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        self.vars.retain(|(n, _)| n != name);
        if let Some(v) = value {
            self.vars.push((name.to_owned(), v.to_owned()));
        }
    }
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig").field("set", &self.vars.iter().map(|(n, _)| n).collect::<Vec<_>>()).finish()
    }
}

/// How this server runs jobs and fires schedules.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// `CUSTOS_JOBS` (default on): whether this replica runs jobs and fires schedules at all
    /// (off: an API-only replica; the others do the work).
    pub run: bool,
    pub runner: RunnerConfig,
    /// How often the scheduler looks for due schedules (`CUSTOS_SCHEDULER_TICK_MS`, 1000).
    pub scheduler_tick: Duration,
    /// `CUSTOS_SCHEDULE_<NAME>` settings by schedule name (`audit-retention` for
    /// `CUSTOS_SCHEDULE_AUDIT_RETENTION`): a cron expression or `off`. Checked against the
    /// schedules the domains declare when the server starts.
    pub schedules: Vec<(String, String)>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            run: true,
            runner: RunnerConfig::default(),
            scheduler_tick: Duration::from_secs(1),
            schedules: Vec::new(),
        }
    }
}

impl JobsConfig {
    pub fn from_env() -> Result<JobsConfig, ConfigError> {
        let d = RunnerConfig::default();
        let schedules = std::env::vars()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("CUSTOS_SCHEDULE_")?;
                Some((name.to_ascii_lowercase().replace('_', "-"), v.trim().to_owned()))
            })
            .collect();
        Ok(JobsConfig {
            run: flag("CUSTOS_JOBS", true)?,
            runner: RunnerConfig {
                concurrency: positive("CUSTOS_JOB_CONCURRENCY", d.concurrency as u32)? as usize,
                poll: Duration::from_millis(u64::from(positive("CUSTOS_JOB_POLL_MS", d.poll.as_millis() as u32)?)),
                lease: Duration::from_secs(u64::from(positive("CUSTOS_JOB_LEASE_SECS", d.lease.as_secs() as u32)?)),
                retry_base: Duration::from_secs(u64::from(positive(
                    "CUSTOS_JOB_RETRY_BASE_SECS",
                    d.retry_base.as_secs() as u32,
                )?)),
                retry_max: d.retry_max,
            },
            scheduler_tick: Duration::from_millis(u64::from(positive("CUSTOS_SCHEDULER_TICK_MS", 1000)?)),
            schedules,
        })
    }
}

/// The listeners' limits from the environment (defaults in [`ConnectionLimits::default`]).
pub fn connections_from_env() -> Result<ConnectionLimits, ConfigError> {
    let d = ConnectionLimits::default();
    let secs = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(u64::from(positive(name, default.as_secs() as u32)?)))
    };
    Ok(ConnectionLimits {
        header_read_timeout: secs("CUSTOS_HTTP_HEADER_TIMEOUT_SECS", d.header_read_timeout)?,
        body_read_timeout: secs("CUSTOS_HTTP_BODY_TIMEOUT_SECS", d.body_read_timeout)?,
        idle_timeout: secs("CUSTOS_HTTP_IDLE_TIMEOUT_SECS", d.idle_timeout)?,
        max_connections: positive("CUSTOS_MAX_CONNECTIONS", d.max_connections as u32)? as usize,
        max_connections_per_client: positive("CUSTOS_MAX_CONNECTIONS_PER_CLIENT", d.max_connections_per_client as u32)?
            as usize,
    })
}

/// Where evidence files are stored and how large they may be.
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    /// `CUSTOS_BLOB_STORE`: `file:///absolute/dir` (default `blobs/` under `CUSTOS_DATA_DIR`).
    pub blob_store: String,
    /// `CUSTOS_BLOB_STORES`: a store per region for data residency, `region=url` pairs separated
    /// by commas (`eu-west-1=file:///srv/eu,us-east-1=s3://bucket/us`); none by default.
    pub blob_stores: Option<String>,
    /// `CUSTOS_MAX_UPLOAD_BYTES` (default 10 GiB).
    pub max_upload_bytes: u64,
}

impl EvidenceConfig {
    pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 10 * 1024 * 1024 * 1024;

    pub fn from_env(data_dir: &std::path::Path) -> Result<EvidenceConfig, ConfigError> {
        let blob_store = match var("CUSTOS_BLOB_STORE") {
            Some(url) => url,
            None => {
                let dir = std::path::absolute(data_dir.join("blobs"))
                    .map_err(|e| ConfigError(format!("CUSTOS_DATA_DIR {}: {e}", data_dir.display())))?;
                format!("file://{}", dir.display())
            }
        };
        let max_upload_bytes = parsed("CUSTOS_MAX_UPLOAD_BYTES", Self::DEFAULT_MAX_UPLOAD_BYTES)?;
        if max_upload_bytes == 0 {
            return Err(ConfigError("CUSTOS_MAX_UPLOAD_BYTES must be at least 1".into()));
        }
        let blob_stores = var("CUSTOS_BLOB_STORES");
        if let Some(spec) = &blob_stores {
            custos_blobs::parse_regions(spec).map_err(ConfigError)?;
        }
        Ok(EvidenceConfig { blob_store, blob_stores, max_upload_bytes })
    }
}

/// The audit chain's keys and tuning.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub keys: KeyConfig,
    pub checkpoint_interval_ms: u64,
    /// `CUSTOS_AUDIT_RETENTION_DAYS`: entries older than this are pruned by the `audit-retention`
    /// schedule (daily by default; `CUSTOS_SCHEDULE_AUDIT_RETENTION`).
    pub retention_days: u32,
    /// Entries one search request reads at most (`CUSTOS_AUDIT_SEARCH_SCAN`).
    pub search_scan: usize,
}

/// The SLAs from `CUSTOS_INCIDENT_*` and `CUSTOS_VULN_SLA_*_DAYS` (the seed's values by default).
pub fn slas_from_env() -> Result<Slas, ConfigError> {
    let d = Slas::default();
    Ok(Slas {
        incident_critical_response_minutes: positive(
            "CUSTOS_INCIDENT_CRITICAL_SLA_MINUTES",
            d.incident_critical_response_minutes,
        )?,
        incident_normal_response_minutes: positive(
            "CUSTOS_INCIDENT_NORMAL_SLA_MINUTES",
            d.incident_normal_response_minutes,
        )?,
        incident_resolution_hours: positive("CUSTOS_INCIDENT_RESOLUTION_SLA_HOURS", d.incident_resolution_hours)?,
        vuln_critical_days: positive("CUSTOS_VULN_SLA_CRITICAL_DAYS", d.vuln_critical_days)?,
        vuln_high_days: positive("CUSTOS_VULN_SLA_HIGH_DAYS", d.vuln_high_days)?,
        vuln_medium_days: positive("CUSTOS_VULN_SLA_MEDIUM_DAYS", d.vuln_medium_days)?,
        vuln_low_days: positive("CUSTOS_VULN_SLA_LOW_DAYS", d.vuln_low_days)?,
    })
}

impl AuditConfig {
    /// From `CUSTOS_SIGNING_KEY(_FILE)`, `CUSTOS_ENV`, `CUSTOS_LOG_ORIGIN`, `CUSTOS_AUDIT_*`.
    pub fn from_env(data_dir: &std::path::Path) -> Result<AuditConfig, ConfigError> {
        let production = var("CUSTOS_ENV").is_some_and(|e| e.eq_ignore_ascii_case("production"));
        Ok(AuditConfig {
            keys: KeyConfig {
                key: var("CUSTOS_SIGNING_KEY"),
                key_file: var("CUSTOS_SIGNING_KEY_FILE").map(PathBuf::from),
                data_dir: data_dir.to_path_buf(),
                production,
                origin: var("CUSTOS_LOG_ORIGIN").unwrap_or_else(|| DEFAULT_ORIGIN.to_owned()),
                trusted: var("CUSTOS_AUDIT_TRUSTED_KEYS")
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                    .unwrap_or_default(),
            },
            checkpoint_interval_ms: parsed("CUSTOS_AUDIT_CHECKPOINT_INTERVAL_MS", 500u64)?,
            retention_days: positive("CUSTOS_AUDIT_RETENTION_DAYS", 2555)?,
            search_scan: positive("CUSTOS_AUDIT_SEARCH_SCAN", SequencerConfig::default().search_scan as u32)? as usize,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|e| ConfigError(format!("{name}={raw:?} is invalid: {e}"))),
    }
}

fn flag(name: &str, default: bool) -> Result<bool, ConfigError> {
    match var(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError(format!("{name}={other:?} is invalid: use true or false"))),
    }
}

impl Config {
    /// Reads the whole configuration; `database_url` may be passed explicitly (CLI flag).
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_env_with(var("DATABASE_URL"))
    }

    /// [`Config::from_env`] with the database named elsewhere (a CLI flag).
    pub fn from_env_with(database_url: Option<String>) -> Result<Config, ConfigError> {
        let database_url = database_url.ok_or_else(|| {
            ConfigError("DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/custos)".into())
        })?;
        check_database_url(&database_url)?;
        let jwt = match (
            var("CUSTOS_JWT_HS256_SECRET"),
            var("CUSTOS_JWT_RS256_PUBLIC_KEY"),
            var("CUSTOS_JWT_RS256_PUBLIC_KEY_FILE"),
        ) {
            (None, None, None) => None,
            (Some(secret), None, None) => {
                if secret.len() < 32 {
                    return Err(ConfigError("CUSTOS_JWT_HS256_SECRET must be at least 32 characters".into()));
                }
                Some(JwtKey::Hs256(secret.into_bytes()))
            }
            (None, Some(pem), None) => Some(JwtKey::Rs256Pem(pem.replace("\\n", "\n").into_bytes())),
            (None, None, Some(path)) => Some(JwtKey::Rs256Pem(
                std::fs::read(&path)
                    .map_err(|e| ConfigError(format!("CUSTOS_JWT_RS256_PUBLIC_KEY_FILE {path}: {e}")))?,
            )),
            _ => {
                return Err(ConfigError(
                    "configure exactly one of CUSTOS_JWT_HS256_SECRET, CUSTOS_JWT_RS256_PUBLIC_KEY(_FILE)".into(),
                ));
            }
        }
        .map(|key| JwtConfig { key, issuer: var("CUSTOS_JWT_ISSUER"), audience: var("CUSTOS_JWT_AUDIENCE") });
        let data_dir = PathBuf::from(var("CUSTOS_DATA_DIR").unwrap_or_else(|| "./data".into()));
        Ok(Config {
            audit: AuditConfig::from_env(&data_dir)?,
            evidence: EvidenceConfig::from_env(&data_dir)?,
            slas: slas_from_env()?,
            connections: connections_from_env()?,
            jobs: JobsConfig::from_env()?,
            vault: VaultConfig::from_env(),
            smtp: smtp_from_env()?,
            access_reviews: access_reviews_from_env()?,
            database_url,
            http_addr: parsed("CUSTOS_HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            grpc_addr: parsed("CUSTOS_GRPC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            data_dir,
            migrate_on_start: flag("CUSTOS_MIGRATE_ON_START", true)?,
            db_max_connections: parsed("CUSTOS_DB_MAX_CONNECTIONS", 16usize)?,
            rate_limit_auth_per_hour: positive("CUSTOS_RATE_LIMIT_AUTH_PER_HOUR", 1000)?,
            rate_limit_anon_per_hour: positive("CUSTOS_RATE_LIMIT_ANON_PER_HOUR", 100)?,
            trusted_proxies: trusted_proxies(var("CUSTOS_TRUSTED_PROXIES").as_deref().unwrap_or_default())?,
            jwt,
            auth_cache_seconds: parsed("CUSTOS_AUTH_CACHE_SECONDS", 5u64)?,
            log_json: var("CUSTOS_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json")),
        })
    }
}

/// `CUSTOS_SMTP_URL`, `CUSTOS_SMTP_FROM`, and the login kept out of the URL:
/// `CUSTOS_SMTP_USERNAME` with `CUSTOS_SMTP_PASSWORD` or `CUSTOS_SMTP_PASSWORD_FILE` (its first
/// line, so a file written by `echo` works).
fn smtp_from_env() -> Result<custos_notify::service::SmtpConfig, ConfigError> {
    let password = match (var("CUSTOS_SMTP_PASSWORD"), var("CUSTOS_SMTP_PASSWORD_FILE")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError("set CUSTOS_SMTP_PASSWORD or CUSTOS_SMTP_PASSWORD_FILE, not both".into()));
        }
        (Some(p), None) => Some(p),
        (None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("CUSTOS_SMTP_PASSWORD_FILE {path}: {e}")))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let credentials = match (var("CUSTOS_SMTP_USERNAME"), password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError(
                "CUSTOS_SMTP_USERNAME needs CUSTOS_SMTP_PASSWORD or CUSTOS_SMTP_PASSWORD_FILE".into(),
            ));
        }
        (None, Some(_)) => return Err(ConfigError("an SMTP password needs CUSTOS_SMTP_USERNAME".into())),
    };
    Ok(custos_notify::service::SmtpConfig { url: var("CUSTOS_SMTP_URL"), from: var("CUSTOS_SMTP_FROM"), credentials })
}

fn access_reviews_from_env() -> Result<custos_identity::reviews::ReviewSettings, ConfigError> {
    const NAME: &str = "CUSTOS_ACCESS_REVIEW_STALE_DAYS";
    let days: i32 = parsed(NAME, custos_identity::reviews::DEFAULT_STALE_AFTER_DAYS)?;
    if !(1..=3650).contains(&days) {
        return Err(ConfigError(format!("{NAME}={days} is invalid: a number of days between 1 and 3650")));
    }
    Ok(custos_identity::reviews::ReviewSettings { stale_after_days: days })
}

fn positive(name: &str, default: u32) -> Result<u32, ConfigError> {
    let v = parsed(name, default)?;
    if v == 0 {
        return Err(ConfigError(format!("{name} must be at least 1")));
    }
    Ok(v)
}

/// Catches an obviously wrong `DATABASE_URL` before any connection is tried.
pub fn check_database_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(ConfigError(format!(
            "DATABASE_URL must be a postgres:// or postgresql:// URL, got {:?}",
            url.split('@').next_back().unwrap_or_default()
        )));
    }
    Ok(())
}

/// A comma-separated list of addresses (`10.0.0.5`) and networks (`10.0.0.0/8`, `fd00::/8`).
pub fn trusted_proxies(raw: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from)).map_err(|_| {
                ConfigError(format!("CUSTOS_TRUSTED_PROXIES: {s:?} is neither an IP address nor a network (a.b.c.d/n)"))
            })
        })
        .collect()
}
