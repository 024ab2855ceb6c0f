//! The sequencer: drains each organisation's queue into its log, in batches, and signs checkpoints.
//!
//! One sequencer works on an organisation at a time — it holds that organisation's `audit_heads`
//! row (`FOR UPDATE SKIP LOCKED`), so any number of replicas can run it. Writers never touch that
//! row; they only insert into the queue (an entry's id and digest: the entry itself is never
//! copied). Within a batch, entries are ordered by the time they were
//! recorded; an entry whose transaction commits late is sequenced in a later batch, so sequence
//! order is integration order and `recorded_at` can step back slightly between batches. Once
//! sequenced, nothing moves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_core::timefmt;
use custos_db::schema::{audit_checkpoints, audit_heads};
use custos_db::{Db, DbError, Tx};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, SmallInt, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::encoding::{chain_hash, leaf_hash};
use crate::merkle::Frontier;
use crate::note::{Checkpoint, NoteSigner, NoteVerifier};
use crate::rows::{IndexValues, RUN_WIDTH, stored_range, to_hash};

/// Every 8th level of the tree is stored, so any subtree hash is at most 128 hashes away.
pub const STRATUM: u8 = 8;

/// First key of the indexer's advisory lock (the second is the organisation's).
const INDEXER_LOCK: i32 = 0x6175_6478; // "audx"

/// What an index column reads for an entry whose fields cannot be read.
const UNREADABLE: &str = "[unreadable]";

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("audit state of organisation {0} is corrupt: {1}")]
    Corrupt(Uuid, String),
}

impl From<diesel::result::Error> for ChainError {
    fn from(e: diesel::result::Error) -> Self {
        ChainError::Db(e.into())
    }
}

/// Tuning of the sequencer.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    pub batch_size: usize,
    /// Minimum time between two checkpoints of one organisation.
    pub checkpoint_interval: Duration,
    /// How long the sequencer sleeps when there is nothing to do.
    pub idle_poll: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            batch_size: 5000,
            checkpoint_interval: Duration::from_millis(500),
            idle_poll: Duration::from_millis(100),
        }
    }
}

/// The audit chain of every organisation: sequencing, checkpoints, and the keys they use.
#[derive(Clone)]
pub struct AuditChain {
    pub(crate) db: Db,
    pub(crate) signer: Arc<NoteSigner>,
    pub(crate) trusted: Arc<Vec<NoteVerifier>>,
    pub(crate) config: SequencerConfig,
    scans: Arc<Mutex<HashMap<Uuid, QueueScan>>>,
}

/// Where this process last took an organisation's queue from.
///
/// Taken rows leave dead index entries at the front of the queue's order until VACUUM removes
/// them, and a scan from the very start walks all of them: draining a long queue would cost
/// quadratic time. So a batch is looked for from shortly before the newest time taken last
/// ([`STRAGGLER_WINDOW`]), and only every [`FULL_SCAN_EVERY`] from the start — which is what finds
/// an entry whose transaction committed long after it was recorded. While a backlog drains (the
/// last batch was full) that scan waits up to [`FULL_SCAN_WHILE_BEHIND`], since each one walks
/// every dead entry the drain has left so far. Either way, what the `DELETE … RETURNING` takes is
/// exactly what is sequenced: the hint changes speed, never content.
#[derive(Debug, Clone, Copy)]
struct QueueScan {
    newest_taken: OffsetDateTime,
    last_full: std::time::Instant,
    behind: bool,
}

const STRAGGLER_WINDOW: Duration = Duration::from_secs(1);
const FULL_SCAN_EVERY: Duration = Duration::from_secs(2);
const FULL_SCAN_WHILE_BEHIND: Duration = Duration::from_secs(30);

