//! The archive file a retention run writes (`custos-archive/v1`), read and checked without a
//! database: what `custos archive verify FILE` runs offline, and what restore checks first.
//!
//! A tar file holding, in order:
//!
//! * `manifest.json` — the organisation, run, policy and entity; every record file and evidence
//!   file in the archive with its SHA-256 and size;
//! * `manifest.sig` — a signed note (the audit log's checkpoint format, C2SP `signed-note`) by the
//!   platform's Ed25519 key: origin `<key name>/archive/<organisation>`, size the number of
//!   records, root hash the SHA-256 of `manifest.json`'s bytes, extension `run <id>`;
//! * `records/<id>.json` — one archived record: its rows, table by table (an evidence item with
//!   its custody chain and requirement links, a job with its steps), as PostgreSQL's `to_jsonb`
//!   wrote them;
//! * `files/<sha256>` — the evidence files, byte for byte.
//!
//! Verification proves the archive is the one the platform wrote: the manifest's signature by a
//! pinned key, every entry's digest, nothing missing and nothing added.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use custos_audit_chain::note::{Checkpoint, NoteSigner, NoteVerifier};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const FORMAT: &str = "custos-archive/v1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub organization: Uuid,
    pub run: Uuid,
    pub policy: Uuid,
    pub policy_name: String,
    pub entity_type: String,
    pub created_at: String,
    pub records: Vec<Entry>,
    pub files: Vec<FileEntry>,
}

/// A record file of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: Uuid,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// An evidence file of the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub evidence: Uuid,
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// One archived record: its rows, table by table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRecord {
    pub entity_type: String,
    pub id: Uuid,
    pub rows: BTreeMap<String, Vec<Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a Custos archive: {0}")]
    Malformed(String),
    #[error("the archive is not intact: {0}")]
    Tampered(String),
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    custos_core::hex::encode(&Sha256::digest(bytes))
}

fn origin(signer_name: &str, organization: Uuid) -> String {
    format!("{signer_name}/archive/{organization}")
}

/// The signed note over a manifest's bytes.
pub fn sign(signer: &NoteSigner, manifest: &Manifest, manifest_bytes: &[u8]) -> String {
    signer.sign(&Checkpoint {
        origin: origin(&signer.name, manifest.organization),
        size: manifest.records.len() as u64,
        root: Sha256::digest(manifest_bytes).into(),
        extensions: vec![format!("run {}", manifest.run)],
    })
}

/// What verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    /// The pinned key that signed the manifest (none pinned: only consistency was checked).
    pub signed_by: Option<String>,
}

/// Checks an archive read from `reader`: the manifest's signature by one of `keys` (with no key,
/// only that the signature note matches the manifest), then every entry against the manifest.
pub fn verify(reader: impl Read, keys: &[NoteVerifier]) -> Result<Verified, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries()?;
    let mut next = |want: &str| -> Result<Vec<u8>, ArchiveError> {
        let mut e = entries
            .next()
            .ok_or_else(|| ArchiveError::Malformed(format!("{want} is missing")))?
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let path = e.path().map_err(|e| ArchiveError::Malformed(e.to_string()))?.display().to_string();
        if path != want {
            return Err(ArchiveError::Malformed(format!("expected {want} first, found {path}")));
        }
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let manifest_bytes = next(MANIFEST)?;
    let note =
        String::from_utf8(next(SIGNATURE)?).map_err(|_| ArchiveError::Malformed("manifest.sig is not text".into()))?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| ArchiveError::Malformed(format!("manifest.json: {e}")))?;
    if manifest.format != FORMAT {
        return Err(ArchiveError::Malformed(format!("format {:?}, expected {FORMAT}", manifest.format)));
    }
    let root: [u8; 32] = Sha256::digest(&manifest_bytes).into();
    let mut signed_by = None;
    if keys.is_empty() {
        // No pinned key: the note must at least state this manifest.
        if !note_states(&note, &root) {
            return Err(ArchiveError::Tampered("manifest.sig does not state this manifest".into()));
        }
    } else {
        let mut opened = None;
        for key in keys {
            if let Ok(checkpoint) = key.open(&note) {
                opened = Some((key.to_note_key(), checkpoint));
                break;
            }
        }
        let Some((key, checkpoint)) = opened else {
            return Err(ArchiveError::Tampered("manifest.sig carries no valid signature by a pinned key".into()));
        };
        if checkpoint.root != root || checkpoint.size != manifest.records.len() as u64 {
            return Err(ArchiveError::Tampered("the signed note states another manifest".into()));
        }
        if checkpoint.origin != origin(key.split('+').next().unwrap_or_default(), manifest.organization) {
            return Err(ArchiveError::Tampered("the signed note names another organisation".into()));
        }
        signed_by = Some(key);
    }
    let mut expected: HashMap<String, (String, u64)> = HashMap::new();
    for r in &manifest.records {
        expected.insert(r.path.clone(), (r.sha256.clone(), r.size));
    }
    for f in &manifest.files {
        expected.insert(f.path.clone(), (f.sha256.clone(), f.size));
    }
    for entry in entries {
        let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let path = entry.path().map_err(|e| ArchiveError::Malformed(e.to_string()))?.display().to_string();
        let Some((sha, size)) = expected.remove(&path) else {
            return Err(ArchiveError::Tampered(format!("{path} is not in the manifest")));
        };
        let mut hasher = Sha256::new();
        let copied = std::io::copy(&mut entry, &mut HashWriter(&mut hasher))?;
        if copied != size || custos_core::hex::encode(&hasher.finalize()) != sha {
            return Err(ArchiveError::Tampered(format!("{path} does not match its digest in the manifest")));
        }
    }
    if let Some(missing) = expected.keys().next() {
        return Err(ArchiveError::Tampered(format!("{missing} is missing")));
    }
    Ok(Verified { manifest, signed_by })
}

