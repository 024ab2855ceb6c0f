//! The audit trail as auditors read it: entries, checkpoints, proofs, verification, the public key.
//! Auditors and admins only (the public key is public).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use custos_core::ctx::Access;
use custos_core::filter::{DayEdge, contains_pattern, parse_opt_time_bound};
use custos_core::{ErrorKind, PageRequest, Problem, RequestCtx, timefmt};
use custos_db::schema::{audit_checkpoints, audit_heads, audit_index};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::merkle::{consistency_ranges, inclusion_ranges};
use crate::proofs::{NodeReader, ProofError};
use crate::rows::{IndexRow, Sequenced, contents_matching, contents_matching_between, hex, to_hash, with_log_rows};
use crate::runs::{Launch, RunRow};
use crate::sequencer::{AuditChain, ChainError, Heads};
use crate::verify::Depth;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Rejected(#[from] Problem),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Proof(#[from] ProofError),
}

impl From<diesel::result::Error> for AuditError {
    fn from(e: diesel::result::Error) -> Self {
        AuditError::Chain(e.into())
    }
}

impl From<custos_db::DbError> for AuditError {
    fn from(e: custos_db::DbError) -> Self {
        AuditError::Chain(ChainError::Db(e))
    }
}

impl From<AuditError> for Problem {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::Rejected(p) => p,
            AuditError::Chain(ChainError::Db(e)) => e.into(),
            AuditError::Chain(e @ ChainError::CounterBehind { .. }) => {
                Problem::new(ErrorKind::Unavailable, "Audit sequencing halted", e.to_string())
            }
            AuditError::Chain(ChainError::NoSuchVerification(id)) => Problem::not_found("verification", id),
            AuditError::Chain(e @ ChainError::VerificationRunning(_)) => {
                Problem::conflict("Verification already running", e.to_string())
            }
            AuditError::Chain(
                e @ (ChainError::Unresumable(_)
                | ChainError::VerificationBusy(_)
                | ChainError::VerificationTakenOver(_)),
            ) => Problem::conflict("Verification cannot be resumed", e.to_string()),
            AuditError::Proof(ProofError::Chain(ChainError::Db(e))) => e.into(),
            AuditError::Proof(e @ ProofError::BeyondTree { .. }) => {
                Problem::invalid("Invalid tree size", e.to_string())
            }
            AuditError::Proof(e @ ProofError::Pruned(_)) => {
                Problem::new(ErrorKind::Unprocessable, "Entry pruned", e.to_string())
            }
            other => Problem::internal(other),
        }
    }
}

type Result<T, E = AuditError> = std::result::Result<T, E>;

fn parse_run_id(raw: &str) -> Result<Uuid> {
    Ok(custos_core::filter::parse_id("verification", raw)?)
}

fn verify_response((id, r): (Uuid, crate::VerifyReport)) -> pb::VerifyAuditChainResponse {
    pb::VerifyAuditChainResponse {
        ok: r.ok,
        entries_checked: r.entries_checked as i64,
        checkpoints_checked: r.checkpoints_checked as i64,
        first_seq: r.first_seq as i64,
        tree_size: r.tree_size as i64,
        first_bad_seq: r.first_bad_seq.map(|s| s as i64),
        problem: r.problem,
        notes: r.notes,
        content_checked: r.content_checked,
        verification_id: id.to_string(),
    }
}

