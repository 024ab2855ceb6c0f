//! The audit tables' rows, and how an entry's digest and readable form come from them.

use custos_core::timefmt;
use std::collections::HashMap;

use bytes::Bytes;
use custos_db::Tx;
use custos_db::schema::{audit_contents, audit_entries, audit_index, audit_log};
use diesel::deserialize::FromSql;
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable};
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::encoding::{DigestBatch, FieldRef, Hash, Scratch, StoredEntry, is_json_string};
use crate::sequencer::ChainError;

/// What an index column shows once the field it repeats was withheld.
pub const PLACEHOLDER: &str = "[withheld]";

/// A sequenced entry's content: its committed fields and their salts, as stored. Read from a run,
/// it shares the run's buffers (one allocation per run, not two per entry: at millions of
/// entries a verification spent more on allocating and freeing them than on hashing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// UTF-8, checked when read.
    fields: Bytes,
    salts: Bytes,
}

impl EntryRow {
    pub fn new(fields: String, salts: Vec<u8>) -> Self {
        EntryRow { fields: fields.into(), salts: salts.into() }
    }

    /// The field lines.
    pub fn fields(&self) -> &str {
        std::str::from_utf8(&self.fields).expect("checked as UTF-8 when read")
    }

    pub fn salts(&self) -> &[u8] {
        &self.salts
    }
}

/// A row of `audit_entries`: an entry as its writer wrote it, not yet moved into its run.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_entries)]
struct QueuedEntry {
    event_id: Uuid,
    fields: String,
    salts: Vec<u8>,
}

/// A one-dimensional array in PostgreSQL's binary form, kept whole: its elements are slices of
/// it, never copied out one by one.
#[derive(Debug, Clone, diesel::deserialize::FromSqlRow)]
pub(crate) struct SentArray(Bytes);

/// Any element type: the array's form does not depend on it (its elements are read as bytes).
impl<ST: 'static> FromSql<Array<Nullable<ST>>, Pg> for SentArray {
    fn from_sql(value: PgValue<'_>) -> diesel::deserialize::Result<Self> {
        Ok(SentArray(Bytes::copy_from_slice(value.as_bytes())))
    }
}

impl SentArray {
    /// Its elements, in order (`None` for NULL); `None` if it is not a one-dimensional array as
    /// PostgreSQL sends one (`array_send`: dimensions, null flag, element type, each dimension's
    /// length and lower bound, then each element's length, -1 for NULL, and bytes).
    fn elements(&self) -> Option<Vec<Option<Bytes>>> {
        let sent = &self.0;
        let int = |at: usize| -> Option<i32> { Some(i32::from_be_bytes(sent.get(at..at + 4)?.try_into().ok()?)) };
        let (count, mut at) = match int(0)? {
            0 => (0, 12),
            1 => (usize::try_from(int(12)?).ok()?, 20),
            _ => return None,
        };
        let mut elements = Vec::with_capacity(count);
        for _ in 0..count {
            let len = int(at)?;
            at += 4;
            let Ok(len) = usize::try_from(len) else {
                elements.push(None);
                continue;
            };
            let end = at.checked_add(len).filter(|end| *end <= sent.len())?;
            elements.push(Some(sent.slice(at..end)));
            at = end;
        }
        (at == sent.len()).then_some(elements)
    }
}

/// A row of `audit_contents`: the contents of the entries of one run of the log, element k
/// being entry `first_seq + k`; NULL where an entry's content is gone.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_contents)]
pub(crate) struct ContentRun {
    pub first_seq: i64,
    pub fields: SentArray,
    pub salts: SentArray,
}

impl ContentRun {
    /// Its entries, `(seq, content)`, in order; `None` if its arrays are not what PostgreSQL
    /// sends for them, or a field text is not UTF-8.
    fn into_entries(self) -> Option<impl Iterator<Item = (i64, Option<EntryRow>)>> {
        let first = self.first_seq;
        let fields = self.fields.elements()?;
        if fields.iter().flatten().any(|f| std::str::from_utf8(f).is_err()) {
            return None;
        }
        let salts = self.salts.elements()?.into_iter().chain(std::iter::repeat(None));
        Some(fields.into_iter().zip(salts).enumerate().map(move |(k, content)| {
            let entry = match content {
                (Some(fields), Some(salts)) => Some(EntryRow { fields, salts }),
                _ => None,
            };
            (first + k as i64, entry)
        }))
    }
}

/// Entries per row of `audit_log` at most. A run never crosses a multiple of it, so a full run
/// holds exactly the leaves under one stored tree node of level [`crate::sequencer::STRATUM`].
pub const RUN_WIDTH: u64 = 256;
const _: () = assert!(RUN_WIDTH == 1 << crate::sequencer::STRATUM);

/// A row of `audit_log`: consecutive entries' ids, leaf hashes and chain hashes, concatenated.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub(crate) struct LogRun {
    pub first_seq: i64,
    pub sequenced_at: OffsetDateTime,
    pub event_ids: Vec<u8>,
    pub leaf_hashes: Vec<u8>,
    pub chain_hashes: Vec<u8>,
}

impl LogRun {
    /// Its entries. Should its columns disagree on how many there are (the table's check forbids
    /// it), only the entries all of them describe are read: the rest show up as missing.
    fn entries(&self) -> impl Iterator<Item = LogRow> + '_ {
        let n = (self.event_ids.len() / 16).min(self.leaf_hashes.len() / 32).min(self.chain_hashes.len() / 32);
        (0..n).map(move |k| LogRow {
            seq: self.first_seq + k as i64,
            event_id: Uuid::from_slice(&self.event_ids[k * 16..(k + 1) * 16]).expect("16 bytes"),
            sequenced_at: self.sequenced_at,
            leaf_hash: self.leaf_hashes[k * 32..(k + 1) * 32].try_into().expect("32 bytes"),
            chain_hash: self.chain_hashes[k * 32..(k + 1) * 32].try_into().expect("32 bytes"),
        })
    }
}

