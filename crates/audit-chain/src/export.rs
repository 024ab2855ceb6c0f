//! The offline verifier's input and the verifier itself.
//!
//! `custos audit export` writes an organisation's log as JSON Lines (`custos-audit-export/v2`): a
//! header (organisation, origin, verifier key, and the anchor — chain hash and compact range — the
//! export starts from), then every entry with its committed fields exactly as stored (the
//! `custos-audit/v2` field lines — `name TAB json` or `name TAB !commitment` — and the salts,
//! base64) and every signed checkpoint, each placed right after the entry that completes it.
//! `custos audit verify-file` checks such a file with no database: leaves, chain, tree and
//! checkpoint signatures — against a public key the regulator obtained out of band, or, without
//! one, against the key in the file (which proves consistency, not origin).

use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::timefmt;
use custos_db::schema::{audit_checkpoints, audit_heads};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::encoding::{Hash, Scratch, StoredEntry, leaf_hash};
use crate::merkle::Frontier;
use crate::note::NoteVerifier;
use crate::rows::{Unverifiable, from_hex, hex, stored_range, to_hash};
use crate::sequencer::{AuditChain, ChainError, Heads};
use crate::verify::{ChainVerifier, StoredCheckpoint};

pub const FORMAT: &str = "custos-audit-export/v2";

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub organization_id: Uuid,
    pub origin: String,
    pub verifier_key: String,
    pub exported_at: String,
    pub first_seq: u64,
    pub tree_size: u64,
    pub anchor_chain_hash: String,
    pub anchor_frontier: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportEntry {
    pub seq: u64,
    /// The entry's field lines, as stored and hashed.
    pub fields: String,
    /// The entry's salts (seed or explicit), base64.
    pub salts: String,
    pub leaf_hash: String,
    pub chain_hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExportCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub note: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Entry(ExportEntry),
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

impl AuditChain {
    /// Writes an organisation's whole retained log; returns the number of entries written.
    pub async fn export(&self, org: Uuid, out: &mut impl Write) -> Result<u64, ExportError> {
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
        let header = Header {
            format: FORMAT.into(),
            organization_id: org,
            origin: self.origin(org),
            verifier_key: self.signer.verifier().to_note_key(),
            exported_at: timefmt::timestamp(timefmt::now()),
            first_seq: heads.pruned_before as u64,
            tree_size: heads.tree_size as u64,
            anchor_chain_hash: hex(heads.prune_chain_hash.as_deref().unwrap_or(&[0u8; 32])),
            anchor_frontier: boundary.hashes.iter().map(|h| hex(h)).collect(),
        };
        write_line(out, &header)?;
        let checkpoints: Vec<(i64, Vec<u8>, String)> = audit_checkpoints::table
            .filter(audit_checkpoints::organization_id.eq(org))
            .filter(audit_checkpoints::tree_size.ge(heads.pruned_before))
            .order(audit_checkpoints::tree_size.asc())
            .select((audit_checkpoints::tree_size, audit_checkpoints::root_hash, audit_checkpoints::note))
            .load(tx.conn())
            .await?;
        let mut checkpoints = checkpoints.into_iter().peekable();
        let mut emit_due = |out: &mut dyn Write, size: i64| -> Result<(), ExportError> {
            while let Some((cp_size, _, _)) = checkpoints.peek()
                && *cp_size <= size
            {
                let (tree_size, root, note) = checkpoints.next().expect("peeked");
                let line =
                    Line::Checkpoint(ExportCheckpoint { tree_size: tree_size as u64, root_hash: hex(&root), note });
                serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        };
        emit_due(out, heads.pruned_before)?;
        let mut next = heads.pruned_before;
        let mut written = 0;
        loop {
            let rows = stored_range(&mut tx, org, next, 5000, false).await?;
            for (log, _, entry) in &rows {
                let entry = entry.as_ref().ok_or_else(|| {
                    ChainError::Corrupt(org, format!("entry {} has no content; run verify-audit-chain", log.seq))
                })?;
                let line = Line::Entry(ExportEntry {
                    seq: log.seq as u64,
                    fields: entry.fields.clone(),
                    salts: B64.encode(&entry.salts),
                    leaf_hash: hex(&log.leaf_hash),
                    chain_hash: hex(&log.chain_hash),
                });
                write_line(out, &line)?;
                written += 1;
                emit_due(out, log.seq + 1)?;
            }
            // By ranges up to the head, so a gap cannot end the export early.
            next += 5000;
            if next >= heads.tree_size {
                break;
            }
        }
        emit_due(out, i64::MAX)?;
        tx.commit().await.map_err(ChainError::from)?;
        out.flush()?;
        Ok(written)
    }
}

/// What `verify-file` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub organization_id: Uuid,
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub first_seq: u64,
    /// Signatures were checked against a key given by the verifier, not the one in the file.
    pub key_pinned: bool,
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {problem}")]
    Malformed { line: usize, problem: String },
}

fn malformed(line: usize, problem: impl Into<String>) -> FileError {
    FileError::Malformed { line, problem: problem.into() }
}

fn hash_of(line: usize, what: &str, text: &str) -> Result<Hash, FileError> {
    from_hex(text).and_then(|b| to_hash(&b)).ok_or_else(|| malformed(line, format!("{what} is not a 32-byte hex hash")))
}

/// Verifies an export with no database. `pinned` is the public key the verifier trusts.
pub fn verify_file(input: impl BufRead, pinned: Option<NoteVerifier>) -> Result<FileReport, FileError> {
    let mut lines = input.lines().enumerate();
    let (_, first) = lines.next().ok_or_else(|| malformed(1, "the file is empty"))?;
    let header: Header = serde_json::from_str(&first?).map_err(|e| malformed(1, format!("bad header: {e}")))?;
    if header.format != FORMAT {
        return Err(malformed(1, format!("format {:?} is not {FORMAT}", header.format)));
    }
    let file_key = NoteVerifier::parse(&header.verifier_key).map_err(|e| malformed(1, e.to_string()))?;
    let key_pinned = pinned.is_some();
    let key = pinned.unwrap_or(file_key);
    let anchor_hashes =
        header.anchor_frontier.iter().map(|h| hash_of(1, "anchor", h)).collect::<Result<Vec<_>, _>>()?;
    let frontier = Frontier::from_bytes(header.first_seq, &anchor_hashes.concat())
        .ok_or_else(|| malformed(1, "anchor does not match first_seq"))?;
    let chain = hash_of(1, "anchor chain hash", &header.anchor_chain_hash)?;
    let mut verifier = ChainVerifier::new(header.origin.clone(), vec![key], chain, frontier);
    let mut report = FileReport {
        organization_id: header.organization_id,
        ok: false,
        entries: 0,
        checkpoints: 0,
        first_seq: header.first_seq,
        key_pinned,
        first_bad_seq: None,
        problem: None,
    };
    let mut outcome = Ok(());
    let mut scratch = Scratch::default();
    for (n, text) in lines {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(&text).map_err(|e| malformed(n + 1, e.to_string()))?;
        outcome = match line {
            Line::Checkpoint(cp) => verifier.push_checkpoint(StoredCheckpoint {
                tree_size: cp.tree_size,
                root_hash: from_hex(&cp.root_hash).unwrap_or_default(),
                note: cp.note,
            }),
            Line::Entry(e) => {
                let digest = B64
                    .decode(&e.salts)
                    .map_err(|_| "bad salts".to_owned())
                    .and_then(|salts| StoredEntry { fields: e.fields.as_bytes(), salts: &salts }.digest(&mut scratch));
                let leaf =
                    digest.map(|d| leaf_hash(&header.organization_id, e.seq, &d)).map_err(Unverifiable::Malformed);
                let stored_leaf = from_hex(&e.leaf_hash).unwrap_or_default();
                let chain = from_hex(&e.chain_hash).unwrap_or_default();
                verifier.entry_leaf(e.seq, leaf, &stored_leaf, &chain)
            }
        };
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = verifier.finish();
    }
    if outcome.is_ok() && verifier.next_seq() != header.tree_size {
        outcome = Err(crate::verify::Failure {
            seq: verifier.next_seq(),
            problem: format!(
                "entries missing: the header announces {} entries, the file holds {}",
                header.tree_size,
                verifier.next_seq()
            ),
        });
    }
    report.entries = verifier.entries_checked;
    report.checkpoints = verifier.checkpoints_checked;
    (report.ok, report.first_bad_seq, report.problem) = crate::verify::verdict(outcome);
    Ok(report)
}