/// A verification run as auditors read it, its status as of `now`.
pub fn verification_pb(r: &RunRow, now: OffsetDateTime) -> pb::AuditVerification {
    let status = r.status_now(now).to_owned();
    let span = (r.tree_size - r.first_seq).max(0);
    let progress = match r.status.as_str() {
        "passed" => 1.0,
        _ if span == 0 => 0.0,
        _ => ((r.next_seq - r.first_seq) as f64 / span as f64).clamp(0.0, 1.0),
    };
    pb::AuditVerification {
        id: r.id.to_string(),
        resumable: status == "interrupted",
        status,
        content_checked: r.depth == "content",
        days: r.days.map(|d| d.max(0) as u32),
        first_seq: r.first_seq,
        tree_size: r.tree_size,
        next_seq: r.next_seq,
        entries_checked: r.entries_checked,
        checkpoints_checked: r.checkpoints_checked,
        progress,
        resumes: r.resumes,
        first_bad_seq: r.first_bad_seq,
        problem: r.problem.clone(),
        notes: r.notes.clone(),
        requested_by: r.requested_by.clone(),
        started_at: timefmt::timestamp(r.started_at),
        heartbeat_at: timefmt::timestamp(r.heartbeat_at),
        finished_at: r.finished_at.map(timefmt::timestamp),
        background: r.background,
    }
}

#[derive(Clone)]
pub struct AuditService {
    chain: AuditChain,
    holds: custos_db::Holds,
}

/// The value of a cursor this server issued for `kind` (`seq`, `run`).
fn decode_cursor<T: std::str::FromStr>(raw: &str, kind: &str) -> Result<T> {
    B64URL
        .decode(raw)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix(kind)?.strip_prefix(':')?.parse().ok())
        .ok_or_else(|| Problem::invalid_field("cursor", "not a cursor this server issued").into())
}

fn encode_cursor(kind: &str, value: impl std::fmt::Display) -> String {
    B64URL.encode(format!("{kind}:{value}"))
}

/// A date-range listing's cursor: the last entry's recording time (microseconds since the epoch,
/// as PostgreSQL holds it) and sequence number.
fn encode_time_cursor(at: OffsetDateTime, seq: i64) -> String {
    encode_cursor("at", format!("{}.{seq}", at.unix_timestamp_nanos() / 1000))
}

fn decode_time_cursor(raw: &str) -> Result<(OffsetDateTime, i64)> {
    let value: String = decode_cursor(raw, "at")?;
    value
        .split_once('.')
        .and_then(|(micros, seq)| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(micros.parse::<i128>().ok()?.checked_mul(1000)?).ok()?;
            // Only times PostgreSQL holds, as the cursors this server issues are.
            Some((at, seq.parse().ok()?)).filter(|(at, _)| (1..=9999).contains(&at.year()))
        })
        .ok_or_else(|| Problem::invalid_field("cursor", "not a cursor this server issued").into())
}

/// An entry as auditors read it: its place in the log, its index row and its fields.
pub fn entry_pb((log, index, entry): &Sequenced) -> pb::AuditEntry {
    let stored = entry.stored();
    let json = |name: &str| match stored.get(name) {
        Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
        _ => "null".to_owned(),
    };
    let text = |name: &str| entry.value(name).and_then(|v| v.as_str().map(str::to_owned));
    pb::AuditEntry {
        seq: log.seq,
        id: log.event_id.to_string(),
        recorded_at: timefmt::timestamp(index.recorded_at),
        sequenced_at: timefmt::timestamp(log.sequenced_at),
        actor: index.actor.clone(),
        actor_detail: json("actor_detail"),
        action: index.action.clone(),
        resource_type: index.resource_type.clone(),
        resource_id: index.resource_id.clone(),
        before: entry.side("before").to_string(),
        after: entry.side("after").to_string(),
        request_id: text("request_id"),
        client_addr: text("client_addr"),
        withheld_fields: entry.withheld_fields(),
        leaf_hash: hex(&log.leaf_hash),
        chain_hash: hex(&log.chain_hash),
    }
}

/// What a listing filters on, besides its search.
struct ListFilters {
    actor: Option<String>,
    action: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    recorded_after: Option<OffsetDateTime>,
    recorded_before: Option<OffsetDateTime>,
}

type IndexQuery = audit_index::BoxedQuery<'static, Pg>;

