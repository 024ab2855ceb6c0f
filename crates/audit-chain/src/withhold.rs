//! Withholding fields of a sequenced entry: their values and salts are removed, their commitments
//! kept, so the leaf hash — and every checkpoint and proof over it — is unchanged. This is how
//! personal data leaves an immutable log (GDPR erasure) without breaking it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::hold::ensure_not_held;
use custos_core::{Held, HoldCheck, Problem, RequestCtx};
use custos_db::PgConn;
use custos_db::schema::audit_log;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value, json};

use crate::encoding::{Field, leaf_hash};
use crate::rows::{LogRow, hex};
use crate::sequencer::{AuditChain, ChainError};
use crate::{Change, record};

/// Fields that stay readable: they index the log and say what happened, not to whom.
pub const STRUCTURAL: [&str; 3] = ["recorded_at", "action", "resource_type"];
pub const PLACEHOLDER: &str = "[withheld]";

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
    ) -> Result<LogRow, WithholdError> {
        let org = ctx.organization_id;
        if names.is_empty() {
            return Err(Problem::invalid_field("fields", "name at least one field to withhold").into());
        }
        if reason.trim().is_empty() {
            return Err(Problem::invalid_field("reason", "say why the fields are withheld").into());
        }
        let mut tx = self.db.begin(org).await?;
        let row: LogRow = audit_log::table
            .filter(audit_log::organization_id.eq(org))
            .filter(audit_log::seq.eq(seq))
            .select(LogRow::as_select())
            .first(tx.conn())
            .await
            .optional()?
            .ok_or_else(|| Problem::not_found("Audit entry", seq))?;
        let held = match (row.resource_type.as_str(), row.resource_id.parse()) {
            ("incident", Ok(id)) => Some(Held::Incident(id)),
            ("evidence", Ok(id)) => Some(Held::Evidence(id)),
            _ => None,
        };
        if let Some(target) = held {
            ensure_not_held(holds, tx.conn(), org, &target, "withhold audit fields about").await?;
        }
        let mut fields = row.fields().map_err(|e| ChainError::Corrupt(org, e))?;
        let available: Vec<String> = fields.keys().filter(|n| !STRUCTURAL.contains(&n.as_str())).cloned().collect();
        for name in names {
            if STRUCTURAL.contains(&name.as_str()) {
                return Err(Problem::invalid_field("fields", format!("{name} cannot be withheld")).into());
            }
            match fields.get(name) {
                Some(Field::Revealed { .. }) => {}
                Some(Field::Withheld { .. }) => {}
                None => {
                    return Err(Problem::invalid_field(
                        "fields",
                        format!("entry {seq} has no field {name:?}; it has: {}", available.join(", ")),
                    )
                    .into());
                }
            }
        }
        for name in names {
            let commitment = fields[name].commitment(name);
            fields.insert(name.clone(), Field::Withheld { commitment });
        }
        if leaf_hash(&org, seq as u64, &fields).as_slice() != row.leaf_hash.as_slice() {
            return Err(ChainError::Corrupt(
                org,
                format!("entry {seq} does not match its leaf hash; verify the chain first"),
            )
            .into());
        }

        let hidden = |n: &str| matches!(fields.get(n), Some(Field::Withheld { .. }));
        let mut changes = row.changes.clone();
        for side in ["before", "after"] {
            if hidden(side) {
                changes[side] = Value::Null;
            }
            if let Some(Value::Object(map)) = changes.get_mut(side) {
                map.retain(|k, _| !hidden(&format!("{side}.{k}")));
            }
        }
        let mut salts = Map::new();
        let mut withheld = Map::new();
        for (name, field) in &fields {
            match field {
                Field::Revealed { salt, .. } => {
                    salts.insert(name.clone(), Value::String(B64.encode(salt)));
                }
                Field::Withheld { commitment } => {
                    withheld.insert(name.clone(), Value::String(hex(commitment)));
                }
            }
        }
        let text = |name: &str, value: &str| if hidden(name) { PLACEHOLDER.to_owned() } else { value.to_owned() };
        let optional = |name: &str, value: &Option<String>| if hidden(name) { None } else { value.clone() };
        diesel::sql_query("SELECT custos_audit_withhold($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind::<SqlUuid, _>(org)
            .bind::<BigInt, _>(seq)
            .bind::<Text, _>(text("actor", &row.actor))
            .bind::<Jsonb, _>(if hidden("actor_detail") { json!({}) } else { row.actor_detail.clone() })
            .bind::<Text, _>(text("resource_id", &row.resource_id))
            .bind::<Jsonb, _>(changes)
            .bind::<Nullable<Text>, _>(optional("request_id", &row.request_id))
            .bind::<Nullable<Text>, _>(optional("client_addr", &row.client_addr))
            .bind::<Jsonb, _>(Value::Object(salts))
            .bind::<Jsonb, _>(Value::Object(withheld))
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
        let updated: LogRow = audit_log::table
            .filter(audit_log::organization_id.eq(org))
            .filter(audit_log::seq.eq(seq))
            .select(LogRow::as_select())
            .first(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(updated)
    }
}
