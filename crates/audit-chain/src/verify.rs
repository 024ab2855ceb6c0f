//! Verification of an organisation's log: every leaf recomputed from its fields, every chain link,
//! the Merkle tree, and every checkpoint's signature and root. It streams — entries in batches,
//! checkpoints as they fall due — so memory stays flat however long the log.
//!
//! [`ChainVerifier`] is the state machine shared by the database verifier ([`verify_org`]) and the
//! offline one ([`crate::export::verify_file`]).

use std::collections::VecDeque;

use custos_db::schema::{audit_checkpoints, audit_entries, audit_heads, audit_index, audit_log};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::encoding::{DigestBatch, Hash, StoredEntry, chain_hash, leaf_hash};
use crate::merkle::Frontier;
use crate::note::NoteVerifier;
use crate::proofs::NodeReader;
use crate::rows::{
    Columns, IndexDigest, IndexRow, Stored, Unverifiable, expected_index_digest, hex, index_digest, log_range,
    log_rows_at, stored_range, to_hash,
};
use crate::sequencer::{AuditChain, ChainError, Heads, counter_ahead, next_xid};

/// Checkpoints read at once.
const BATCH: i64 = 5000;

/// How deep a verification goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Depth {
    /// Every entry's digest recomputed from its stored fields (and its index row checked against
    /// them), then everything [`Depth::Structure`] checks.
    #[default]
    Content,
    /// The log's structure: the stored leaf hashes chained, the Merkle tree rebuilt, every
    /// checkpoint's signature and root. Catches deleted, inserted or truncated entries, altered or
    /// reordered leaf hashes and forged checkpoints — not an edited field, nor an entry put in
    /// another's place under an unchanged leaf: that takes [`Depth::Content`]. What a monitor
    /// runs often; the full check is what an auditor runs.
    Structure,
}

impl Depth {
    /// [`Depth::Structure`] when a caller asked for the structure only, else [`Depth::Content`].
    pub fn structure_only(structure_only: bool) -> Depth {
        if structure_only { Depth::Structure } else { Depth::Content }
    }
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub organization_id: Uuid,
    pub ok: bool,
    pub first_seq: u64,
    pub tree_size: u64,
    pub entries_checked: u64,
    pub checkpoints_checked: u64,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    pub notes: Vec<String>,
    /// Whether every entry's content was recomputed ([`Depth::Content`]).
    pub content_checked: bool,
}

/// A checkpoint as stored or exported.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root_hash: Vec<u8>,
    pub note: String,
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub seq: u64,
    pub problem: String,
}

/// `(ok, first bad sequence number, problem)` of a finished verification.
pub fn verdict(outcome: Result<(), Failure>) -> (bool, Option<u64>, Option<String>) {
    match outcome {
        Ok(()) => (true, None, None),
        Err(f) => (false, Some(f.seq), Some(f.problem)),
    }
}

fn fail<T>(seq: u64, problem: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { seq, problem: problem.into() })
}

/// Checks entries and checkpoints fed to it in order.
pub struct ChainVerifier {
    origin: String,
    trusted: Vec<NoteVerifier>,
    chain: Hash,
    frontier: Frontier,
    pending: VecDeque<StoredCheckpoint>,
    pub entries_checked: u64,
    pub checkpoints_checked: u64,
    /// The tree size of the last checkpoint checked: entries from there on are not (yet) covered
    /// by a signature.
    pub covered: Option<u64>,
    /// Whether checkpoint signatures were checked against a pinned key.
    pub check_signatures: bool,
}

impl ChainVerifier {
    /// Starts at `frontier.size` with the chain hash of the entry before it.
    pub fn new(origin: String, trusted: Vec<NoteVerifier>, chain: Hash, frontier: Frontier) -> Self {
        ChainVerifier {
            origin,
            trusted,
            chain,
            frontier,
            pending: VecDeque::new(),
            entries_checked: 0,
            checkpoints_checked: 0,
            covered: None,
            check_signatures: true,
        }
    }

    pub fn next_seq(&self) -> u64 {
        self.frontier.size
    }

    pub fn chain(&self) -> Hash {
        self.chain
    }

    /// The entries checked from `first_seq` on that no checked checkpoint covers, when the tree
    /// is not empty and the last checkpoint does not end where the entries do (an empty range:
    /// not even the starting point, a pruned anchor, is covered).
    pub fn unsigned(&self, first_seq: u64) -> Option<std::ops::Range<u64>> {
        let end = self.next_seq();
        (end > 0 && self.covered != Some(end)).then(|| self.covered.unwrap_or(first_seq)..end)
    }

    /// Whether every checkpoint it was given has been checked (none waits for more entries).
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Queues a checkpoint (in increasing tree size); it is checked when the log reaches its size.
    pub fn push_checkpoint(&mut self, cp: StoredCheckpoint) -> Result<(), Failure> {
        if cp.tree_size < self.frontier.size {
            return Ok(());
        }
        self.pending.push_back(cp);
        self.settle()
    }

    fn settle(&mut self) -> Result<(), Failure> {
        while self.pending.front().is_some_and(|cp| cp.tree_size == self.frontier.size) {
            let cp = self.pending.pop_front().expect("front exists");
            self.check(&cp)?;
        }
        Ok(())
    }