impl ListFilters {
    /// The organisation's index rows that pass the filters, numbered below `below` if given.
    fn query(&self, org: Uuid, below: Option<i64>) -> IndexQuery {
        let mut q = audit_index::table.filter(audit_index::organization_id.eq(org)).into_boxed::<Pg>();
        if let Some(a) = &self.actor {
            q = q.filter(audit_index::actor.eq(a.clone()));
        }
        if let Some(a) = &self.action {
            q = q.filter(audit_index::action.eq(a.clone()));
        }
        if let Some(t) = &self.resource_type {
            q = q.filter(audit_index::resource_type.eq(t.clone()));
        }
        if let Some(id) = &self.resource_id {
            q = q.filter(audit_index::resource_id.eq(id.clone()));
        }
        if let Some(after) = self.recorded_after {
            q = q.filter(audit_index::recorded_at.ge(after));
        }
        if let Some(before) = self.recorded_before {
            q = q.filter(audit_index::recorded_at.le(before));
        }
        if let Some(below) = below {
            q = q.filter(audit_index::seq.lt(below));
        }
        q
    }
}

/// A page of search results, and where the search stopped short of the page if it did: the
/// sequence number below which it carries on (its scan budget was spent first).
struct Found {
    rows: Vec<IndexRow>,
    resume_below: Option<i64>,
}

/// What a search matches: the needle as typed, against the indexed values, and as JSON writes
/// it inside a string, against the fields' stored form (values are stored as JSON, so a quote or
/// a backslash in a value is stored escaped).
struct Patterns {
    indexed: String,
    fields: String,
}

impl Patterns {
    fn of(needle: &str) -> Patterns {
        // Escaped by the very writer that stored the values, so the two cannot drift apart.
        let mut json = Vec::new();
        crate::encoding::write_json_string(needle.trim(), &mut json);
        let json = String::from_utf8_lossy(&json);
        let inner = json.strip_prefix('"').and_then(|j| j.strip_suffix('"')).unwrap_or(&json);
        Patterns { indexed: contains_pattern(needle), fields: contains_pattern(inner) }
    }
}

/// Up to `limit` index rows passing `filters` whose indexed values or committed fields match
/// `needle` (case-insensitively, anywhere), newest first, reading at most `budget` entries.
///
/// Two ways there. With an equality filter on the actor or the resource, few index rows pass, so
/// the index is walked newest first and only those rows' fields are searched. Otherwise the runs'
/// fields are searched directly, in growing windows of sequence numbers, and only the matches are
/// looked up in the index (which applies any other filter): the indexed values are fields too,
/// so a needle matching one matches its field (and a withheld value is blanked in both).
async fn search_entries(
    tx: &mut custos_db::Tx,
    org: Uuid,
    filters: &ListFilters,
    below: Option<i64>,
    needle: &str,
    limit: i64,
    budget: i64,
) -> Result<Found> {
    let patterns = Patterns::of(needle);
    if filters.actor.is_some() || filters.resource_id.is_some() {
        return search_index_first(tx, org, filters, below, &patterns, limit, budget).await;
    }
    let pattern = &patterns.fields;
    let Some((pruned_before, indexed_size)) = audit_heads::table
        .filter(audit_heads::organization_id.eq(org))
        .select((audit_heads::pruned_before, audit_heads::indexed_size))
        .first::<(i64, i64)>(tx.conn())
        .await
        .optional()?
    else {
        return Ok(Found { rows: Vec::new(), resume_below: None });
    };
    let mut to = below.map_or(indexed_size, |b| b.min(indexed_size));
    let (mut found, mut scanned, mut window) = (Vec::new(), 0, 4 * limit.max(64));
    while to > pruned_before {
        let from = (to - window).max(pruned_before);
        let seqs = contents_matching_between(tx, org, from, to, pattern).await?;
        if !seqs.is_empty() {
            let rows: Vec<IndexRow> = filters
                .query(org, None)
                .filter(audit_index::seq.eq_any(&seqs))
                .order(audit_index::seq.desc())
                .select(IndexRow::as_select())
                .load(tx.conn())
                .await?;
            found.extend(rows);
        }
        scanned += to - from;
        to = from;
        if found.len() as i64 >= limit {
            found.truncate(limit as usize);
            return Ok(Found { rows: found, resume_below: None });
        }
        if scanned >= budget {
            break;
        }
        window = (window * 2).min(65_536);
    }
    Ok(Found { rows: found, resume_below: (to > pruned_before).then_some(to) })
}