/// An entry's place in the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub seq: i64,
    pub event_id: Uuid,
    /// When its run was sequenced.
    pub sequenced_at: OffsetDateTime,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// The log's entries with sequence numbers in `[from, from + count)`, in order. Where the log has
/// a gap the result has one too: callers step through the sequence by ranges, never by rows, so
/// that a gap is seen as one.
pub(crate) async fn log_range(
    mut conn: &AsyncPgConnection,
    org: Uuid,
    from: i64,
    count: i64,
) -> Result<Vec<LogRow>, ChainError> {
    let runs: Vec<LogRun> = audit_log::table
        .filter(audit_log::organization_id.eq(org))
        .filter(audit_log::first_seq.gt(from - RUN_WIDTH as i64))
        .filter(audit_log::first_seq.lt(from.saturating_add(count)))
        .order(audit_log::first_seq.asc())
        .select(LogRun::as_select())
        .load(&mut conn)
        .await?;
    let end = from.saturating_add(count);
    Ok(runs.iter().flat_map(LogRun::entries).filter(|l| l.seq >= from && l.seq < end).collect())
}

/// The runs of the log that start in `[from, to)` or hold `from`, as `(first_seq, entries)`, in
/// order.
pub(crate) async fn runs_from(tx: &mut Tx, org: Uuid, from: i64, to: i64) -> Result<Vec<(i64, i64)>, ChainError> {
    let runs: Vec<(i64, i32)> = audit_log::table
        .filter(audit_log::organization_id.eq(org))
        .filter(audit_log::first_seq.gt(from - RUN_WIDTH as i64))
        .filter(audit_log::first_seq.lt(to))
        .order(audit_log::first_seq.asc())
        .select((audit_log::first_seq, diesel::dsl::sql::<diesel::sql_types::Integer>("length(leaf_hashes) / 32")))
        .load(tx.conn())
        .await?;
    Ok(runs.into_iter().map(|(first, n)| (first, i64::from(n))).filter(|(first, n)| first + n > from).collect())
}

/// The leaf hashes of entries `[from, from + count)` — what proofs read, without the runs' other
/// columns; a gap in the log shortens the result.
pub(crate) async fn leaf_range(tx: &mut Tx, org: Uuid, from: i64, count: i64) -> Result<Vec<Hash>, ChainError> {
    let end = from.saturating_add(count);
    let runs: Vec<(i64, Vec<u8>)> = audit_log::table
        .filter(audit_log::organization_id.eq(org))
        .filter(audit_log::first_seq.gt(from - RUN_WIDTH as i64))
        .filter(audit_log::first_seq.lt(end))
        .order(audit_log::first_seq.asc())
        .select((audit_log::first_seq, audit_log::leaf_hashes))
        .load(tx.conn())
        .await?;
    Ok(runs
        .iter()
        .flat_map(|(first, leaves)| leaves.chunks_exact(32).enumerate().map(move |(k, leaf)| (first + k as i64, leaf)))
        .filter(|(seq, _)| *seq >= from && *seq < end)
        .filter_map(|(_, leaf)| to_hash(leaf))
        .collect())
}

/// The log rows of the entries numbered `seqs` (in any order), each read as its slice of its run;
/// entries the log does not hold are absent.
pub(crate) async fn log_rows_at(tx: &mut Tx, org: Uuid, seqs: &[i64]) -> Result<HashMap<i64, LogRow>, ChainError> {
    #[derive(diesel::QueryableByName)]
    struct Slice {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        sequenced_at: OffsetDateTime,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        event_id: Vec<u8>,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        leaf_hash: Vec<u8>,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        chain_hash: Vec<u8>,
    }
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    let slices: Vec<Slice> = diesel::sql_query(
        "SELECT s.seq, r.sequenced_at,
                substring(r.event_ids FROM (s.seq - r.first_seq)::int * 16 + 1 FOR 16) AS event_id,
                substring(r.leaf_hashes FROM (s.seq - r.first_seq)::int * 32 + 1 FOR 32) AS leaf_hash,
                substring(r.chain_hashes FROM (s.seq - r.first_seq)::int * 32 + 1 FOR 32) AS chain_hash
           FROM unnest($2::bigint[]) AS s(seq)
           CROSS JOIN LATERAL (
             SELECT * FROM audit_log
              WHERE organization_id = $1 AND first_seq <= s.seq AND first_seq > s.seq - $3
              ORDER BY first_seq DESC LIMIT 1) AS r",
    )
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(seqs)
    .bind::<diesel::sql_types::BigInt, _>(RUN_WIDTH as i64)
    .load(tx.conn())
    .await?;
    Ok(slices
        .into_iter()
        .filter_map(|s| {
            let row = LogRow {
                seq: s.seq,
                event_id: Uuid::from_slice(&s.event_id).ok()?,
                sequenced_at: s.sequenced_at,
                leaf_hash: to_hash(&s.leaf_hash)?,
                chain_hash: to_hash(&s.chain_hash)?,
            };
            Some((s.seq, row))
        })
        .collect())
}

/// What listings filter an entry on.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_index)]
pub struct IndexRow {
    pub seq: i64,
    pub event_id: Uuid,
    pub recorded_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
}

impl IndexRow {
    pub fn columns(&self) -> Columns<'_> {
        Columns {
            recorded_at: self.recorded_at,
            actor: &self.actor,
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: &self.resource_id,
        }
    }
}

