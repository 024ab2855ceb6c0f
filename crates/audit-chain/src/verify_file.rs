//! `custos audit verify-file`: an export ([`crate::export`]) checked with no database — every
//! entry's leaf recomputed from its fields, the chain, the tree and the checkpoints' signatures —
//! against a public key the regulator obtained out of band, or, without one, against the key in
//! the file (which proves consistency, not origin).

use std::borrow::Cow;
use std::io::{BufRead, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, mpsc};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::hex::decode_array;
use serde::Deserialize;
use uuid::Uuid;

use crate::encoding::{DigestBatch, Hash, StoredEntry, leaf_hash};
use crate::export::{ExportCheckpoint, FORMAT, Header};
use crate::merkle::Frontier;
use crate::note::NoteVerifier;
use crate::rows::{Unverifiable, from_hex};
use crate::verify::{ChainVerifier, StoredCheckpoint};

/// What `verify-file` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    pub organization_id: Uuid,
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub first_seq: u64,
    /// Signatures were checked against keys given by the verifier, not the ones in the file.
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
    decode_array(text).ok_or_else(|| malformed(line, format!("{what} is not a 32-byte hex hash")))
}

/// Lines of an export read at once: about 13 MiB of a typical export, and a few batches in
/// memory at a time whatever the file's length. Workers take them in slices of [`SLICE`].
const FILE_BATCH: usize = 16384;

/// Whole lines of an export read together: their text end to end, and each line's number
/// (1-based) and place in it. Read so, a line costs no allocation of its own.
#[derive(Default)]
struct LineBatch {
    text: Vec<u8>,
    lines: Vec<(usize, Range<usize>)>,
    /// What stopped the reading after these lines, if reading failed.
    unreadable: Option<std::io::Error>,
}

/// `line` without its end (`\n` or `\r\n`, as [`BufRead::lines`] ends one).
fn without_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// How much of the file one read asks for: large reads go straight from the kernel into a
/// batch's text, with no copy through a `BufReader`'s buffer and no call per line.
const READ_CHUNK: u64 = 1 << 20;

/// An export's lines after its header, read a batch at a time in large reads; each batch's text
/// is a buffer handed back by the one before (see [`LineReader::next_batch`]), so that the file
/// is read into memory already mapped rather than into fresh pages every batch.
struct LineReader<R> {
    input: R,
    /// The number of the last line read (1-based; the header is line 1).
    line: usize,
    /// Bytes read after the last whole line of the previous batch: the start of the next one.
    carry: Vec<u8>,
    /// Whether the input has ended (or failed).
    ended: bool,
    /// Why reading failed, until the lines read before the failure have all been handed out.
    failure: Option<std::io::Error>,
}

impl<R: BufRead> LineReader<R> {
    /// Up to [`FILE_BATCH`] lines, their text in `text` (cleared first): fewer only at the end
    /// of the input, or where reading failed (the error is kept, after the lines read before it;
    /// the part of a line read before the failure is not a line).
    fn next_batch(&mut self, mut text: Vec<u8>) -> LineBatch {
        text.clear();
        text.append(&mut self.carry);
        let mut lines = Vec::with_capacity(FILE_BATCH);
        let mut split = 0;
        loop {
            // Lines ending in what has been read are split off until the batch is full.
            let from = split;
            for end in memchr::memchr_iter(b'\n', &text[from..]).map(|at| from + at + 1) {
                if lines.len() == FILE_BATCH {
                    break;
                }
                self.line += 1;
                lines.push((self.line, split..split + without_line_end(&text[split..end]).len()));
                split = end;
            }
            if lines.len() == FILE_BATCH || self.ended {
                break;
            }
            match (&mut self.input).take(READ_CHUNK).read_to_end(&mut text) {
                Ok(0) => self.ended = true,
                Ok(_) => {}
                // What was read before the failure is still split into lines, above.
                Err(e) => (self.ended, self.failure) = (true, Some(e)),
            }
        }
        let mut unreadable = None;
        if lines.len() < FILE_BATCH && self.ended {
            unreadable = self.failure.take();
            if unreadable.is_none() && split < text.len() {
                // The last line need not end in a newline.
                self.line += 1;
                lines.push((self.line, split..split + without_line_end(&text[split..]).len()));
                split = text.len();
            }
        } else {
            self.carry.extend_from_slice(&text[split..]);
        }
        text.truncate(split);
        LineBatch { text, lines, unreadable }
    }
}