impl QueueScan {
    fn full_scan_due(&self) -> bool {
        let since = self.last_full.elapsed();
        since >= if self.behind { FULL_SCAN_WHILE_BEHIND } else { FULL_SCAN_EVERY }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrateOutcome {
    pub sequenced: usize,
    pub tree_size: u64,
    pub checkpoint: Option<u64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_heads)]
pub(crate) struct Heads {
    pub organization_id: Uuid,
    pub tree_size: i64,
    pub chain_hash: Vec<u8>,
    pub frontier: Vec<u8>,
    pub checkpoint_size: i64,
    pub checkpoint_at: Option<OffsetDateTime>,
    pub pruned_before: i64,
    pub prune_chain_hash: Option<Vec<u8>>,
    pub prune_frontier: Option<Vec<u8>>,
    pub indexed_size: i64,
}

impl Heads {
    pub(crate) fn frontier(&self) -> Result<Frontier, ChainError> {
        Frontier::from_bytes(self.tree_size as u64, &self.frontier)
            .ok_or_else(|| ChainError::Corrupt(self.organization_id, "frontier does not match tree size".into()))
    }

    pub(crate) fn prune_frontier(&self) -> Result<Frontier, ChainError> {
        Frontier::from_bytes(self.pruned_before as u64, self.prune_frontier.as_deref().unwrap_or_default())
            .ok_or_else(|| ChainError::Corrupt(self.organization_id, "prune frontier does not match boundary".into()))
    }
}

/// A queued entry, as the sequencer takes it.
#[derive(diesel::QueryableByName)]
struct Queued {
    #[diesel(sql_type = SqlUuid)]
    event_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    recorded_at: OffsetDateTime,
    #[diesel(sql_type = Bytea)]
    digest: Vec<u8>,
}

#[derive(diesel::QueryableByName)]
struct OrgId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl AuditChain {
    pub fn new(db: Db, signer: NoteSigner, trusted: Vec<NoteVerifier>, config: SequencerConfig) -> Self {
        AuditChain { db, signer: Arc::new(signer), trusted: Arc::new(trusted), config, scans: Default::default() }
    }

    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    pub fn trusted(&self) -> &[NoteVerifier] {
        &self.trusted
    }

    /// The origin line of an organisation's checkpoints.
    pub fn origin(&self, organization_id: Uuid) -> String {
        format!("{}/{organization_id}", self.signer.name)
    }