impl EntryRow {
    pub fn stored(&self) -> StoredEntry<'_> {
        StoredEntry { fields: &self.fields, salts: &self.salts }
    }

    /// The entry's digest, recomputed; an error if its fields — or the index columns, when given —
    /// were altered.
    pub fn digest(&self, columns: Option<&Columns<'_>>, scratch: &mut Scratch) -> Result<Hash, Unverifiable> {
        digest(&self.stored(), columns, scratch)
    }

    /// What listings filter this entry on, read from its fields.
    pub fn index_values(&self) -> Result<IndexValues, String> {
        let stored = self.stored();
        let text = |name: &str, erasable: bool| -> Result<String, String> {
            match stored.get(name) {
                Some(Some(v)) => {
                    serde_json::from_slice::<String>(v).map_err(|_| format!("field {name} is not a string"))
                }
                Some(None) if erasable => Ok(PLACEHOLDER.to_owned()),
                _ => Err(format!("field {name} is missing")),
            }
        };
        let recorded_at = text("recorded_at", false)?;
        Ok(IndexValues {
            recorded_at: OffsetDateTime::parse(&recorded_at, &time::format_description::well_known::Rfc3339)
                .map_err(|_| "field recorded_at is not a timestamp".to_owned())?,
            actor: text("actor", true)?,
            action: text("action", false)?,
            resource_type: text("resource_type", false)?,
            resource_id: text("resource_id", true)?,
        })
    }

    /// Names of withheld fields.
    pub fn withheld_fields(&self) -> Vec<String> {
        self.stored()
            .fields()
            .filter_map(Result::ok)
            .filter(|(_, f)| matches!(f, FieldRef::Withheld(_)))
            .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
            .collect()
    }

    /// The revealed value of field `name`, parsed; `None` when absent or withheld.
    pub fn value(&self, name: &str) -> Option<Value> {
        self.stored().get(name).flatten().and_then(|v| serde_json::from_slice(v).ok())
    }

    /// One side of the change (`before` / `after`) as it reads: split attributes gathered back
    /// into an object, withheld ones left out.
    pub fn side(&self, side: &str) -> Value {
        if let Some(whole) = self.stored().get(side) {
            return whole.and_then(|v| serde_json::from_slice(v).ok()).unwrap_or(Value::Null);
        }
        let prefix = format!("{side}.");
        let mut object = Map::new();
        let mut split = false;
        for (name, field) in self.stored().fields().filter_map(Result::ok) {
            let Some(key) = name.strip_prefix(prefix.as_bytes()) else { continue };
            split = true;
            if let FieldRef::Revealed(v) = field {
                object.insert(
                    String::from_utf8_lossy(key).into_owned(),
                    serde_json::from_slice(v).unwrap_or(Value::Null),
                );
            }
        }
        if split { Value::Object(object) } else { Value::Null }
    }
}

/// The values an entry is indexed under (the columns of `audit_index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexValues {
    pub recorded_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
}

/// The index columns of an entry, which must repeat its fields.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    pub recorded_at: OffsetDateTime,
    pub actor: &'a str,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
}

/// The digest of a stored entry, checking on the way that its index columns repeat its fields
/// (or show [`PLACEHOLDER`] where an erasable field was withheld): what the log lists and filters
/// on is what the hashes cover.
pub fn digest(
    stored: &StoredEntry<'_>,
    columns: Option<&Columns<'_>>,
    scratch: &mut Scratch,
) -> Result<Hash, Unverifiable> {
    let mut check = ColumnCheck::new(columns);
    let digest = stored.digest_visiting(scratch, |name, field| check.visit(name, field));
    check.finish(digest)
}

/// [`digest`] for many entries at once (each with its index columns, if any), in order; with
/// each, the fields it is indexed under, as seen on the way.
pub fn digests<'a>(
    entries: impl IntoIterator<Item = (StoredEntry<'a>, Option<Columns<'a>>)>,
    batch: &mut DigestBatch,
) -> Vec<(Result<Hash, Unverifiable>, Indexed<'a>)> {
    let checks: Vec<ColumnCheck<'_>> = entries
        .into_iter()
        .map(|(stored, columns)| {
            let mut check = ColumnCheck::new(columns.as_ref());
            batch.push(&stored, |name, field| check.visit(name, field));
            check
        })
        .collect();
    checks
        .into_iter()
        .zip(batch.finish())
        .map(|(check, digest)| {
            let indexed = check.indexed;
            (check.finish(digest), indexed)
        })
        .collect()
}

/// The fields an entry is indexed under, borrowed from it as stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexed<'a> {
    recorded_at: Option<FieldRef<'a>>,
    actor: Option<FieldRef<'a>>,
    action: Option<FieldRef<'a>>,
    resource_type: Option<FieldRef<'a>>,
    resource_id: Option<FieldRef<'a>>,
}

impl Indexed<'_> {
    /// The entry's line as [`index_digest`] has the database write its index row — the values
    /// [`EntryRow::index_values`] gives the indexer, read without allocating for each — or `None`
    /// if they cannot be read from the fields. As PostgreSQL sends them: the sequence number
    /// (8 bytes, big-endian), the id (16), the time (8: microseconds since 2000-01-01 UTC), then
    /// actor, action, resource type and resource id, each ended by a NUL (which text cannot hold).
    pub(crate) fn index_line(&self, seq: i64, event_id: &Uuid) -> Option<Vec<u8>> {
        const POSTGRES_EPOCH_MICROS: i128 = 946_684_800_000_000;
        let micros = json_timestamp_micros(revealed(self.recorded_at)?)? - POSTGRES_EPOCH_MICROS;
        let mut line = Vec::with_capacity(160);
        line.extend_from_slice(&seq.to_be_bytes());
        line.extend_from_slice(event_id.as_bytes());
        line.extend_from_slice(&i64::try_from(micros).ok()?.to_be_bytes());
        for (field, erasable) in
            [(self.actor, true), (self.action, false), (self.resource_type, false), (self.resource_id, true)]
        {
            let value = match field? {
                FieldRef::Revealed(json) => json_text(json)?,
                FieldRef::Withheld(_) if erasable => std::borrow::Cow::Borrowed(PLACEHOLDER),
                FieldRef::Withheld(_) => return None,
            };
            line.extend_from_slice(value.as_bytes());
            line.push(0);
        }
        Some(line)
    }
}