    fn check(&mut self, cp: &StoredCheckpoint) -> Result<(), Failure> {
        let last = cp.tree_size.saturating_sub(1);
        let root = self.frontier.root();
        if self.check_signatures {
            let mut opened = None;
            let mut error = String::from("no trusted key signed it");
            for v in &self.trusted {
                match v.open(&cp.note) {
                    Ok(c) => {
                        opened = Some(c);
                        break;
                    }
                    Err(e) => error = e.to_string(),
                }
            }
            let Some(statement) = opened else {
                return fail(last, format!("bad signature: checkpoint at tree size {} ({error})", cp.tree_size));
            };
            if statement.origin != self.origin {
                return fail(
                    last,
                    format!("checkpoint at tree size {} names another log ({})", cp.tree_size, statement.origin),
                );
            }
            if statement.size != cp.tree_size || statement.root.as_slice() != cp.root_hash.as_slice() {
                return fail(
                    last,
                    format!(
                        "checkpoint at tree size {}: the stored size or root differs from what was signed",
                        cp.tree_size
                    ),
                );
            }
        }
        if cp.root_hash.as_slice() != root.as_slice() {
            return fail(
                last,
                format!(
                    "hash mismatch: the signed checkpoint at tree size {} has root {}, the log gives {} — entries up to {last} were altered after it was signed",
                    cp.tree_size,
                    hex(&cp.root_hash),
                    hex(&root)
                ),
            );
        }
        self.checkpoints_checked += 1;
        self.covered = Some(cp.tree_size);
        Ok(())
    }

    /// Checks the next entry, given the leaf hash recomputed from its fields (or the problem that
    /// prevented it).
    pub fn entry_leaf(
        &mut self,
        seq: u64,
        leaf: Result<Hash, Unverifiable>,
        stored_leaf: &[u8],
        stored_chain: &[u8],
    ) -> Result<(), Failure> {
        let expected = self.frontier.size;
        if seq > expected {
            return fail(expected, format!("gap: entry {expected} is missing (the next stored entry is {seq})"));
        }
        if seq < expected {
            return fail(seq, format!("reordering: entry {seq} appears again after entry {}", expected - 1));
        }
        let leaf = match leaf {
            Ok(l) => l,
            Err(e) => return fail(seq, e.problem(seq)),
        };
        if leaf.as_slice() != stored_leaf {
            return fail(seq, format!("hash mismatch: the content of entry {seq} does not match its leaf hash"));
        }
        let chain = chain_hash(&self.chain, &leaf);
        if chain.as_slice() != stored_chain {
            return fail(
                seq,
                format!(
                    "chain broken at entry {seq}: its chain hash does not follow from entry {}",
                    seq.wrapping_sub(1)
                ),
            );
        }
        self.chain = chain;
        self.frontier.append_with(leaf, |_, _| {});
        self.entries_checked += 1;
        self.settle()
    }

    /// Checks a batch of stored entries in order, given their leaves as recomputed.
    fn entries(&mut self, org: Uuid, rows: &[Stored], leaves: Vec<Result<Hash, Unverifiable>>) -> Result<(), Failure> {
        for (at, ((row, _, _), leaf)) in rows.iter().zip(leaves).enumerate() {
            let seq = row.seq as u64;
            if let Err(failure) = self.entry_leaf(seq, leaf, &row.leaf_hash, &row.chain_hash) {
                let mismatch = failure.seq == seq && failure.problem.starts_with("hash mismatch");
                return Err(match mismatch.then(|| moved_from(org, rows, at)).flatten() {
                    Some(from) => Failure {
                        seq,
                        problem: format!(
                            "reordering: entry {seq} holds the content of entry {from} (recomputed for that place, it gives that entry's leaf hash)"
                        ),
                    },
                    None => failure,
                });
            }
        }
        Ok(())
    }

    /// What a pass holds while its verifier is lent to a worker: checks nothing, trusts nothing.
    fn idle() -> Self {
        ChainVerifier::new(String::new(), Vec::new(), [0; 32], Frontier::default())
    }

    /// Checkpoints left over once every entry was seen claim entries that are not there.
    pub fn finish(&mut self) -> Result<(), Failure> {
        if let Some(cp) = self.pending.front() {
            return fail(
                self.frontier.size,
                format!(
                    "entries missing at the end: a checkpoint covers {} entries, the log has {}",
                    cp.tree_size, self.frontier.size
                ),
            );
        }
        Ok(())
    }
}

/// Where an interrupted verification picks up: the verifier's state once entries
/// `first_seq..next_seq` were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub first_seq: u64,
    pub next_seq: u64,
    /// The chain hash of entry `next_seq - 1`.
    pub chain: Hash,
    /// The compact range of the tree of size `next_seq`.
    pub frontier: Vec<u8>,
    pub entries_checked: u64,
    pub checkpoints_checked: u64,
}

/// One verification over one database snapshot, checked a batch at a time: [`AuditChain::open_pass`]
/// sets it up, each [`Pass::step`] checks the next batch of entries (and the checkpoints they
/// reach), [`Pass::finish`] checks the end of the log against its head. Between steps
/// [`Pass::resume_point`] is what lets a later pass carry on should this one be interrupted.
/// A batch as read: its entries, and (full verification) the index's digest over them.
struct Fetched {
    rows: Vec<Stored>,
    index: IndexDigest,
}

