//! The sequencer: takes each organisation's newly committed entries into its log, in batches, and
//! signs checkpoints.
//!
//! One sequencer works on an organisation at a time — it holds that organisation's `audit_heads`
//! row (`FOR UPDATE SKIP LOCKED`), so any number of replicas can run it. Writers never touch that
//! row: they insert their entry, with their transaction's id, and nothing else.
//!
//! Which entries are new is decided by transaction snapshots, as Skytools' PgQ does: an entry is
//! new if it is visible in the sequencer's snapshot and was not in the previous one. The heads row
//! keeps a cursor `(sequenced_xid, sequenced_event)` and the transactions that were still running
//! when the cursor passed them (`pending_xids`); a batch is what the snapshot shows of those
//! transactions, plus the next entries beyond the cursor in `(xid, event_id)` order. Because a
//! transaction's entries become visible together when it commits, and one below the cursor that is
//! no longer running has either been taken or rolled back, nothing committed is missed or taken
//! twice, however long a transaction stays open — and an open one holds back only its own entries.
//! Within a batch, entries are ordered by id (UUIDv7: the time they were recorded), so sequence
//! order is integration order and `recorded_at` can step back slightly between batches. Once
//! sequenced, nothing moves.

use std::sync::Arc;
use std::time::Duration;

use custos_core::timefmt;
use custos_db::schema::{audit_checkpoints, audit_heads};
use custos_db::{Db, DbError, Tx};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

use crate::encoding::{chain_hash, leaf_hash};
use crate::merkle::Frontier;
use crate::note::{Checkpoint, NoteSigner, NoteVerifier};
use crate::rows::{EntryRow, IndexValues, RUN_WIDTH, runs_from, stored_range, to_hash};

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
    /// The database assigns transaction ids the sequencer has already passed: restored into
    /// another cluster. Entries written now would never be sequenced.
    #[error(
        "the database's transaction counter ({next}) is behind the audit sequencer's cursor ({cursor}): it was restored into another cluster, and entries written now would never be sequenced; stop Custos and advance the counter past the cursor with `pg_resetwal --epoch={}` on the stopped cluster before anything is written",
        (*cursor >> 32) + 1
    )]
    CounterBehind { cursor: i64, next: i64 },
    /// An interrupted verification that cannot carry on from where it stopped.
    #[error("this verification cannot be resumed: {0}; start a new one")]
    Unresumable(String),
    #[error(
        "verification {0} of the same depth is already running for this organisation; watch it, or wait for it to finish"
    )]
    VerificationRunning(Uuid),
    #[error("no verification {0}")]
    NoSuchVerification(Uuid),
    #[error("verification {0} is still running: its runner saved progress less than a minute ago")]
    VerificationBusy(Uuid),
    #[error("verification {0} was taken over by another runner after this one stopped saving")]
    VerificationTakenOver(Uuid),
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
    /// Entries per verification step (a structure-only step reads four times as many).
    pub verify_batch: usize,
    /// Entries one search request reads at most before it answers with what it found so far
    /// and a cursor to carry on from: what keeps a request's time bounded however long the log.
    pub search_scan: usize,
    /// Entries one pruning transaction removes at most (at least a run's width, 256): a long
    /// backlog is pruned in steps, each holding the organisation's head only briefly, so
    /// sequencing — of every organisation, on every replica — is never held up for long.
    pub prune_step: usize,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            batch_size: 5000,
            checkpoint_interval: Duration::from_millis(500),
            idle_poll: Duration::from_millis(100),
            verify_batch: 5000,
            search_scan: 262_144,
            prune_step: 65_536,
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
    pub sequenced_xid: i64,
    pub sequenced_event: Uuid,
    pub pending_xids: Vec<i64>,
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

/// A row of the sequencer's take: an entry, or (exactly once, with only `snapshot` set) the
/// snapshot the take was read in.
#[derive(diesel::QueryableByName)]
struct Taken {
    #[diesel(sql_type = Nullable<BigInt>)]
    xid: Option<i64>,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    event_id: Option<Uuid>,
    #[diesel(sql_type = Nullable<Bytea>)]
    digest: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Text>)]
    snapshot: Option<String>,
}

/// An entry the sequencer took: its id and digest.
struct TakenEntry {
    event_id: Uuid,
    digest: Vec<u8>,
}

/// A transaction snapshot as `pg_current_snapshot()` writes it: `xmin:xmax:xip,…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The first transaction id not yet assigned when it was taken.
    pub xmax: i64,
    /// The transactions running when it was taken.
    pub running: Vec<i64>,
}

