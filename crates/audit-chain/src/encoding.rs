//! The canonical, versioned encoding of an audit entry (`custos-audit/v3`), with per-field
//! commitments so that any field's value can later be withheld while the entry still verifies.
//!
//! An entry is a set of named fields, kept in bytewise name order. Each field is committed
//! separately, the entry's commitments are folded into its digest, and the digest into the leaf:
//!
//! ```text
//! salt[i]        = bytes 16·i .. 16·i+16 of BLAKE3-XOF-keyed(seed, "custos-audit/v3 salts")      (i = field index)
//! commitment[i]  = BLAKE3-keyed(K_FIELD, pad(salt[i] ‖ u32be(len name) ‖ u32be(len value) ‖ name ‖ json(value)))
//! digest         = BLAKE3-keyed(K_ENTRY, pad(u32be(n) ‖ commitment[0] ‖ … ‖ commitment[n-1]))
//! leaf_hash      = BLAKE3(0x00 ‖ org[16] ‖ u64be(seq) ‖ digest)
//! chain_hash     = BLAKE3-keyed(K_CHAIN, chain_hash(seq-1) ‖ leaf_hash),        chain_hash(-1) = 0³²
//! pad(x)  = x followed by the fewest zero bytes that make its length a multiple of 64
//! K_FIELD = BLAKE3("custos-audit/v3 field"),  K_ENTRY = BLAKE3("custos-audit/v3 entry"),
//! K_CHAIN = BLAKE3("custos-audit/v2 chain")
//! ```
//!
//! The leaf's `0x00` prefix is RFC 6962's leaf domain separator (interior nodes use `0x01`, see
//! [`crate::merkle`]); keyed modes with distinct keys separate the other hashes from each other.
//! Verification recomputes every one of these hashes for every entry, so v3 is shaped for speed:
//! commitments and digests share one key each and are whole 64-byte blocks, which lets a verifier
//! hash those of many entries at once, one per SIMD lane ([`DigestBatch`], [`crate::lanes`]); the
//! explicit lengths make the zero padding unambiguous. Most fields fit one block; the leaf and the
//! chain link are one block each.
//!
//! Salts are 16 random bytes per field, so a withheld value cannot be recovered by hashing guesses.
//! They are expanded from a per-entry 32-byte seed until a field is withheld; then the salts of the
//! remaining fields are stored explicitly (the withheld ones' are zeroed) and the seed is discarded.
//!
//! Fields: `recorded_at` (RFC 3339, UTC, microseconds), `actor`, `actor_detail`, `action`,
//! `resource_type`, `resource_id`, `request_id`, `client_addr`, and the change set split per top-level
//! key — `before.<key>` / `after.<key>` for objects, `before` / `after` for anything else (`null`).
//!
//! Stored form ([`StoredEntry`]): `fields`, one line per field in name order — `name TAB
//! json LF`, or `name TAB ! hex(commitment) LF` once withheld (no JSON value starts with `!`, and
//! this JSON has no raw tab or newline) — and `salts`: `0x03 ‖ seed` or
//! `0x04 ‖ salt[0] ‖ … ‖ salt[n-1]`.
//!
//! **v2**, what entries recorded before v3 hold (salts `0x01 ‖ seed` or `0x02 ‖ salts`), differs in
//! the salts' context (`"custos-audit/v2 salts"`) and in two hashes, which it does not pad:
//! `commitment[i] = BLAKE3-keyed(salt[i] ‖ "custos-audit/v2\0", u32be(len name) ‖ name ‖ json(value))`
//! and `digest = BLAKE3-keyed(BLAKE3("custos-audit/v2 entry"), u32be(n) ‖ commitment[0] ‖ …)`.
//! Both versions verify, side by side in one log; the leaf and chain hashes are the same.
//!
//! A field's value is JSON with object keys in bytewise order and no insignificant whitespace,
//! strings and numbers as serde_json writes them ([`write_sorted`]). It is stored as those very
//! bytes and hashed as stored, so nothing is ever re-encoded. ([`write_canonical`] additionally
//! normalises numbers, for hashes over values that pass through PostgreSQL `jsonb`.)

use std::collections::BTreeMap;
use std::sync::LazyLock;

use blake3::platform::Platform;
use serde_json::Value;
use uuid::Uuid;

use crate::lanes;

pub const VERSION: &str = "custos-audit/v3";
pub type Hash = [u8; 32];
pub type Salt = [u8; 16];

static K_FIELD: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v3 field").as_bytes());
static K_ENTRY: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v3 entry").as_bytes());
static K_ENTRY_V2: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v2 entry").as_bytes());
static K_CHAIN: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v2 chain").as_bytes());
const V2_COMMIT_KEY_SUFFIX: &[u8; 16] = b"custos-audit/v2\0";

const WITHHELD_MARK: u8 = b'!';