    /// Organisations with queued entries or entries not yet covered by a checkpoint.
    pub async fn pending(&self) -> Result<Vec<Uuid>, ChainError> {
        let mut tx = self.db.begin_untenanted().await?;
        let rows: Vec<OrgId> = diesel::sql_query("SELECT id FROM custos_audit_pending() AS id").load(tx.conn()).await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Locks an organisation's head row, creating it on first use; `None` if another sequencer
    /// holds it.
    pub(crate) async fn lock_heads(tx: &mut Tx, org: Uuid, wait: bool) -> Result<Option<Heads>, ChainError> {
        diesel::insert_into(audit_heads::table)
            .values(audit_heads::organization_id.eq(org))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
        let q = audit_heads::table.filter(audit_heads::organization_id.eq(org)).select(Heads::as_select());
        let heads = if wait {
            q.for_update().first(tx.conn()).await.optional()?
        } else {
            q.for_update().skip_locked().first(tx.conn()).await.optional()?
        };
        Ok(heads)
    }

    /// Sequences one batch of an organisation's queue and signs a checkpoint when one is due
    /// (always, with `force_checkpoint`, if the tree grew since the last one).
    pub async fn integrate(&self, org: Uuid, force_checkpoint: bool) -> Result<IntegrateOutcome, ChainError> {
        self.integrate_scanning(org, force_checkpoint, false).await
    }

    /// [`Self::integrate`], looking at the whole queue when `full_scan` (see [`QueueScan`]).
    async fn integrate_scanning(
        &self,
        org: Uuid,
        force_checkpoint: bool,
        full_scan: bool,
    ) -> Result<IntegrateOutcome, ChainError> {
        let mut tx = self.db.begin(org).await?;
        let Some(heads) = Self::lock_heads(&mut tx, org, force_checkpoint).await? else {
            return Ok(IntegrateOutcome::default());
        };
        let mut frontier = heads.frontier()?;
        let mut chain = to_hash(&heads.chain_hash).ok_or_else(|| ChainError::Corrupt(org, "chain hash".into()))?;
        // Taking a batch removes it from the queue in the same statement; the transaction either
        // sequences all of it or none.
        let scan = self.scans.lock().map(|scans| scans.get(&org).copied()).unwrap_or(None);
        let from = match scan {
            Some(scan) if !full_scan && !scan.full_scan_due() => Some(scan.newest_taken - STRAGGLER_WINDOW),
            _ => None,
        };
        // The queue churns faster than its statistics follow: with stale ones PostgreSQL may sort
        // the whole queue for every batch (150 ms for 300,000 queued entries, against 5 ms when it
        // walks the index). The only plan left is the index walk; what else this transaction does
        // is key lookups and inserts, which these settings do not touch.
        diesel::sql_query(
            "SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),
                    set_config('enable_seqscan', 'off', true)",
        )
        .execute(tx.conn())
        .await?;
        let mut queued: Vec<Queued> = diesel::sql_query(
            "DELETE FROM audit_queue WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM audit_queue WHERE organization_id = $1 AND ($3::timestamptz IS NULL OR recorded_at >= $3)
                ORDER BY recorded_at, event_id LIMIT $2))
             RETURNING event_id, recorded_at, digest",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<BigInt, _>(self.config.batch_size as i64)
        .bind::<Nullable<Timestamptz>, _>(from)
        .load(tx.conn())
        .await?;
        queued.sort_unstable_by_key(|q| (q.recorded_at, q.event_id));
        let newest = queued.last().map(|q| q.recorded_at);

        let n = queued.len();
        if n > 0 {
            // Runs of the log: a new one at the batch's start and at every multiple of RUN_WIDTH.
            let (mut firsts, mut ids, mut leaves, mut chains) =
                (Vec::<i64>::new(), Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new());
            let (mut node_levels, mut node_idx, mut node_hashes) = (Vec::new(), Vec::new(), Vec::new());
            for (i, entry) in queued.iter().enumerate() {
                let seq = frontier.size;
                let digest = to_hash(&entry.digest).ok_or_else(|| {
                    ChainError::Corrupt(org, format!("queued entry {} has no digest", entry.event_id))
                })?;
                let leaf = leaf_hash(&org, seq, &digest);
                chain = chain_hash(&chain, &leaf);
                frontier.append_with(leaf, |id, hash| {
                    if id.level % STRATUM == 0 {
                        node_levels.push(i16::from(id.level));
                        node_idx.push(id.index as i64);
                        node_hashes.push(hash.to_vec());
                    }
                });
                if firsts.is_empty() || seq % RUN_WIDTH == 0 {
                    let width = (RUN_WIDTH - seq % RUN_WIDTH).min((n - i) as u64) as usize;
                    firsts.push(seq as i64);
                    ids.push(Vec::with_capacity(16 * width));
                    leaves.push(Vec::with_capacity(32 * width));
                    chains.push(Vec::with_capacity(32 * width));
                }
                let run = firsts.len() - 1;
                ids[run].extend_from_slice(entry.event_id.as_bytes());
                leaves[run].extend_from_slice(&leaf);
                chains[run].extend_from_slice(&chain);
            }
            diesel::sql_query(
                "INSERT INTO audit_log (organization_id, first_seq, event_ids, leaf_hashes, chain_hashes)
                 SELECT $1, v.* FROM unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::bytea[]) AS v",
            )
            .bind::<SqlUuid, _>(org)
            .bind::<Array<BigInt>, _>(&firsts)
            .bind::<Array<Bytea>, _>(&ids)
            .bind::<Array<Bytea>, _>(&leaves)
            .bind::<Array<Bytea>, _>(&chains)
            .execute(tx.conn())
            .await?;
            if !node_levels.is_empty() {
                diesel::sql_query(
                    "INSERT INTO audit_tree_nodes (organization_id, level, idx, hash)
                     SELECT $1, l, i, h FROM unnest($2::smallint[], $3::bigint[], $4::bytea[]) AS v(l, i, h)",
                )
                .bind::<SqlUuid, _>(org)
                .bind::<Array<SmallInt>, _>(&node_levels)
                .bind::<Array<BigInt>, _>(&node_idx)
                .bind::<Array<Bytea>, _>(&node_hashes)
                .execute(tx.conn())
                .await?;
            }
            diesel::update(audit_heads::table.filter(audit_heads::organization_id.eq(org)))
                .set((
                    audit_heads::tree_size.eq(frontier.size as i64),
                    audit_heads::chain_hash.eq(chain.to_vec()),
                    audit_heads::frontier.eq(frontier.to_bytes()),
                    audit_heads::updated_at.eq(timefmt::now()),
                ))
                .execute(tx.conn())
                .await?;
        }