pub struct Pass {
    tx: custos_db::Tx,
    /// A second connection on the same snapshot (full verification), reading the index's digest
    /// while `tx` reads the entries; `None` if the pool could not spare one.
    beside: Option<custos_db::Tx>,
    org: Uuid,
    /// `None` for an organisation whose log has no head (then `outcome` is already decided).
    heads: Option<Heads>,
    depth: Depth,
    batch: i64,
    verifier: ChainVerifier,
    checkpoints_from: i64,
    /// The first sequence number not yet read.
    from: i64,
    prefetched: Option<Fetched>,
    report: VerifyReport,
    /// Decided early: the first failure found, or the verdict on a log without a head.
    outcome: Option<Result<(), Failure>>,
    /// Whether this pass began at its run's start, so that it saw every checkpoint of the range
    /// (a resumed one did not) and can say which entries none covers.
    whole: bool,
}

impl AuditChain {
    /// Verifies one organisation's log (the last `days` days only, when given) to `depth`.
    pub async fn verify(&self, org: Uuid, days: Option<u32>, depth: Depth) -> Result<VerifyReport, ChainError> {
        let mut pass = self.open_pass(org, days, depth, None).await?;
        while pass.step().await? {}
        pass.finish().await
    }

    /// Opens a verification of one organisation's log: from `resume` when given (the log
    /// written since it was saved is verified too), else from the start of the retained log, or of
    /// the last `days` days.
    pub async fn open_pass(
        &self,
        org: Uuid,
        days: Option<u32>,
        depth: Depth,
        resume: Option<&Resume>,
    ) -> Result<Pass, ChainError> {
        let mut tx = self.db.begin_snapshot(org).await?;
        let content_checked = depth == Depth::Content;
        let mut report = VerifyReport { organization_id: org, content_checked, ..Default::default() };
        if !content_checked {
            report.notes.push(
                "structure only: entries' contents were not recomputed from their fields, so an edited field is not detected; run a full verification for that"
                    .into(),
            );
        }
        let batch = match depth {
            Depth::Content => self.config.verify_batch as i64,
            // A structure-only batch is a few dozen narrow rows of the log: read more at once.
            Depth::Structure => 4 * self.config.verify_batch as i64,
        };
        let heads: Option<Heads> = audit_heads::table
            .filter(audit_heads::organization_id.eq(org))
            .select(Heads::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        let unsequenced = Self::unsequenced(&mut tx, org, heads.as_ref()).await?;
        if unsequenced > 0 {
            report.notes.push(format!(
                "{unsequenced} committed entries are not yet sequenced; they are not part of this verification"
            ));
        }
        let whole = resume.is_none();
        let empty = |tx, report, outcome| Pass {
            whole,
            tx,
            beside: None,
            org,
            heads: None,
            depth,
            batch,
            verifier: ChainVerifier::idle(),
            checkpoints_from: 0,
            from: 0,
            prefetched: None,
            report,
            outcome: Some(outcome),
        };
        let Some(heads) = heads else {
            let stray: i64 =
                audit_log::table.filter(audit_log::organization_id.eq(org)).count().get_result(tx.conn()).await?;
            let outcome = match resume {
                _ if stray > 0 => fail(0, "the log has entries but no head"),
                Some(r) if r.next_seq > 0 => {
                    fail(0, format!("the log is gone: {} entries were verified before the interruption", r.next_seq))
                }
                _ => Ok(()),
            };
            return Ok(empty(tx, report, outcome));
        };
        let pruned_before = heads.pruned_before as u64;
        let boundary = heads.prune_frontier()?;
        let prune_chain = heads.prune_chain_hash.as_deref().and_then(to_hash).unwrap_or([0; 32]);
        report.tree_size = heads.tree_size as u64;
        if pruned_before > 0 {
            report.notes.push(format!(
                "entries before {pruned_before} were pruned by retention; verification starts at the retained boundary"
            ));
        }

        // Where the pass starts: the verifier's state there, the first checkpoint still to check,
        // and anything already decided.
        let (verifier, from, checkpoints_from, outcome) = match resume {
            Some(r) => {
                if r.next_seq < pruned_before {
                    return Err(ChainError::Unresumable(format!(
                        "retention has pruned entries up to {pruned_before} since this verification stopped at {}",
                        r.next_seq
                    )));
                }
                let frontier = Frontier::from_bytes(r.next_seq, &r.frontier)
                    .ok_or_else(|| ChainError::Unresumable("its saved tree state is malformed".into()))?;
                report.first_seq = r.first_seq;
                report.notes.push(format!(
                    "resumed at entry {}: entries {}..{} were verified before the interruption, in an earlier snapshot",
                    r.next_seq, r.first_seq, r.next_seq
                ));
                let mut verifier = ChainVerifier::new(self.origin(org), self.trusted.to_vec(), r.chain, frontier);
                verifier.entries_checked = r.entries_checked;
                verifier.checkpoints_checked = r.checkpoints_checked;
                let outcome = (r.next_seq > heads.tree_size as u64).then(|| {
                    fail(
                        heads.tree_size as u64,
                        format!(
                            "entries missing at the end: {} entries were verified before the interruption, the log's head now records {}",
                            r.next_seq, heads.tree_size
                        ),
                    )
                });
                // The checkpoint at the resumption point was checked before it.
                (verifier, r.next_seq, r.next_seq + 1, outcome)
            }
            None => {
                let mut start = pruned_before;
                let mut anchor_lost = None;
                if let Some(days) = days {
                    let since = custos_core::timefmt::days_ago(days);
                    let first: Option<i64> = audit_index::table
                        .filter(audit_index::organization_id.eq(org))
                        .filter(audit_index::recorded_at.ge(since))
                        .select(diesel::dsl::min(audit_index::seq))
                        .first(tx.conn())
                        .await?;
                    start = first.map_or(heads.tree_size as u64, |s| s as u64).max(pruned_before);
                }
                let (chain, frontier) = if start == pruned_before {
                    (prune_chain, boundary.clone())
                } else {
                    report
                        .notes
                        .push(format!("entries before {start} were not re-verified (anchored on their stored hashes)"));
                    let previous = log_rows_at(&mut tx, org, &[start as i64 - 1]).await?.remove(&(start as i64 - 1));
                    let mut reader = NodeReader { tx: &mut tx, org, pruned_before, boundary: boundary.clone() };
                    // An anchor that cannot be read is what this verification found, not an outage.
                    match (previous, reader.frontier(start).await) {
                        (Some(previous), Ok(frontier)) => (previous.chain_hash, frontier),
                        (None, _) => {
                            anchor_lost = Some(fail(start - 1, format!("entry {} is missing from the log", start - 1)));
                            (prune_chain, boundary.clone())
                        }
                        (_, Err(e)) => {
                            anchor_lost =
                                Some(fail(start, format!("the tree before entry {start} cannot be read: {e}")));
                            (prune_chain, boundary.clone())
                        }
                    }
                };
                report.first_seq = start;
                // A checkpoint exactly at the starting point checks the anchor itself.
                (
                    ChainVerifier::new(self.origin(org), self.trusted.to_vec(), chain, frontier),
                    start,
                    start,
                    anchor_lost,
                )
            }
        };
        let outcome = match outcome {
            None if pruned_before > 0 => match self.unaccounted_prune(&mut tx, org, pruned_before).await? {
                None => None,
                // The pruning's entry is written with it and indexed a moment later: one still
                // waiting that accounts for the boundary is said, not failed.
                Some(_) if pruning_waits(&mut tx, org, pruned_before).await? => {
                    report.notes.push(format!(
                        "entries before {pruned_before} were pruned by a pruning whose entry still waits to be sequenced; verify again in a moment to check that entry"
                    ));
                    None
                }
                Some((seq, problem)) => Some(fail(seq, problem)),
            },
            outcome => outcome,
        };
        let beside = match depth {
            Depth::Content => self.beside(&mut tx, org).await,
            Depth::Structure => None,
        };
        let mut pass = Pass {
            whole,
            tx,
            beside,
            org,
            heads: Some(heads),
            depth,
            batch,
            verifier,
            checkpoints_from: checkpoints_from as i64,
            from: from as i64,
            prefetched: None,
            report,
            outcome,
        };
        if pass.outcome.is_none()
            && checkpoints_from == from
            && let Err(f) = pass.load_checkpoints(from as i64).await?
        {
            pass.outcome = Some(Err(f));
        }
        Ok(pass)
    }
}

/// A SQL `LIKE` pattern matching the stored fields of a pruning's entry: `action` is always the
/// first field line (names are in bytewise order), and the resource is the audit log itself.
pub const PRUNE_FIELDS_PATTERN: &str = "action\t\"prune\"\n%\nresource_type\t\"audit_log\"\n%";

/// Whether a pruning's entry that moved the boundary to `pruned_before` is still where its writer
/// wrote it (not yet indexed). Only its own entry counts: on a busy log other entries always wait.
async fn pruning_waits(tx: &mut custos_db::Tx, org: Uuid, pruned_before: u64) -> Result<bool, ChainError> {
    let waiting: Vec<String> = audit_entries::table
        .filter(audit_entries::organization_id.eq(org))
        .filter(audit_entries::fields.like(PRUNE_FIELDS_PATTERN))
        .select(audit_entries::fields)
        .load(tx.conn())
        .await?;
    Ok(waiting.iter().any(|fields| recorded_boundary(fields) == Some(pruned_before)))
}

/// The boundary a pruning's entry records (its `after.pruned_before` field), unless withheld.
fn recorded_boundary(fields: &str) -> Option<u64> {
    let entry = StoredEntry { fields: fields.as_bytes(), salts: &[] };
    std::str::from_utf8(entry.get("after.pruned_before")??).ok()?.parse().ok()
}

impl AuditChain {
    /// Retention leaves a trail: the boundary the head records must be the one the log's last
    /// `prune` entry says it moved to. Entries removed by other means, with the head moved to
    /// hide it, are named here: `(first bad sequence number, problem)`. (That entry's own
    /// content is checked by the pass like any other.)
    async fn unaccounted_prune(
        &self,
        tx: &mut custos_db::Tx,
        org: Uuid,
        pruned_before: u64,
    ) -> Result<Option<(u64, String)>, ChainError> {
        let last: Option<i64> = audit_index::table
            .filter(audit_index::organization_id.eq(org))
            .filter(audit_index::resource_type.eq("audit_log"))
            .filter(audit_index::action.eq("prune"))
            .select(diesel::dsl::max(audit_index::seq))
            .first(tx.conn())
            .await?;
        let Some(seq) = last else {
            let problem =
                format!("entries before {pruned_before} are gone, but no pruning of them is recorded in the log");
            return Ok(Some((pruned_before, problem)));
        };
        let Some((_, _, entry)) = self.entry(tx, org, seq).await? else {
            return Ok(Some((seq as u64, format!("the pruning recorded as entry {seq} cannot be read"))));
        };
        Ok(match recorded_boundary(entry.fields()) {
            Some(boundary) if boundary != pruned_before => Some((
                pruned_before,
                format!(
                    "entries before {pruned_before} are gone, but the last recorded pruning (entry {seq}) removed only those before {boundary}"
                ),
            )),
            // Withheld, or not a number, the boundary cannot be compared: that is not a break.
            _ => None,
        })
    }