fn revealed(field: Option<FieldRef<'_>>) -> Option<&[u8]> {
    match field? {
        FieldRef::Revealed(json) => Some(json),
        FieldRef::Withheld(_) => None,
    }
}

/// The text of a JSON string, borrowed when it has no escapes.
fn json_text(json: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    match json {
        [b'"', inner @ .., b'"'] if !inner.iter().any(|b| matches!(b, b'\\' | b'"')) => {
            std::str::from_utf8(inner).ok().map(std::borrow::Cow::Borrowed)
        }
        _ => serde_json::from_slice::<String>(json).ok().map(std::borrow::Cow::Owned),
    }
}

/// Microseconds since the epoch of a JSON timestamp string: `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` (as
/// [`timefmt::timestamp`] writes them) read digit by digit, any other RFC 3339 form through `time`.
fn json_timestamp_micros(json: &[u8]) -> Option<i128> {
    let text = json_text(json)?;
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let fast = (b.len() == 27 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':')
        .then_some(())
        .filter(|_| b[19] == b'.' && b[26] == b'Z')
        .and_then(|_| {
            let date = time::Date::from_calendar_date(
                digits(0..4)? as i32,
                time::Month::try_from(digits(5..7)? as u8).ok()?,
                digits(8..10)? as u8,
            )
            .ok()?;
            let clock = time::Time::from_hms_micro(
                digits(11..13)? as u8,
                digits(14..16)? as u8,
                digits(17..19)? as u8,
                digits(20..26)?,
            )
            .ok()?;
            Some(time::PrimitiveDateTime::new(date, clock).assume_utc())
        });
    let t = match fast {
        Some(t) => t,
        None => OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).ok()?,
    };
    Some(t.unix_timestamp_nanos() / 1000)
}

/// Checks, field by field as a digest is recomputed, that an entry's index columns repeat its
/// fields.
struct ColumnCheck<'c> {
    columns: Option<Columns<'c>>,
    indexed: Indexed<'c>,
    /// One bit per column seen.
    seen: u8,
    mismatch: Option<&'static str>,
}

impl<'c> ColumnCheck<'c> {
    fn new(columns: Option<&Columns<'c>>) -> Self {
        ColumnCheck { columns: columns.copied(), indexed: Indexed::default(), seen: 0, mismatch: None }
    }

    fn visit(&mut self, name: &[u8], field: FieldRef<'c>) {
        let slot = match name {
            b"recorded_at" => &mut self.indexed.recorded_at,
            b"actor" => &mut self.indexed.actor,
            b"action" => &mut self.indexed.action,
            b"resource_type" => &mut self.indexed.resource_type,
            b"resource_id" => &mut self.indexed.resource_id,
            _ => return,
        };
        *slot = Some(field);
        let Some(columns) = &self.columns else { return };
        let (column, bit, erasable) = match name {
            b"actor" => (columns.actor, 1, true),
            b"action" => (columns.action, 2, false),
            b"resource_type" => (columns.resource_type, 4, false),
            b"resource_id" => (columns.resource_id, 8, true),
            b"recorded_at" => {
                self.seen |= 16;
                let agrees = matches!(field, FieldRef::Revealed(v) if timestamp_matches(v, columns.recorded_at));
                if !agrees {
                    self.mismatch = self.mismatch.or(Some("recorded_at"));
                }
                return;
            }
            _ => return,
        };
        self.seen |= bit;
        let agrees = match field {
            FieldRef::Revealed(v) => is_json_string(v, column),
            FieldRef::Withheld(_) => erasable && column == PLACEHOLDER,
        };
        if !agrees {
            self.mismatch = self.mismatch.or(Some(match bit {
                1 => "actor",
                2 => "action",
                4 => "resource_type",
                _ => "resource_id",
            }));
        }
    }

    fn finish(self, digest: Result<Hash, String>) -> Result<Hash, Unverifiable> {
        let digest = digest.map_err(Unverifiable::Malformed)?;
        if self.columns.is_none() {
            return Ok(digest);
        }
        if let Some(name) = self.mismatch {
            return Err(Unverifiable::Column(name));
        }
        if self.seen != 31 {
            return Err(Unverifiable::Malformed("a required field is missing".to_owned()));
        }
        Ok(digest)
    }
}

/// Why an entry's digest could not be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverifiable {
    /// The log names an entry whose row is gone.
    Missing,
    Malformed(String),
    /// An index column does not repeat its committed field.
    Column(&'static str),
    /// The entry should be indexed and is not.
    Unindexed,
}

impl Unverifiable {
    /// What verification reports about entry `seq`.
    pub fn problem(&self, seq: u64) -> String {
        match self {
            Unverifiable::Missing => format!("hash mismatch: the content of entry {seq} is missing"),
            Unverifiable::Malformed(e) => format!("entry {seq} cannot be decoded: {e}"),
            Unverifiable::Column(c) => {
                format!("hash mismatch: the indexed {c} of entry {seq} differs from its committed field")
            }
            Unverifiable::Unindexed => format!("the index row of entry {seq} is missing"),
        }
    }
}

