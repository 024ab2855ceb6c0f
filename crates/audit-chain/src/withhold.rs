//! Withholding fields of a sequenced entry: their values and salts are removed, their commitments
//! kept, so the leaf hash — and every checkpoint and proof over it — is unchanged. This is how
//! personal data leaves an immutable log (GDPR erasure) without breaking it.

use std::collections::BTreeMap;

use custos_core::hold::ensure_not_held;
use custos_core::{Held, HoldCheck, Problem, RequestCtx};
use custos_db::PgConn;
use diesel::sql_types::{BigInt, Bytea, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::encoding::{self, Scratch, StoredEntry, leaf_hash};
use crate::rows::{PLACEHOLDER, Sequenced};
use crate::sequencer::{AuditChain, ChainError};
use crate::{Change, record};

/// Fields that stay readable: they index the log and say what happened, not to whom.
pub const STRUCTURAL: [&str; 3] = ["recorded_at", "action", "resource_type"];

#[derive(Debug, thiserror::Error)]
pub enum WithholdError {
    #[error(transparent)]
    Rejected(#[from] Problem),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl From<diesel::result::Error> for WithholdError {
    fn from(e: diesel::result::Error) -> Self {
        WithholdError::Chain(e.into())
    }
}

impl From<custos_db::DbError> for WithholdError {
    fn from(e: custos_db::DbError) -> Self {
        WithholdError::Chain(e.into())
    }
}

impl AuditChain {
    /// Withholds `names` of entry `seq`; returns the entry as it now reads. Refused while a legal
    /// hold covers the entry's resource: erasure must not destroy the record of held data.
    pub async fn withhold(
        &self,
        ctx: &RequestCtx,
        seq: i64,
        names: &[String],
        reason: &str,
        holds: &dyn HoldCheck<PgConn>,
    ) -> Result<Sequenced, WithholdError> {
        let org = ctx.organization_id;
        if names.is_empty() {
            return Err(Problem::invalid_field("fields", "name at least one field to withhold").into());
        }
        if reason.trim().is_empty() {
            return Err(Problem::invalid_field("reason", "say why the fields are withheld").into());
        }
        let mut tx = self.db.begin(org).await?;
        // Each withholding rewrites the whole stored entry from what it read: two at once would
        // each put back what the other withheld. Serialised per entry, each reads the other's.
        tx.lock_named(&format!("custos audit withhold {org} {seq}")).await?;
        let (log, index, entry) =
            self.entry(&mut tx, org, seq).await?.ok_or_else(|| Problem::not_found("Audit entry", seq))?;
        let held = match (index.resource_type.as_str(), index.resource_id.parse()) {
            ("incident", Ok(id)) => Some(Held::Incident(id)),
            ("evidence", Ok(id)) => Some(Held::Evidence(id)),
            _ => None,
        };
        if let Some(target) = held {
            ensure_not_held(holds, tx.conn(), org, &target, "withhold audit fields about").await?;
        }
        let stored = entry.stored();
        let present: Vec<String> =
            stored.fields().filter_map(Result::ok).map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect();
        for name in names {
            if STRUCTURAL.contains(&name.as_str()) {
                return Err(Problem::invalid_field("fields", format!("{name} cannot be withheld")).into());
            }
            if !present.contains(name) {
                let available: Vec<&str> =
                    present.iter().map(String::as_str).filter(|n| !STRUCTURAL.contains(n)).collect();
                return Err(Problem::invalid_field(
                    "fields",
                    format!("entry {seq} has no field {name:?}; it has: {}", available.join(", ")),
                )
                .into());
            }
        }
        // Only an entry that verifies may be rewritten: withholding must never launder a forgery.
        let corrupt = |problem: String| ChainError::Corrupt(org, format!("{problem}; verify the chain first"));
        let digest = entry
            .digest(Some(&index.columns()), &mut Scratch::default())
            .map_err(|e| corrupt(e.problem(seq as u64)))?;
        if leaf_hash(&org, seq as u64, &digest).as_slice() != log.leaf_hash.as_slice() {
            return Err(corrupt(format!("entry {seq} does not match its leaf hash")).into());
        }
        let (fields, salts) =
            encoding::withhold(&stored, &names.iter().map(String::as_str).collect::<Vec<_>>()).map_err(&corrupt)?;
        let rewritten = StoredEntry { fields: fields.as_bytes(), salts: &salts };
        if rewritten.digest(&mut Scratch::default()).ok() != Some(digest) {
            return Err(corrupt(format!("withholding would change entry {seq}'s digest")).into());
        }
        let hidden = |n: &str| matches!(rewritten.get(n), Some(None));
        let column = |name: &str, value: &str| if hidden(name) { PLACEHOLDER.to_owned() } else { value.to_owned() };
        diesel::sql_query("SELECT custos_audit_withhold($1, $2, $3, $4, $5, $6)")
            .bind::<SqlUuid, _>(org)
            .bind::<BigInt, _>(seq)
            .bind::<Text, _>(column("actor", &index.actor))
            .bind::<Text, _>(column("resource_id", &index.resource_id))
            .bind::<Text, _>(&fields)
            .bind::<Bytea, _>(&salts)
            .execute(tx.conn())
            .await?;
        let listed: BTreeMap<&str, ()> = names.iter().map(|n| (n.as_str(), ())).collect();
        record(
            &mut tx,
            ctx,
            Change {
                action: "withhold",
                resource_type: "audit_entry",
                resource_id: seq.to_string(),
                before: Value::Null,
                after: json!({ "seq": seq, "fields": listed.keys().collect::<Vec<_>>(), "reason": reason }),
            },
        )
        .await?;
        let updated = self.entry(&mut tx, org, seq).await?.ok_or_else(|| Problem::not_found("Audit entry", seq))?;
        tx.commit().await?;
        Ok(updated)
    }
}
