//! The canonical, versioned encoding of an audit entry (`custos-audit/v1`), with per-field
//! commitments so that any field's value can later be withheld while the entry still verifies.
//!
//! An entry is a set of named fields. Each field is committed separately:
//!
//! ```text
//! commitment(name, value) = BLAKE3("custos-audit/v1 field" 0x00 ‖ salt[16] ‖ u32be(len name) ‖ name ‖ canonical_json(value))
//! leaf_hash               = BLAKE3(0x00 ‖ "custos-audit/v1" 0x00 ‖ org[16] ‖ u64be(seq) ‖ u32be(n)
//!                                  ‖ for each field in bytewise name order: u32be(len name) ‖ name ‖ commitment)
//! chain_hash(seq)         = BLAKE3("custos-audit/v1 chain" 0x00 ‖ chain_hash(seq-1) ‖ leaf_hash(seq)),  chain_hash(-1) = 0³²
//! ```
//!
//! The leaf's `0x00` prefix is RFC 6962's leaf domain separator (interior nodes use `0x01`, see
//! [`crate::merkle`]). Each field's 16-byte salt is random, so a withheld value cannot be recovered
//! by hashing guesses: withholding a field removes its value *and* its salt and keeps its
//! commitment. Salts are derived from a per-entry 32-byte seed
//! (`salt = BLAKE3-keyed(seed, "custos-audit/v1 salt" 0x00 ‖ name)[..16]`) until a field is withheld;
//! then the remaining fields' salts are stored explicitly and the seed is discarded.
//!
//! Fields: `recorded_at` (RFC 3339, UTC, microseconds), `actor`, `actor_detail`, `action`,
//! `resource_type`, `resource_id`, `request_id`, `client_addr`, and the change set split per top-level
//! key — `before.<key>` / `after.<key>` for objects, `before` / `after` for anything else (`null`).
//!
//! Canonical JSON: objects with keys in bytewise order, no insignificant whitespace, strings as
//! serde_json escapes them, and numbers normalised so a value survives a round trip through
//! PostgreSQL `jsonb`: an integral float within ±2⁵³ is written as an integer, `-0` as `0`.

use std::collections::BTreeMap;

use serde_json::Value;
use uuid::Uuid;

pub const VERSION: &str = "custos-audit/v1";
pub type Hash = [u8; 32];
pub type Salt = [u8; 16];

/// One field of an entry: its value and salt, or only its commitment.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Revealed { value: Value, salt: Salt },
    Withheld { commitment: Hash },
}

impl Field {
    pub fn commitment(&self, name: &str) -> Hash {
        match self {
            Field::Revealed { value, salt } => commit(name, value, salt),
            Field::Withheld { commitment } => *commitment,
        }
    }
}

/// The fields of an entry, by name.
pub type Fields = BTreeMap<String, Field>;

pub fn commit(name: &str, value: &Value, salt: &Salt) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"custos-audit/v1 field\0");
    h.update(salt);
    h.update(&(name.len() as u32).to_be_bytes());
    h.update(name.as_bytes());
    let mut buf = Vec::with_capacity(64);
    write_canonical(value, &mut buf);
    h.update(&buf);
    *h.finalize().as_bytes()
}

/// The salt of field `name` derived from an entry's seed.
pub fn derive_salt(seed: &Hash, name: &str) -> Salt {
    let mut h = blake3::Hasher::new_keyed(seed);
    h.update(b"custos-audit/v1 salt\0");
    h.update(name.as_bytes());
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&h.finalize().as_bytes()[..16]);
    salt
}

pub fn leaf_hash(organization_id: &Uuid, seq: u64, fields: &Fields) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(VERSION.as_bytes());
    h.update(&[0x00]);
    h.update(organization_id.as_bytes());
    h.update(&seq.to_be_bytes());
    h.update(&(fields.len() as u32).to_be_bytes());
    for (name, field) in fields {
        h.update(&(name.len() as u32).to_be_bytes());
        h.update(name.as_bytes());
        h.update(&field.commitment(name));
    }
    *h.finalize().as_bytes()
}

pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"custos-audit/v1 chain\0");
    h.update(previous);
    h.update(leaf);
    *h.finalize().as_bytes()
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
    /// The named field values (without salts).
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

    /// Fields with salts derived from `seed`.
    pub fn fields(&self, seed: &Hash) -> Fields {
        self.named()
            .into_iter()
            .map(|(name, value)| {
                let salt = derive_salt(seed, &name);
                (name, Field::Revealed { value, salt })
            })
            .collect()
    }
}

fn split_change(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(format!("{prefix}.{k}"), v.clone());
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// Writes the canonical JSON of `value` (see the module docs).
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
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
        Value::String(s) => {
            // serde_json's string escaping is deterministic.
            out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
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
                out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
    }
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
    }

    #[test]
    fn withholding_a_field_keeps_the_leaf_hash() {
        let org = Uuid::now_v7();
        let values = EntryValues {
            recorded_at: "2026-01-01T00:00:00.000000Z".into(),
            actor: "user:1".into(),
            action: "update".into(),
            resource_type: "user".into(),
            resource_id: "1".into(),
            before: json!({"email": "old@example.com", "role": "viewer"}),
            after: json!({"email": "new@example.com", "role": "admin"}),
            ..Default::default()
        };
        let seed = [7u8; 32];
        let mut fields = values.fields(&seed);
        assert!(fields.contains_key("after.email") && fields.contains_key("before.role"));
        let leaf = leaf_hash(&org, 5, &fields);
        let withheld = fields["after.email"].commitment("after.email");
        fields.insert("after.email".into(), Field::Withheld { commitment: withheld });
        assert_eq!(leaf_hash(&org, 5, &fields), leaf);
        // Any change to a revealed value, the sequence number or the organisation changes it.
        let mut edited = fields.clone();
        edited.insert(
            "after.role".into(),
            Field::Revealed { value: json!("viewer"), salt: derive_salt(&seed, "after.role") },
        );
        assert_ne!(leaf_hash(&org, 5, &edited), leaf);
        assert_ne!(leaf_hash(&org, 6, &fields), leaf);
        assert_ne!(leaf_hash(&Uuid::now_v7(), 5, &fields), leaf);
        // Salts differ per field, so equal values commit differently.
        assert_ne!(derive_salt(&seed, "a"), derive_salt(&seed, "b"));
    }
}