/// [`search_entries`] through the index: candidates passing `filters` taken newest first in
/// growing chunks, each chunk's runs searched once.
async fn search_index_first(
    tx: &mut custos_db::Tx,
    org: Uuid,
    filters: &ListFilters,
    mut below: Option<i64>,
    patterns: &Patterns,
    limit: i64,
    budget: i64,
) -> Result<Found> {
    let (mut found, mut scanned, mut chunk) = (Vec::new(), 0, 4 * limit.max(64));
    let pattern = &patterns.indexed;
    loop {
        let indexed_match = audit_index::actor
            .ilike(pattern.to_owned())
            .or(audit_index::action.ilike(pattern.to_owned()))
            .or(audit_index::resource_type.ilike(pattern.to_owned()))
            .or(audit_index::resource_id.ilike(pattern.to_owned()));
        let candidates: Vec<(IndexRow, bool)> = filters
            .query(org, below)
            .order(audit_index::seq.desc())
            .limit(chunk)
            .select((IndexRow::as_select(), indexed_match))
            .load(tx.conn())
            .await?;
        let exhausted = (candidates.len() as i64) < chunk;
        scanned += candidates.len() as i64;
        below = candidates.last().map(|(index, _)| index.seq);
        let unmatched: Vec<i64> = candidates.iter().filter(|(_, hit)| !hit).map(|(index, _)| index.seq).collect();
        let by_fields = contents_matching(tx, org, &unmatched, &patterns.fields).await?;
        found.extend(
            candidates
                .into_iter()
                .filter(|(index, hit)| *hit || by_fields.contains(&index.seq))
                .map(|(index, _)| index),
        );
        if found.len() as i64 >= limit || exhausted || below.is_none() {
            found.truncate(limit as usize);
            return Ok(Found { rows: found, resume_below: None });
        }
        if scanned >= budget {
            return Ok(Found { rows: found, resume_below: below });
        }
        chunk = (chunk * 2).min(16_384);
    }
}

fn checkpoint_pb(size: i64, root: &[u8], created: OffsetDateTime, note: String) -> pb::AuditCheckpoint {
    pb::AuditCheckpoint { tree_size: size, root_hash: hex(root), created_at: timefmt::timestamp(created), note }
}

impl AuditService {
    pub fn new(chain: AuditChain, holds: custos_db::Holds) -> Self {
        AuditService { chain, holds }
    }

    pub fn chain(&self) -> &AuditChain {
        &self.chain
    }

