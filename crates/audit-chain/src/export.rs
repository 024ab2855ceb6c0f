//! The offline verifier's input: an organisation's log, exported.
//!
//! `custos audit export` writes an organisation's log as JSON Lines (`custos-audit-export/v2`): a
//! header (organisation, origin, verifier key and any earlier ones, and the anchor — chain hash and compact range — the
//! export starts from), then every entry with its committed fields exactly as stored (the
//! `custos-audit/v3` (or v2) field lines — `name TAB json` or `name TAB !commitment` — and the salts,
//! base64) and every signed checkpoint, each placed right after the entry that completes it.
//! `custos audit verify-file` checks such a file with no database ([`crate::verify_file`]).

use std::borrow::Cow;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::timefmt;
use custos_db::schema::{audit_checkpoints, audit_heads};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::rows::{hex, stored_range};
use crate::sequencer::{AuditChain, ChainError, Heads};

pub const FORMAT: &str = "custos-audit-export/v2";

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub organization_id: Uuid,
    pub origin: String,
    pub verifier_key: String,
    /// Keys that signed earlier checkpoints, before the signing key was rotated (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_verifier_keys: Vec<String>,
    pub exported_at: String,
    pub first_seq: u64,
    pub tree_size: u64,
    pub anchor_chain_hash: String,
    pub anchor_frontier: Vec<String>,
}

/// An entry's line as `export` writes it, borrowing the stored fields (`verify-file` reads it
/// as [`crate::verify_file`]'s `ReadEntry`).
#[derive(Debug, Serialize)]
pub struct ExportEntry<'a> {
    pub seq: u64,
    /// The entry's field lines, as stored and hashed.
    pub fields: Cow<'a, str>,
    /// The entry's salts (seed or explicit), base64.
    pub salts: Cow<'a, str>,
    pub leaf_hash: Cow<'a, str>,
    pub chain_hash: Cow<'a, str>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub note: String,
}

/// A line after the header, as `export` writes it (`verify-file` reads it as `ReadLine`,
/// in [`crate::verify_file`]).
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Line<'a> {
    Entry(ExportEntry<'a>),
    Checkpoint(ExportCheckpoint),
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("the organisation has no audit log yet")]
    Empty,
    #[error("no signed checkpoint covers the log yet; the server signs one within a second of a change, so try again")]
    Unsigned,
}

impl From<diesel::result::Error> for ExportError {
    fn from(e: diesel::result::Error) -> Self {
        ExportError::Chain(e.into())
    }
}

fn write_line(out: &mut impl Write, line: &impl Serialize) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Entries read from the database at once.
const EXPORT_BATCH: i64 = 5000;

fn write_checkpoint(out: &mut impl Write, tree_size: i64, root: &[u8], note: String) -> Result<(), ExportError> {
    write_line(out, &Line::Checkpoint(ExportCheckpoint { tree_size: tree_size as u64, root_hash: hex(root), note }))
}

/// The organisation's checkpoints of tree sizes `from..=to`, in increasing size.
async fn checkpoints_between(
    tx: &mut custos_db::Tx,
    org: Uuid,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Vec<u8>, String)>, ExportError> {
    Ok(audit_checkpoints::table
        .filter(audit_checkpoints::organization_id.eq(org))
        .filter(audit_checkpoints::tree_size.between(from, to))
        .order(audit_checkpoints::tree_size.asc())
        .select((audit_checkpoints::tree_size, audit_checkpoints::root_hash, audit_checkpoints::note))
        .load(tx.conn())
        .await?)
}

impl AuditChain {
    /// Writes an organisation's whole retained log; returns the number of entries written.
    /// `progress(written, total)` follows it a batch at a time.
    pub async fn export(
        &self,
        org: Uuid,
        out: &mut impl Write,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ExportError> {
        self.sync(org).await?;
        let mut tx = self.db.begin_snapshot(org).await.map_err(ChainError::from)?;
        let heads: Heads = audit_heads::table
            .filter(audit_heads::organization_id.eq(org))
            .select(Heads::as_select())
            .first(tx.conn())
            .await
            .optional()?
            .ok_or(ExportError::Empty)?;
        let boundary = heads.prune_frontier()?;
        // The export ends at the last signed checkpoint in this snapshot: entries sequenced after
        // it (by a writer racing the sync above) are not yet signed, and an export must prove
        // every entry it holds.
        let first = heads.pruned_before;
        let signed: Option<i64> = audit_checkpoints::table
            .filter(audit_checkpoints::organization_id.eq(org))
            .filter(audit_checkpoints::tree_size.ge(first))
            .select(diesel::dsl::max(audit_checkpoints::tree_size))
            .first(tx.conn())
            .await?;
        let end = match signed {
            Some(size) => size.min(heads.tree_size),
            // A log pruned to its boundary has a checkpoint there; without one nothing is provable.
            None if heads.tree_size == 0 => first,
            None => return Err(ExportError::Unsigned),
        };
        let header = Header {
            format: FORMAT.into(),
            organization_id: org,
            origin: self.origin(org),
            verifier_key: self.signer.verifier().to_note_key(),
            earlier_verifier_keys: self
                .trusted
                .iter()
                .filter(|k| **k != self.signer.verifier())
                .map(|k| k.to_note_key())
                .collect(),
            exported_at: timefmt::timestamp(timefmt::now()),
            first_seq: first as u64,
            tree_size: end as u64,
            anchor_chain_hash: hex(heads.prune_chain_hash.as_deref().unwrap_or(&[0u8; 32])),
            anchor_frontier: boundary.hashes.iter().map(|h| hex(h)).collect(),
        };
        write_line(out, &header)?;
        // The checkpoint at the anchor, if any, then a batch of entries at a time with the
        // checkpoints they complete (read a batch at a time too: a log signed twice a second for
        // years holds millions of them).
        for (size, root, note) in checkpoints_between(&mut tx, org, first, first).await? {
            write_checkpoint(out, size, &root, note)?;
        }
        let mut next = first;
        let mut written = 0;
        while next < end {
            let upto = (next + EXPORT_BATCH).min(end);
            let rows = stored_range(&mut tx, org, next, upto - next, false).await?;
            let mut checkpoints = checkpoints_between(&mut tx, org, next + 1, upto).await?.into_iter().peekable();
            for (log, _, entry) in &rows {
                let entry = entry.as_ref().ok_or_else(|| {
                    ChainError::Corrupt(org, format!("entry {} has no content; run verify-audit-chain", log.seq))
                })?;
                let line = Line::Entry(ExportEntry {
                    seq: log.seq as u64,
                    fields: Cow::Borrowed(entry.fields()),
                    salts: B64.encode(entry.salts()).into(),
                    leaf_hash: hex(&log.leaf_hash).into(),
                    chain_hash: hex(&log.chain_hash).into(),
                });
                write_line(out, &line)?;
                written += 1;
                while let Some((size, root, note)) = checkpoints.next_if(|(size, _, _)| *size <= log.seq + 1) {
                    write_checkpoint(out, size, &root, note)?;
                }
            }
            // Checkpoints past a missing entry still go out, so the verifier sees the gap.
            for (size, root, note) in checkpoints {
                write_checkpoint(out, size, &root, note)?;
            }
            progress(written, (end - first) as u64);
            // By ranges up to the end, so a gap cannot end the export early.
            next = upto;
        }
        tx.commit().await.map_err(ChainError::from)?;
        out.flush()?;
        Ok(written)
    }
}

pub use crate::verify_file::{FileError, FileReport, verify_file};