/// An entry's line as `verify-file` reads it ([`ExportEntry`] as written): the fields still escaped as the file holds them
/// (to be unescaped into a buffer shared by the batch, not a string of their own), the rest
/// borrowed from the line where JSON lets it be.
#[derive(Deserialize)]
struct ReadEntry<'a> {
    seq: u64,
    #[serde(borrow)]
    fields: &'a serde_json::value::RawValue,
    #[serde(borrow)]
    salts: Cow<'a, str>,
    #[serde(borrow)]
    leaf_hash: Cow<'a, str>,
    #[serde(borrow)]
    chain_hash: Cow<'a, str>,
}

/// [`Line`] as `verify-file` reads it.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReadLine<'a> {
    #[serde(borrow)]
    Entry(ReadEntry<'a>),
    Checkpoint(ExportCheckpoint),
}

/// Appends the text of the JSON string literal `raw` (quotes included, already checked by
/// serde_json: valid escapes, no raw control characters, UTF-8) to `out`: unescaped as
/// [`crate::written_entry`] unescapes, except what it leaves to serde_json (`\uXXXX`, surrogate
/// pairs and all: exports write it only for control characters inside values, which are rare).
fn unescape_json_string(raw: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let Some(quoted) = raw.strip_prefix('"').filter(|r| r.ends_with('"')) else {
        return Err("the entry's fields are not a JSON string".into());
    };
    let start = out.len();
    if crate::written_entry::unescape_until_quote(quoted.as_bytes(), out).is_some_and(|rest| rest.is_empty()) {
        return Ok(());
    }
    out.truncate(start);
    let text: String = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// A line of an export, parsed and its entry's leaf recomputed.
enum FileLine {
    Checkpoint(StoredCheckpoint),
    Entry { seq: u64, leaf: Result<Hash, Unverifiable>, stored_leaf: Option<Hash>, chain: Option<Hash> },
}

/// A line of an export, parsed; an entry's fields and salts are in the batch's buffer, its leaf
/// still to be recomputed.
enum ParsedLine {
    Checkpoint(StoredCheckpoint),
    Entry {
        seq: u64,
        fields: Range<usize>,
        salts: Result<Range<usize>, String>,
        stored_leaf: Option<Hash>,
        chain: Option<Hash>,
    },
}

/// Line `n` of an export (`None` for a blank one), its entry's fields and salts appended to `buffer`.
fn parse_file_line(n: usize, text: &[u8], buffer: &mut Vec<u8>) -> Result<Option<ParsedLine>, FileError> {
    if let Some(e) = crate::written_entry::read(text, buffer) {
        return Ok(Some(ParsedLine::Entry {
            seq: e.seq,
            fields: e.fields,
            salts: Ok(e.salts),
            stored_leaf: Some(e.leaf_hash),
            chain: Some(e.chain_hash),
        }));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let line: ReadLine = serde_json::from_slice(text).map_err(|e| malformed(n, e.to_string()))?;
    Ok(Some(match line {
        ReadLine::Checkpoint(cp) => ParsedLine::Checkpoint(StoredCheckpoint {
            tree_size: cp.tree_size,
            root_hash: from_hex(&cp.root_hash).unwrap_or_default(),
            note: cp.note,
        }),
        ReadLine::Entry(e) => {
            let start = buffer.len();
            unescape_json_string(e.fields.get(), buffer).map_err(|problem| malformed(n, problem))?;
            entry_line(e.seq, start..buffer.len(), &e.salts, &e.leaf_hash, &e.chain_hash, buffer)
        }
    }))
}

/// An entry's line, its fields already at `fields` in `buffer`, its salts decoded onto it.
fn entry_line(
    seq: u64,
    fields: Range<usize>,
    salts: &str,
    leaf_hash: &str,
    chain_hash: &str,
    buffer: &mut Vec<u8>,
) -> ParsedLine {
    let start = buffer.len();
    let salts = match B64.decode_vec(salts.as_bytes(), buffer) {
        Ok(()) => Ok(start..buffer.len()),
        Err(_) => {
            buffer.truncate(start);
            Err("bad salts".to_owned())
        }
    };
    ParsedLine::Entry { seq, fields, salts, stored_leaf: decode_array(leaf_hash), chain: decode_array(chain_hash) }
}

/// A line's number and what it holds, as the verifier takes it.
type CheckedLine = (usize, Result<Option<FileLine>, FileError>);

/// Numbered lines of `text` parsed, and their entries' leaves recomputed together in `batch`;
/// appended to `out`, one per line, in order.
fn check_lines(
    org: Uuid,
    batch: &mut DigestBatch,
    text: &[u8],
    lines: &[(usize, Range<usize>)],
    out: &mut Vec<CheckedLine>,
) {
    // The entries' fields and salts, end to end: one allocation for the lot.
    let mut buffer = Vec::with_capacity(lines.iter().map(|(_, r)| r.len()).sum());
    let parsed: Vec<_> = lines.iter().map(|(n, r)| parse_file_line(*n, &text[r.clone()], &mut buffer)).collect();
    for line in &parsed {
        if let Ok(Some(ParsedLine::Entry { fields, salts: Ok(salts), .. })) = line {
            batch.push(&StoredEntry { fields: &buffer[fields.clone()], salts: &buffer[salts.clone()] }, |_, _| {});
        }
    }
    let mut digests = batch.finish().into_iter();
    out.extend(lines.iter().zip(parsed).map(|((n, _), line)| {
        let line = line.map(|line| {
            line.map(|line| match line {
                ParsedLine::Checkpoint(cp) => FileLine::Checkpoint(cp),
                ParsedLine::Entry { seq, salts, stored_leaf, chain, .. } => {
                    let digest = salts.and_then(|_| digests.next().expect("one digest per entry pushed"));
                    let leaf = digest.map(|d| leaf_hash(&org, seq, &d)).map_err(Unverifiable::Malformed);
                    FileLine::Entry { seq, leaf, stored_leaf, chain }
                }
            })
        });
        (*n, line)
    }));
}

/// Lines a worker takes at once: enough that handing answers over (a wake-up of the thread
/// taking them each time) costs little beside them; checked [`crate::verify::SUB_BATCH`] at a
/// time, so that the buffers of each step stay in cache.
const SLICE: usize = 4096;

/// Work for `verify-file`'s workers, numbered in file order.
enum Job {
    /// Lines `lines` of a batch (indices into its `lines`).
    Lines { batch: Arc<LineBatch>, lines: Range<usize> },
    /// Reading failed after the lines of the jobs before.
    Unreadable(std::io::Error),
}

/// A job's answer: each line's number and what it holds.
enum Answer {
    Lines(Vec<CheckedLine>),
    Unreadable(std::io::Error),
}

/// The reader's stage: the lines after the header, a batch at a time, sent to the workers as
/// numbered slices (then the failure, if reading failed), each batch's text in a buffer from
/// `reusable` where one is back. Returns how many jobs it sent; it stops early, too, once no
/// worker is left to take them.
fn read_jobs(input: impl BufRead, jobs: &mpsc::SyncSender<(usize, Job)>, reusable: &mpsc::Receiver<Vec<u8>>) -> usize {
    let mut lines = LineReader { input, line: 1, carry: Vec::new(), ended: false, failure: None };
    let mut sent = 0;
    loop {
        let mut batch = lines.next_batch(reusable.try_recv().unwrap_or_default());
        let (full, unreadable) = (batch.lines.len() == FILE_BATCH, batch.unreadable.take());
        let failed = unreadable.is_some();
        let batch = Arc::new(batch);
        let slices = (0..batch.lines.len()).step_by(SLICE).map(|at| at..batch.lines.len().min(at + SLICE));
        let mut batch_jobs: Vec<Job> = slices.map(|lines| Job::Lines { batch: batch.clone(), lines }).collect();
        batch_jobs.extend(unreadable.map(Job::Unreadable));
        // The last job done with the batch hands its buffer back.
        drop(batch);
        for job in batch_jobs {
            if jobs.send((sent, job)).is_err() {
                return sent;
            }
            sent += 1;
        }
        if !full || failed {
            return sent;
        }
    }
}

/// A worker's stage: jobs taken as they come, answered with each line parsed and its leaf
/// recomputed, until there are no more or nobody takes the answers.
fn answer_jobs(
    org: Uuid,
    next_job: &Mutex<mpsc::Receiver<(usize, Job)>>,
    answer: &mpsc::Sender<(usize, Answer)>,
    spent: &mpsc::Sender<Vec<u8>>,
) {
    let mut digests = DigestBatch::default();
    loop {
        let job = next_job.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok((at, job)) = job else { return };
        let answered = match job {
            Job::Unreadable(e) => Answer::Unreadable(e),
            Job::Lines { batch, lines } => {
                let lines = &batch.lines[lines];
                let mut answered = Vec::with_capacity(lines.len());
                let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    for step in lines.chunks(crate::verify::SUB_BATCH) {
                        check_lines(org, &mut digests, &batch.text, step, &mut answered);
                    }
                }));
                if checked.is_err() || answered.len() != lines.len() {
                    // A slice that could not be checked is never skipped: its lines fail.
                    digests = DigestBatch::default();
                    answered =
                        lines.iter().map(|(n, _)| (*n, Err(malformed(*n, "the line could not be checked")))).collect();
                }
                if let Some(batch) = Arc::into_inner(batch) {
                    let _ = spent.send(batch.text);
                }
                Answer::Lines(answered)
            }
        };
        if answer.send((at, answered)).is_err() {
            return;
        }
    }
}