/// Whether a signed note's root hash line is `root` (base64, as notes write it).
fn note_states(note: &str, root: &[u8; 32]) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(root);
    note.lines().nth(2) == Some(b64.as_str())
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes an archive: the manifest (with its signature), then the records and files as listed.
/// `file_source` opens each evidence file's bytes by its path in the archive.
pub fn write(
    out: impl std::io::Write,
    signer: &NoteSigner,
    manifest: &Manifest,
    records: &[(String, Vec<u8>)],
    mut file_source: impl FnMut(&str) -> std::io::Result<(u64, Box<dyn Read>)>,
) -> Result<(), ArchiveError> {
    let manifest_bytes = serde_json::to_vec_pretty(manifest).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
    let note = sign(signer, manifest, &manifest_bytes);
    let mut builder = tar::Builder::new(out);
    let mut add = |path: &str, size: u64, data: &mut dyn Read| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, path, data)
    };
    add(MANIFEST, manifest_bytes.len() as u64, &mut manifest_bytes.as_slice())?;
    add(SIGNATURE, note.len() as u64, &mut note.as_bytes())?;
    for (path, bytes) in records {
        add(path, bytes.len() as u64, &mut bytes.as_slice())?;
    }
    for f in &manifest.files {
        let (size, mut reader) = file_source(&f.path)?;
        add(&f.path, size, &mut reader)?;
    }
    builder.into_inner()?.flush()?;
    Ok(())
}