impl Snapshot {
    pub(crate) fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let (_xmin, xmax, xip) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let running = xip.split(',').filter(|x| !x.is_empty()).map(str::parse).collect::<Result<_, _>>().ok()?;
        Some(Snapshot { xmax: xmax.parse().ok()?, running })
    }
}

/// Where the sequencer stands after a take: entries up to `(xid, event)` have been taken, except
/// those of `pending` transactions, which were running when the cursor passed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub xid: i64,
    pub event: Uuid,
    pub pending: Vec<i64>,
}

impl Cursor {
    /// The cursor after a take in `snapshot` whose range part ended at `last` (its last entry's
    /// `(xid, id)` when the range filled the batch, `None` when it reached the end of what the
    /// snapshot shows).
    pub(crate) fn advance(snapshot: &Snapshot, last: Option<(i64, Uuid)>) -> Cursor {
        // Past everything the snapshot shows: every transaction below its `xmax` had an id by then.
        let (xid, event) = last.unwrap_or((snapshot.xmax - 1, Uuid::max()));
        // Transactions still running whose entries would fall behind the cursor are remembered;
        // those above it are met by the range later. The previous pending ones still running are
        // all below the previous cursor, so below this one.
        let mut pending: Vec<i64> = snapshot.running.iter().copied().filter(|x| *x <= xid).collect();
        pending.sort_unstable();
        pending.dedup();
        Cursor { xid, event, pending }
    }
}

#[derive(diesel::QueryableByName)]
struct OrgId {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

impl AuditChain {
    pub fn new(db: Db, signer: NoteSigner, trusted: Vec<NoteVerifier>, config: SequencerConfig) -> Self {
        AuditChain { db, signer: Arc::new(signer), trusted: Arc::new(trusted), config }
    }

    /// The same chain, sequenced with other tuning (a second sequencer, as a replica would run).
    pub fn with_config(&self, config: SequencerConfig) -> Self {
        AuditChain { config, ..self.clone() }
    }

    /// The same chain over another connection pool (a tool's own, or one sized for a test).
    pub fn with_db(&self, db: Db) -> Self {
        AuditChain { db, ..self.clone() }
    }