    pub async fn list_entries(
        &self,
        ctx: &RequestCtx,
        req: pb::ListAuditEntriesRequest,
    ) -> Result<pb::ListAuditEntriesResponse> {
        ctx.require(Access::Audit)?;
        let size = PageRequest::new(Some(1), req.page_size.or(Some(50)))?.page_size as i64;
        let org = ctx.organization_id;
        let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let filters = ListFilters {
            actor: text(&req.actor),
            action: text(&req.action),
            resource_type: text(&req.resource_type),
            resource_id: text(&req.resource_id),
            recorded_after: parse_opt_time_bound("recorded_after", req.recorded_after.as_deref(), DayEdge::Start)?,
            recorded_before: parse_opt_time_bound("recorded_before", req.recorded_before.as_deref(), DayEdge::End)?,
        };
        // A date range is read through the recording-time index, newest recorded first: ordered
        // by sequence number, a range deep in the log would be found only after scanning every
        // entry above it (its cursor is then a recording time and a sequence number).
        let by_time =
            text(&req.search).is_none() && (filters.recorded_after.is_some() || filters.recorded_before.is_some());
        let cursor = text(&req.cursor);
        let below = cursor.as_deref().filter(|_| !by_time).map(|c| decode_cursor::<i64>(c, "seq")).transpose()?;
        let before = cursor.as_deref().filter(|_| by_time).map(decode_time_cursor).transpose()?;
        let mut tx = self.chain.db.begin(org).await?;
        let Found { rows: mut page, resume_below } = match text(&req.search) {
            None if by_time => {
                let mut q = filters.query(org, None);
                if let Some((at, seq)) = before {
                    // A row comparison, which the index range scan starts from (an OR of the two
                    // columns would be a filter, re-reading the range above the cursor each page).
                    use diesel::sql_types::{BigInt, Bool, Timestamptz};
                    q = q.filter(
                        diesel::dsl::sql::<Bool>("(audit_index.recorded_at, audit_index.seq) < (")
                            .bind::<Timestamptz, _>(at)
                            .sql(", ")
                            .bind::<BigInt, _>(seq)
                            .sql(")"),
                    );
                }
                let rows = q
                    .order((audit_index::recorded_at.desc(), audit_index::seq.desc()))
                    .limit(size + 1)
                    .select(IndexRow::as_select())
                    .load(tx.conn())
                    .await?;
                Found { rows, resume_below: None }
            }
            None => Found {
                rows: filters
                    .query(org, below)
                    .order(audit_index::seq.desc())
                    .limit(size + 1)
                    .select(IndexRow::as_select())
                    .load(tx.conn())
                    .await?,
                resume_below: None,
            },
            Some(search) => {
                let budget = self.chain.config.search_scan as i64;
                search_entries(&mut tx, org, &filters, below, &search, size + 1, budget).await?
            }
        };
        let more = page.len() as i64 > size;
        page.truncate(size as usize);
        // A search that spent its budget answers with what it found and where to carry on: a
        // page may then be short, even empty, and still have a next one.
        let next_cursor = match (more, page.last(), resume_below) {
            (true, Some(last), _) if by_time => Some(encode_time_cursor(last.recorded_at, last.seq)),
            (true, Some(last), _) => Some(encode_cursor("seq", last.seq)),
            (_, _, Some(resume)) => Some(encode_cursor("seq", resume)),
            _ => None,
        };
        let rows = with_log_rows(&mut tx, org, page).await?;
        tx.commit().await?;
        Ok(pb::ListAuditEntriesResponse { results: rows.iter().map(entry_pb).collect(), next_cursor })
    }

    pub async fn get_entry(&self, ctx: &RequestCtx, req: pb::GetAuditEntryRequest) -> Result<pb::AuditEntry> {
        ctx.require(Access::Audit)?;
        let mut tx = self.chain.db.begin(ctx.organization_id).await?;
        let row = self.chain.entry(&mut tx, ctx.organization_id, req.seq).await?;
        tx.commit().await?;
        Ok(entry_pb(&row.ok_or_else(|| Problem::not_found("Audit entry", req.seq))?))
    }

    pub async fn list_checkpoints(
        &self,
        ctx: &RequestCtx,
        req: pb::ListCheckpointsRequest,
    ) -> Result<pb::ListCheckpointsResponse> {
        ctx.require(Access::Audit)?;
        let size = PageRequest::new(Some(1), req.page_size.or(Some(50)))?.page_size as i64;
        let mut q = audit_checkpoints::table
            .filter(audit_checkpoints::organization_id.eq(ctx.organization_id))
            .into_boxed::<Pg>();
        if let Some(c) = req.cursor.as_deref().filter(|c| !c.is_empty()) {
            q = q.filter(audit_checkpoints::tree_size.lt(decode_cursor::<i64>(c, "seq")?));
        }
        let mut tx = self.chain.db.begin(ctx.organization_id).await?;
        let mut rows: Vec<(i64, Vec<u8>, OffsetDateTime, String)> = q
            .order(audit_checkpoints::tree_size.desc())
            .limit(size + 1)
            .select((
                audit_checkpoints::tree_size,
                audit_checkpoints::root_hash,
                audit_checkpoints::created_at,
                audit_checkpoints::note,
            ))
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let next_cursor = if more { rows.last().map(|r| encode_cursor("seq", r.0)) } else { None };
        Ok(pb::ListCheckpointsResponse {
            results: rows.into_iter().map(|(s, r, c, n)| checkpoint_pb(s, &r, c, n)).collect(),
            next_cursor,
        })
    }

