//! The chain of custody: append-only, hash-linked records per evidence item.
//!
//! `record_hash = BLAKE3-derive-key("custos custody record v1")` over, in order, each of these
//! fields as `u32be(len) ‖ bytes`: evidence id (text), sequence (decimal), action, actor, actor
//! role, notes, details (canonical JSON, as in the audit chain's encoding), recorded_at (RFC 3339
//! with microseconds, UTC), request id (empty when absent), previous record's hash (32 bytes;
//! zeros for the first). Editing, dropping or reordering any record breaks every later link.

use custos_audit_chain::encoding::canonical;
use custos_core::filter::Choice;
use custos_core::{RequestCtx, new_id, timefmt};
use custos_db::schema::custody_records;
use custos_db::{DbError, Tx};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use crate::model::{CustodyAction, CustodyRow, to_micros, ts};

pub const GENESIS: [u8; 32] = [0; 32];

/// The name custody records and collectors show for the caller: the e-mail address when known.
pub fn actor_name(ctx: &RequestCtx) -> String {
    ctx.actor.email().map(str::to_owned).unwrap_or_else(|| ctx.actor.label())
}

pub fn record_hash(row: &CustodyRow) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("custos custody record v1");
    let seq = row.seq.to_string();
    let details = canonical(&row.details);
    let recorded_at = ts(row.recorded_at);
    let evidence_id = row.evidence_id.to_string();
    let fields: [&[u8]; 10] = [
        evidence_id.as_bytes(),
        seq.as_bytes(),
        row.action.as_bytes(),
        row.actor.as_bytes(),
        row.actor_role.as_bytes(),
        row.notes.as_bytes(),
        details.as_bytes(),
        recorded_at.as_bytes(),
        row.request_id.as_deref().unwrap_or_default().as_bytes(),
        &row.previous_hash,
    ];
    for field in fields {
        hasher.update(&(field.len() as u32).to_be_bytes());
        hasher.update(field);
    }
    *hasher.finalize().as_bytes()
}

/// Appends a record to `evidence_id`'s chain. The caller holds the evidence row's lock
/// (`FOR UPDATE`), which makes the next sequence number race-free.
pub async fn append(
    tx: &mut Tx,
    ctx: &RequestCtx,
    evidence_id: Uuid,
    action: CustodyAction,
    notes: &str,
    details: Value,
) -> Result<CustodyRow, DbError> {
    use custos_core::filter::Choice;
    let last: Option<(i32, Vec<u8>)> = custody_records::table
        .filter(custody_records::organization_id.eq(ctx.organization_id))
        .filter(custody_records::evidence_id.eq(evidence_id))
        .order(custody_records::seq.desc())
        .select((custody_records::seq, custody_records::record_hash))
        .first(tx.conn())
        .await
        .optional()?;
    let (seq, previous_hash) = last.map_or((1, GENESIS.to_vec()), |(seq, hash)| (seq + 1, hash));
    let mut row = CustodyRow {
        evidence_id,
        seq,
        action: action.as_str().to_owned(),
        actor: actor_name(ctx),
        actor_role: ctx.role.as_str().to_owned(),
        notes: notes.to_owned(),
        details,
        recorded_at: to_micros(timefmt::now()),
        request_id: ctx.request_id.clone(),
        previous_hash,
        record_hash: Vec::new(),
    };
    row.record_hash = record_hash(&row).to_vec();
    custos_db::prepared(diesel::insert_into(custody_records::table).values((
        custody_records::id.eq(new_id()),
        custody_records::organization_id.eq(ctx.organization_id),
        custody_records::evidence_id.eq(row.evidence_id),
        custody_records::seq.eq(row.seq),
        custody_records::action.eq(&row.action),
        custody_records::actor.eq(&row.actor),
        custody_records::actor_role.eq(&row.actor_role),
        custody_records::notes.eq(&row.notes),
        custody_records::details.eq(&row.details),
        custody_records::recorded_at.eq(row.recorded_at),
        custody_records::request_id.eq(&row.request_id),
        custody_records::previous_hash.eq(&row.previous_hash),
        custody_records::record_hash.eq(&row.record_hash),
    )))
    .execute(tx.conn())
    .await?;
    Ok(row)
}

/// Checks every link of a chain (ordered by sequence); names the first broken record.
pub fn verify_chain(rows: &[CustodyRow]) -> Result<(), String> {
    let mut previous = GENESIS.to_vec();
    for (i, row) in rows.iter().enumerate() {
        let expected_seq = i as i32 + 1;
        if row.seq != expected_seq {
            return Err(format!("record {expected_seq} is missing (found {} in its place)", row.seq));
        }
        if row.previous_hash != previous {
            return Err(format!("record {} does not link to record {}", row.seq, row.seq - 1));
        }
        if record_hash(row).as_slice() != row.record_hash.as_slice() {
            return Err(format!("record {} does not match its hash", row.seq));
        }
        previous = row.record_hash.clone();
    }
    Ok(())
}

/// Checks that the chain opens with its COLLECTED record and that this record committed to the
/// digests the item's row now claims: the row's digest columns can be rewritten, the hash-linked
/// record cannot (unnoticed).
pub fn verify_collected(rows: &[CustodyRow], sha256: &str, blake3: &str, size: u64) -> Result<(), String> {
    let first = rows.first().ok_or("the custody chain is empty")?;
    if first.action != CustodyAction::Collected.as_str() {
        return Err(format!("record 1 is {}, not COLLECTED", first.action));
    }
    let d = &first.details;
    if (d["sha256"].as_str(), d["blake3"].as_str(), d["size"].as_u64()) != (Some(sha256), Some(blake3), Some(size)) {
        return Err("the item's file digests are not those its COLLECTED record committed to".into());
    }
    Ok(())
}

pub async fn load_chain(tx: &mut Tx, organization_id: Uuid, evidence_ids: &[Uuid]) -> Result<Vec<CustodyRow>, DbError> {
    Ok(custody_records::table
        .filter(custody_records::organization_id.eq(organization_id))
        .filter(custody_records::evidence_id.eq_any(evidence_ids))
        .order((custody_records::evidence_id.asc(), custody_records::seq.asc()))
        .select(CustodyRow::as_select())
        .load(tx.conn())
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn chain() -> Vec<CustodyRow> {
        let id = Uuid::nil();
        let mut rows = Vec::new();
        let mut previous = GENESIS.to_vec();
        for (seq, action) in [(1, "COLLECTED"), (2, "TRANSFERRED"), (3, "ACCESSED")] {
            let mut row = CustodyRow {
                evidence_id: id,
                seq,
                action: action.into(),
                actor: "a@example.com".into(),
                actor_role: "editor".into(),
                notes: String::new(),
                details: serde_json::json!({"b": 1, "a": [1, 2]}),
                recorded_at: datetime!(2026-01-01 00:00:00.123456 UTC),
                request_id: None,
                previous_hash: previous.clone(),
                record_hash: vec![],
            };
            row.record_hash = record_hash(&row).to_vec();
            previous = row.record_hash.clone();
            rows.push(row);
        }
        rows
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain()), Ok(()));
    }

    #[test]
    fn edits_gaps_and_swaps_are_named() {
        let mut edited = chain();
        edited[1].notes = "changed".into();
        assert_eq!(verify_chain(&edited), Err("record 2 does not match its hash".into()));

        let mut gap = chain();
        gap.remove(1);
        assert_eq!(verify_chain(&gap), Err("record 2 is missing (found 3 in its place)".into()));

        let mut swapped = chain();
        swapped.swap(1, 2);
        assert!(verify_chain(&swapped).is_err());
    }
}