/// The index rows of a range of entries, digested by the database (see [`index_digest`]). Full
/// verification compares this with what the entries' fields say, instead of reading the index
/// row by row: the database does the per-row work where it is cheap, and the index is only ever
/// read through that database.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub(crate) struct IndexDigest {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub rows: i64,
    /// `None` without rows.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bytea>)]
    pub digest: Option<Vec<u8>>,
}

/// The index rows of entries `[from, to)`: how many, and the SHA-256 of their lines in sequence
/// order. One digest for the whole range: it is what a verification batch compares (and re-reads
/// row by row if it disagrees), and grouping by block made the database sort the range, a
/// third of the query's cost.
pub(crate) async fn index_digest(tx: &mut Tx, org: Uuid, from: i64, to: i64) -> Result<IndexDigest, ChainError> {
    if from >= to {
        return Ok(IndexDigest { rows: 0, digest: None });
    }
    Ok(diesel::sql_query(
        // Binary and without per-row formatting (PostgreSQL's own send functions), rows in
        // sequence order from the key range: half the cost of writing them out as text. Should
        // the rows reach the aggregate in another order, the digests merely disagree and the
        // batch is read row by row.
        "SELECT count(*) AS rows,
                sha256(string_agg(int8send(seq) || uuid_send(event_id) || timestamptz_send(recorded_at)
                    || textsend(actor) || '\\x00'::bytea || textsend(action) || '\\x00'::bytea
                    || textsend(resource_type) || '\\x00'::bytea || textsend(resource_id) || '\\x00'::bytea,
                  ''::bytea)) AS digest
           FROM (SELECT * FROM audit_index
                  WHERE organization_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq) AS i",
    )
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::BigInt, _>(from)
    .bind::<diesel::sql_types::BigInt, _>(to)
    .get_result(tx.conn())
    .await?)
}

/// The index digest entries call for — one line per entry below `indexed_size`, given in order
/// as `(seq, line)` (see [`Indexed::index_line`]), digested as [`index_digest`] digests the index —
/// or `None` if an entry that should be indexed has no line (then only reading its index row can
/// say what is wrong).
pub(crate) fn expected_index_digest<'l>(
    lines: impl IntoIterator<Item = (i64, Option<&'l [u8]>)>,
    indexed_size: i64,
) -> Option<IndexDigest> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut rows = 0;
    for (_, line) in lines.into_iter().filter(|(seq, _)| *seq < indexed_size) {
        hasher.update(line?);
        rows += 1;
    }
    Some(IndexDigest { rows, digest: (rows > 0).then(|| hasher.finalize().to_vec()) })
}

/// A sequenced entry as auditors read it: its place, its index row and its fields.
pub type Sequenced = (LogRow, IndexRow, EntryRow);

/// A log row with its index row and entry as stored (`None` where a row is missing).
pub type Stored = (LogRow, Option<IndexRow>, Option<EntryRow>);

/// The contents of entries `[from, from + count)`, `(seq, content)` in order; an entry whose
/// content is gone is `None`, one the table does not hold at all is absent.
pub(crate) async fn content_range(
    mut conn: &AsyncPgConnection,
    org: Uuid,
    from: i64,
    count: i64,
) -> Result<Vec<(i64, Option<EntryRow>)>, ChainError> {
    let end = from.saturating_add(count);
    let runs: Vec<ContentRun> = audit_contents::table
        .filter(audit_contents::organization_id.eq(org))
        .filter(audit_contents::first_seq.gt(from - RUN_WIDTH as i64))
        .filter(audit_contents::first_seq.lt(end))
        .order(audit_contents::first_seq.asc())
        .select(ContentRun::as_select())
        .load(&mut conn)
        .await?;
    let mut entries = Vec::with_capacity(count.clamp(0, 1 << 16) as usize);
    for run in runs {
        let first = run.first_seq;
        let Some(run) = run.into_entries() else {
            // A damaged run starting before the range is found by whoever reads from its start;
            // any of its entries in this range read here as having no content (never as intact).
            if first < from {
                continue;
            }
            return Err(ChainError::Corrupt(org, format!("the contents of the run at entry {first} are malformed")));
        };
        entries.extend(run.filter(|(seq, _)| *seq >= from && *seq < end));
    }
    Ok(entries)
}

/// The entries with these ids still in `audit_entries` (sequenced, not yet moved into their runs
/// by the indexer). Ids are time-ordered and a run of the log was recorded at about the same time,
/// so the bulk is read as one primary-key range (an order of magnitude cheaper than one index
/// descent per id); what the range misses (an entry sequenced far from its time) is looked up by
/// id. The range read is capped, so outliers cannot make it large.
async fn queued_entries(tx: &mut Tx, org: Uuid, mut ids: Vec<Uuid>) -> Result<HashMap<Uuid, EntryRow>, ChainError> {
    ids.sort_unstable();
    let wanted: std::collections::HashSet<Uuid> = ids.iter().copied().collect();
    let mut found = HashMap::with_capacity(ids.len());
    let entry = |e: QueuedEntry| (e.event_id, EntryRow::new(e.fields, e.salts));
    if let (Some(lo), Some(hi)) = (ids.get(ids.len() / 100), ids.get(ids.len() - 1 - ids.len() / 100)) {
        // Unordered: the rows go into a map, and sorting a batch's few megabytes can spill to
        // disk (work_mem) and cost more than reading them.
        let rows: Vec<QueuedEntry> = audit_entries::table
            .filter(audit_entries::organization_id.eq(org))
            .filter(audit_entries::event_id.between(lo, hi))
            .limit(2 * ids.len() as i64 + 64)
            .select(QueuedEntry::as_select())
            .load(tx.conn())
            .await?;
        found.extend(rows.into_iter().filter(|e| wanted.contains(&e.event_id)).map(entry));
    }
    let missing: Vec<Uuid> = ids.into_iter().filter(|id| !found.contains_key(id)).collect();
    if !missing.is_empty() {
        let rows: Vec<QueuedEntry> = audit_entries::table
            .filter(audit_entries::organization_id.eq(org))
            .filter(audit_entries::event_id.eq_any(&missing))
            .select(QueuedEntry::as_select())
            .load(tx.conn())
            .await?;
        found.extend(rows.into_iter().map(entry));
    }
    Ok(found)
}

