//! Data keys in the database: created in the caller's transaction (with what they encrypt),
//! wrapped by the current master key's KEK, audited (purpose and master-key fingerprint only —
//! never key material), and unwrapped on demand. Other crates encrypt through [`Vault`].

use std::sync::Arc;

use custos_audit_chain::record_change;
use custos_core::{ErrorKind, Problem, RequestCtx, new_id};
use custos_db::schema::vault_data_keys;
use custos_db::{Db, Tx};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{DataKey, FieldContext, KeyProvider, VaultError, WrapContext, WrappedKey, decrypt_field, encrypt_field};

custos_db::service_error! {
    /// Why a vault operation failed: refused (a `Problem`) or the database.
    #[allow(missing_docs)]
    pub enum VaultServiceError {}
}

impl From<VaultError> for Problem {
    fn from(e: VaultError) -> Problem {
        match e {
            // Stored data that does not open: an integrity failure, not the caller's mistake.
            VaultError::Decrypt | VaultError::Malformed(_) => Problem::internal(format!("vault: {e}")),
            VaultError::UnknownKeyVersion(id) => Problem::new(
                ErrorKind::Unavailable,
                "A master key is missing",
                format!(
                    "data is wrapped by master key {id}, which is not configured: add it to CUSTOS_MASTER_KEY_PREVIOUS"
                ),
            ),
            other => Problem::internal(format!("vault: {other}")),
        }
    }
}

impl From<VaultError> for VaultServiceError {
    fn from(e: VaultError) -> Self {
        VaultServiceError::Rejected(e.into())
    }
}

type Result<T, E = VaultServiceError> = std::result::Result<T, E>;

/// The platform's encryption service: data keys stored wrapped, fields encrypted with them.
#[derive(Clone)]
pub struct Vault {
    db: Db,
    provider: Arc<dyn KeyProvider>,
}

impl Vault {
    /// The vault over `db`, with the master keys of `provider`.
    pub fn new(db: Db, provider: Arc<dyn KeyProvider>) -> Vault {
        Vault { db, provider }
    }

    /// The key provider (its current master key's fingerprint, wrapping, unwrapping).
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// The database the data keys are kept in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A fresh data key for `purpose` (`secret`, `blind-index`, …), stored wrapped in `tx` — the
    /// transaction that stores what it encrypts, so both commit or neither — and audited.
    pub async fn create_data_key(&self, tx: &mut Tx, ctx: &RequestCtx, purpose: &str) -> Result<(Uuid, DataKey)> {
        let id = new_id();
        let key = DataKey::generate();
        let wrapped = self.provider.wrap(&key, &WrapContext { organization: ctx.organization_id, data_key: id })?;
        let kek_id = wrapped.kek().to_string();
        diesel::insert_into(vault_data_keys::table)
            .values((
                vault_data_keys::id.eq(id),
                vault_data_keys::organization_id.eq(ctx.organization_id),
                vault_data_keys::purpose.eq(purpose),
                vault_data_keys::kek_id.eq(&kek_id),
                vault_data_keys::wrapped.eq(wrapped.to_bytes()),
            ))
            .execute(tx.conn())
            .await?;
        let after = json!({ "id": id, "purpose": purpose, "kek_id": kek_id });
        record_change(tx, ctx, "create", "data_key", id, Value::Null, after).await?;
        Ok((id, key))
    }

    /// The organisation's data key `id`, unwrapped.
    pub async fn data_key(&self, tx: &mut Tx, organization: Uuid, id: Uuid) -> Result<DataKey> {
        let wrapped: Vec<u8> = vault_data_keys::table
            .filter(vault_data_keys::organization_id.eq(organization))
            .filter(vault_data_keys::id.eq(id))
            .select(vault_data_keys::wrapped)
            .first(tx.conn())
            .await
            .optional()?
            .ok_or_else(|| Problem::internal(format!("vault: data key {id} is missing")))?;
        let wrapped = WrappedKey::from_bytes(&wrapped)?;
        Ok(self.provider.unwrap(&wrapped, &WrapContext { organization, data_key: id })?)
    }

    /// `plaintext` encrypted for `record`'s `field` with the organisation's data key `data_key`.
    pub async fn encrypt(
        &self,
        tx: &mut Tx,
        organization: Uuid,
        data_key: Uuid,
        record: &str,
        field: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        let key = self.data_key(tx, organization, data_key).await?;
        Ok(encrypt_field(&key, &FieldContext { organization, data_key, record, field }, plaintext))
    }

    /// What [`Vault::encrypt`] sealed, opened (zeroized when dropped).
    pub async fn decrypt(
        &self,
        tx: &mut Tx,
        organization: Uuid,
        data_key: Uuid,
        record: &str,
        field: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = self.data_key(tx, organization, data_key).await?;
        Ok(decrypt_field(&key, &FieldContext { organization, data_key, record, field }, sealed)?)
    }
}