    pub async fn latest_checkpoint(
        &self,
        ctx: &RequestCtx,
        _req: pb::LatestCheckpointRequest,
    ) -> Result<pb::AuditCheckpoint> {
        ctx.require(Access::Audit)?;
        let mut tx = self.chain.db.begin(ctx.organization_id).await?;
        let row: Option<(i64, Vec<u8>, OffsetDateTime, String)> = audit_checkpoints::table
            .filter(audit_checkpoints::organization_id.eq(ctx.organization_id))
            .order(audit_checkpoints::tree_size.desc())
            .select((
                audit_checkpoints::tree_size,
                audit_checkpoints::root_hash,
                audit_checkpoints::created_at,
                audit_checkpoints::note,
            ))
            .first(tx.conn())
            .await
            .optional()?;
        tx.commit().await?;
        let (s, r, c, n) = row.ok_or_else(|| {
            Problem::new(ErrorKind::NotFound, "No checkpoint yet", "The log has no signed checkpoint yet")
        })?;
        Ok(checkpoint_pb(s, &r, c, n))
    }

    /// Integrates every committed entry and signs a checkpoint now (if the tree grew).
    pub async fn create_checkpoint(
        &self,
        ctx: &RequestCtx,
        _req: pb::CreateCheckpointRequest,
    ) -> Result<pb::AuditCheckpoint> {
        ctx.require(Access::Audit)?;
        self.chain.sync(ctx.organization_id).await?;
        self.latest_checkpoint(ctx, pb::LatestCheckpointRequest {}).await
    }