/// The contents of the entries numbered `seqs` (in any order), each run read once; entries
/// without content are absent.
pub(crate) async fn contents_at(tx: &mut Tx, org: Uuid, seqs: &[i64]) -> Result<HashMap<i64, EntryRow>, ChainError> {
    #[derive(diesel::QueryableByName)]
    struct Content {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        seq: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        fields: String,
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        salts: Vec<u8>,
    }
    if seqs.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Content> =
        diesel::sql_query(format!("SELECT c.first_seq + f.k - 1 AS seq, f.fields, f.salts {CONTENTS_AT}"))
            .bind::<diesel::sql_types::Uuid, _>(org)
            .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(blocks_of(seqs))
            .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(seqs)
            .bind::<diesel::sql_types::BigInt, _>(RUN_WIDTH as i64)
            .load(tx.conn())
            .await?;
    Ok(rows.into_iter().map(|c| (c.seq, EntryRow::new(c.fields, c.salts))).collect())
}

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// `column ILIKE $n`, case-folded the cheap way when the pattern allows. PostgreSQL folds a
/// UTF-8 text character by character through the locale before matching; under the "C"
/// collation it folds ASCII letters only, byte by byte, which halves the cost of a search. For
/// a pattern of ASCII characters the two find the same entries (only a handful of non-ASCII
/// letters, such as the Kelvin sign, fold to ASCII ones).
fn ilike(column: &str, pattern: &str, n: u8) -> String {
    if pattern.is_ascii() { format!("{column} COLLATE \"C\" ILIKE ${n}") } else { format!("{column} ILIKE ${n}") }
}

/// Of the entries numbered `seqs`, those whose committed fields (as stored) match the ILIKE
/// `pattern`.
pub(crate) async fn contents_matching(
    tx: &mut Tx,
    org: Uuid,
    seqs: &[i64],
    pattern: &str,
) -> Result<std::collections::HashSet<i64>, ChainError> {
    if seqs.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<Seq> = diesel::sql_query(format!(
        "SELECT c.first_seq + f.k - 1 AS seq {CONTENTS_AT} AND {}",
        ilike("f.fields", pattern, 5)
    ))
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(blocks_of(seqs))
    .bind::<diesel::sql_types::Array<diesel::sql_types::BigInt>, _>(seqs)
    .bind::<diesel::sql_types::BigInt, _>(RUN_WIDTH as i64)
    .bind::<diesel::sql_types::Text, _>(pattern)
    .load(tx.conn())
    .await?;
    Ok(rows.into_iter().map(|r| r.seq).collect())
}

/// The entries numbered `[from, to)` whose committed fields (as stored) match the ILIKE `pattern`,
/// newest first: the runs holding them read as one key range, each element matched once. What a
/// search with nothing to narrow it by reads, instead of walking the index.
pub(crate) async fn contents_matching_between(
    tx: &mut Tx,
    org: Uuid,
    from: i64,
    to: i64,
    pattern: &str,
) -> Result<Vec<i64>, ChainError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let rows: Vec<Seq> = diesel::sql_query(format!(
        "SELECT c.first_seq + f.k - 1 AS seq
           FROM audit_contents c
          CROSS JOIN LATERAL unnest(c.fields) WITH ORDINALITY AS f(fields, k)
          WHERE c.organization_id = $1 AND c.first_seq > $2 - $5 AND c.first_seq < $3
            AND c.first_seq + f.k - 1 >= $2 AND c.first_seq + f.k - 1 < $3 AND {}
          ORDER BY 1 DESC",
        ilike("f.fields", pattern, 4)
    ))
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::BigInt, _>(from)
    .bind::<diesel::sql_types::BigInt, _>(to)
    .bind::<diesel::sql_types::Text, _>(pattern)
    .bind::<diesel::sql_types::BigInt, _>(RUN_WIDTH as i64)
    .load(tx.conn())
    .await?;
    Ok(rows.into_iter().map(|r| r.seq).collect())
}

/// The entries numbered `$3` (of organisation `$1`), through the runs of their 256-blocks `$2`
/// (`$4` is the width), each run unnested once: a run is read from storage once however many of
/// its entries are wanted. The wanted numbers are a set to join (hashed), not an array to scan
/// for every element: a search asks for thousands at a time.
///
/// `OFFSET 0` keeps each block's runs a key range read of their own. Without it the planner may
/// flatten the lateral into one join and, trusting estimates (a table not yet analysed after a
/// bulk load or an upgrade says "4 runs"), read every run of the organisation and filter after:
/// at 200k entries that made a 50-entry page cost 155 ms instead of 0.6 ms, and a search of the
/// whole log quadratic (16 s).
const CONTENTS_AT: &str = "FROM unnest($2::bigint[]) AS b(block)
    CROSS JOIN LATERAL (
      SELECT * FROM audit_contents
       WHERE organization_id = $1 AND first_seq >= b.block AND first_seq < b.block + $4 OFFSET 0) AS c
    CROSS JOIN LATERAL unnest(c.fields, c.salts) WITH ORDINALITY AS f(fields, salts, k)
    WHERE c.first_seq + f.k - 1 IN (SELECT unnest($3::bigint[])) AND f.fields IS NOT NULL AND f.salts IS NOT NULL";