/// A v3 commitment's input before the name: the salt and the two lengths.
const FIELD_HEADER: usize = 16 + 4 + 4;

/// The encoding an entry was written in, told by the first byte of its salts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
}

impl Version {
    fn salts_context(self) -> &'static [u8] {
        match self {
            Version::V2 => b"custos-audit/v2 salts",
            Version::V3 => b"custos-audit/v3 salts",
        }
    }

    /// The salts' first byte when they are explicit.
    fn explicit(self) -> u8 {
        match self {
            Version::V2 => 0x02,
            Version::V3 => 0x04,
        }
    }

    /// `(version, whether the salts are a seed)` of a salts marker.
    fn of_marker(marker: u8) -> Option<(Version, bool)> {
        match marker {
            0x01 => Some((Version::V2, true)),
            0x02 => Some((Version::V2, false)),
            0x03 => Some((Version::V3, true)),
            0x04 => Some((Version::V3, false)),
            _ => None,
        }
    }
}

/// The commitment to one field's value.
pub fn commit(salt: &Salt, name: &[u8], json_value: &[u8]) -> Hash {
    commit_into(Version::V3, salt, name, json_value, &mut Vec::new())
}

/// [`commit`] in `version`, building its input in `buf` (one-shot hashing of a contiguous input
/// is what keeps short fields at one BLAKE3 compression each).
fn commit_into(version: Version, salt: &Salt, name: &[u8], json_value: &[u8], buf: &mut Vec<u8>) -> Hash {
    buf.clear();
    match version {
        Version::V2 => {
            let mut key = [0u8; 32];
            key[..16].copy_from_slice(salt);
            key[16..].copy_from_slice(V2_COMMIT_KEY_SUFFIX);
            buf.extend_from_slice(&(name.len() as u32).to_be_bytes());
            buf.extend_from_slice(name);
            buf.extend_from_slice(json_value);
            *blake3::keyed_hash(&key, buf).as_bytes()
        }
        Version::V3 => {
            field_input(salt, name, json_value, buf);
            *blake3::keyed_hash(&K_FIELD, buf).as_bytes()
        }
    }
}

/// Appends a field's v3 commitment input, padded. (Lengths fit: a PostgreSQL text is < 1 GiB.)
fn field_input(salt: &Salt, name: &[u8], json_value: &[u8], buf: &mut Vec<u8>) {
    let start = buf.len();
    let len = FIELD_HEADER + name.len() + json_value.len();
    // Sized once, zeroed only where the padding goes: this runs for every field of every entry.
    buf.reserve(len.next_multiple_of(64));
    buf.extend_from_slice(salt);
    buf.extend_from_slice(&(name.len() as u32).to_be_bytes());
    buf.extend_from_slice(&(json_value.len() as u32).to_be_bytes());
    buf.extend_from_slice(name);
    buf.extend_from_slice(json_value);
    pad(buf, start);
}

/// Appends the padded v3 digest input of an entry with these commitments (what
/// [`DigestBuilder`] builds one commitment at a time).
fn digest_input(commitments: &[Hash], buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.reserve((4 + 32 * commitments.len()).next_multiple_of(64));
    buf.extend_from_slice(&(commitments.len() as u32).to_be_bytes());
    buf.extend_from_slice(commitments.as_flattened());
    pad(buf, start);
}

/// Zero-pads what `buf` holds from `start` on to a whole number of 64-byte blocks.
fn pad(buf: &mut Vec<u8>, start: usize) {
    let len = buf.len() - start;
    buf.resize(start + len.next_multiple_of(64), 0);
}

/// The salts of `n` fields expanded from an entry's seed.
fn expand_salts(version: Version, seed: &Hash, n: usize, out: &mut Vec<u8>) {
    out.clear();
    // Whole blocks are produced several at a time; the salts are a prefix of the stream.
    out.resize((16 * n).next_multiple_of(64), 0);
    let mut h = blake3::Hasher::new_keyed(seed);
    h.update(version.salts_context());
    h.finalize_xof().fill(out);
    out.truncate(16 * n);
}

/// Folds an entry's commitments, in field order, into its digest.
struct DigestBuilder {
    version: Version,
    input: Vec<u8>,
}

impl DigestBuilder {
    fn reusing(version: Version, mut input: Vec<u8>, fields: usize) -> Self {
        input.clear();
        input.reserve(64 + 32 * fields);
        input.extend_from_slice(&(fields as u32).to_be_bytes());
        DigestBuilder { version, input }
    }

    fn push(&mut self, commitment: &Hash) {
        self.input.extend_from_slice(commitment);
    }

    fn finish(self) -> Hash {
        self.finish_keeping().0
    }

    fn finish_keeping(mut self) -> (Hash, Vec<u8>) {
        let digest = match self.version {
            Version::V2 => blake3::keyed_hash(&K_ENTRY_V2, &self.input),
            Version::V3 => {
                pad(&mut self.input, 0);
                blake3::keyed_hash(&K_ENTRY, &self.input)
            }
        };
        (*digest.as_bytes(), self.input)
    }
}

