//! Retention: entries older than the retention period (2555 days, seven years, by default) are
//! removed without breaking verification of what remains. Before deleting, the chain hash and the
//! compact range at the boundary are kept in `audit_heads` and a checkpoint of exactly the
//! boundary is signed; verification and proofs of later entries start from there. Stored subtree
//! hashes and all checkpoints are kept. The pruning itself is recorded in the audit trail, and
//! verification requires that record: a boundary the last `prune` entry does not account for
//! fails. `custos_audit_prune` refuses to remove entries not yet indexed, or indexed as recorded
//! after the cutoff: a guard against a faulty caller, not against a compromised service role
//! (which updates the head as the sequencer and could feed it false inputs).

use custos_core::{RequestCtx, timefmt};
use custos_db::schema::{audit_heads, audit_index, audit_log};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::proofs::NodeReader;
use crate::rows::{RUN_WIDTH, log_rows_at};
use crate::sequencer::{AuditChain, ChainError};
use crate::{Change, record};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    pub removed: u64,
    /// Entries below this sequence number are gone.
    pub pruned_before: u64,
}

#[derive(diesel::QueryableByName)]
struct Removed {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl AuditChain {
    /// Prunes the longest prefix of the log recorded before `cutoff`, in steps of at most
    /// [`SequencerConfig::prune_step`](crate::SequencerConfig) entries, each its own transaction
    /// with its own `prune` entry. Interrupted, it has removed a shorter prefix, as recorded; run
    /// again, it carries on.
    pub async fn prune_before(&self, org: Uuid, cutoff: OffsetDateTime) -> Result<PruneOutcome, ChainError> {
        self.sync(org).await?;
        let mut total = PruneOutcome::default();
        loop {
            let step = self.prune_step(org, cutoff).await?;
            total.removed += step.removed;
            total.pruned_before = step.pruned_before;
            if step.removed == 0 {
                return Ok(total);
            }
        }
    }

    /// One step of [`AuditChain::prune_before`].
    async fn prune_step(&self, org: Uuid, cutoff: OffsetDateTime) -> Result<PruneOutcome, ChainError> {
        let mut tx = self.db.begin(org).await?;
        let Some(heads) = Self::lock_heads(&mut tx, org, true).await? else { return Ok(PruneOutcome::default()) };
        let old_boundary = heads.pruned_before;
        // Only indexed entries are pruned: the sequencer may have added entries since the sync
        // above, and until they are indexed neither their recording times nor their contents'
        // place is settled. (The database refuses anything beyond, too: `custos_audit_prune`.)
        // Looked for in this step's range only, in sequence order: a few thousand index rows
        // read, however much of the log is young.
        let step_end = old_boundary.saturating_add(self.config.prune_step.max(RUN_WIDTH as usize) as i64);
        let first_young: Option<i64> = audit_index::table
            .filter(audit_index::organization_id.eq(org))
            .filter(audit_index::seq.ge(old_boundary))
            .filter(audit_index::seq.le(step_end))
            .filter(audit_index::recorded_at.ge(cutoff))
            .order(audit_index::seq.asc())
            .select(audit_index::seq)
            .first(tx.conn())
            .await
            .optional()?;
        // The log is removed by whole runs: the boundary moves back to the start of the run that
        // holds the first young entry (keeping its older neighbours a little longer), or that
        // holds the end of this step. Runs never cross a multiple of 256, so a step of at least
        // that many entries always ends past a run's start.
        let boundary = match first_young {
            None if heads.indexed_size <= step_end => heads.indexed_size,
            young => {
                let end = young.map_or(step_end, |young| young.min(step_end));
                audit_log::table
                    .filter(audit_log::organization_id.eq(org))
                    .filter(audit_log::first_seq.le(end))
                    .select(diesel::dsl::max(audit_log::first_seq))
                    .first::<Option<i64>>(tx.conn())
                    .await?
                    .unwrap_or(end)
            }
        };
        if boundary <= old_boundary {
            return Ok(PruneOutcome { removed: 0, pruned_before: old_boundary as u64 });
        }
        let chain = log_rows_at(&mut tx, org, &[boundary - 1])
            .await?
            .remove(&(boundary - 1))
            .ok_or_else(|| ChainError::Corrupt(org, format!("entry {} is missing from the log", boundary - 1)))?
            .chain_hash
            .to_vec();
        let frontier = {
            let mut reader =
                NodeReader { tx: &mut tx, org, pruned_before: old_boundary as u64, boundary: heads.prune_frontier()? };
            reader.frontier(boundary as u64).await.map_err(|e| ChainError::Corrupt(org, e.to_string()))?
        };
        self.store_checkpoint(&mut tx, org, &frontier, timefmt::now()).await?;
        diesel::update(audit_heads::table.filter(audit_heads::organization_id.eq(org)))
            .set((
                audit_heads::pruned_before.eq(boundary),
                audit_heads::prune_chain_hash.eq(chain),
                audit_heads::prune_frontier.eq(frontier.to_bytes()),
            ))
            .execute(tx.conn())
            .await?;
        let removed: Removed = diesel::sql_query("SELECT custos_audit_prune($1, $2, $3) AS n")
            .bind::<SqlUuid, _>(org)
            .bind::<BigInt, _>(boundary)
            .bind::<Timestamptz, _>(cutoff)
            .get_result(tx.conn())
            .await?;
        let ctx = RequestCtx::system(org, "audit-retention");
        record(
            &mut tx,
            &ctx,
            Change {
                action: "prune",
                resource_type: "audit_log",
                resource_id: org.to_string(),
                before: json!({ "pruned_before": old_boundary }),
                after: json!({ "pruned_before": boundary, "removed": removed.n, "cutoff": timefmt::timestamp(cutoff) }),
            },
        )
        .await?;
        tx.commit().await?;
        // The pruning's own entry is what accounts for the new boundary: into the log and the
        // index now, not when the sequencer next passes (verification meanwhile only notes it).
        if let Err(e) = self.sync(org).await {
            tracing::warn!(%org, error = %e, "the pruning's audit entry is left for the sequencer");
        }
        Ok(PruneOutcome { removed: removed.n as u64, pruned_before: boundary as u64 })
    }

    /// Prunes what is older than `days` days.
    pub async fn prune(&self, org: Uuid, days: u32) -> Result<PruneOutcome, ChainError> {
        self.prune_before(org, timefmt::days_ago(days)).await
    }
}