        let now = timefmt::now();
        let due = heads.checkpoint_at.is_none_or(|at| now - at >= self.config.checkpoint_interval);
        let grew = frontier.size > heads.checkpoint_size as u64;
        let checkpoint = if grew && (due || force_checkpoint) {
            self.sign_checkpoint(&mut tx, org, &frontier, now).await?;
            Some(frontier.size)
        } else {
            None
        };
        tx.commit().await?;
        if let Ok(mut scans) = self.scans.lock() {
            let previous = scans.get(&org).copied();
            let last_full = match (from, previous) {
                (Some(_), Some(p)) => p.last_full,
                _ => std::time::Instant::now(),
            };
            let newest_taken = newest.into_iter().chain(previous.map(|p| p.newest_taken)).max();
            if let Some(newest_taken) = newest_taken {
                scans.insert(org, QueueScan { newest_taken, last_full, behind: n == self.config.batch_size });
            }
        }
        Ok(IntegrateOutcome { sequenced: n, tree_size: frontier.size, checkpoint })
    }

    /// Signs and stores a checkpoint of the tree as `frontier` describes it, as the latest one.
    pub(crate) async fn sign_checkpoint(
        &self,
        tx: &mut Tx,
        org: Uuid,
        frontier: &Frontier,
        now: OffsetDateTime,
    ) -> Result<String, ChainError> {
        let note = self.store_checkpoint(tx, org, frontier, now).await?;
        diesel::update(audit_heads::table.filter(audit_heads::organization_id.eq(org)))
            .set((audit_heads::checkpoint_size.eq(frontier.size as i64), audit_heads::checkpoint_at.eq(now)))
            .execute(tx.conn())
            .await?;
        Ok(note)
    }

