//! The vault (seed 004): the master keys behind envelope encryption, their rotation job and the
//! operator's `custos vault status|rotate-master-key`.

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;
use custos_jobs::{ScheduleDef, Scope};
use custos_vault::rotation::{self, REWRAP_JOB};
use custos_vault::{
    DataKey, KekId, KeyProvider, KeySource, LocalKeyProvider, MasterKeys, VaultError, WrapContext, WrappedKey,
};

use super::{Domain, Serving};
use crate::cli::{DbArgs, app_for};
use crate::config::{Config, VaultConfig};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "vault", serve, cli: Some(crate::domain_cli!(VaultCommands, run, |_| false)) };

/// The schedule that re-wraps data keys: at every start (so configuring a new master key starts
/// the rotation) and nightly (anything a crash left).
pub const REWRAP_SCHEDULE: &str = "vault-rewrap";

fn serve(app: &App, _config: &Config) -> Serving {
    Serving {
        jobs: vec![rotation::rewrap_job(app.vault.clone())],
        schedules: vec![
            ScheduleDef::new(
                REWRAP_SCHEDULE,
                REWRAP_JOB,
                Scope::System,
                "45 2 * * *",
                "Re-wraps data keys under the current master key and retires master keys nothing uses",
            )
            .at_start(),
        ],
        ..Serving::default()
    }
}

/// The key provider of the configured master keys (`CUSTOS_MASTER_KEY`/`_FILE`, with
/// `CUSTOS_MASTER_KEY_PREVIOUS`/`_FILE` during a rotation). With none configured: the server
/// (`generate`) makes one under `CUSTOS_DATA_DIR` outside production, loudly; an operator
/// command uses the one a server made, and otherwise gets a provider that refuses every use
/// (most commands never encrypt, and must not mint a key the server would not know).
pub fn key_provider(config: &VaultConfig, data_dir: &Path, generate: bool) -> anyhow::Result<Arc<dyn KeyProvider>> {
    let lookup = |name: &str| config.get(name);
    let configured = lookup("CUSTOS_MASTER_KEY").is_some() || lookup("CUSTOS_MASTER_KEY_FILE").is_some();
    if !configured && !generate && !data_dir.join(custos_vault::keys::MASTER_KEY_FILE_NAME).is_file() {
        return Ok(Arc::new(NoMasterKey));
    }
    let (keys, source) = MasterKeys::from_env(lookup, data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let KeySource::Generated(path) = &source {
        tracing::warn!(
            path = %path.display(),
            master_key = %keys.current().id(),
            "USING A GENERATED MASTER KEY: set CUSTOS_MASTER_KEY (or CUSTOS_MASTER_KEY_FILE) for production; whoever reads this file can decrypt every secret"
        );
    }
    Ok(Arc::new(LocalKeyProvider::new(&keys)))
}

/// No master key configured (an operator command on a machine without one).
struct NoMasterKey;

impl NoMasterKey {
    fn refuse<T>() -> Result<T, VaultError> {
        Err(VaultError::Config(
            "no master key: set CUSTOS_MASTER_KEY or CUSTOS_MASTER_KEY_FILE (or CUSTOS_DATA_DIR to the server's)"
                .into(),
        ))
    }
}

impl KeyProvider for NoMasterKey {
    fn current(&self) -> KekId {
        KekId::from_bytes([0; 8])
    }
    fn versions(&self) -> Vec<KekId> {
        Vec::new()
    }
    fn wrap(&self, _key: &DataKey, _context: &WrapContext) -> Result<WrappedKey, VaultError> {
        Self::refuse()
    }
    fn unwrap(&self, _wrapped: &WrappedKey, _context: &WrapContext) -> Result<DataKey, VaultError> {
        Self::refuse()
    }
}

#[derive(Debug, Subcommand)]
pub enum VaultCommands {
    /// The vault's master keys: status and rotation.
    #[command(subcommand)]
    Vault(VaultCommand),
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// The current master key's fingerprint, the previous ones configured, how many data keys
    /// each master key wraps, and which are retired.
    Status {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Re-wrap every data key under the current master key (configure the new key as
    /// CUSTOS_MASTER_KEY and the old one in CUSTOS_MASTER_KEY_PREVIOUS first), here, with
    /// progress; resumable. Ciphertexts are not touched.
    RotateMasterKey {
        /// Queue the job for a server and return.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn run(VaultCommands::Vault(command): VaultCommands) -> anyhow::Result<()> {
    match command {
        VaultCommand::Status { db } => {
            let app = app_for(&db).await?;
            let provider = app.vault.provider();
            let current = provider.current().to_string();
            println!("current master key: {current}");
            for v in provider.versions().into_iter().map(|v| v.to_string()).filter(|v| *v != current) {
                println!("previous master key configured: {v}");
            }
            for usage in rotation::key_usage(&app.db).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                let note = if usage.kek_id == current { "" } else { " (to re-wrap: custos vault rotate-master-key)" };
                println!("data keys under {}: {}{note}", usage.kek_id, usage.data_keys);
            }
            for (kek, retired) in rotation::retired(&app.db).await.map_err(|e| anyhow::anyhow!("{e}"))? {
                println!("retired master key: {kek} (since {retired}); it can be removed from the configuration");
            }
            Ok(())
        }
        VaultCommand::RotateMasterKey { detach, db } => {
            super::jobs::run_schedule(REWRAP_SCHEDULE, None, detach, &db).await
        }
    }
}