    pub fn config(&self) -> &SequencerConfig {
        &self.config
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

    /// Organisations with committed entries not yet sequenced, or entries not yet covered by a
    /// checkpoint or indexed.
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

    /// Sequences one batch of an organisation's newly committed entries and signs a checkpoint
    /// when one is due (always, with `force_checkpoint`, if the tree grew since the last one).
    pub async fn integrate(&self, org: Uuid, force_checkpoint: bool) -> Result<IntegrateOutcome, ChainError> {
        let mut tx = self.db.begin(org).await?;
        let Some(heads) = Self::lock_heads(&mut tx, org, force_checkpoint).await? else {
            return Ok(IntegrateOutcome::default());
        };
        let mut frontier = heads.frontier()?;
        let mut chain = to_hash(&heads.chain_hash).ok_or_else(|| ChainError::Corrupt(org, "chain hash".into()))?;
        let (snapshot, mut taken, last) = self.take(&mut tx, &heads).await?;
        let cursor = Cursor::advance(&snapshot, last);
        taken.sort_unstable_by_key(|e| e.event_id);

        let n = taken.len();
        if n > 0 {
            // Runs of the log: a new one at the batch's start and at every multiple of RUN_WIDTH.
            let (mut firsts, mut ids, mut leaves, mut chains) =
                (Vec::<i64>::new(), Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new(), Vec::<Vec<u8>>::new());
            let (mut node_levels, mut node_idx, mut node_hashes) = (Vec::new(), Vec::new(), Vec::new());
            for (i, TakenEntry { event_id, digest, .. }) in taken.iter().enumerate() {
                let seq = frontier.size;
                let digest = to_hash(digest)
                    .ok_or_else(|| ChainError::Corrupt(org, format!("entry {event_id} has no digest to sequence")))?;
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
                ids[run].extend_from_slice(event_id.as_bytes());
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
                    audit_heads::sequenced_xid.eq(cursor.xid),
                    audit_heads::sequenced_event.eq(cursor.event),
                    audit_heads::pending_xids.eq(&cursor.pending),
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
        metrics::counter!("custos_audit_entries_sequenced_total").increment(n as u64);
        if checkpoint.is_some() {
            metrics::counter!("custos_audit_checkpoints_signed_total").increment(1);
        }
        Ok(IntegrateOutcome { sequenced: n, tree_size: frontier.size, checkpoint })
    }

    /// The next batch in one statement, so in one snapshot: the entries of the heads' pending
    /// transactions that have committed since, then up to a batch of entries beyond the cursor,
    /// as ids and digests; with the snapshot, and the range part's last `(xid, id)` if it
    /// filled the batch. (With nothing new, the stored cursor stays right, so it is left as it is.)
    #[allow(clippy::type_complexity)]
    async fn take(
        &self,
        tx: &mut Tx,
        heads: &Heads,
    ) -> Result<(Snapshot, Vec<TakenEntry>, Option<(i64, Uuid)>), ChainError> {
        let org = heads.organization_id;
        // Both parts walk `audit_entries_sequencing`; with statistics that lag a fast-growing
        // table PostgreSQL might otherwise scan the whole table for the pending part. Nothing else
        // in this transaction is a scan these settings could hurt.
        diesel::sql_query(
            "SELECT set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),
                    set_config('enable_seqscan', 'off', true)",
        )
        .execute(tx.conn())
        .await?;
        let rows: Vec<Taken> = diesel::sql_query(
            "WITH s AS MATERIALIZED (SELECT pg_current_snapshot() AS snapshot)
             SELECT NULL::bigint AS xid, NULL::uuid AS event_id, NULL::bytea AS digest, snapshot::text AS snapshot FROM s
             UNION ALL
             (SELECT xid, event_id, digest, NULL FROM audit_entries
               WHERE organization_id = $1 AND xid = ANY($2::bigint[]))
             UNION ALL
             (SELECT xid, event_id, digest, NULL FROM audit_entries
               WHERE organization_id = $1 AND (xid, event_id) > ($3, $4)
               ORDER BY xid, event_id LIMIT $5)",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<Array<BigInt>, _>(&heads.pending_xids)
        .bind::<BigInt, _>(heads.sequenced_xid)
        .bind::<SqlUuid, _>(heads.sequenced_event)
        .bind::<BigInt, _>(self.config.batch_size as i64)
        .load(tx.conn())
        .await?;
        let mut snapshot = None;
        let mut entries = Vec::with_capacity(rows.len());
        let (mut in_range, mut last) = (0, None);
        for row in rows {
            match row {
                Taken { snapshot: Some(text), .. } => snapshot = Snapshot::parse(&text),
                Taken { xid: Some(xid), event_id: Some(id), digest, .. } => {
                    let digest = digest
                        .ok_or_else(|| ChainError::Corrupt(org, format!("entry {id} has no digest to sequence")))?;
                    if !heads.pending_xids.contains(&xid) {
                        in_range += 1;
                        last = last.max(Some((xid, id)));
                    }
                    entries.push(TakenEntry { event_id: id, digest });
                }
                _ => return Err(ChainError::Corrupt(org, "the sequencer's take returned an empty row".into())),
            }
        }
        let snapshot =
            snapshot.ok_or_else(|| ChainError::Corrupt(org, "the sequencer's take returned no snapshot".into()))?;
        counter_ahead(heads.sequenced_xid, snapshot.xmax)?;
        Ok((snapshot, entries, last.filter(|_| in_range == self.config.batch_size)))
    }

    /// Refuses (with what to do) a database whose transaction counter is behind where the
    /// sequencers have got to: start-up calls it before anything is written.
    pub async fn check_transaction_counter(&self) -> Result<(), ChainError> {
        #[derive(diesel::QueryableByName)]
        struct Counter {
            #[diesel(sql_type = BigInt)]
            cursor_xid: i64,
            #[diesel(sql_type = BigInt)]
            next_xid: i64,
        }
        let mut tx = self.db.begin_untenanted().await?;
        let c: Counter =
            diesel::sql_query("SELECT cursor_xid, next_xid FROM custos_audit_counter()").get_result(tx.conn()).await?;
        tx.commit().await?;
        counter_ahead(c.cursor_xid, c.next_xid)
    }

    /// How many committed entries of an organisation the sequencer has yet to take (in the
    /// caller's snapshot).
    pub(crate) async fn unsequenced(tx: &mut Tx, org: Uuid, heads: Option<&Heads>) -> Result<i64, ChainError> {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        // An organisation without a heads row has had nothing taken: the migration's defaults.
        let (xid, event, pending) =
            heads.map_or((0, Uuid::max(), &[][..]), |h| (h.sequenced_xid, h.sequenced_event, &h.pending_xids[..]));
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM audit_entries
              WHERE organization_id = $1 AND ((xid, event_id) > ($2, $3) OR xid = ANY($4::bigint[]))",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<BigInt, _>(xid)
        .bind::<SqlUuid, _>(event)
        .bind::<Array<BigInt>, _>(pending)
        .get_result(tx.conn())
        .await?;
        Ok(count.n)
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
        // Whole runs of the log, so that each run's entries move into its contents at once.
        let runs = runs_from(&mut tx, org, from, from + self.config.batch_size as i64).await?;
        let Some(end) = runs.last().map(|(first, n)| first + n) else { return Ok(0) };
        let rows = stored_range(&mut tx, org, from, end - from, false).await?;
        let Some(last) = rows.last().map(|(log, ..)| log.seq) else { return Ok(0) };
        // A run holding `from` but starting before it was moved already (by the migration that
        // introduced contents, the one time indexing stopped inside a run).
        let moved_from = runs.iter().map(|(first, _)| *first).find(|first| *first >= from);
        if let Some(moved_from) = moved_from {
            self.move_contents(&mut tx, org, &runs, &rows, moved_from).await?;
        }
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
        // Recorded → listed: the longest an entry waits before auditors can find it (it is in the
        // tree, and usually under a checkpoint, before that).
        let now = timefmt::now();
        let delay = metrics::histogram!("custos_audit_listing_delay_seconds");
        for recorded in &times {
            delay.record((now - *recorded).as_seconds_f64().max(0.0));
        }
        metrics::counter!("custos_audit_entries_indexed_total").increment(n as u64);
        Ok(n)
    }

    /// Moves the entries of `runs` starting at `moved_from` or later from the writers' table into
    /// their runs' contents (`rows` hold them, in order), and removes them from the writers' table.
    async fn move_contents(
        &self,
        tx: &mut Tx,
        org: Uuid,
        runs: &[(i64, i64)],
        rows: &[crate::rows::Stored],
        moved_from: i64,
    ) -> Result<(), ChainError> {
        let runs: Vec<(i64, i64)> = runs.iter().copied().filter(|(f, _)| *f >= moved_from).collect();
        let to = runs.last().map_or(moved_from, |(f, n)| f + n);
        // Each run is a slice of the batch's arrays (1-based, inclusive), so the database neither
        // sorts nor aggregates them. An entry whose row is gone stays gone: a NULL element.
        let mut by_seq: std::collections::HashMap<i64, &Option<EntryRow>> =
            rows.iter().filter(|(log, ..)| log.seq >= moved_from).map(|(log, _, entry)| (log.seq, entry)).collect();
        let (mut fields, mut salts) = (Vec::new(), Vec::new());
        let (mut firsts, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        for (run_first, n) in &runs {
            firsts.push(*run_first);
            starts.push(fields.len() as i32 + 1);
            for seq in *run_first..run_first + n {
                let entry = by_seq.remove(&seq).and_then(Option::as_ref);
                fields.push(entry.map(EntryRow::fields));
                salts.push(entry.map(EntryRow::salts));
            }
            ends.push(fields.len() as i32);
        }
        let present = fields.iter().filter(|f| f.is_some()).count() as i64;
        diesel::sql_query(
            "INSERT INTO audit_contents (organization_id, first_seq, fields, salts)
             SELECT $1, r.first, ($5::text[])[r.lo:r.hi], ($6::bytea[])[r.lo:r.hi]
               FROM unnest($2::bigint[], $3::int[], $4::int[]) AS r(first, lo, hi)",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<Array<BigInt>, _>(&firsts)
        .bind::<Array<diesel::sql_types::Integer>, _>(&starts)
        .bind::<Array<diesel::sql_types::Integer>, _>(&ends)
        .bind::<Array<Nullable<Text>>, _>(&fields)
        .bind::<Array<Nullable<Bytea>>, _>(&salts)
        .execute(tx.conn())
        .await?;
        dequeue(tx, org, moved_from, to, present).await
    }

    /// Integrates everything committed for one organisation, checkpoints it and indexes it
    /// (tests, CLI, API).
    pub async fn sync(&self, org: Uuid) -> Result<IntegrateOutcome, ChainError> {
        let mut total = IntegrateOutcome::default();
        loop {
            let outcome = self.integrate(org, true).await?;
            total.sequenced += outcome.sequenced;
            total.tree_size = outcome.tree_size;
            total.checkpoint = outcome.checkpoint.or(total.checkpoint);
            if outcome.sequenced < self.config.batch_size {
                break;
            }
        }
        // Indexing takes whole runs, so a batch that was not the last holds at least its size.
        while self.index(org, true).await? >= self.config.batch_size {}
        Ok(total)
    }

    /// Integrates everything committed for every organisation.
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
            // A pass that left no organisation behind: what an alert on a stuck sequencer watches.
            let mut all_done = true;
            let busy = match self.pending().await {
                Ok(orgs) => {
                    let mut busy = false;
                    for org in orgs {
                        match self.integrate(org, false).await {
                            Ok(o) => busy |= o.sequenced >= self.config.batch_size,
                            Err(e) => {
                                all_done = false;
                                metrics::counter!("custos_audit_sequencer_failures_total", "stage" => "sequence")
                                    .increment(1);
                                tracing::error!(error = %e, %org, "audit sequencing failed; will retry")
                            }
                        }
                        match self.index(org, false).await {
                            Ok(n) => busy |= n >= self.config.batch_size,
                            Err(e) => {
                                all_done = false;
                                metrics::counter!("custos_audit_sequencer_failures_total", "stage" => "index")
                                    .increment(1);
                                tracing::error!(error = %e, %org, "audit indexing failed; will retry")
                            }
                        }
                    }
                    busy
                }
                Err(e) => {
                    all_done = false;
                    metrics::counter!("custos_audit_sequencer_failures_total", "stage" => "poll").increment(1);
                    tracing::warn!(error = %e, "audit sequencer cannot reach the database; will retry");
                    false
                }
            };
            if all_done {
                metrics::gauge!("custos_audit_sequencer_pass_timestamp_seconds")
                    .set(timefmt::now().unix_timestamp_nanos() as f64 / 1e9);
            }
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
            tracing::warn!(error = %e, "audit sequencer could not sequence everything committed on shutdown");
        }
    }
}

/// Removes from the writers' table the entries of the runs starting in `[from, to)`, just written
/// with their contents: the `expected` there were, or the batch fails.
async fn dequeue(tx: &mut Tx, org: Uuid, from: i64, to: i64, expected: i64) -> Result<(), ChainError> {
    #[derive(diesel::QueryableByName)]
    struct Removed {
        #[diesel(sql_type = BigInt)]
        removed: i64,
    }
    let removed: Removed = diesel::sql_query("SELECT custos_audit_dequeue($1, $2, $3) AS removed")
        .bind::<SqlUuid, _>(org)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to)
        .get_result(tx.conn())
        .await?;
    if removed.removed != expected {
        return Err(ChainError::Corrupt(
            org,
            format!(
                "moving entries {from}..{to} into their runs removed {} of the {expected} from the writers' table",
                removed.removed
            ),
        ));
    }
    Ok(())
}

/// The first transaction id the database has not yet assigned, as the caller's snapshot sees it.
pub(crate) async fn next_xid(tx: &mut Tx) -> Result<i64, ChainError> {
    #[derive(diesel::QueryableByName)]
    struct Next {
        #[diesel(sql_type = BigInt)]
        next: i64,
    }
    let next: Next = diesel::sql_query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next")
        .get_result(tx.conn())
        .await?;
    Ok(next.next)
}

/// `Ok` when `next`, the first transaction id not yet assigned, lies beyond the cursor's `cursor`
/// — as it always does in the cluster that moved the cursor there.
pub(crate) fn counter_ahead(cursor: i64, next: i64) -> Result<(), ChainError> {
    if next > cursor { Ok(()) } else { Err(ChainError::CounterBehind { cursor, next }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_parse_as_postgresql_writes_them() {
        assert_eq!(Snapshot::parse("732:735:"), Some(Snapshot { xmax: 735, running: vec![] }));
        assert_eq!(Snapshot::parse("10:20:10,14,19"), Some(Snapshot { xmax: 20, running: vec![10, 14, 19] }));
        for bad in ["", "1:2", "1:2:3:4", "1:x:", "1:5:3,,y"] {
            assert_eq!(Snapshot::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_cursor_remembers_exactly_the_running_transactions_it_passes() {
        let id = Uuid::now_v7();
        let snapshot = Snapshot { xmax: 100, running: vec![40, 60, 99] };
        // The range reached the end of what the snapshot shows: past all of it, every running
        // transaction remembered.
        assert_eq!(Cursor::advance(&snapshot, None), Cursor { xid: 99, event: Uuid::max(), pending: vec![40, 60, 99] });
        // A full batch stopped inside transaction 50: the one running below it is remembered, those
        // above are met by the range later.
        assert_eq!(Cursor::advance(&snapshot, Some((50, id))), Cursor { xid: 50, event: id, pending: vec![40] });
        assert_eq!(
            Cursor::advance(&Snapshot { xmax: 7, running: vec![] }, None),
            Cursor { xid: 6, event: Uuid::max(), pending: vec![] }
        );
    }
}