/// The starts of the 256-blocks holding `seqs`, each once.
fn blocks_of(seqs: &[i64]) -> Vec<i64> {
    let mut blocks: Vec<i64> = seqs.iter().map(|s| s - s.rem_euclid(RUN_WIDTH as i64)).collect();
    blocks.sort_unstable();
    blocks.dedup();
    blocks
}

/// The log's entries numbered `[from, from + count)` (see [`log_range`]), each with its index row
/// (when `with_index`) and content. Three plain key range reads rather than one join: their plan
/// cannot degrade into scanning a whole table per batch, whatever the statistics say.
pub(crate) async fn stored_range(
    tx: &mut Tx,
    org: Uuid,
    from: i64,
    count: i64,
    with_index: bool,
) -> Result<Vec<Stored>, ChainError> {
    // Sent at once on the one connection (pipelined): the database reads the next while this
    // side decodes the last, with no round trip between them.
    let conn: &AsyncPgConnection = tx.conn();
    let index = async {
        if !with_index {
            return Ok(Vec::new());
        }
        // Sorted here rather than by the database, for the same reason as in `entries_of`.
        let mut rows: Vec<IndexRow> = audit_index::table
            .filter(audit_index::organization_id.eq(org))
            .filter(audit_index::seq.ge(from))
            .filter(audit_index::seq.lt(from.saturating_add(count)))
            .select(IndexRow::as_select())
            .load(&mut &*conn)
            .await?;
        rows.sort_unstable_by_key(|r| r.seq);
        Ok::<_, ChainError>(rows)
    };
    let (logs, indexed, contents) =
        tokio::try_join!(log_range(conn, org, from, count), index, content_range(conn, org, from, count))?;
    if logs.is_empty() {
        return Ok(Vec::new());
    }
    let mut indexed: std::collections::VecDeque<IndexRow> = indexed.into();
    let mut contents: std::collections::VecDeque<(i64, Option<EntryRow>)> = contents.into();
    // An entry's content is in its run once the indexer has moved it there (a NULL element there
    // is content gone); until then it is where its writer wrote it. Each row is built in place,
    // once: at ~300 bytes a row, moving them again was a visible share of a verification's time.
    let mut unmoved: Vec<(usize, Uuid)> = Vec::new();
    let mut stored: Vec<Stored> = logs
        .into_iter()
        .enumerate()
        .map(|(at, log)| {
            while indexed.front().is_some_and(|i| i.seq < log.seq) {
                indexed.pop_front();
            }
            let index = if indexed.front().is_some_and(|i| i.seq == log.seq) { indexed.pop_front() } else { None };
            while contents.front().is_some_and(|(seq, _)| *seq < log.seq) {
                contents.pop_front();
            }
            let entry = match contents.front() {
                Some((seq, _)) if *seq == log.seq => contents.pop_front().and_then(|(_, e)| e),
                _ => {
                    unmoved.push((at, log.event_id));
                    None
                }
            };
            (log, index, entry)
        })
        .collect();
    if !unmoved.is_empty() {
        let mut queued = queued_entries(tx, org, unmoved.iter().map(|(_, id)| *id).collect()).await?;
        for (at, id) in unmoved {
            stored[at].2 = queued.remove(&id);
        }
    }
    Ok(stored)
}

/// Indexed entries with their log rows and contents, in the order given. One an index row names
/// but the log does not hold as indexed, or whose content is gone (only tampering does that), is
/// left out, loudly: verification names it.
pub(crate) async fn with_log_rows(tx: &mut Tx, org: Uuid, rows: Vec<IndexRow>) -> Result<Vec<Sequenced>, ChainError> {
    let seqs: Vec<i64> = rows.iter().map(|i| i.seq).collect();
    let mut logs = log_rows_at(tx, org, &seqs).await?;
    let mut contents = contents_at(tx, org, &seqs).await?;
    Ok(rows
        .into_iter()
        .filter_map(|index| match (logs.remove(&index.seq), contents.remove(&index.seq)) {
            (Some(log), Some(entry)) if log.event_id == index.event_id => Some((log, index, entry)),
            _ => {
                tracing::error!(%org, seq = index.seq, "an indexed audit entry is not in the log as indexed; run verify-audit-chain");
                None
            }
        })
        .collect())
}

impl crate::AuditChain {
    /// Entry `seq` of an organisation's log, once indexed.
    pub async fn entry(&self, tx: &mut Tx, org: Uuid, seq: i64) -> Result<Option<Sequenced>, ChainError> {
        let row: Option<IndexRow> = audit_index::table
            .filter(audit_index::organization_id.eq(org))
            .filter(audit_index::seq.eq(seq))
            .select(IndexRow::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        Ok(with_log_rows(tx, org, row.into_iter().collect()).await?.pop())
    }
}

/// Whether `json` is the JSON string of `t` as [`timefmt::timestamp`] writes it — without
/// formatting through `time`, which would cost more than the field's commitment.
fn timestamp_matches(json: &[u8], t: OffsetDateTime) -> bool {
    let t = t.to_offset(time::UtcOffset::UTC);
    let mut buf = *b"\"0000-00-00T00:00:00.000000Z\"";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    match u32::try_from(t.year()) {
        Ok(year) if year <= 9999 => put(1, 4, year),
        _ => return is_json_string(json, &timefmt::timestamp(t)),
    }
    put(6, 2, u8::from(t.month()).into());
    put(9, 2, t.day().into());
    put(12, 2, t.hour().into());
    put(15, 2, t.minute().into());
    put(18, 2, t.second().into());
    put(21, 6, t.microsecond());
    json == buf.as_slice()
}

pub fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

pub use custos_core::hex::{decode as from_hex, encode as hex};

#[cfg(test)]
mod tests {
    use super::*;