/// Reads the records and files of an archive already verified (`verified`), checking each again
/// as it is read (the file may have changed since): the records, and each evidence file's bytes
/// passed to `file` by its manifest entry.
pub fn read_contents(
    reader: impl Read,
    verified: &Manifest,
    mut file: impl FnMut(&FileEntry, &mut dyn Read) -> std::io::Result<()>,
) -> Result<Vec<ArchivedRecord>, ArchiveError> {
    let mut archive = tar::Archive::new(reader);
    let mut records = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry.map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        let path = entry.path().map_err(|e| ArchiveError::Malformed(e.to_string()))?.display().to_string();
        if let Some(r) = verified.records.iter().find(|r| r.path == path) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            if sha256_hex(&bytes) != r.sha256 {
                return Err(ArchiveError::Tampered(format!("{path} changed since it was verified")));
            }
            records.push(serde_json::from_slice(&bytes).map_err(|e| ArchiveError::Malformed(format!("{path}: {e}")))?);
        } else if let Some(f) = verified.files.iter().find(|f| f.path == path) {
            file(f, &mut entry)?;
        }
    }
    if records.len() != verified.records.len() {
        return Err(ArchiveError::Tampered("records changed since they were verified".into()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> NoteSigner {
        NoteSigner::new("custos.test/audit", ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
    }

    /// A manifest, its record files (path, bytes) and the evidence file's bytes.
    type Sample = (Manifest, Vec<(String, Vec<u8>)>, Vec<u8>);

    fn sample() -> Sample {
        let id = Uuid::now_v7();
        let record = ArchivedRecord {
            entity_type: "evidence".into(),
            id,
            rows: BTreeMap::from([("evidence".to_owned(), vec![serde_json::json!({"id": id, "title": "log"})])]),
        };
        let bytes = serde_json::to_vec(&record).unwrap();
        let file = b"the evidence file".to_vec();
        let manifest = Manifest {
            format: FORMAT.into(),
            organization: Uuid::now_v7(),
            run: Uuid::now_v7(),
            policy: Uuid::now_v7(),
            policy_name: "Evidence".into(),
            entity_type: "evidence".into(),
            created_at: "2026-12-07T00:00:00Z".into(),
            records: vec![Entry {
                id,
                path: format!("records/{id}.json"),
                sha256: sha256_hex(&bytes),
                size: bytes.len() as u64,
            }],
            files: vec![FileEntry {
                evidence: id,
                path: format!("files/{}", sha256_hex(&file)),
                sha256: sha256_hex(&file),
                size: file.len() as u64,
            }],
        };
        let path = manifest.records[0].path.clone();
        (manifest, vec![(path, bytes)], file)
    }

    fn archive(manifest: &Manifest, records: &[(String, Vec<u8>)], file: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let file = file.to_vec();
        write(&mut out, &signer(), manifest, records, |_| {
            Ok((file.len() as u64, Box::new(std::io::Cursor::new(file.clone()))))
        })
        .unwrap();
        out
    }

    #[test]
    fn an_archive_verifies_with_its_key_and_reads_back() {
        let (manifest, records, file) = sample();
        let bytes = archive(&manifest, &records, &file);
        let key = signer().verifier();
        let v = verify(bytes.as_slice(), std::slice::from_ref(&key)).unwrap();
        assert_eq!(v.manifest, manifest);
        assert_eq!(v.signed_by, Some(key.to_note_key()));
        assert!(verify(bytes.as_slice(), &[]).unwrap().signed_by.is_none());
        let mut files = Vec::new();
        let read = read_contents(bytes.as_slice(), &manifest, |f, r| {
            let mut b = Vec::new();
            r.read_to_end(&mut b)?;
            files.push((f.evidence, b));
            Ok(())
        })
        .unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(files, [(manifest.files[0].evidence, file)]);
    }

    #[test]
    fn any_change_or_another_key_is_refused() {
        let (manifest, records, file) = sample();
        let key = signer().verifier();
        // Another key.
        let other = NoteSigner::new("custos.test/audit", ed25519_dalek::SigningKey::from_bytes(&[9; 32])).verifier();
        let bytes = archive(&manifest, &records, &file);
        assert!(matches!(verify(bytes.as_slice(), &[other]), Err(ArchiveError::Tampered(_))));
        // A changed evidence file (same length), a changed record, a record added to the manifest.
        let mut changed = archive(&manifest, &records, b"THE evidence file");
        assert!(matches!(verify(changed.as_slice(), std::slice::from_ref(&key)), Err(ArchiveError::Tampered(_))));
        let mut tampered = records.clone();
        tampered[0].1 = tampered[0].1.iter().map(|b| if *b == b'l' { b'L' } else { *b }).collect();
        changed = archive(&manifest, &tampered, &file);
        assert!(matches!(verify(changed.as_slice(), std::slice::from_ref(&key)), Err(ArchiveError::Tampered(_))));
        // A byte flipped in any header, the manifest, its signature, a record or a file is never
        // accepted (only the zero padding after each entry carries nothing).
        let content_end = bytes.len() - 1024;
        for at in (0..content_end).step_by(7) {
            // Trailing zeros of a block: the padding after an entry's data.
            let block_end = (at / 512 + 1) * 512;
            let in_padding = bytes[at..block_end].iter().all(|b| *b == 0);
            if in_padding {
                continue;
            }
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x20;
            assert!(verify(flipped.as_slice(), std::slice::from_ref(&key)).is_err(), "byte {at}");
        }
        assert!(verify(&b"not a tar"[..], &[]).is_err());
    }
}
