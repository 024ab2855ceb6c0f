//! Master-key rotation: with the new master key configured (`CUSTOS_MASTER_KEY`) and the old one
//! beside it (`CUSTOS_MASTER_KEY_PREVIOUS`), the `vault.rewrap` job re-wraps every data key under
//! the new one — organisation by organisation, in batches, each batch one transaction recorded in
//! the organisation's audit trail — and never touches a ciphertext (they name their data key by
//! id). Resumable by construction: a batch takes the keys not yet under the current master key,
//! so a resumed job starts where the last committed batch ended and never re-wraps a key twice.
//! When no data key is wrapped by an old master key any more, that key is recorded as retired
//! (`vault_master_keys`) and can be removed from the configuration.

use std::collections::BTreeMap;

use custos_audit_chain::record_change;
use custos_db::schema::{organizations, vault_data_keys, vault_master_keys};
use custos_db::{Db, DbError};
use custos_jobs::{Job, JobError, Kind, Scope};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::Vault;
use crate::{WrapContext, WrappedKey, rewrap};

/// The kind of the re-wrapping job.
pub const REWRAP_JOB: &str = "vault.rewrap";
/// Data keys per transaction.
const BATCH: i64 = 500;

/// How many data keys one master key wraps.
#[derive(QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The master key's fingerprint.
    #[diesel(sql_type = Text)]
    pub kek_id: String,
    /// Data keys wrapped by it, across organisations.
    #[diesel(sql_type = BigInt)]
    pub data_keys: i64,
}