pub fn leaf_hash(organization_id: &Uuid, seq: u64, digest: &Hash) -> Hash {
    let mut input = [0u8; 57];
    input[1..17].copy_from_slice(organization_id.as_bytes());
    input[17..25].copy_from_slice(&seq.to_be_bytes());
    input[25..].copy_from_slice(digest);
    *blake3::hash(&input).as_bytes()
}

pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut input = [0u8; 64];
    input[..32].copy_from_slice(previous);
    input[32..].copy_from_slice(leaf);
    *blake3::keyed_hash(&K_CHAIN, &input).as_bytes()
}

/// One field of a stored entry, borrowed from its `fields` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldRef<'a> {
    /// The field's canonical JSON.
    Revealed(&'a [u8]),
    /// The field's commitment, its value and salt gone.
    Withheld(Hash),
}

/// An entry as stored: its field lines and its salts (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct StoredEntry<'a> {
    pub fields: &'a [u8],
    pub salts: &'a [u8],
}

/// Reuses allocations across the entries of a batch.
#[derive(Default)]
pub struct Scratch {
    salts: Vec<u8>,
    commitments: Vec<u8>,
    input: Vec<u8>,
}

impl<'a> StoredEntry<'a> {
    /// The fields in order, each as `(name, field)`.
    pub fn fields(&self) -> impl Iterator<Item = Result<(&'a [u8], FieldRef<'a>), String>> + 'a {
        let text = self.fields;
        let mut rest = text;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let Some(end) = memchr::memchr(b'\n', rest) else {
                rest = &[];
                return Some(Err(unterminated()));
            };
            let line = &rest[..end];
            rest = &rest[end + 1..];
            Some(parse_line(line))
        })
    }

    /// The number of fields (revealed or withheld).
    pub fn len(&self) -> usize {
        memchr::memchr_iter(b'\n', self.fields).count()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The encoding the entry was written in, and whether its salts are still a seed.
    fn version(&self) -> Result<(Version, bool), String> {
        self.salts.first().and_then(|m| Version::of_marker(*m)).ok_or_else(|| "malformed salts".to_owned())
    }

    /// The salt of every field, in order (zeroed for withheld fields once salts are explicit).
    pub fn salts_into(&self, n: usize, out: &mut Vec<u8>) -> Result<(), String> {
        let (version, seeded) = self.version()?;
        let stored = &self.salts[1..];
        if seeded {
            let seed: &Hash = stored.try_into().map_err(|_| "malformed salt seed".to_owned())?;
            expand_salts(version, seed, n, out);
        } else if stored.len() == 16 * n {
            out.clear();
            out.extend_from_slice(stored);
        } else {
            return Err("the stored salts do not match the number of fields".to_owned());
        }
        Ok(())
    }

    /// The entry's digest, recomputed from its fields and salts.
    pub fn digest(&self, scratch: &mut Scratch) -> Result<Hash, String> {
        self.digest_visiting(scratch, |_, _| {})
    }

    /// [`Self::digest`], showing each field to `visit` on the way.
    pub fn digest_visiting(
        &self,
        scratch: &mut Scratch,
        visit: impl FnMut(&'a [u8], FieldRef<'a>),
    ) -> Result<Hash, String> {
        let (version, _) = self.version()?;
        let n = self.len();
        self.salts_into(n, &mut scratch.salts)?;
        let mut digest = DigestBuilder::reusing(version, std::mem::take(&mut scratch.commitments), n);
        for (i, field) in self.visited_fields(visit).enumerate() {
            let (name, field) = field?;
            let commitment = match field {
                FieldRef::Revealed(value) => {
                    let salt: &Salt = scratch.salts[16 * i..16 * i + 16].try_into().expect("16 bytes");
                    commit_into(version, salt, name, value, &mut scratch.input)
                }
                FieldRef::Withheld(c) => c,
            };
            digest.push(&commitment);
        }
        let (hash, buf) = digest.finish_keeping();
        scratch.commitments = buf;
        Ok(hash)
    }

    /// [`Self::fields`], each checked to come after the one before and shown to `visit`: what
    /// a digest is computed over.
    fn visited_fields(
        &self,
        mut visit: impl FnMut(&'a [u8], FieldRef<'a>),
    ) -> impl Iterator<Item = Result<(&'a [u8], FieldRef<'a>), String>> {
        let mut previous: Option<&'a [u8]> = None;
        self.fields().map(move |field| {
            let (name, field) = field?;
            if previous.is_some_and(|p| name <= p) {
                return Err(out_of_order(name));
            }
            previous = Some(name);
            visit(name, field);
            Ok((name, field))
        })
    }

    /// The canonical JSON of a revealed field, `None` if absent, `Some(None)` if withheld.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.fields().filter_map(Result::ok).find(|(n, _)| *n == name.as_bytes()).map(|(_, f)| match f {
            FieldRef::Revealed(v) => Some(v),
            FieldRef::Withheld(_) => None,
        })
    }
}