    /// Reads every retained entry exactly as a full verification does and checks nothing: the
    /// database's share of a verification's cost, which the benchmark reports beside it.
    pub async fn read_like_verification(&self, org: Uuid) -> Result<u64, ChainError> {
        let mut tx = self.db.begin_snapshot(org).await?;
        let heads: Option<Heads> = audit_heads::table
            .filter(audit_heads::organization_id.eq(org))
            .select(Heads::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        let Some(heads) = heads else { return Ok(0) };
        let mut beside = self.beside(&mut tx, org).await;
        let (mut from, mut read, batch) = (heads.pruned_before, 0, self.config.verify_batch as i64);
        while from < heads.tree_size {
            read +=
                content_batch(&mut tx, beside.as_mut(), org, from, batch, heads.indexed_size).await?.rows.len() as u64;
            from += batch;
        }
        if let Some(beside) = beside {
            beside.commit().await?;
        }
        tx.commit().await?;
        Ok(read)
    }

    /// A second connection on `tx`'s snapshot, if the pool can spare one (else the reads share
    /// `tx`: slower, same result).
    async fn beside(&self, tx: &mut custos_db::Tx, org: Uuid) -> Option<custos_db::Tx> {
        match self.db.begin_snapshot_beside(tx, org).await {
            Ok(Some(beside)) => Some(beside),
            Ok(None) => {
                tracing::debug!(%org, "verification reads on one connection: the pool is busy");
                None
            }
            Err(e) => {
                tracing::warn!(%org, error = %e, "verification reads on one connection: no second one on its snapshot");
                None
            }
        }
    }
}

/// Entries `[from, from + batch)` as full verification reads them, with the index's digest over
/// those below `indexed_size`. With a second connection on the snapshot, the database produces
/// both at once (two backends, two cores) instead of one after the other.
async fn content_batch(
    tx: &mut custos_db::Tx,
    beside: Option<&mut custos_db::Tx>,
    org: Uuid,
    from: i64,
    batch: i64,
    indexed_size: i64,
) -> Result<Fetched, ChainError> {
    let to = (from + batch).min(indexed_size);
    let (rows, index) = match beside {
        Some(beside) => {
            let (rows, index) =
                tokio::join!(stored_range(tx, org, from, batch, false), index_digest(beside, org, from, to));
            (rows?, index?)
        }
        None => (stored_range(tx, org, from, batch, false).await?, index_digest(tx, org, from, to).await?),
    };
    Ok(Fetched { rows, index })
}

impl Pass {
    /// The report so far (final once [`Pass::finish`] returns it).
    pub fn report(&self) -> &VerifyReport {
        &self.report
    }