    /// The line verification expects the index to hold, read from the fields on the way through
    /// the digest, is the line of what the indexer writes (`index_values`) — for awkward text,
    /// withheld values and timestamps in other RFC 3339 forms.
    #[test]
    fn index_lines_are_what_the_indexer_indexes() {
        use crate::encoding::EntryValues;
        let entry = |recorded_at: &str, actor: &str, resource_id: &str| {
            EntryValues {
                recorded_at: recorded_at.to_owned(),
                actor: actor.to_owned(),
                actor_detail: Value::Null,
                action: "update".into(),
                resource_type: "framework".into(),
                resource_id: resource_id.to_owned(),
                request_id: None,
                client_addr: None,
                before: Value::Null,
                after: serde_json::json!({ "name": "x" }),
            }
            .encode(&[7; 32])
        };
        let mut rows = vec![
            entry("2026-12-03T17:30:45.893753Z", "user:1", "r1"),
            entry("2026-12-03T17:30:45.000000Z", "Zoë \"q\" back\\slash\nline\ttab é", "a b"),
            entry("2026-12-03T19:30:45.5+02:00", "operator:cli", "😀"),
            entry("1969-12-31T23:59:59.999999Z", "x", "y"),
        ];
        let withheld = {
            let e = &rows[0];
            let stored = StoredEntry { fields: e.fields.as_bytes(), salts: &e.salts };
            let (fields, salts) = crate::encoding::withhold(&stored, &["actor", "resource_id"]).unwrap();
            crate::encoding::EncodedEntry { fields, salts, digest: e.digest }
        };
        rows.push(withheld);
        let id = Uuid::now_v7();
        let mut batch = DigestBatch::default();
        let stored: Vec<_> =
            rows.iter().map(|e| (StoredEntry { fields: e.fields.as_bytes(), salts: &e.salts }, None)).collect();
        for (k, (e, (digest, indexed))) in rows.iter().zip(digests(stored, &mut batch)).enumerate() {
            assert_eq!(digest.unwrap(), e.digest);
            let v = EntryRow::new(e.fields.clone(), e.salts.clone()).index_values().unwrap();
            let micros = v.recorded_at.unix_timestamp_nanos() / 1000 - 946_684_800_000_000;
            let mut expected =
                [(k as i64).to_be_bytes().as_slice(), id.as_bytes(), &(micros as i64).to_be_bytes()].concat();
            for value in [&v.actor, &v.action, &v.resource_type, &v.resource_id] {
                expected.extend_from_slice(value.as_bytes());
                expected.push(0);
            }
            assert_eq!(indexed.index_line(k as i64, &id), Some(expected), "entry {k}");
        }
    }

    /// Arrays as PostgreSQL sends them (`array_send`) give back their elements, NULLs included;
    /// anything else is refused rather than misread.
    #[test]
    fn sent_arrays_are_read_in_place_and_malformed_ones_refused() {
        fn sent(dims: &[i32], elements: &[Option<&[u8]>]) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&(dims.len() as i32).to_be_bytes());
            out.extend_from_slice(&i32::from(elements.iter().any(Option::is_none)).to_be_bytes());
            out.extend_from_slice(&25u32.to_be_bytes());
            for dim in dims {
                out.extend_from_slice(&dim.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
            }
            for e in elements {
                match e {
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
            out
        }
        let read = |bytes: Vec<u8>| SentArray(Bytes::from(bytes)).elements();
        let elements: &[Option<&[u8]>] = &[Some(b"a\tb\n"), None, Some(b""), Some("é😀".as_bytes())];
        let got = read(sent(&[4], elements)).expect("well formed");
        assert_eq!(got.iter().map(Option::as_deref).collect::<Vec<_>>(), elements);
        assert_eq!(read(sent(&[], &[])), Some(Vec::new()));

        let whole = sent(&[4], elements);
        assert_eq!(read(whole[..whole.len() - 1].to_vec()), None, "truncated element");
        assert_eq!(read([whole.as_slice(), b"x"].concat()), None, "trailing bytes");
        assert_eq!(read(sent(&[5], elements)), None, "fewer elements than its dimension says");
        assert_eq!(read(sent(&[2, 2], elements)), None, "two dimensions");
        assert_eq!(read(sent(&[-1], &[])), None, "negative dimension");
        assert_eq!(read(vec![0, 0]), None, "no header");

        // A run whose field text is not UTF-8 is refused as a whole, not read in part.
        let run = |fields: Vec<u8>| ContentRun {
            first_seq: 7,
            fields: SentArray(fields.into()),
            salts: SentArray(sent(&[2], &[Some(&[1]), Some(&[2])]).into()),
        };
        let entries: Vec<_> = run(sent(&[2], &[Some(b"x"), None])).into_entries().expect("well formed").collect();
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].0, entries[0].1.as_ref().map(EntryRow::fields)), (7, Some("x")));
        assert_eq!((entries[1].0, entries[1].1.as_ref()), (8, None));
        assert!(run(sent(&[2], &[Some(b"x"), Some(&[0xff])])).into_entries().is_none());
    }

    #[test]
    fn timestamps_compare_as_timefmt_writes_them() {
        for t in [
            time::macros::datetime!(2026-01-02 03:04:05.000006 UTC),
            time::macros::datetime!(1999-12-31 23:59:59.999999 +02:00),
            time::macros::datetime!(2026-11-23 09:00:00 UTC),
        ] {
            let mut json = Vec::new();
            crate::encoding::write_json_string(&timefmt::timestamp(t), &mut json);
            assert!(timestamp_matches(&json, t), "{}", timefmt::timestamp(t));
            assert!(!timestamp_matches(&json, t + time::Duration::microseconds(1)));
        }
    }
}