/// The digests of many entries, computed together: the commitments and digests of v3 entries
/// are hashed across the SIMD lanes, many entries at once, which makes them several times cheaper
/// than one by one. Push the entries, then [`DigestBatch::finish`].
#[derive(Default)]
pub struct DigestBatch {
    slots: Vec<Slot>,
    /// Every queued entry's commitments, in order.
    commitments: Vec<Hash>,
    /// Inputs waiting to be hashed, by their length in blocks (index 0: one block).
    lanes: Vec<Lane>,
    salts: Vec<u8>,
    hashes: Vec<u8>,
    scratch: Scratch,
}

enum Slot {
    Done(Result<Hash, String>),
    /// A v3 entry whose commitments are `commitments[first .. first + n]`.
    Queued {
        first: usize,
        n: usize,
    },
}

/// Padded inputs of one length laid end to end, and where each one's hash goes.
#[derive(Default)]
struct Lane {
    input: Vec<u8>,
    targets: Vec<usize>,
}

fn lane(lanes: &mut Vec<Lane>, blocks: usize) -> &mut Lane {
    if lanes.len() < blocks {
        lanes.resize_with(blocks, Lane::default);
    }
    &mut lanes[blocks - 1]
}

/// Hashes every lane's inputs under `key`, handing each hash to `store(target, hash)`.
fn hash_lanes(lanes: &mut [Lane], key: &Hash, hashes: &mut Vec<u8>, mut store: impl FnMut(usize, Hash)) {
    let platform = Platform::detect();
    for (i, lane) in lanes.iter_mut().enumerate().filter(|(_, l)| !l.targets.is_empty()) {
        hashes.clear();
        hashes.resize(32 * lane.targets.len(), 0);
        lanes::keyed_hash_many(platform, key, i + 1, &lane.input, hashes);
        for (target, hash) in lane.targets.iter().zip(hashes.chunks_exact(32)) {
            store(*target, hash.try_into().expect("32 bytes"));
        }
        lane.input.clear();
        lane.targets.clear();
    }
}

impl DigestBatch {
    /// Queues `entry`'s digest, showing `visit` each of its fields on the way as
    /// [`StoredEntry::digest_visiting`] does.
    pub fn push<'a>(&mut self, entry: &StoredEntry<'a>, visit: impl FnMut(&'a [u8], FieldRef<'a>)) {
        let slot = match entry.version() {
            Ok((Version::V3, _)) => self.queue(entry, visit).unwrap_or_else(|e| Slot::Done(Err(e))),
            _ => Slot::Done(entry.digest_visiting(&mut self.scratch, visit)),
        };
        self.slots.push(slot);
    }

    fn queue<'a>(
        &mut self,
        entry: &StoredEntry<'a>,
        mut visit: impl FnMut(&'a [u8], FieldRef<'a>),
    ) -> Result<Slot, String> {
        let n = entry.len();
        entry.salts_into(n, &mut self.salts)?;
        let first = self.commitments.len();
        // An entry found malformed half-way leaves its slots behind unread; nothing else moves.
        self.commitments.resize(first + n, [0; 32]);
        // What `visited_fields` does, spelt out: this loop runs for every field of a log, and the
        // iterator's per-field `Result`s cost more than the hashing here.
        let (mut rest, mut previous, mut i) = (entry.fields, None::<&[u8]>, 0);
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', rest).ok_or_else(unterminated)?;
            let (name, field) = parse_line(&rest[..end])?;
            rest = &rest[end + 1..];
            if previous.is_some_and(|p| name <= p) {
                return Err(out_of_order(name));
            }
            previous = Some(name);
            visit(name, field);
            match field {
                FieldRef::Withheld(c) => self.commitments[first + i] = c,
                FieldRef::Revealed(value) => {
                    let salt: &Salt = self.salts[16 * i..16 * i + 16].try_into().expect("16 bytes");
                    let blocks = (FIELD_HEADER + name.len() + value.len()).div_ceil(64);
                    if blocks <= lanes::MAX_BLOCKS {
                        let lane = lane(&mut self.lanes, blocks);
                        field_input(salt, name, value, &mut lane.input);
                        lane.targets.push(first + i);
                    } else {
                        self.commitments[first + i] =
                            commit_into(Version::V3, salt, name, value, &mut self.scratch.input);
                    }
                }
            }
            i += 1;
        }
        Ok(Slot::Queued { first, n })
    }

    /// The digests (or what is wrong) of the entries pushed since the last call, in order.
    pub fn finish(&mut self) -> Vec<Result<Hash, String>> {
        let commitments = &mut self.commitments;
        hash_lanes(&mut self.lanes, &K_FIELD, &mut self.hashes, |target, hash| commitments[target] = hash);
        let mut digests = Vec::with_capacity(self.slots.len());
        for (at, slot) in self.slots.drain(..).enumerate() {
            let (first, n) = match slot {
                Slot::Done(result) => {
                    digests.push(result);
                    continue;
                }
                Slot::Queued { first, n } => (first, n),
            };
            let commitments = &self.commitments[first..first + n];
            let blocks = (4 + 32 * n).div_ceil(64);
            if blocks <= lanes::MAX_BLOCKS {
                let lane = lane(&mut self.lanes, blocks);
                digest_input(commitments, &mut lane.input);
                lane.targets.push(at);
                // Filled in once the lanes are hashed.
                digests.push(Ok([0; 32]));
            } else {
                let input = &mut self.scratch.input;
                input.clear();
                digest_input(commitments, input);
                digests.push(Ok(*blake3::keyed_hash(&K_ENTRY, input).as_bytes()));
            }
        }
        hash_lanes(&mut self.lanes, &K_ENTRY, &mut self.hashes, |target, hash| digests[target] = Ok(hash));
        self.commitments.clear();
        digests
    }
}

