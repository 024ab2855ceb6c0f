//! The canonical, versioned encoding of an audit entry (`custos-audit/v2`), with per-field
//! commitments so that any field's value can later be withheld while the entry still verifies.
//!
//! An entry is a set of named fields, kept in bytewise name order. Each field is committed
//! separately, the entry's commitments are folded into its digest, and the digest into the leaf:
//!
//! ```text
//! salt[i]        = bytes 16·i .. 16·i+16 of BLAKE3-XOF-keyed(seed, "custos-audit/v2 salts")      (i = field index)
//! commitment[i]  = BLAKE3-keyed(salt[i] ‖ "custos-audit/v2\0", u32be(len name) ‖ name ‖ json(value))
//! digest         = BLAKE3-keyed(K_ENTRY, u32be(n) ‖ commitment[0] ‖ … ‖ commitment[n-1])
//! leaf_hash      = BLAKE3(0x00 ‖ org[16] ‖ u64be(seq) ‖ digest)
//! chain_hash     = BLAKE3-keyed(K_CHAIN, chain_hash(seq-1) ‖ leaf_hash),        chain_hash(-1) = 0³²
//! K_ENTRY = BLAKE3("custos-audit/v2 entry"),  K_CHAIN = BLAKE3("custos-audit/v2 chain")
//! ```
//!
//! The leaf's `0x00` prefix is RFC 6962's leaf domain separator (interior nodes use `0x01`, see
//! [`crate::merkle`]); keyed modes with distinct keys separate the other hashes from each other.
//! Each input is sized to cost as few BLAKE3 compressions as possible (the leaf and the chain link
//! are one block each): verification recomputes all of them for every entry.
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
//! this JSON has no raw tab or newline) — and `salts`: `0x01 ‖ seed` or
//! `0x02 ‖ salt[0] ‖ … ‖ salt[n-1]`.
//!
//! A field's value is JSON with object keys in bytewise order and no insignificant whitespace,
//! strings and numbers as serde_json writes them ([`write_sorted`]). It is stored as those very
//! bytes and hashed as stored, so nothing is ever re-encoded. ([`write_canonical`] additionally
//! normalises numbers, for hashes over values that pass through PostgreSQL `jsonb`.)

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;
use uuid::Uuid;

pub const VERSION: &str = "custos-audit/v2";
pub type Hash = [u8; 32];
pub type Salt = [u8; 16];

const SALTS_CONTEXT: &[u8] = b"custos-audit/v2 salts";
const COMMIT_KEY_SUFFIX: &[u8; 16] = b"custos-audit/v2\0";
static K_ENTRY: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v2 entry").as_bytes());
static K_CHAIN: LazyLock<Hash> = LazyLock::new(|| *blake3::hash(b"custos-audit/v2 chain").as_bytes());

const SEEDED: u8 = 0x01;
const EXPLICIT: u8 = 0x02;
const WITHHELD_MARK: u8 = b'!';

/// The commitment to one field's value.
pub fn commit(salt: &Salt, name: &[u8], json_value: &[u8]) -> Hash {
    let mut input = Vec::with_capacity(4 + name.len() + json_value.len());
    commit_into(salt, name, json_value, &mut input)
}

/// [`commit`], building its input in `buf` (one-shot hashing of a contiguous input is what keeps
/// short fields at one BLAKE3 compression each).
fn commit_into(salt: &Salt, name: &[u8], json_value: &[u8], buf: &mut Vec<u8>) -> Hash {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(salt);
    key[16..].copy_from_slice(COMMIT_KEY_SUFFIX);
    buf.clear();
    buf.extend_from_slice(&(name.len() as u32).to_be_bytes());
    buf.extend_from_slice(name);
    buf.extend_from_slice(json_value);
    *blake3::keyed_hash(&key, buf).as_bytes()
}

/// The salts of `n` fields expanded from an entry's seed.
pub fn expand_salts(seed: &Hash, n: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(16 * n, 0);
    let mut h = blake3::Hasher::new_keyed(seed);
    h.update(SALTS_CONTEXT);
    h.finalize_xof().fill(out);
}

/// Folds an entry's commitments, in field order, into its digest.
pub struct DigestBuilder(Vec<u8>);

impl DigestBuilder {
    pub fn new(fields: usize) -> Self {
        Self::reusing(Vec::new(), fields)
    }

    fn reusing(mut buf: Vec<u8>, fields: usize) -> Self {
        buf.clear();
        buf.reserve(4 + 32 * fields);
        buf.extend_from_slice(&(fields as u32).to_be_bytes());
        DigestBuilder(buf)
    }

    pub fn push(&mut self, commitment: &Hash) {
        self.0.extend_from_slice(commitment);
    }

    pub fn finish(self) -> Hash {
        self.finish_keeping().0
    }