    async fn heads(&self, ctx: &RequestCtx, tx: &mut custos_db::Tx) -> Result<Heads> {
        let heads: Option<Heads> = audit_heads::table
            .filter(audit_heads::organization_id.eq(ctx.organization_id))
            .select(Heads::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        heads.ok_or_else(|| Problem::new(ErrorKind::NotFound, "Empty log", "The log has no entries yet").into())
    }

    async fn checkpoint_note(tx: &mut custos_db::Tx, org: Uuid, size: i64) -> Result<Option<(Vec<u8>, String)>> {
        Ok(audit_checkpoints::table
            .filter(audit_checkpoints::organization_id.eq(org))
            .filter(audit_checkpoints::tree_size.eq(size))
            .select((audit_checkpoints::root_hash, audit_checkpoints::note))
            .first(tx.conn())
            .await
            .optional()?)
    }

    pub async fn get_inclusion_proof(
        &self,
        ctx: &RequestCtx,
        req: pb::InclusionProofRequest,
    ) -> Result<pb::InclusionProof> {
        ctx.require(Access::Audit)?;
        let seq =
            req.seq.ok_or_else(|| Problem::invalid_field("seq", "This parameter is required: the entry to prove"))?;
        let org = ctx.organization_id;
        let mut tx = self.chain.db.begin(org).await?;
        let mut heads = self.heads(ctx, &mut tx).await?;
        if req.tree_size.is_none() && seq >= heads.checkpoint_size {
            // The entry is not in a checkpoint yet: integrate and sign now rather than make the
            // auditor wait for the next one.
            tx.commit().await?;
            self.chain.sync(org).await?;
            tx = self.chain.db.begin(org).await?;
            heads = self.heads(ctx, &mut tx).await?;
        }
        let size = req.tree_size.unwrap_or(heads.checkpoint_size);
        if size <= 0 || size > heads.tree_size {
            return Err(ProofError::BeyondTree { requested: size.max(0) as u64, size: heads.tree_size as u64 }.into());
        }
        if seq < 0 || seq >= size {
            return Err(
                Problem::invalid_field("seq", format!("entry {} is not in a tree of {size} entries", seq)).into()
            );
        }
        if seq < heads.pruned_before {
            return Err(ProofError::Pruned(seq as u64).into());
        }
        let checkpoint = Self::checkpoint_note(&mut tx, org, size).await?;
        let mut reader = NodeReader {
            tx: &mut tx,
            org,
            pruned_before: heads.pruned_before as u64,
            boundary: heads.prune_frontier()?,
        };
        let leaf = reader.range(seq as u64, seq as u64 + 1).await?;
        let proof = reader.ranges(inclusion_ranges(seq as u64, size as u64)).await?;
        let root = match &checkpoint {
            Some((root, _)) => to_hash(root).ok_or_else(|| Problem::internal("malformed checkpoint root"))?,
            None => reader.range(0, size as u64).await?,
        };
        tx.commit().await?;
        Ok(pb::InclusionProof {
            seq,
            tree_size: size,
            leaf_hash: hex(&leaf),
            root_hash: hex(&root),
            proof: proof.iter().map(|h| hex(h)).collect(),
            checkpoint: checkpoint.map(|(_, note)| note),
        })
    }

    pub async fn get_consistency_proof(
        &self,
        ctx: &RequestCtx,
        req: pb::ConsistencyProofRequest,
    ) -> Result<pb::ConsistencyProof> {
        ctx.require(Access::Audit)?;
        let org = ctx.organization_id;
        let mut tx = self.chain.db.begin(org).await?;
        let heads = self.heads(ctx, &mut tx).await?;
        let second = req.second.unwrap_or(heads.checkpoint_size);
        if second <= 0 || second > heads.tree_size {
            return Err(ProofError::BeyondTree { requested: second.max(0) as u64, size: heads.tree_size as u64 }.into());
        }
        if req.first <= 0 || req.first > second {
            return Err(Problem::invalid_field("first", format!("must be between 1 and {second}")).into());
        }
        let mut roots = Vec::new();
        for size in [req.first, second] {
            roots.push(Self::checkpoint_note(&mut tx, org, size).await?.and_then(|(r, _)| to_hash(&r)));
        }
        let mut reader = NodeReader {
            tx: &mut tx,
            org,
            pruned_before: heads.pruned_before as u64,
            boundary: heads.prune_frontier()?,
        };
        let proof = reader.ranges(consistency_ranges(req.first as u64, second as u64)).await?;
        let first_root = match roots[0] {
            Some(r) => r,
            None => reader.range(0, req.first as u64).await?,
        };
        let second_root = match roots[1] {
            Some(r) => r,
            None => reader.range(0, second as u64).await?,
        };
        tx.commit().await?;
        Ok(pb::ConsistencyProof {
            first: req.first,
            second,
            first_root: hex(&first_root),
            second_root: hex(&second_root),
            proof: proof.iter().map(|h| hex(h)).collect(),
        })
    }

    /// Runs a verification to the end as a run whose progress is saved as it goes.
    pub async fn verify_chain(
        &self,
        ctx: &RequestCtx,
        req: pb::VerifyAuditChainRequest,
    ) -> Result<pb::VerifyAuditChainResponse> {
        ctx.require(Access::Audit)?;
        let depth = Depth::structure_only(req.structure_only);
        let run = self.chain.start_verification(ctx, req.days, depth, Launch::Attached).await?;
        Ok(verify_response(run.run_to_end(|_| {}).await?))
    }

    /// Starts a verification in the background (on this server's runtime) and answers at once
    /// with the run, whose progress `get_verification` shows. Should the server stop first, the
    /// run is interrupted, and the server resumes it once its lease lapses (see
    /// [`AuditChain::resume_interrupted`], the platform's `audit.verification_resumer` job).
    pub async fn start_verification(
        &self,
        ctx: &RequestCtx,
        req: pb::StartAuditVerificationRequest,
    ) -> Result<pb::AuditVerification> {
        ctx.require(Access::Audit)?;
        let depth = Depth::structure_only(req.structure_only);
        let run = self.chain.start_verification(ctx, req.days, depth, Launch::Background).await?;
        let started = verification_pb(run.row(), timefmt::now());
        let id = run.id();
        tokio::spawn(async move {
            if let Err(e) = run.run_to_end(|_| {}).await {
                tracing::error!(verification = %id, error = %e, "a background verification stopped; the server resumes it once it shows as interrupted");
            }
        });
        Ok(started)
    }

    pub async fn list_verifications(
        &self,
        ctx: &RequestCtx,
        req: pb::ListAuditVerificationsRequest,
    ) -> Result<pb::ListAuditVerificationsResponse> {
        ctx.require(Access::Audit)?;
        let size = PageRequest::new(Some(1), req.page_size.or(Some(50)))?.page_size as i64;
        let before = match req.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(decode_cursor::<Uuid>(c, "run")?),
            None => None,
        };
        let mut rows = self.chain.verifications(ctx, before, size + 1).await?;
        let more = rows.len() as i64 > size;
        rows.truncate(size as usize);
        let now = timefmt::now();
        Ok(pb::ListAuditVerificationsResponse {
            next_cursor: if more { rows.last().map(|r| encode_cursor("run", r.id)) } else { None },
            results: rows.iter().map(|r| verification_pb(r, now)).collect(),
        })
    }