/// Verifies an export with no database. `pinned` are the public keys the verifier trusts (the
/// log's current key and any it rotated from); with none, the keys in the file are used.
/// `progress(entries checked, entries announced)` follows it a batch at a time.
pub fn verify_file(
    mut input: impl BufRead + Send,
    pinned: Vec<NoteVerifier>,
    mut progress: impl FnMut(u64, u64),
) -> Result<FileReport, FileError> {
    let mut first = Vec::new();
    if input.read_until(b'\n', &mut first)? == 0 {
        return Err(malformed(1, "the file is empty"));
    }
    let header: Header =
        serde_json::from_slice(without_line_end(&first)).map_err(|e| malformed(1, format!("bad header: {e}")))?;
    if header.format != FORMAT {
        return Err(malformed(1, format!("format {:?} is not {FORMAT}", header.format)));
    }
    let key_pinned = !pinned.is_empty();
    let keys = if key_pinned {
        pinned
    } else {
        std::iter::once(&header.verifier_key)
            .chain(&header.earlier_verifier_keys)
            .map(|k| NoteVerifier::parse(k).map_err(|e| malformed(1, e.to_string())))
            .collect::<Result<Vec<_>, _>>()?
    };
    let anchor_hashes =
        header.anchor_frontier.iter().map(|h| hash_of(1, "anchor", h)).collect::<Result<Vec<_>, _>>()?;
    let frontier = Frontier::from_bytes(header.first_seq, &anchor_hashes.concat())
        .ok_or_else(|| malformed(1, "anchor does not match first_seq"))?;
    let chain = hash_of(1, "anchor chain hash", &header.anchor_chain_hash)?;
    let mut verifier = ChainVerifier::new(header.origin.clone(), keys, chain, frontier);
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
    let mut unreadable = None;
    // Three stages overlap: lines are read a batch at a time on one thread; each batch is cut
    // into slices, which workers (one per core) parse and recompute the leaves of, taking the
    // next slice as they finish one, across batches (no wait for a batch's slowest slice); the
    // slices' answers are fed to the verifier here, in file order, so the first problem found is
    // the one a line-by-line pass finds. (Chaining is serial: overlapped, it leaves no core idle.)
    let org = header.organization_id;
    let announced = header.tree_size.saturating_sub(header.first_seq);
    std::thread::scope(|scope| -> Result<(), FileError> {
        // At most two batches' slices wait for a worker: memory stays flat.
        let (jobs, next_job) = mpsc::sync_channel(2 * FILE_BATCH / SLICE);
        // Texts checked go back to the reader to hold later batches.
        let (spent, reusable) = mpsc::channel();
        let reader = scope.spawn(move || read_jobs(input, &jobs, &reusable));
        let next_job = Arc::new(Mutex::new(next_job));
        let (answer, answers) = mpsc::channel();
        for _ in 0..crate::verify::cores() {
            let (next_job, answer, spent) = (next_job.clone(), answer.clone(), spent.clone());
            scope.spawn(move || answer_jobs(org, &next_job, &answer, &spent));
        }
        drop((answer, spent));
        // Answers arrive in the order workers finish; they are taken in file order.
        let mut waiting = std::collections::BTreeMap::new();
        let (mut taken, mut next_line) = (0, 2);
        for (at, answered) in answers.iter() {
            waiting.insert(at, answered);
            while let Some(answered) = waiting.remove(&taken) {
                taken += 1;
                let lines = match answered {
                    Answer::Lines(lines) => lines,
                    // What precedes an unreadable line is still checked, as a line-by-line pass would.
                    Answer::Unreadable(e) => {
                        unreadable = Some(e);
                        return Ok(());
                    }
                };
                for (n, line) in lines {
                    next_line = n + 1;
                    let step = match line? {
                        None => continue,
                        Some(FileLine::Checkpoint(cp)) => verifier.push_checkpoint(cp),
                        Some(FileLine::Entry { seq, leaf, stored_leaf, chain }) => verifier.entry_leaf(
                            seq,
                            leaf,
                            stored_leaf.as_ref().map_or(&[][..], |h| h),
                            chain.as_ref().map_or(&[][..], |h| h),
                        ),
                    };
                    if step.is_err() {
                        outcome = step;
                        return Ok(());
                    }
                }
                if taken % (FILE_BATCH / SLICE) == 0 {
                    progress(verifier.entries_checked, announced);
                }
            }
        }
        // Every worker has stopped, so the reader has too: each slice it sent must have been
        // answered, or lines went unchecked.
        let sent = reader.join().unwrap_or(usize::MAX);
        if taken != sent || !waiting.is_empty() {
            return Err(malformed(next_line, "the lines from here on could not be checked"));
        }
        progress(verifier.entries_checked, announced);
        Ok(())
    })?;
    if let Some(e) = unreadable.filter(|_| outcome.is_ok()) {
        return Err(e.into());
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
    // Only a signature ties entries to the log's key: an export whose checkpoints were stripped,
    // or with entries appended after the last one, proves nothing about those entries.
    if let Some(unsigned) = verifier.unsigned(header.first_seq).filter(|_| outcome.is_ok()) {
        let (from, end) = (unsigned.start, unsigned.end);
        let problem = if from < end {
            format!(
                "unsigned entries: no signed checkpoint covers entries {from}..{}, so nothing proves the log's key committed to them",
                end - 1
            )
        } else {
            format!("unsigned anchor: no signed checkpoint covers the {end} entries the file starts after")
        };
        outcome = Err(crate::verify::Failure { seq: from, problem });
    }
    report.entries = verifier.entries_checked;
    report.checkpoints = verifier.checkpoints_checked;
    (report.ok, report.first_bad_seq, report.problem) = crate::verify::verdict(outcome);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{EntryValues, chain_hash};
    use crate::export::{ExportEntry, Line};
    use crate::note::{Checkpoint, NoteSigner};
    use crate::rows::hex;

    /// An export of `n` entries (a checkpoint after the first `n / 2` and at the end), as
    /// `custos audit export` writes it, one line per element.
    fn export_lines(n: u64) -> (Vec<String>, NoteSigner) {
        let signer = NoteSigner::new("custos.test/audit", ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]));
        let org = Uuid::now_v7();
        let origin = format!("custos.test/audit/{org}");
        let header = Header {
            format: FORMAT.into(),
            organization_id: org,
            origin: origin.clone(),
            verifier_key: signer.verifier().to_note_key(),
            earlier_verifier_keys: vec![],
            exported_at: "2026-12-03T12:00:00Z".into(),
            first_seq: 0,
            tree_size: n,
            anchor_chain_hash: hex(&[0u8; 32]),
            anchor_frontier: vec![],
        };
        let mut lines = vec![serde_json::to_string(&header).unwrap()];
        let (mut chain, mut frontier) = ([0u8; 32], Frontier::default());
        for seq in 0..n {
            let values = EntryValues {
                recorded_at: "2026-12-03T12:00:00.000000Z".into(),
                actor: format!("user:{seq}"),
                action: "update".into(),
                resource_type: "requirement".into(),
                resource_id: seq.to_string(),
                before: serde_json::json!({"status": "draft"}),
                after: serde_json::json!({"status": "final"}),
                ..Default::default()
            };
            let encoded = values.encode(&[seq as u8; 32]);
            let leaf = leaf_hash(&org, seq, &encoded.digest);
            chain = chain_hash(&chain, &leaf);
            frontier.append(leaf);
            let entry = ExportEntry {
                seq,
                fields: encoded.fields.into(),
                salts: B64.encode(&encoded.salts).into(),
                leaf_hash: hex(&leaf).into(),
                chain_hash: hex(&chain).into(),
            };
            lines.push(serde_json::to_string(&Line::Entry(entry)).unwrap());
            if seq + 1 == n / 2 || seq + 1 == n {
                let statement =
                    Checkpoint { origin: origin.clone(), size: seq + 1, root: frontier.root(), extensions: vec![] };
                let checkpoint = ExportCheckpoint {
                    tree_size: seq + 1,
                    root_hash: hex(&frontier.root()),
                    note: signer.sign(&statement),
                };
                lines.push(serde_json::to_string(&Line::Checkpoint(checkpoint)).unwrap());
            }
        }
        (lines, signer)
    }

    fn check(lines: &[String], signer: &NoteSigner) -> Result<FileReport, FileError> {
        verify_file((lines.join("\n") + "\n").as_bytes(), vec![signer.verifier()], |_, _| {})
    }

    /// Line `at` with `from` replaced by `to` (which must change it).
    fn edit(lines: &mut [String], at: usize, from: &str, to: &str) {
        let edited = lines[at].replacen(from, to, 1);
        assert_ne!(edited, lines[at]);
        lines[at] = edited;
    }

    /// The fast unescaping agrees with serde_json on every escape JSON has, and refuses what is
    /// not a string.
    #[test]
    fn fields_are_unescaped_as_serde_json_unescapes_them() {
        let texts = [
            "",
            "plain",
            "action\t\"create\"\nafter.name\t\"a \\\"quoted\\\" word\"\n",
            "every escape: \" \\ / \u{8} \u{c} \n \r \t",
            "control \u{1} and \u{1f}, non-ASCII é 漢字 😀",
            "a backslash before u: \\u0041",
        ];
        for text in texts {
            let written = serde_json::to_string(text).unwrap();
            // Writers may escape more than serde_json does: `\/`, `\uXXXX` for anything.
            let slash_escaped = written.replace('/', "\\/");
            let all_escaped: String = std::iter::once("\"".to_owned())
                .chain(text.encode_utf16().map(|u| format!("\\u{u:04x}")))
                .chain(std::iter::once("\"".to_owned()))
                .collect();
            for raw in [written, slash_escaped, all_escaped] {
                let mut out = b"kept ".to_vec();
                unescape_json_string(&raw, &mut out).unwrap();
                assert_eq!(out, format!("kept {text}").as_bytes(), "{raw}");
            }
        }
        for raw in ["12", "{}", "null", "\"bad \\q\""] {
            assert!(unescape_json_string(raw, &mut Vec::new()).is_err(), "{raw}");
        }
    }

    /// Lines end as `BufRead::lines` ends them (`\n` or `\r\n`), blank lines are skipped, and a
    /// line that is not UTF-8 or whose fields are not a string is named by its number.
    #[test]
    fn line_ends_blank_lines_and_unreadable_lines() {
        let (lines, signer) = export_lines(10);
        let crlf = lines.join("\r\n\r\n") + "\r\n";
        let report = verify_file(crlf.as_bytes(), vec![signer.verifier()], |_, _| {}).unwrap();
        assert!(report.ok && report.entries == 10, "{report:?}");

        let mut bytes: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
        let at = lines[3].find("user:").unwrap();
        bytes[3][at + 4] = 0xff;
        let file = bytes.join(&b'\n');
        match verify_file(&file[..], vec![signer.verifier()], |_, _| {}) {
            Err(FileError::Malformed { line: 4, .. }) => {}
            other => panic!("expected line 4 to be malformed, got {other:?}"),
        }

        let mut not_a_string = lines.clone();
        let fields_at = not_a_string[2].find("\"fields\":").unwrap() + "\"fields\":".len();
        let end = fields_at + not_a_string[2][fields_at..].find(",\"salts\"").unwrap();
        not_a_string[2].replace_range(fields_at..end, "42");
        match check(&not_a_string, &signer) {
            Err(FileError::Malformed { line: 3, problem }) => {
                assert!(problem.contains("not a JSON string"), "{problem}")
            }
            other => panic!("expected line 3 to be malformed, got {other:?}"),
        }
    }

    /// Input that arrives a few bytes at a time, is interrupted now and then, and fails for
    /// good after `fail_after` bytes.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        calls: usize,
        fail_after: usize,
    }

    impl std::io::Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(5) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            if self.at >= self.fail_after {
                return Err(std::io::Error::other("the disk went away"));
            }
            let n = buf.len().min(7).min(self.data.len() - self.at).min(self.fail_after - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn batches(data: &[u8], fail_after: usize) -> Vec<(Vec<(usize, String)>, bool)> {
        let input = Trickle { data: data.to_vec(), at: 0, calls: 0, fail_after };
        let mut reader = LineReader {
            input: std::io::BufReader::with_capacity(1, input),
            line: 1,
            carry: Vec::new(),
            ended: false,
            failure: None,
        };
        let mut out = Vec::new();
        loop {
            let batch = reader.next_batch(Vec::new());
            let lines: Vec<_> = batch
                .lines
                .iter()
                .map(|(n, r)| (*n, String::from_utf8(batch.text[r.clone()].to_vec()).unwrap()))
                .collect();
            let (full, failed) = (lines.len() == FILE_BATCH, batch.unreadable.is_some());
            if lines.is_empty() && !failed {
                return out;
            }
            out.push((lines, failed));
            if !full || failed {
                return out;
            }
        }
    }

    /// Lines split however the reads fall, numbered on from the header's, in batches of
    /// [`FILE_BATCH`]; the last need not end in a newline; a read that fails ends the lines with
    /// the last whole one before it, and says so.
    #[test]
    fn lines_are_read_whole_whatever_the_reads_and_a_failed_read_is_kept() {
        let text: String = (0..FILE_BATCH + 3).map(|i| format!("line {i}{}\n", "x".repeat(i % 11))).collect();
        let expected: Vec<(usize, String)> =
            (0..FILE_BATCH + 3).map(|i| (i + 2, format!("line {i}{}", "x".repeat(i % 11)))).collect();
        let read = batches(text.as_bytes(), usize::MAX);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].0, expected[..FILE_BATCH]);
        assert_eq!(read[1].0, expected[FILE_BATCH..]);
        assert!(!read[0].1 && !read[1].1);

        let read = batches(b"a\r\n\nb", usize::MAX);
        assert_eq!(read, vec![(vec![(2, "a".to_owned()), (3, String::new()), (4, "b".to_owned())], false)]);

        let at = "line 0\nline 1x\nli".len();
        let read = batches(text.as_bytes(), at);
        assert_eq!(read, vec![(expected[..2].to_vec(), true)]);
        // A failure read in the same chunk as a batch's last line, whole lines after it: they
        // come in the next batch, and the failure with them.
        let at = text.find(&format!("line {}", FILE_BATCH + 2)).unwrap() + 2;
        let read = batches(text.as_bytes(), at);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], (expected[..FILE_BATCH].to_vec(), false));
        assert_eq!(read[1], (expected[FILE_BATCH..FILE_BATCH + 2].to_vec(), true));
    }

    /// A file whose reading fails part-way is an error, not a verdict; unless an entry before
    /// the failure is already bad, which a line-by-line pass would have met first.
    #[test]
    fn a_read_that_fails_is_reported_after_what_was_read_before_it() {
        let (lines, signer) = export_lines(FILE_BATCH as u64 + 50);
        let file = lines.join("\n") + "\n";
        let verify = |file: &str, fail_after: usize| {
            let input = Trickle { data: file.as_bytes().to_vec(), at: 0, calls: 0, fail_after };
            verify_file(std::io::BufReader::new(input), vec![signer.verifier()], |_, _| {})
        };
        let report = verify(&file, usize::MAX).unwrap();
        assert!(report.ok && report.entries == FILE_BATCH as u64 + 50, "{report:?}");

        let fail_after = file.find(&lines[FILE_BATCH + 10]).unwrap() + 5;
        match verify(&file, fail_after) {
            Err(FileError::Io(e)) => assert!(e.to_string().contains("the disk went away"), "{e}"),
            other => panic!("expected the read to fail, got {other:?}"),
        }
        let mut tampered = lines.clone();
        edit(&mut tampered, 100, "final", "FINAL");
        let report = verify(&(tampered.join("\n") + "\n"), fail_after).unwrap();
        assert_eq!(report.first_bad_seq, Some(99), "{report:?}");
    }

    #[test]
    fn a_file_longer_than_a_batch_verifies_and_names_its_first_problem_in_file_order() {
        let n = 2 * FILE_BATCH as u64 + 100;
        let (lines, signer) = export_lines(n);
        let report = check(&lines, &signer).unwrap();
        assert!(report.ok && report.key_pinned, "{report:?}");
        assert_eq!((report.entries, report.checkpoints), (n, 2));

        // Entry k is on line k + 1 until the first checkpoint, k + 2 after it.
        let line_of = |seq: u64| seq as usize + 1 + usize::from(seq >= n / 2);
        // Two edits in the second batch and beyond: the earlier is named.
        let mut tampered = lines.clone();
        let (early, late) = (FILE_BATCH as u64 + 10, 2 * FILE_BATCH as u64 + 50);
        edit(&mut tampered, line_of(early), "final", "FINAL");
        edit(&mut tampered, line_of(late), "final", "FINAL");
        let report = check(&tampered, &signer).unwrap();
        assert_eq!(report.first_bad_seq, Some(early), "{report:?}");
        assert!(report.problem.as_deref().unwrap().contains("hash mismatch"), "{report:?}");

        // A line that is not JSON after a bad entry in the same batch: the bad entry is what a
        // line-by-line pass meets first, so it is what is reported.
        let mut tampered = lines.clone();
        edit(&mut tampered, line_of(late), "final", "FINAL");
        tampered[line_of(late) + 3] = "{not json".into();
        let report = check(&tampered, &signer).unwrap();
        assert_eq!(report.first_bad_seq, Some(late), "{report:?}");
        // Before it, the malformed line is the error, with its line number (1-based).
        let mut malformed_file = lines.clone();
        malformed_file[line_of(early)] = "{not json".into();
        match check(&malformed_file, &signer) {
            Err(FileError::Malformed { line, .. }) => assert_eq!(line, line_of(early) + 1),
            other => panic!("expected a malformed line, got {other:?}"),
        }

        // Entries swapped across a batch boundary (the last of the first batch, the first of the
        // next): the first is missing where it belongs.
        let mut swapped = lines.clone();
        let at = line_of(FILE_BATCH as u64 - 1);
        swapped.swap(at, at + 1);
        let report = check(&swapped, &signer).unwrap();
        assert_eq!(report.first_bad_seq, Some(FILE_BATCH as u64 - 1), "{report:?}");
        assert!(report.problem.as_deref().unwrap().contains("gap"), "{report:?}");
        // A truncated file misses entries its checkpoint and header announce.
        let report = check(&lines[..lines.len() - 3], &signer).unwrap();
        assert!(!report.ok, "{report:?}");
    }

    /// Entries no signed checkpoint covers prove nothing: a file whose checkpoints were stripped,
    /// or with entries beyond its last checkpoint, fails at the first such entry.
    #[test]
    fn entries_no_checkpoint_covers_fail() {
        let n = 20;
        let (lines, signer) = export_lines(n);
        let is_checkpoint = |l: &String| l.starts_with("{\"checkpoint\"");
        assert_eq!(lines.iter().filter(|l| is_checkpoint(l)).count(), 2);

        let stripped: Vec<String> = lines.iter().filter(|l| !is_checkpoint(l)).cloned().collect();
        let report = check(&stripped, &signer).unwrap();
        assert!(!report.ok, "{report:?}");
        assert_eq!(report.first_bad_seq, Some(0), "{report:?}");
        assert!(report.problem.as_deref().unwrap().contains("unsigned entries"), "{report:?}");

        // The last checkpoint dropped: the first half is still covered, the rest is not.
        let mut tail_unsigned = lines.clone();
        assert!(is_checkpoint(tail_unsigned.last().unwrap()));
        tail_unsigned.pop();
        let report = check(&tail_unsigned, &signer).unwrap();
        assert_eq!(report.first_bad_seq, Some(n / 2), "{report:?}");
        assert!(report.problem.as_deref().unwrap().contains(&format!("entries {}..{}", n / 2, n - 1)), "{report:?}");
        // Without a pinned key it is no better.
        let unpinned = verify_file((tail_unsigned.join("\n") + "\n").as_bytes(), vec![], |_, _| {}).unwrap();
        assert_eq!(unpinned.first_bad_seq, Some(n / 2), "{unpinned:?}");

        // A file of no entries after a pruned anchor, with no checkpoint at the anchor: unproven.
        let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        header["first_seq"] = 1.into();
        header["tree_size"] = 1.into();
        header["anchor_frontier"] = serde_json::json!([hex(&[5u8; 32])]);
        let report = check(&[header.to_string()], &signer).unwrap();
        assert_eq!(report.first_bad_seq, Some(1), "{report:?}");
        assert!(report.problem.as_deref().unwrap().contains("unsigned anchor"), "{report:?}");
    }

    /// After a key rotation the export names the earlier key too: checkpoints signed before the
    /// rotation verify against it, from the file or pinned beside the current key.
    #[test]
    fn checkpoints_signed_before_a_key_rotation_verify_against_the_earlier_key() {
        let (mut lines, current) = export_lines(20);
        let earlier = NoteSigner::new("custos.test/audit", ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]));
        let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let origin = header["origin"].as_str().unwrap().to_owned();
        // The first checkpoint re-signed with the earlier key.
        let at = lines.iter().position(|l| l.starts_with("{\"checkpoint\"")).unwrap();
        let mut line: serde_json::Value = serde_json::from_str(&lines[at]).unwrap();
        let cp = &mut line["checkpoint"];
        let root: [u8; 32] = decode_array(cp["root_hash"].as_str().unwrap()).unwrap();
        let statement = Checkpoint { origin, size: cp["tree_size"].as_u64().unwrap(), root, extensions: vec![] };
        cp["note"] = earlier.sign(&statement).into();
        lines[at] = line.to_string();

        let report = check(&lines, &current).unwrap();
        assert_eq!(report.first_bad_seq, Some(9), "the current key alone refuses it: {report:?}");
        assert!(report.problem.as_deref().unwrap().contains("bad signature"), "{report:?}");
        let both = vec![current.verifier(), earlier.verifier()];
        let report = verify_file((lines.join("\n") + "\n").as_bytes(), both, |_, _| {}).unwrap();
        assert!(report.ok && report.key_pinned, "{report:?}");

        header["earlier_verifier_keys"] = serde_json::json!([earlier.verifier().to_note_key()]);
        lines[0] = header.to_string();
        let report = verify_file((lines.join("\n") + "\n").as_bytes(), vec![], |_, _| {}).unwrap();
        assert!(report.ok && !report.key_pinned && report.checkpoints == 2, "{report:?}");
    }
}