    fn finish_keeping(self) -> (Hash, Vec<u8>) {
        (*blake3::keyed_hash(&K_ENTRY, &self.0).as_bytes(), self.0)
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
                return Some(Err("the last field line is not terminated".to_owned()));
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

    /// The salt of every field, in order (zeroed for withheld fields once salts are explicit).
    pub fn salts_into(&self, n: usize, out: &mut Vec<u8>) -> Result<(), String> {
        match self.salts.split_first() {
            Some((&SEEDED, seed)) => {
                let seed: &Hash = seed.try_into().map_err(|_| "malformed salt seed".to_owned())?;
                expand_salts(seed, n, out);
                Ok(())
            }
            Some((&EXPLICIT, salts)) if salts.len() == 16 * n => {
                out.clear();
                out.extend_from_slice(salts);
                Ok(())
            }
            Some((&EXPLICIT, _)) => Err("the stored salts do not match the number of fields".to_owned()),
            _ => Err("malformed salts".to_owned()),
        }
    }

    /// The entry's digest, recomputed from its fields and salts.
    pub fn digest(&self, scratch: &mut Scratch) -> Result<Hash, String> {
        self.digest_visiting(scratch, |_, _| {})
    }

    /// [`Self::digest`], showing each field to `visit` on the way.
    pub fn digest_visiting(
        &self,
        scratch: &mut Scratch,
        mut visit: impl FnMut(&'a [u8], FieldRef<'a>),
    ) -> Result<Hash, String> {
        let n = self.len();
        self.salts_into(n, &mut scratch.salts)?;
        let mut digest = DigestBuilder::reusing(std::mem::take(&mut scratch.commitments), n);
        let mut previous: &[u8] = &[];
        for (i, field) in self.fields().enumerate() {
            let (name, field) = field?;
            if i > 0 && name <= previous {
                return Err(format!("field {:?} is out of order or repeated", String::from_utf8_lossy(name)));
            }
            previous = name;
            visit(name, field);
            let commitment = match field {
                FieldRef::Revealed(value) => {
                    let salt: &Salt = scratch.salts[16 * i..16 * i + 16].try_into().expect("16 bytes");
                    commit_into(salt, name, value, &mut scratch.input)
                }
                FieldRef::Withheld(c) => c,
            };
            digest.push(&commitment);
        }
        let (hash, buf) = digest.finish_keeping();
        scratch.commitments = buf;
        Ok(hash)
    }

    /// The canonical JSON of a revealed field, `None` if absent, `Some(None)` if withheld.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.fields().filter_map(Result::ok).find(|(n, _)| *n == name.as_bytes()).map(|(_, f)| match f {
            FieldRef::Revealed(v) => Some(v),
            FieldRef::Withheld(_) => None,
        })
    }
}

fn parse_line(line: &[u8]) -> Result<(&[u8], FieldRef<'_>), String> {
    let tab = memchr::memchr(b'\t', line).ok_or("a field line has no name")?;
    let (name, value) = (&line[..tab], &line[tab + 1..]);
    match value.split_first() {
        Some((&WITHHELD_MARK, hex)) => {
            let mut c = [0u8; 32];
            if hex.len() != 64
                || !hex.chunks(2).zip(c.iter_mut()).all(|(pair, out)| hex_byte(pair).map(|b| *out = b).is_some())
            {
                return Err(format!("withheld field {:?} has a malformed commitment", String::from_utf8_lossy(name)));
            }
            Ok((name, FieldRef::Withheld(c)))
        }
        Some(_) => Ok((name, FieldRef::Revealed(value))),
        None => Err(format!("field {:?} has no value", String::from_utf8_lossy(name))),
    }
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
    expand_salts(seed, values.len(), &mut salts);
    let mut fields = String::with_capacity(64 * values.len());
    let mut digest = DigestBuilder::new(values.len());
    let mut value_bytes = Vec::with_capacity(64);
    for (i, (name, value)) in values.iter().enumerate() {
        value_bytes.clear();
        write_sorted(value, &mut value_bytes);
        let salt: &Salt = salts[16 * i..16 * i + 16].try_into().expect("16 bytes");
        digest.push(&commit(salt, name.as_bytes(), &value_bytes));
        fields.push_str(name);
        fields.push('\t');
        fields.push_str(std::str::from_utf8(&value_bytes).expect("canonical JSON is UTF-8"));
        fields.push('\n');
    }
    let mut stored_salts = Vec::with_capacity(33);
    stored_salts.push(SEEDED);
    stored_salts.extend_from_slice(seed);
    EncodedEntry { fields, salts: stored_salts, digest: digest.finish() }
}

/// Withholds `names` from a stored entry: their lines become commitments and the salts explicit.
/// The digest — hence the leaf — is unchanged. Names that are already withheld stay so.
pub fn withhold(entry: &StoredEntry<'_>, names: &[&str]) -> Result<(String, Vec<u8>), String> {
    let n = entry.len();
    let mut salts = Vec::new();
    entry.salts_into(n, &mut salts)?;
    let mut fields = String::with_capacity(entry.fields.len());
    for (i, field) in entry.fields().enumerate() {
        let (name, field) = field?;
        let name_str = std::str::from_utf8(name).map_err(|_| "a field name is not UTF-8".to_owned())?;
        let salt = &mut salts[16 * i..16 * i + 16];
        fields.push_str(name_str);
        fields.push('\t');
        match field {
            FieldRef::Revealed(value) if names.contains(&name_str) => {
                let commitment = commit(&(*salt).try_into().expect("16 bytes"), name, value);
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
    stored.push(EXPLICIT);
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