    pub async fn get_verification(
        &self,
        ctx: &RequestCtx,
        req: pb::GetAuditVerificationRequest,
    ) -> Result<pb::AuditVerification> {
        ctx.require(Access::Audit)?;
        let row = self.chain.verification(ctx, parse_run_id(&req.id)?).await?;
        Ok(verification_pb(&row, timefmt::now()))
    }

    /// Takes over an interrupted run and runs it to the end.
    pub async fn resume_verification(
        &self,
        ctx: &RequestCtx,
        req: pb::ResumeAuditVerificationRequest,
    ) -> Result<pb::VerifyAuditChainResponse> {
        ctx.require(Access::Audit)?;
        let run = self.chain.resume_verification(ctx, parse_run_id(&req.id)?).await?;
        Ok(verify_response(run.run_to_end(|_| {}).await?))
    }

    /// Withholds fields of an entry (admins only).
    pub async fn withhold_fields(&self, ctx: &RequestCtx, req: pb::WithholdFieldsRequest) -> Result<pb::AuditEntry> {
        ctx.require(Access::Admin)?;
        let row =
            self.chain.withhold(ctx, req.seq, &req.fields, &req.reason, &*self.holds).await.map_err(|e| match e {
                crate::withhold::WithholdError::Rejected(p) => AuditError::Rejected(p),
                crate::withhold::WithholdError::Chain(c) => AuditError::Chain(c),
            })?;
        Ok(entry_pb(&row))
    }

    /// The checkpoint signing key; anyone may fetch it (with credentials, the caller's log origin too).
    pub async fn get_public_key(
        &self,
        ctx: Option<&RequestCtx>,
        _req: pb::PublicKeyRequest,
    ) -> Result<pb::PublicKeyResponse> {
        let v = self.chain.signer().verifier();
        let id = v.key_id();
        Ok(pb::PublicKeyResponse {
            algorithm: "Ed25519".into(),
            key_name: v.name.clone(),
            key_id: hex(&id),
            public_key: B64.encode(v.key.as_bytes()),
            verifier_key: v.to_note_key(),
            origin: ctx.map(|c| self.chain.origin(c.organization_id)).unwrap_or_default(),
        })
    }
}