    /// Whether a second connection on the snapshot reads the index's digest (else `tx` reads
    /// everything).
    pub fn reads_beside(&self) -> bool {
        self.beside.is_some()
    }

    /// The next entry to check, and how many entries and checkpoints were checked so far.
    pub fn progress(&self) -> (u64, u64, u64) {
        (self.verifier.next_seq(), self.verifier.entries_checked, self.verifier.checkpoints_checked)
    }

    /// What a later pass resumes from, between steps; `None` once something was found wrong (a
    /// failed verification is over) or for a log without a head.
    pub fn resume_point(&self) -> Option<Resume> {
        if self.outcome.is_some() || self.heads.is_none() || !self.verifier.settled() {
            return None;
        }
        Some(Resume {
            first_seq: self.report.first_seq,
            next_seq: self.verifier.next_seq(),
            chain: self.verifier.chain(),
            frontier: self.verifier.frontier().to_bytes(),
            entries_checked: self.verifier.entries_checked,
            checkpoints_checked: self.verifier.checkpoints_checked,
        })
    }

    async fn fetch(&mut self, from: i64) -> Result<Fetched, ChainError> {
        match self.depth {
            Depth::Content => {
                let indexed_size = self.heads.as_ref().map_or(0, |h| h.indexed_size);
                content_batch(&mut self.tx, self.beside.as_mut(), self.org, from, self.batch, indexed_size).await
            }
            Depth::Structure => Ok(Fetched {
                rows: log_range(self.tx.conn(), self.org, from, self.batch)
                    .await?
                    .into_iter()
                    .map(|log| (log, None, None))
                    .collect(),
                index: IndexDigest { rows: 0, digest: None },
            }),
        }
    }