fn unterminated() -> String {
    "the last field line is not terminated".to_owned()
}

fn out_of_order(name: &[u8]) -> String {
    format!("field {:?} is out of order or repeated", String::from_utf8_lossy(name))
}

// Inlined: returned through memory, its result cost a store-forwarding stall per field.
#[inline(always)]
fn parse_line(line: &[u8]) -> Result<(&[u8], FieldRef<'_>), String> {
    let tab = memchr::memchr(b'\t', line).ok_or("a field line has no name")?;
    let (name, value) = (&line[..tab], &line[tab + 1..]);
    match value.split_first() {
        Some((&WITHHELD_MARK, hex)) => Ok((name, FieldRef::Withheld(withheld_commitment(name, hex)?))),
        Some(_) => Ok((name, FieldRef::Revealed(value))),
        None => Err(format!("field {:?} has no value", String::from_utf8_lossy(name))),
    }
}

#[cold]
fn withheld_commitment(name: &[u8], hex: &[u8]) -> Result<Hash, String> {
    let mut c = [0u8; 32];
    if hex.len() != 64 || !hex.chunks(2).zip(c.iter_mut()).all(|(pair, out)| hex_byte(pair).map(|b| *out = b).is_some())
    {
        return Err(format!("withheld field {:?} has a malformed commitment", String::from_utf8_lossy(name)));
    }
    Ok(c)
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
}

/// An entry ready to store: its field lines, salts and digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEntry {
    pub fields: String,
    pub salts: Vec<u8>,
    pub digest: Hash,
}

/// Encodes named values (any order) with salts expanded from `seed`.
pub fn encode(values: &BTreeMap<String, Value>, seed: &Hash) -> EncodedEntry {
    let mut salts = Vec::new();
    expand_salts(Version::V3, seed, values.len(), &mut salts);
    let mut fields = String::with_capacity(64 * values.len());
    let mut digest = DigestBuilder::reusing(Version::V3, Vec::new(), values.len());
    let mut value_bytes = Vec::with_capacity(64);
    let mut input = Vec::with_capacity(128);
    for (i, (name, value)) in values.iter().enumerate() {
        value_bytes.clear();
        write_sorted(value, &mut value_bytes);
        let salt: &Salt = salts[16 * i..16 * i + 16].try_into().expect("16 bytes");
        digest.push(&commit_into(Version::V3, salt, name.as_bytes(), &value_bytes, &mut input));
        fields.push_str(name);
        fields.push('\t');
        fields.push_str(std::str::from_utf8(&value_bytes).expect("canonical JSON is UTF-8"));
        fields.push('\n');
    }
    let mut stored_salts = Vec::with_capacity(33);
    stored_salts.push(0x03);
    stored_salts.extend_from_slice(seed);
    EncodedEntry { fields, salts: stored_salts, digest: digest.finish() }
}

/// Withholds `names` from a stored entry: their lines become commitments and the salts explicit.
/// The digest — hence the leaf — is unchanged. Names that are already withheld stay so.
pub fn withhold(entry: &StoredEntry<'_>, names: &[&str]) -> Result<(String, Vec<u8>), String> {
    let (version, _) = entry.version()?;
    let n = entry.len();
    let mut salts = Vec::new();
    entry.salts_into(n, &mut salts)?;
    let mut fields = String::with_capacity(entry.fields.len());
    let mut input = Vec::new();
    for (i, field) in entry.fields().enumerate() {
        let (name, field) = field?;
        let name_str = std::str::from_utf8(name).map_err(|_| "a field name is not UTF-8".to_owned())?;
        let salt = &mut salts[16 * i..16 * i + 16];
        fields.push_str(name_str);
        fields.push('\t');
        match field {
            FieldRef::Revealed(value) if names.contains(&name_str) => {
                let commitment = commit_into(version, &(*salt).try_into().expect("16 bytes"), name, value, &mut input);
                salt.fill(0);
                fields.push('!');
                fields.push_str(&custos_core::hex::encode(&commitment));
            }
            FieldRef::Revealed(value) => {
                fields.push_str(std::str::from_utf8(value).map_err(|_| "a field value is not UTF-8".to_owned())?)
            }
            FieldRef::Withheld(c) => {
                salt.fill(0);
                fields.push('!');
                fields.push_str(&custos_core::hex::encode(&c));
            }
        }
        fields.push('\n');
    }
    let mut stored = Vec::with_capacity(1 + salts.len());
    stored.push(version.explicit());
    stored.extend_from_slice(&salts);
    Ok((fields, stored))
}

