//! The tamper-evident audit trail, to the standard of certificate-transparency logs.
//!
//! * Writing — every state change calls [`record`] with the transaction that makes the change: the
//!   entry goes into `audit_entries` (encoded by [`encoding`]: `custos-audit/v3`, per-field salted
//!   commitments folded into a digest), with its digest and the writing transaction's id,
//!   committing or rolling back with the change. Writers share no row.
//! * [`sequencer`] — takes each organisation's newly committed entries in batches (by transaction
//!   snapshots, not a queue): sequence numbers, leaf hashes
//!   over the writers' digests, the hash chain, the Merkle
//!   tree ([`merkle`]: RFC 6962 over BLAKE3, compact range in `audit_heads`, every 8th level stored
//!   in `audit_tree_nodes`) and signed checkpoints ([`note`]: C2SP signed notes, Ed25519, key from
//!   [`keys`]); behind it, indexing for listings moves each run's entries out of `audit_entries`
//!   into the run's row of `audit_contents`, where they are read by run.
//! * [`proofs`] — inclusion and consistency proofs from stored subtrees.
//! * [`verify`] — streaming verification of the whole log (or the last N days).
//! * [`runs`] — verification runs: progress saved as they go, resumed after an interruption.
//! * [`export`] — the export file and the offline verifier a regulator runs.
//! * [`withhold`] — removing personal data from old entries without breaking anything.
//! * [`prune`] — retention with a signed checkpoint at the boundary.
//! * [`service`] / [`grpc`] — the auditors' API.

pub mod encoding;
pub mod export;
pub mod grpc;
pub mod keys;
pub mod lanes;
pub mod merkle;
pub mod note;
pub mod proofs;
pub mod prune;
pub mod rows;
pub mod runs;
pub mod sequencer;
pub mod service;
pub mod verify;
pub mod verify_file;
pub mod withhold;
mod written_entry;

pub use sequencer::{AuditChain, ChainError, IntegrateOutcome, SequencerConfig};
pub use service::{AuditError, AuditService};
pub use verify::VerifyReport;

use custos_core::{RequestCtx, new_id, timefmt};
use custos_db::{DbError, Tx};
use diesel::sql_types::{Array, Bytea, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use encoding::EntryValues;
use serde_json::{Value, json};

/// One change, as its caller describes it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// `create`, `update`, `delete`, or a state transition such as `update_status`.
    pub action: &'a str,
    /// e.g. `framework`, `requirement`, `api_token`.
    pub resource_type: &'a str,
    pub resource_id: String,
    /// The resource before the change (`Value::Null` when it did not exist).
    pub before: Value,
    /// The resource after the change (`Value::Null` when it no longer exists).
    pub after: Value,
}

/// Records that `resource_type` `id` went from `before` to `after` (`Value::Null` for "did not
/// exist" / "no longer exists"), in the transaction that makes the change: the one call every
/// service makes after each change.
pub async fn record_change(
    tx: &mut Tx,
    ctx: &RequestCtx,
    action: &str,
    resource_type: &str,
    id: impl std::fmt::Display,
    before: Value,
    after: Value,
) -> Result<(), DbError> {
    record(tx, ctx, Change { action, resource_type, resource_id: id.to_string(), before, after }).await
}

/// What a periodic check announces about one resource (a passed deadline): the event for the
/// notification channels, and the audit entry that records the announcement.
pub struct Announcement<'a> {
    /// The event type (`incident.sla_breached`).
    pub event_type: &'a str,
    /// What makes it the same announcement on the next run (`incident:<id>:response:<due>`).
    pub key: String,
    /// The audit entry's action (`sla_breached`) and resource.
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: uuid::Uuid,
    pub payload: Value,
}

/// Announces `a` once per key, in `tx`: the event for the notification channels
/// (`custos_db::outbox::emit_once`) and, when it is new, its audit entry. Whether it was new —
/// periodic checks find the same passed deadline on every run, and only the first announces it.
pub async fn announce_once(tx: &mut Tx, ctx: &RequestCtx, a: Announcement<'_>) -> Result<bool, DbError> {
    let emitted =
        custos_db::outbox::emit_once(tx, ctx.organization_id, a.event_type, &a.key, a.payload.clone()).await?;
    if emitted.is_none() {
        return Ok(false);
    }
    record_change(tx, ctx, a.action, a.resource_type, a.resource_id, Value::Null, a.payload).await?;
    Ok(true)
}