    /// Feeds the verifier the checkpoints up to tree size `upto` it has not seen yet.
    async fn load_checkpoints(&mut self, upto: i64) -> Result<Result<(), Failure>, ChainError> {
        loop {
            let rows: Vec<(i64, Vec<u8>, String)> = audit_checkpoints::table
                .filter(audit_checkpoints::organization_id.eq(self.org))
                .filter(audit_checkpoints::tree_size.ge(self.checkpoints_from))
                .filter(audit_checkpoints::tree_size.le(upto))
                .order(audit_checkpoints::tree_size.asc())
                .limit(BATCH)
                .select((audit_checkpoints::tree_size, audit_checkpoints::root_hash, audit_checkpoints::note))
                .load(self.tx.conn())
                .await?;
            let full = rows.len() as i64 == BATCH;
            for (size, root, note) in rows {
                self.checkpoints_from = size + 1;
                let checkpoint = StoredCheckpoint { tree_size: size as u64, root_hash: root, note };
                if let Err(f) = self.verifier.push_checkpoint(checkpoint) {
                    return Ok(Err(f));
                }
            }
            if !full {
                return Ok(Ok(()));
            }
        }
    }

    /// Checks the next batch of entries; `false` once there is nothing more to step through
    /// (every entry up to the head checked, or something found wrong).
    pub async fn step(&mut self) -> Result<bool, ChainError> {
        let Some(end) = self.heads.as_ref().map(|h| h.tree_size) else { return Ok(false) };
        // The sequence is read by ranges up to the head's size, so a gap, however long, is met as
        // one (the verifier names its first missing number); anything the log holds beyond the
        // head is looked for at the end.
        if self.outcome.is_some() || self.from >= end {
            return Ok(false);
        }
        let fetched = match self.prefetched.take() {
            Some(fetched) => Ok(fetched),
            None => self.fetch(self.from).await,
        };
        let Fetched { rows, index } = match self.unreadable(self.from, fetched)? {
            Some(fetched) => fetched,
            None => return Ok(false),
        };
        let (org, depth, batch_from) = (self.org, self.depth, self.from);
        let indexed_size = self.heads.as_ref().map_or(0, |h| h.indexed_size);
        self.from += self.batch;
        // The checkpoints this batch reaches go to the verifier before its entries do, which
        // checks each one as the tree reaches its size.
        if let Err(f) = self.load_checkpoints(self.from.min(end)).await? {
            self.outcome = Some(Err(f));
            return Ok(false);
        }
        // Recomputing leaves is the CPU-heavy part: spread it over every core, off the runtime,
        // while the next range is read from the database. The entries are chained and added to
        // the tree there too (serial, but then overlapped with that read rather than after it),
        // unless the index disagrees with the fields: then the verifier is handed back untouched
        // and the batch is checked again below, with the index read row by row.
        let computing = self.lend_verifier(move |verifier| match depth {
            Depth::Content => {
                let (leaves, lines): (Vec<_>, Vec<_>) = recompute_leaves(org, None, &rows).into_iter().unzip();
                let lines = rows.iter().zip(&lines).map(|((log, _, _), line)| (log.seq, line.as_deref()));
                let agrees = expected_index_digest(lines, indexed_size).is_some_and(|expected| expected == index);
                agrees.then(|| verifier.entries(org, &rows, leaves))
            }
            Depth::Structure => {
                Some(verifier.entries(org, &rows, rows.iter().map(|(log, _, _)| Ok(log.leaf_hash)).collect()))
            }
        });
        let upcoming = if self.from < end { Some(self.fetch(self.from).await) } else { None };
        let checked = self.take_verifier_back(computing, batch_from).await?;
        let checked = match checked {
            Some(checked) => checked,
            None => {
                // The index disagrees with the fields somewhere in this batch: read it row by row
                // to name the first entry, and what about it.
                // (Never on an intact log: operators can alert on it.)
                metrics::counter!("custos_audit_verification_index_rereads_total").increment(1);
                let rows = stored_range(&mut self.tx, org, batch_from, self.batch, true).await;
                let Some(rows) = self.unreadable(batch_from, rows)? else { return Ok(false) };
                let rechecking = self.lend_verifier(move |verifier| {
                    let leaves =
                        recompute_leaves(org, Some(indexed_size), &rows).into_iter().map(|(leaf, _)| leaf).collect();
                    verifier.entries(org, &rows, leaves)
                });
                self.take_verifier_back(rechecking, batch_from).await?
            }
        };
        if let Err(f) = checked {
            self.outcome = Some(Err(f));
            return Ok(false);
        }
        match upcoming {
            Some(upcoming) => match self.unreadable(self.from, upcoming)? {
                Some(upcoming) => self.prefetched = Some(upcoming),
                None => return Ok(false),
            },
            None => self.prefetched = None,
        }
        Ok(self.from < end)
    }