    /// Signs and stores a checkpoint of the tree as `frontier` describes it (any size).
    pub(crate) async fn store_checkpoint(
        &self,
        tx: &mut Tx,
        org: Uuid,
        frontier: &Frontier,
        now: OffsetDateTime,
    ) -> Result<String, ChainError> {
        let checkpoint = Checkpoint {
            origin: self.origin(org),
            size: frontier.size,
            root: frontier.root(),
            extensions: vec![format!("time {}", timefmt::timestamp(now))],
        };
        let note = self.signer.sign(&checkpoint);
        diesel::insert_into(audit_checkpoints::table)
            .values((
                audit_checkpoints::organization_id.eq(org),
                audit_checkpoints::tree_size.eq(frontier.size as i64),
                audit_checkpoints::root_hash.eq(checkpoint.root.to_vec()),
                audit_checkpoints::note.eq(&note),
                audit_checkpoints::key_name.eq(&self.signer.name),
                audit_checkpoints::created_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
        Ok(note)
    }

    /// Indexes the next batch of sequenced entries for listings (time, actor, action, resource, read
    /// from each entry's committed fields); returns how many. Indexing runs behind sequencing, in its
    /// own transaction, so that neither writers nor the sequencer pay for search indexes. One indexer
    /// per organisation at a time (an advisory lock; `wait` blocks for it instead of skipping).
    pub async fn index(&self, org: Uuid, wait: bool) -> Result<usize, ChainError> {
        #[derive(diesel::QueryableByName)]
        struct Locked {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            locked: bool,
        }
        let mut tx = self.db.begin(org).await?;
        let lock = if wait {
            "SELECT pg_advisory_xact_lock($1, hashtext($2::text)) IS NOT NULL AS locked"
        } else {
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2::text)) AS locked"
        };
        let locked: Locked = diesel::sql_query(lock)
            .bind::<diesel::sql_types::Integer, _>(INDEXER_LOCK)
            .bind::<SqlUuid, _>(org)
            .get_result(tx.conn())
            .await?;
        if !locked.locked {
            return Ok(0);
        }
        let from: Option<i64> = audit_heads::table
            .filter(audit_heads::organization_id.eq(org))
            .select(audit_heads::indexed_size)
            .first(tx.conn())
            .await
            .optional()?;
        let Some(from) = from else { return Ok(0) };
        let rows = stored_range(&mut tx, org, from, self.config.batch_size as i64, false).await?;
        let Some(last) = rows.last().map(|(log, ..)| log.seq) else { return Ok(0) };
        let n = rows.len();
        let (mut seqs, mut ids, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut actors, mut actions, mut types, mut resources) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (log, _, entry) in rows {
            // An entry that cannot be read is still indexed (verification names it); it is listed
            // under what can be said of it.
            let values = entry.ok_or_else(|| "its entry is missing".to_owned()).and_then(|e| e.index_values());
            let values = values.unwrap_or_else(|problem| {
                tracing::error!(%org, seq = log.seq, %problem, "audit entry cannot be indexed from its fields");
                IndexValues {
                    recorded_at: log.sequenced_at,
                    actor: UNREADABLE.into(),
                    action: UNREADABLE.into(),
                    resource_type: UNREADABLE.into(),
                    resource_id: UNREADABLE.into(),
                }
            });
            seqs.push(log.seq);
            ids.push(log.event_id);
            times.push(values.recorded_at);
            actors.push(values.actor);
            actions.push(values.action);
            types.push(values.resource_type);
            resources.push(values.resource_id);
        }
        diesel::sql_query(
            "INSERT INTO audit_index (organization_id, seq, event_id, recorded_at, actor, action, resource_type, resource_id)
             SELECT $1, v.* FROM unnest($2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[], $7::text[], $8::text[]) AS v",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Timestamptz>, _>(&times)
        .bind::<Array<diesel::sql_types::Text>, _>(&actors)
        .bind::<Array<diesel::sql_types::Text>, _>(&actions)
        .bind::<Array<diesel::sql_types::Text>, _>(&types)
        .bind::<Array<diesel::sql_types::Text>, _>(&resources)
        .execute(tx.conn())
        .await?;
        diesel::update(audit_heads::table.filter(audit_heads::organization_id.eq(org)))
            .set(audit_heads::indexed_size.eq(last + 1))
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Integrates everything queued for one organisation, checkpoints it and indexes it (tests,
    /// CLI, API).
    pub async fn sync(&self, org: Uuid) -> Result<IntegrateOutcome, ChainError> {
        let mut total = IntegrateOutcome::default();
        // Drain from the scan hint, then once from the start of the queue for whatever the hint
        // skipped; done when a full scan finds less than a batch.
        let mut full_scan = false;
        loop {
            let outcome = self.integrate_scanning(org, true, full_scan).await?;
            total.sequenced += outcome.sequenced;
            total.tree_size = outcome.tree_size;
            total.checkpoint = outcome.checkpoint.or(total.checkpoint);
            if outcome.sequenced == self.config.batch_size {
                full_scan = false;
            } else if full_scan {
                break;
            } else {
                full_scan = true;
            }
        }
        while self.index(org, true).await? == self.config.batch_size {}
        Ok(total)
    }

    /// Integrates everything queued for every organisation.
    pub async fn sync_all(&self) -> Result<usize, ChainError> {
        let mut total = 0;
        for org in self.pending().await? {
            total += self.sync(org).await?.sequenced;
        }
        Ok(total)
    }

    /// The sequencer loop of `custos serve`: runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let busy = match self.pending().await {
                Ok(orgs) => {
                    let mut busy = false;
                    for org in orgs {
                        match self.integrate(org, false).await {
                            Ok(o) => busy |= o.sequenced == self.config.batch_size,
                            Err(e) => tracing::error!(error = %e, %org, "audit sequencing failed; will retry"),
                        }
                        match self.index(org, false).await {
                            Ok(n) => busy |= n == self.config.batch_size,
                            Err(e) => tracing::error!(error = %e, %org, "audit indexing failed; will retry"),
                        }
                    }
                    busy
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit sequencer cannot reach the database; will retry");
                    false
                }
            };
            if *shutdown.borrow() {
                break;
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
        // Leave nothing behind that a later start would have to pick up.
        if let Err(e) = self.sync_all().await {
            tracing::warn!(error = %e, "audit sequencer could not drain the queue on shutdown");
        }
    }
}