/// The fields that differ between two forms of a resource as the audit trail keeps them (JSON
/// objects; anything else counts as empty), leaving out `ignored` ones (ids, times), each with its
/// value before and after as JSON text: what an impact report (a policy document's dry run) says
/// a change does.
pub fn changed_fields(before: &Value, after: &Value, ignored: &[&str]) -> Vec<custos_proto::v1::FieldChange> {
    let empty = serde_json::Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let keys = b.keys().chain(a.keys().filter(|k| !b.contains_key(*k)));
    keys.filter(|k| !ignored.contains(&k.as_str()))
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| custos_proto::v1::FieldChange {
            field: k.clone(),
            before: b.get(k).cloned().unwrap_or(Value::Null).to_string(),
            after: a.get(k).cloned().unwrap_or(Value::Null).to_string(),
        })
        .collect()
}

/// A resource as the audit trail keeps it: its serialised form.
pub fn snapshot<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// The time an entry is recorded at: now, to the microsecond, because the database keeps
/// microseconds and the committed timestamp must read back identically.
pub fn recording_time() -> time::OffsetDateTime {
    let now = timefmt::now();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000).unwrap_or(now)
}

/// Records `change` in the transaction that makes it: one row of `audit_entries` holding the
/// entry's committed fields, its digest and (by the column's default) the transaction's id, which
/// is what the sequencer takes it by once the transaction has committed.
pub async fn record(tx: &mut Tx, ctx: &RequestCtx, change: Change<'_>) -> Result<(), DbError> {
    let recorded_at = recording_time();
    let actor_detail = serde_json::to_value(&ctx.actor).unwrap_or(Value::Null);
    let values = EntryValues {
        recorded_at: timefmt::timestamp(recorded_at),
        actor: ctx.actor.label(),
        actor_detail: json!({ "actor": actor_detail, "role": ctx.role.as_str() }),
        action: change.action.to_owned(),
        resource_type: change.resource_type.to_owned(),
        resource_id: change.resource_id.clone(),
        request_id: ctx.request_id.clone(),
        client_addr: ctx.client_addr.map(|a| a.to_string()),
        before: change.before,
        after: change.after,
    };
    let encoded = values.encode(&rand::random());
    // Prepared once per connection: this statement is on every mutation's path.
    custos_db::prepared(
        diesel::sql_query(
            "INSERT INTO audit_entries (organization_id, event_id, fields, salts, digest) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<SqlUuid, _>(ctx.organization_id)
        .bind::<SqlUuid, _>(new_id())
        .bind::<Text, _>(&encoded.fields)
        .bind::<Bytea, _>(&encoded.salts)
        .bind::<Bytea, _>(&encoded.digest[..]),
    )
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Records many changes in the transaction that makes them, as [`record`] does one: one
/// statement per few thousand entries instead of a round trip each (a framework import
/// writes tens of thousands). Entries keep the order given.
pub async fn record_many(tx: &mut Tx, ctx: &RequestCtx, changes: Vec<Change<'_>>) -> Result<(), DbError> {
    const CHUNK: usize = 5_000;
    let recorded_at = timefmt::timestamp(recording_time());
    let actor_detail = json!({
        "actor": serde_json::to_value(&ctx.actor).unwrap_or(Value::Null),
        "role": ctx.role.as_str(),
    });
    let mut changes = changes.into_iter().peekable();
    while changes.peek().is_some() {
        let (mut ids, mut fields, mut salts, mut digests) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for change in changes.by_ref().take(CHUNK) {
            let values = EntryValues {
                recorded_at: recorded_at.clone(),
                actor: ctx.actor.label(),
                actor_detail: actor_detail.clone(),
                action: change.action.to_owned(),
                resource_type: change.resource_type.to_owned(),
                resource_id: change.resource_id,
                request_id: ctx.request_id.clone(),
                client_addr: ctx.client_addr.map(|a| a.to_string()),
                before: change.before,
                after: change.after,
            };
            let encoded = values.encode(&rand::random());
            ids.push(new_id());
            fields.push(encoded.fields);
            salts.push(encoded.salts);
            digests.push(encoded.digest.to_vec());
        }
        // WITH ORDINALITY keeps the given order in the rows' physical insertion order.
        diesel::sql_query(
            "INSERT INTO audit_entries (organization_id, event_id, fields, salts, digest) \
             SELECT $1, e.id, e.fields, e.salts, e.digest \
               FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) WITH ORDINALITY \
                    AS e(id, fields, salts, digest, n) ORDER BY e.n",
        )
        .bind::<SqlUuid, _>(ctx.organization_id)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Text>, _>(&fields)
        .bind::<Array<Bytea>, _>(&salts)
        .bind::<Array<Bytea>, _>(&digests)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}