/// How many data keys each master key wraps, across organisations.
pub async fn key_usage(db: &Db) -> Result<Vec<KeyUsage>, DbError> {
    let mut tx = db.begin_system().await?;
    let usage = diesel::sql_query("SELECT kek_id, data_keys FROM custos_vault_key_usage() ORDER BY kek_id")
        .load::<KeyUsage>(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(usage)
}

/// Records that `current` is in use (at start, and by every rewrap), and retires every known
/// master key other than it that no data key uses any more. Returns the newly retired ones.
pub async fn record_master_keys(db: &Db, current: &str) -> Result<Vec<String>, DbError> {
    let usage: BTreeMap<String, i64> = key_usage(db).await?.into_iter().map(|u| (u.kek_id, u.data_keys)).collect();
    let mut tx = db.begin_system().await?;
    let mut seen: Vec<String> = usage.keys().cloned().collect();
    seen.push(current.to_owned());
    for kek in &seen {
        diesel::insert_into(vault_master_keys::table)
            .values(vault_master_keys::kek_id.eq(kek))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
    }
    let unused: Vec<String> = vault_master_keys::table
        .filter(vault_master_keys::retired_at.is_null())
        .filter(vault_master_keys::kek_id.ne(current))
        .select(vault_master_keys::kek_id)
        .load::<String>(tx.conn())
        .await?
        .into_iter()
        .filter(|k| usage.get(k).copied().unwrap_or(0) == 0)
        .collect();
    diesel::update(vault_master_keys::table.filter(vault_master_keys::kek_id.eq_any(&unused)))
        .set(vault_master_keys::retired_at.eq(custos_core::timefmt::now()))
        .execute(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(unused)
}

/// The master keys recorded as retired, with when (RFC 3339).
pub async fn retired(db: &Db) -> Result<Vec<(String, String)>, DbError> {
    let mut tx = db.begin_system().await?;
    let rows: Vec<(String, Option<time::OffsetDateTime>)> = vault_master_keys::table
        .filter(vault_master_keys::retired_at.is_not_null())
        .order(vault_master_keys::retired_at)
        .select((vault_master_keys::kek_id, vault_master_keys::retired_at))
        .load(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(rows.into_iter().filter_map(|(k, at)| Some((k, custos_core::timefmt::timestamp(at?)))).collect())
}

/// Re-wraps up to `limit` of `ctx`'s organisation's data keys not yet under the current master
/// key, in one transaction recorded in its audit trail as `ctx`; the number re-wrapped (0: none
/// left). The job's step; a crash between two leaves the first committed, and the next call
/// takes the keys the first did not.
pub async fn rewrap_batch(vault: &Vault, ctx: &custos_core::RequestCtx, limit: i64) -> Result<usize, JobError> {
    let org = ctx.organization_id;
    let current_id = vault.provider().current().to_string();
    let mut tx = vault.db().begin(org).await?;
    let batch: Vec<(Uuid, String, Vec<u8>)> = vault_data_keys::table
        .filter(vault_data_keys::organization_id.eq(org))
        .filter(vault_data_keys::kek_id.ne(&current_id))
        .order(vault_data_keys::id)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select((vault_data_keys::id, vault_data_keys::kek_id, vault_data_keys::wrapped))
        .load(tx.conn())
        .await
        .map_err(DbError::from)?;
    if batch.is_empty() {
        return Ok(0);
    }
    let mut from: BTreeMap<String, i64> = BTreeMap::new();
    for (id, kek, bytes) in &batch {
        let context = WrapContext { organization: org, data_key: *id };
        let wrapped = WrappedKey::from_bytes(bytes).map_err(|e| JobError::fatal(format!("data key {id}: {e}")))?;
        // A key whose master key is not configured cannot be re-wrapped: retrying will not help
        // until the operator adds it to CUSTOS_MASTER_KEY_PREVIOUS.
        let new = rewrap(vault.provider().as_ref(), &wrapped, &context)
            .map_err(|e| JobError::fatal(format!("data key {id} (master key {kek}): {e}")))?;
        let new = match new {
            Some(new) => new,
            None => wrapped,
        };
        diesel::update(vault_data_keys::table.filter(vault_data_keys::id.eq(id)))
            .set((
                vault_data_keys::kek_id.eq(&current_id),
                vault_data_keys::wrapped.eq(new.to_bytes()),
                vault_data_keys::rewrapped_at.eq(custos_core::timefmt::now()),
            ))
            .execute(tx.conn())
            .await
            .map_err(DbError::from)?;
        *from.entry(kek.clone()).or_default() += 1;
    }
    let (first, last) = (batch[0].0, batch[batch.len() - 1].0);
    record_change(
        &mut tx,
        ctx,
        "rewrap",
        "data_keys",
        first,
        json!({ "kek_ids": from }),
        json!({ "kek_id": current_id, "data_keys": batch.len(), "first": first, "last": last }),
    )
    .await?;
    tx.commit().await?;
    Ok(batch.len())
}

/// The `vault.rewrap` job's kind.
pub fn rewrap_job(vault: Vault) -> Kind {
    Kind::new(
        REWRAP_JOB,
        Scope::System,
        "Re-wraps every data key under the current master key; retires master keys nothing uses",
        move |job: Job| {
            let vault = vault.clone();
            async move { run(&vault, &job).await }
        },
    )
    .attempts(10)
}

async fn run(vault: &Vault, job: &Job) -> Result<Value, JobError> {
    let current = vault.provider().current();
    let current_id = current.to_string();
    // Every master key in use now is known before its keys move (so it can be retired after).
    record_master_keys(vault.db(), &current_id).await?;
    let usage = key_usage(vault.db()).await?;
    let total: i64 = usage.iter().filter(|u| u.kek_id != current_id).map(|u| u.data_keys).sum();
    let mut done = 0i64;
    let orgs: Vec<Uuid> = {
        let mut tx = vault.db().begin_system().await?;
        let ids = organizations::table.select(organizations::id).order(organizations::id).load(tx.conn()).await;
        tx.commit().await?;
        ids.map_err(DbError::from)?
    };
    for org in orgs {
        loop {
            job.check()?;
            let n = rewrap_batch(vault, &job.ctx(org), BATCH).await?;
            if n == 0 {
                break;
            }
            done += n as i64;
            job.count("rewrapped", n as i64);
            if total > 0 {
                job.set_progress(done as f64 / total as f64);
            }
        }
    }
    let retired = record_master_keys(vault.db(), &current_id).await?;
    job.set_progress(1.0);
    Ok(json!({ "current": current_id, "rewrapped": done, "retired": retired }))
}
