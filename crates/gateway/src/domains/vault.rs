//! The vault (seed 004): the secrets vault's endpoints and gRPC service, the master keys behind
//! envelope encryption, their rotation job and the operator's `custos vault
//! status|rotate-master-key`.

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;
use custos_jobs::{ScheduleDef, Scope};
use custos_vault::rotation::{self, REWRAP_JOB};
use custos_vault::{
    DataKey, KekId, KeyProvider, KeySource, LocalKeyProvider, MasterKeys, VaultError, WrapContext, WrappedKey,
};

use custos_proto::v1::secrets_service_server::SecretsServiceServer;
use custos_vault::secret_rotation;
use custos_vault::secrets::SecretType;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for};
use crate::config::{Config, VaultConfig};
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain =
    Domain { name: "vault", serve, cli: Some(crate::domain_cli!(VaultCommands, run, |_| false)) };

/// The daily rotation of due secrets (seed 004: 03:00).
pub const SECRET_ROTATION_SCHEDULE: &str = "secret-rotation";

/// The schedule that re-wraps data keys: at every start (so configuring a new master key starts
/// the rotation) and nightly (anything a crash left).
pub const REWRAP_SCHEDULE: &str = "vault-rewrap";

const SECRETS: &str = "/api/compliance/secrets/";
const SECRET: &str = "/api/compliance/secrets/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.secrets;
    let owner_or_admin = "Only admins and the secret's owner (a reveal's refusal is audited)";
    Serving {
        endpoints: vec![
            Endpoint::get(SECRETS, "List secrets (values redacted)", op!(s, list_secrets)).list(),
            Endpoint::post(SECRETS, "Store a secret, encrypted (editors, admins)", op!(s, create_secret))
                .body_field("secret")
                .created()
                .fails(StatusCode::CONFLICT, "A secret with this name exists"),
            Endpoint::get(SECRET, "Get a secret's metadata (the value redacted)", op!(s, get_secret)),
            Endpoint::put(SECRET, "Replace a secret's metadata", op!(s, update_secret))
                .body_field("secret")
                .fails(StatusCode::CONFLICT, "A secret with this name exists"),
            Endpoint::patch(SECRET, "Partially update a secret's metadata", op!(s, update_secret))
                .body_field("secret")
                .fails(StatusCode::CONFLICT, "A secret with this name exists"),
            Endpoint::delete(SECRET, "Delete a secret and its versions (admins)", op!(s, delete_secret)),
            Endpoint::get(
                "/api/compliance/secrets/{id}/reveal/",
                "Reveal the value (admins and the owner, with a reason; audited before it is released)",
                op!(s, reveal_secret),
            )
            .fails(StatusCode::FORBIDDEN, owner_or_admin),
            Endpoint::post(
                "/api/compliance/secrets/{id}/rotate/",
                "Store a new value as the next version (admins and the owner)",
                op!(s, rotate_secret),
            )
            .fails(StatusCode::FORBIDDEN, owner_or_admin),
            Endpoint::get(
                "/api/compliance/secrets/{id}/reveal_requests/",
                "The secret's reveal requests (admins and the owner)",
                op!(s, list_reveal_requests),
            )
            .fails(StatusCode::FORBIDDEN, owner_or_admin),
            Endpoint::post(
                "/api/compliance/secrets/{id}/reveal_requests/",
                "Ask to reveal a secret under the two-person rule",
                op!(s, create_reveal_request),
            )
            .created()
            .fails(StatusCode::FORBIDDEN, owner_or_admin),
            Endpoint::post(
                "/api/compliance/secrets/{id}/reveal_requests/{request_id}/approve/",
                "Approve a reveal request (another admin; valid 15 minutes, once)",
                op!(s, approve_reveal_request),
            )
            .fails(StatusCode::CONFLICT, "The request is not pending"),
        ],
        description: ApiDescription {
            value_sets: vec![ValueSet::of::<SecretType>(&[
                "Secret.secret_type",
                "SecretInput.secret_type",
                "ListSecretsRequest.secret_type",
            ])],
            required: vec![
                "SecretInput.name",
                "SecretInput.secret_type",
                "RevealSecretRequest.reason",
                "RotateSecretRequest.new_value",
                "CreateRevealRequestRequest.reason",
            ],
        },
        grpc: vec![GrpcService::new(SecretsServiceServer::new(app.secrets.clone()))],
        jobs: vec![rotation::rewrap_job(app.vault.clone()), secret_rotation::rotation_job(app.secrets.clone())],
        schedules: vec![
            ScheduleDef::new(
                SECRET_ROTATION_SCHEDULE,
                secret_rotation::ROTATION_JOB,
                Scope::Organization,
                "0 3 * * *",
                "Rotates the organisation's due PostgreSQL role secrets and reports its other due secrets",
            ),
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
            if provider.versions().is_empty() {
                println!("no master key configured here: set CUSTOS_MASTER_KEY (or CUSTOS_DATA_DIR to the server's)");
            } else {
                println!("current master key: {current}");
            }
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