    /// What was read from `at` on; a log too damaged to be read there (`Corrupt`) is this
    /// verification's finding — the pass is then over, and fails there — not an outage.
    fn unreadable<T>(&mut self, at: i64, read: Result<T, ChainError>) -> Result<Option<T>, ChainError> {
        match read {
            Ok(read) => Ok(Some(read)),
            Err(ChainError::Corrupt(_, problem)) => {
                self.outcome = Some(fail(at as u64, problem));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `work` with the verifier on a blocking worker (hashing and chaining are CPU-bound),
    /// lending it out until [`Pass::take_verifier_back`].
    fn lend_verifier<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut ChainVerifier) -> T + Send + 'static,
    ) -> tokio::task::JoinHandle<(ChainVerifier, T)> {
        let mut verifier = std::mem::replace(&mut self.verifier, ChainVerifier::idle());
        tokio::task::spawn_blocking(move || {
            let answer = work(&mut verifier);
            (verifier, answer)
        })
    }

    /// Waits for the worker the verifier was lent to. Should it die, the verifier is lost with
    /// it: the pass is then over (decided, so that nothing resumes from a state it no longer has).
    async fn take_verifier_back<T>(
        &mut self,
        worker: tokio::task::JoinHandle<(ChainVerifier, T)>,
        batch_from: i64,
    ) -> Result<T, ChainError> {
        match worker.await {
            Ok((verifier, answer)) => {
                self.verifier = verifier;
                Ok(answer)
            }
            Err(e) => {
                let problem = format!("verification worker failed: {e}");
                self.outcome = Some(fail(batch_from as u64, problem.clone()));
                Err(ChainError::Corrupt(self.org, problem))
            }
        }
    }

    /// Checks the end of the log against its head (unless something was already found wrong)
    /// and gives the report.
    pub async fn finish(mut self) -> Result<VerifyReport, ChainError> {
        while self.step().await? {}
        let mut outcome = match self.outcome.take() {
            Some(outcome) => outcome,
            None => self.check_end().await?,
        };
        let next = next_xid(&mut self.tx).await?;
        if let Some(beside) = self.beside.take() {
            beside.commit().await?;
        }
        self.tx.commit().await?;
        // The log may be intact and still not grow: say so, after anything wrong in the log itself.
        if let Some(heads) = &self.heads
            && let Err(halted) = counter_ahead(heads.sequenced_xid, next)
        {
            match outcome {
                Ok(()) => outcome = Err(Failure { seq: heads.tree_size as u64, problem: halted.to_string() }),
                Err(_) => self.report.notes.push(halted.to_string()),
            }
        }
        let mut report = self.report;
        if self.heads.is_some() {
            report.entries_checked = self.verifier.entries_checked;
            report.checkpoints_checked = self.verifier.checkpoints_checked;
            // The server signs within a second of a change; entries that stay unsigned are either
            // very recent, or their checkpoints were removed: said, for whoever reads the report.
            if let Some(unsigned) = self.verifier.unsigned(report.first_seq)
                && self.whole
                && outcome.is_ok()
                && !unsigned.is_empty()
            {
                report.notes.push(format!(
                    "entries {}..{} are not yet covered by a signed checkpoint: the server signs one within a second of a change, so if this persists, checkpoints are missing",
                    unsigned.start,
                    unsigned.end - 1
                ));
            }
        }
        (report.ok, report.first_bad_seq, report.problem) = verdict(outcome);
        Ok(report)
    }

    async fn check_end(&mut self) -> Result<Result<(), Failure>, ChainError> {
        let Some(heads) = self.heads.clone() else { return Ok(Ok(())) };
        let end = heads.tree_size;
        let beyond: Option<i64> = audit_log::table
            .filter(audit_log::organization_id.eq(self.org))
            .select(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                "max(first_seq + length(leaf_hashes) / 32)",
            ))
            .first(self.tx.conn())
            .await?;
        if let Some(held) = beyond.filter(|held| *held > end) {
            return Ok(Err(Failure {
                seq: end as u64,
                problem: format!("the log holds entries up to {}, beyond its head's size {end}", held - 1),
            }));
        }
        // Checkpoints beyond the last entry, and the head, must agree with what was found.
        if let Err(f) = self.load_checkpoints(i64::MAX).await? {
            return Ok(Err(f));
        }
        if let Err(f) = self.verifier.finish() {
            return Ok(Err(f));
        }
        let size = self.verifier.next_seq();
        if size != heads.tree_size as u64 {
            return Ok(Err(Failure {
                seq: size,
                problem: format!(
                    "entries missing at the end: the log holds {size} entries, its head records {}",
                    heads.tree_size
                ),
            }));
        }
        if self.verifier.chain().as_slice() != heads.chain_hash.as_slice()
            || self.verifier.frontier().to_bytes() != heads.frontier
        {
            return Ok(Err(Failure {
                seq: size.saturating_sub(1),
                problem: "hash mismatch: the head's chain hash or tree does not match the log".into(),
            }));
        }
        Ok(Ok(()))
    }
}

/// Where the content stored at `rows[at]` belongs, when it is another entry of the batch's: its
/// digest gives that entry's leaf hash in that entry's place. Only run on a mismatch, to tell
/// a reordering from an edit.
fn moved_from(org: Uuid, rows: &[Stored], at: usize) -> Option<u64> {
    let (_, _, entry) = rows.get(at)?;
    let digest = entry.as_ref()?.stored().digest(&mut crate::encoding::Scratch::default()).ok()?;
    rows.iter()
        .enumerate()
        .find(|(other, (log, _, _))| *other != at && leaf_hash(&org, log.seq as u64, &digest) == log.leaf_hash)
        .map(|(_, (log, _, _))| log.seq as u64)
}

/// Every row's leaf hash recomputed from its fields, in parallel over the available cores; with
/// `indexed_size`, the index rows read with them are checked too (those of entries below it must
/// be there and repeat their fields).
/// Without `indexed_size`, each row comes with the line its index row must digest to (see
/// [`crate::rows::Indexed::index_line`]), if its fields can say.
fn recompute_leaves(org: Uuid, indexed_size: Option<i64>, rows: &[Stored]) -> Vec<Recomputed> {
    parallel_batches(rows, |batch, part| {
        // Rows that cannot be hashed are answered at once; the rest go through the batch.
        let hashable: Vec<_> = part.iter().map(|row| hashable(indexed_size, row)).collect();
        let mut digests =
            crate::rows::digests(hashable.iter().filter_map(|row| row.as_ref().ok().copied()), batch).into_iter();
        hashable
            .into_iter()
            .zip(part)
            .map(|(row, (log, _, _))| {
                if let Err(e) = row {
                    return (Err(e), None);
                }
                let (digest, indexed) = digests.next().expect("one digest per hashable row");
                let line = indexed_size.is_none().then(|| indexed.index_line(log.seq, &log.event_id)).flatten();
                (digest.map(|d| leaf_hash(&org, log.seq as u64, &d)), line)
            })
            .collect()
    })
    .into_iter()
    // A worker that died leaves its entries unverified, never silently skipped.
    .map(|leaf| leaf.unwrap_or_else(|| (Err(Unverifiable::Malformed("leaf recomputation failed".to_owned())), None)))
    .collect()
}

/// A row's leaf as recomputed, and the line its index row must digest to.
type Recomputed = (Result<Hash, Unverifiable>, Option<Vec<u8>>);

/// A row's stored entry and index columns, ready to hash; or why its leaf cannot be recomputed.
fn hashable(
    indexed_size: Option<i64>,
    (log, index, entry): &Stored,
) -> Result<(StoredEntry<'_>, Option<Columns<'_>>), Unverifiable> {
    let entry = entry.as_ref().ok_or(Unverifiable::Missing)?;
    if index.as_ref().is_some_and(|i| i.event_id != log.event_id) {
        return Err(Unverifiable::Column("event id"));
    }
    let columns = index.as_ref().map(IndexRow::columns);
    if columns.is_none() && indexed_size.is_some_and(|size| log.seq < size) {
        return Err(Unverifiable::Unindexed);
    }
    Ok((entry.stored(), columns))
}

/// Items a worker hands `f` at once: enough to fill the SIMD lanes many times over, few enough
/// that the batch's buffers stay in cache and are reused rather than reallocated. A call ends
/// when its slowest worker's last slice does, so small slices also keep that idle tail short
/// (512 → 128: `verify-file` +8%).
pub(crate) const SUB_BATCH: usize = 128;

/// The cores to spread work over. Asked once: the answer reads cgroup files, which costs more
/// than a batch's bookkeeping.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).max(1))
}

/// `f` over `items`, a slice of at most [`SUB_BATCH`] at a time, on one worker per available
/// core, each with its own [`DigestBatch`]; `f` answers each item of the slice it is given, in
/// order. Workers take the next slice as they finish one (the database shares these cores, so
/// fixed halves leave one worker idle while the other is preempted). The answers come back in
/// order, `None` where a worker died (or miscounted).
pub(crate) fn parallel_batches<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&mut DigestBatch, &[T]) -> Vec<R> + Sync,
) -> Vec<Option<R>> {
    let workers = cores();
    let slices: Vec<&[T]> = items.chunks(SUB_BATCH).collect();
    // One slot per slice, filled by whichever worker answers it: a worker that dies loses only
    // the slice it was on.
    let answered: Vec<std::sync::Mutex<Option<Vec<R>>>> = slices.iter().map(|_| Default::default()).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, slices, next, answered_ref) = (&f, &slices, &next, &answered);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..workers.min(slices.len()))
            .map(|_| {
                scope.spawn(move || {
                    let mut batch = DigestBatch::default();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slice) = slices.get(at) else { break };
                        let answers = f(&mut batch, slice);
                        // Fewer answers than items would shift every later one: leave the slice unanswered.
                        if answers.len() == slice.len()
                            && let Ok(mut slot) = answered_ref[at].lock()
                        {
                            *slot = Some(answers);
                        }
                    }
                })
            })
            .collect();
        // Joined here, so that a worker's panic stays its own (the scope would resume it).
        for worker in workers {
            let _ = worker.join();
        }
    });
    slices
        .iter()
        .zip(answered)
        .flat_map(|(slice, slot)| match slot.into_inner().ok().flatten() {
            Some(answers) => answers.into_iter().map(Some).collect::<Vec<_>>(),
            None => std::iter::repeat_with(|| None).take(slice.len()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers come back in the items' order however the workers share the slices, and a slice
    /// answered wrongly (or by a worker that died) is reported as unanswered, item by item,
    /// never shifting the answers after it.
    #[test]
    fn parallel_batches_answer_in_order_and_name_what_they_could_not_answer() {
        let items: Vec<usize> = (0..5 * SUB_BATCH + 17).collect();
        let answered = parallel_batches(&items, |_, slice| slice.iter().map(|i| i * 2).collect());
        assert_eq!(answered, items.iter().map(|i| Some(i * 2)).collect::<Vec<_>>());

        let miscounted = parallel_batches(&items, |_, slice| {
            if slice[0] == 2 * SUB_BATCH {
                return Vec::new();
            }
            if slice[0] == 3 * SUB_BATCH {
                panic!("a worker dies");
            }
            slice.to_vec()
        });
        for (i, answer) in miscounted.iter().enumerate() {
            let lost = (2 * SUB_BATCH..4 * SUB_BATCH).contains(&i);
            assert_eq!(*answer, (!lost).then_some(i), "item {i}");
        }
        assert!(parallel_batches(&[] as &[usize], |_, slice| slice.to_vec()).is_empty());
    }
}