/// The values of an entry before they are committed.
#[derive(Debug, Clone, Default)]
pub struct EntryValues {
    pub recorded_at: String,
    pub actor: String,
    pub actor_detail: Value,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub before: Value,
    pub after: Value,
}

impl EntryValues {
    /// The named field values.
    pub fn named(&self) -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        m.insert("recorded_at".into(), Value::String(self.recorded_at.clone()));
        m.insert("actor".into(), Value::String(self.actor.clone()));
        m.insert("actor_detail".into(), self.actor_detail.clone());
        m.insert("action".into(), Value::String(self.action.clone()));
        m.insert("resource_type".into(), Value::String(self.resource_type.clone()));
        m.insert("resource_id".into(), Value::String(self.resource_id.clone()));
        m.insert("request_id".into(), self.request_id.clone().map_or(Value::Null, Value::String));
        m.insert("client_addr".into(), self.client_addr.clone().map_or(Value::Null, Value::String));
        split_change("before", &self.before, &mut m);
        split_change("after", &self.after, &mut m);
        m
    }

    /// The entry encoded with salts from `seed`.
    pub fn encode(&self, seed: &Hash) -> EncodedEntry {
        encode(&self.named(), seed)
    }
}

/// A change side is split per attribute, so one attribute can be withheld; a name that could not
/// be stored as a field line keeps the side whole.
fn split_change(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if map.keys().all(|k| !k.is_empty() && !k.contains(['\t', '\n'])) => {
            for (k, v) in map {
                out.insert(format!("{prefix}.{k}"), v.clone());
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Writes the canonical JSON of `value`: keys sorted, no whitespace, and numbers normalised so
/// that a value survives a round trip through PostgreSQL `jsonb` (for hashes over `jsonb` columns).
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_json(value, out, true)
}

/// Writes `value` with keys sorted and no whitespace, numbers as serde_json writes them: the form
/// of a field value, which is stored as these very bytes and never re-encoded.
pub fn write_sorted(value: &Value, out: &mut Vec<u8>) {
    write_json(value, out, false)
}

fn write_json(value: &Value, out: &mut Vec<u8>, normalise: bool) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) if !normalise => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    out.extend_from_slice((f as i64).to_string().as_bytes());
                } else {
                    out.extend_from_slice(n.to_string().as_bytes());
                }
            }
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out, normalise);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(k, out);
                out.push(b':');
                write_json(&map[k], out, normalise);
            }
            out.push(b'}');
        }
    }
}

/// A JSON string as serde_json escapes it (deterministic).
pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    // serde_json writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Whether `canonical` is the canonical JSON of the string `s` (without allocating when `s` needs
/// no escaping, the usual case).
pub fn is_json_string(canonical: &[u8], s: &str) -> bool {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return canonical.len() == s.len() + 2
            && canonical.first() == Some(&b'"')
            && canonical.last() == Some(&b'"')
            && &canonical[1..canonical.len() - 1] == s.as_bytes();
    }
    let mut out = Vec::with_capacity(s.len() + 2);
    write_json_string(s, &mut out);
    out == canonical
}

