//! The tamper-evident audit trail, to the standard of certificate-transparency logs.
//!
//! * Writing — every state change calls [`record`] with the transaction that makes the change: the
//!   entry goes into `audit_queue` and commits or rolls back with it. Writers share no row.
//! * [`sequencer`] — drains each organisation's queue in batches: sequence numbers, leaf hashes
//!   ([`encoding`]: `custos-audit/v1`, per-field salted commitments), the hash chain, the Merkle
//!   tree ([`merkle`]: RFC 6962 over BLAKE3, compact range in `audit_heads`, every 8th level stored
//!   in `audit_tree_nodes`) and signed checkpoints ([`note`]: C2SP signed notes, Ed25519, key from
//!   [`keys`]).
//! * [`proofs`] — inclusion and consistency proofs from stored subtrees.
//! * [`verify`] — streaming verification of the whole log (or the last N days).
//! * [`export`] — the export file and the offline verifier a regulator runs.
//! * [`withhold`] — removing personal data from old entries without breaking anything.
//! * [`prune`] — retention with a signed checkpoint at the boundary.
//! * [`service`] / [`grpc`] — the auditors' API.

pub mod encoding;
pub mod export;
pub mod grpc;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod proofs;
pub mod prune;
pub mod rows;
pub mod sequencer;
pub mod service;
pub mod verify;
pub mod withhold;

pub use sequencer::{AuditChain, ChainError, IntegrateOutcome, SequencerConfig};
pub use service::{AuditError, AuditService};
pub use verify::VerifyReport;

use custos_core::{RequestCtx, new_id};
use custos_db::schema::audit_queue;
use custos_db::{DbError, Tx};
use diesel::ExpressionMethods;
use diesel_async::RunQueryDsl;
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

/// A resource as the audit trail keeps it: its serialised form.
pub fn snapshot<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Records `change` in the transaction that makes it.
pub async fn record(tx: &mut Tx, ctx: &RequestCtx, change: Change<'_>) -> Result<(), DbError> {
    let actor_detail = serde_json::to_value(&ctx.actor).unwrap_or(Value::Null);
    diesel::insert_into(audit_queue::table)
        .values((
            audit_queue::id.eq(new_id()),
            audit_queue::organization_id.eq(ctx.organization_id),
            audit_queue::actor.eq(ctx.actor.label()),
            audit_queue::actor_detail.eq(json!({ "actor": actor_detail, "role": ctx.role.as_str() })),
            audit_queue::action.eq(change.action),
            audit_queue::resource_type.eq(change.resource_type),
            audit_queue::resource_id.eq(change.resource_id),
            audit_queue::changes.eq(json!({ "before": change.before, "after": change.after })),
            audit_queue::request_id.eq(ctx.request_id.as_deref()),
            audit_queue::client_addr.eq(ctx.client_addr.map(|a| a.to_string())),
        ))
        .execute(tx.conn())
        .await?;
    Ok(())
}