pub fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn canonical_json_is_stable_under_jsonb_round_trips() {
        assert_eq!(canonical(&json!({"b": 1, "a": [true, null, "x\"y"]})), r#"{"a":[true,null,"x\"y"],"b":1}"#);
        // What jsonb hands back for these must canonicalise identically.
        for (written, read_back) in
            [(json!(1.0), json!(1)), (json!(-0.0), json!(0)), (json!(0.1), json!(0.1)), (json!(1e300), json!(1e300))]
        {
            assert_eq!(canonical(&written), canonical(&read_back));
        }
        assert!(is_json_string(b"\"plain\"", "plain"));
        assert!(is_json_string(br#""a\"b\nc""#, "a\"b\nc"));
        assert!(!is_json_string(b"\"plain\"", "plane"));
    }

    fn sample() -> EntryValues {
        EntryValues {
            recorded_at: "2026-01-01T00:00:00.000000Z".into(),
            actor: "user:1".into(),
            action: "update".into(),
            resource_type: "user".into(),
            resource_id: "1".into(),
            before: json!({"email": "old@example.com", "role": "viewer"}),
            after: json!({"email": "new@example.com", "role": "admin", "note": "tab\there"}),
            ..Default::default()
        }
    }

    #[test]
    fn stored_entries_give_back_the_digest_they_were_encoded_with() {
        let encoded = sample().encode(&[7u8; 32]);
        let stored = StoredEntry { fields: encoded.fields.as_bytes(), salts: &encoded.salts };
        assert_eq!(stored.len(), 13);
        assert_eq!(stored.digest(&mut Scratch::default()), Ok(encoded.digest));
        assert_eq!(stored.get("after.note"), Some(Some(&br#""tab\there""#[..])));
        assert_eq!(stored.get("nothing"), None);
        // Another seed gives other salts, hence another digest.
        assert_ne!(sample().encode(&[8u8; 32]).digest, encoded.digest);
    }

    #[test]
    fn withholding_a_field_keeps_the_digest_and_drops_value_and_salt() {
        let org = Uuid::now_v7();
        let encoded = sample().encode(&[7u8; 32]);
        let stored = StoredEntry { fields: encoded.fields.as_bytes(), salts: &encoded.salts };
        let leaf = leaf_hash(&org, 5, &encoded.digest);
        let (fields, salts) = withhold(&stored, &["after.email", "actor"]).unwrap();
        assert!(!fields.contains("new@example.com") && !fields.contains("user:1"));
        let withheld = StoredEntry { fields: fields.as_bytes(), salts: &salts };
        assert_eq!(withheld.get("after.email"), Some(None));
        let digest = withheld.digest(&mut Scratch::default()).unwrap();
        assert_eq!(leaf_hash(&org, 5, &digest), leaf);
        // Withholding again (another field) keeps it too; the first stays withheld.
        let (again, again_salts) = withhold(&withheld, &["before.role"]).unwrap();
        let again = StoredEntry { fields: again.as_bytes(), salts: &again_salts };
        assert_eq!(again.digest(&mut Scratch::default()).unwrap(), encoded.digest);
        assert_eq!(again.get("after.email"), Some(None));

        // Any change to a revealed value, the sequence number or the organisation changes it.
        let edited = encoded.fields.replace("\"admin\"", "\"viewer\"");
        let edited = StoredEntry { fields: edited.as_bytes(), salts: &encoded.salts };
        assert_ne!(edited.digest(&mut Scratch::default()).unwrap(), encoded.digest);
        assert_ne!(leaf_hash(&org, 6, &encoded.digest), leaf);
        assert_ne!(leaf_hash(&Uuid::now_v7(), 5, &encoded.digest), leaf);
    }

    /// v3 recomputed from the module's specification with plain BLAKE3, not the code under test.
    fn v3_by_the_specification(named: &[(&str, &str)], seed: &Hash) -> Hash {
        fn padded(mut m: Vec<u8>) -> Vec<u8> {
            m.resize(m.len().div_ceil(64) * 64, 0);
            m
        }
        let mut salts = vec![0u8; 16 * named.len()];
        blake3::Hasher::new_keyed(seed).update(b"custos-audit/v3 salts").finalize_xof().fill(&mut salts);
        let k_field = blake3::hash(b"custos-audit/v3 field");
        let mut digest_input = (named.len() as u32).to_be_bytes().to_vec();
        for (i, (name, value)) in named.iter().enumerate() {
            let mut m = salts[16 * i..16 * i + 16].to_vec();
            m.extend((name.len() as u32).to_be_bytes());
            m.extend((value.len() as u32).to_be_bytes());
            m.extend(name.as_bytes());
            m.extend(value.as_bytes());
            digest_input.extend(blake3::keyed_hash(k_field.as_bytes(), &padded(m)).as_bytes());
        }
        *blake3::keyed_hash(blake3::hash(b"custos-audit/v3 entry").as_bytes(), &padded(digest_input)).as_bytes()
    }

    #[test]
    fn v3_digests_follow_the_specification() {
        let encoded = sample().encode(&[7u8; 32]);
        assert_eq!(encoded.salts[0], 0x03);
        let named: Vec<(&str, &str)> =
            encoded.fields.lines().map(|l| l.split_once('\t').expect("name TAB value")).collect();
        assert_eq!(named.len(), 13);
        assert_eq!(encoded.digest, v3_by_the_specification(&named, &[7u8; 32]));
    }

    /// What an entry recorded before v3 holds (`testdata/v2_entry.json`).
    struct V2Entry {
        fields: String,
        salts: Vec<u8>,
        digest: Hash,
        withheld_fields: String,
        withheld_salts: Vec<u8>,
    }

    fn v2_entry() -> V2Entry {
        let v: Value = serde_json::from_str(include_str!("../testdata/v2_entry.json")).expect("JSON");
        let text = |k: &str| v[k].as_str().expect("a string").to_owned();
        V2Entry {
            fields: text("fields"),
            salts: unhex(&text("salts")),
            digest: unhex(&text("digest")).try_into().expect("32 bytes"),
            withheld_fields: text("withheld_fields"),
            withheld_salts: unhex(&text("withheld_salts")),
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        custos_core::hex::decode(s).expect("hex")
    }

    #[test]
    fn entries_recorded_in_v2_still_verify_and_can_be_withheld() {
        let v2 = v2_entry();
        let stored = StoredEntry { fields: v2.fields.as_bytes(), salts: &v2.salts };
        assert_eq!(stored.digest(&mut Scratch::default()), Ok(v2.digest));
        let withheld = StoredEntry { fields: v2.withheld_fields.as_bytes(), salts: &v2.withheld_salts };
        assert_eq!(withheld.digest(&mut Scratch::default()), Ok(v2.digest));
        // Withholding today writes what v2 wrote.
        assert_eq!(
            withhold(&stored, &["after.email", "actor"]).unwrap(),
            (v2.withheld_fields.clone(), v2.withheld_salts)
        );
        // An edit is still caught.
        let edited = v2.fields.replace("\"admin\"", "\"root\"");
        let edited = StoredEntry { fields: edited.as_bytes(), salts: &v2.salts };
        assert_ne!(edited.digest(&mut Scratch::default()), Ok(v2.digest));
    }

    #[test]
    fn batched_digests_are_the_digests_one_by_one() {
        let mut big = sample();
        // A field longer than one BLAKE3 chunk, and an entry with too many fields for one chunk
        // of commitments: both are hashed outside the lanes.
        big.after = json!({"notes": "x".repeat(3000)});
        let mut wide = sample();
        wide.after = Value::Object((0..40).map(|i| (format!("attribute_{i:02}"), json!(i))).collect());
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for (i, values) in [sample(), big, wide].into_iter().enumerate() {
            let e = values.encode(&[i as u8; 32]);
            let stored = StoredEntry { fields: e.fields.as_bytes(), salts: &e.salts };
            let withheld = withhold(&stored, &["after.role", "actor", "resource_id"]).unwrap();
            entries.push((e.fields.clone(), e.salts.clone()));
            entries.push(withheld);
        }
        let v2 = v2_entry();
        entries.push((v2.fields, v2.salts));
        entries.push((v2.withheld_fields, v2.withheld_salts));
        // Malformed entries between good ones answer for themselves only.
        let good = entries[0].clone();
        entries.insert(1, ("b\t1\na\t2\n".to_owned(), good.1.clone()));
        entries.insert(3, (good.0.clone(), vec![0x04, 1, 2]));
        entries.insert(5, (good.0.replace("\"update\"", "\"delete\""), good.1.clone()));
        entries.insert(6, (format!("{}zz", good.0), good.1.clone()));

        let mut batch = DigestBatch::default();
        for round in 0..2 {
            let mut seen_batched = Vec::new();
            for (fields, salts) in &entries {
                let stored = StoredEntry { fields: fields.as_bytes(), salts };
                batch.push(&stored, |name, field| seen_batched.push((name.to_vec(), field)));
            }
            let batched = batch.finish();
            let mut seen_serial = Vec::new();
            let serial: Vec<_> = entries
                .iter()
                .map(|(fields, salts)| {
                    StoredEntry { fields: fields.as_bytes(), salts }
                        .digest_visiting(&mut Scratch::default(), |name, field| {
                            seen_serial.push((name.to_vec(), field))
                        })
                })
                .collect();
            assert_eq!(batched, serial, "round {round}");
            assert_eq!(seen_batched, seen_serial);
            assert_eq!(serial.iter().filter(|d| d.is_err()).count(), 3, "round {round}");
            for (entry, withheld) in [(0, 2), (4, 7), (8, 9), (10, 11)] {
                assert_eq!(serial[entry], serial[withheld], "withholding keeps the digest");
            }
            assert_ne!(serial[0], serial[5], "an edit changes it");
        }
        assert!(batch.finish().is_empty());
    }

    #[test]
    fn malformed_stored_entries_are_reported_not_hashed() {
        let encoded = sample().encode(&[7u8; 32]);
        let mut scratch = Scratch::default();
        let cases: [(&str, &[u8]); 4] = [
            ("unterminated", b"actor\t\"x\""),
            ("no tab", b"actor\n"),
            ("order", b"b\t1\na\t2\n"),
            ("bad commitment", b"a\t!zz\n"),
        ];
        for (what, fields) in cases {
            let stored = StoredEntry { fields, salts: &encoded.salts };
            assert!(stored.digest(&mut scratch).is_err(), "{what}");
        }
        let stored = StoredEntry { fields: encoded.fields.as_bytes(), salts: &[0x02, 1, 2] };
        assert!(stored.digest(&mut scratch).is_err());
    }
}
