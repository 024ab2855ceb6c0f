//! The audit tables' rows, and how an entry's digest and readable form come from them.

use custos_core::timefmt;
use custos_db::Tx;
use custos_db::schema::{audit_entries, audit_log};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::encoding::{FieldRef, Hash, Scratch, StoredEntry, is_json_string};
use crate::sequencer::ChainError;

/// What an index column shows once the field it repeats was withheld.
pub const PLACEHOLDER: &str = "[withheld]";

/// An entry as written with its change: index columns and committed fields.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_entries)]
pub struct EntryRow {
    pub organization_id: Uuid,
    pub event_id: Uuid,
    pub recorded_at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub fields: String,
    pub salts: Vec<u8>,
}

/// An entry's place in the sequence.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct LogRow {
    pub seq: i64,
    pub event_id: Uuid,
    pub sequenced_at: OffsetDateTime,
    pub leaf_hash: Vec<u8>,
    pub chain_hash: Vec<u8>,
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

impl EntryRow {
    pub fn stored(&self) -> StoredEntry<'_> {
        StoredEntry { fields: self.fields.as_bytes(), salts: &self.salts }
    }

    pub fn columns(&self) -> Columns<'_> {
        Columns {
            recorded_at: self.recorded_at,
            actor: &self.actor,
            action: &self.action,
            resource_type: &self.resource_type,
            resource_id: &self.resource_id,
        }
    }

    /// The entry's digest, recomputed; an error if its fields or columns were altered.
    pub fn digest(&self, scratch: &mut Scratch) -> Result<Hash, Unverifiable> {
        digest(&self.stored(), &self.columns(), scratch)
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
        for (name, field) in self.stored().fields().filter_map(Result::ok) {
            let Some(key) = name.strip_prefix(prefix.as_bytes()) else { continue };
            if let FieldRef::Revealed(v) = field {
                object.insert(
                    String::from_utf8_lossy(key).into_owned(),
                    serde_json::from_slice(v).unwrap_or(Value::Null),
                );
            }
        }
        if object.is_empty()
            && !self.stored().fields().filter_map(Result::ok).any(|(n, _)| n.starts_with(prefix.as_bytes()))
        {
            return Value::Null;
        }
        Value::Object(object)
    }
}

/// The digest of a stored entry, checking on the way that its index columns repeat its fields
/// (or show [`PLACEHOLDER`] where an erasable field was withheld): what the log lists and filters
/// on is what the hashes cover.
pub fn digest(stored: &StoredEntry<'_>, columns: &Columns<'_>, scratch: &mut Scratch) -> Result<Hash, Unverifiable> {
    let mut checked = 0u8;
    let mut mismatch: Option<&'static str> = None;
    let digest = stored
        .digest_visiting(scratch, |name, field| {
            let (column, bit, erasable) = match name {
                b"actor" => (columns.actor, 1, true),
                b"action" => (columns.action, 2, false),
                b"resource_type" => (columns.resource_type, 4, false),
                b"resource_id" => (columns.resource_id, 8, true),
                b"recorded_at" => {
                    checked |= 16;
                    let FieldRef::Revealed(v) = field else {
                        mismatch = mismatch.or(Some("recorded_at"));
                        return;
                    };
                    if !is_json_string(v, &timefmt::timestamp(columns.recorded_at)) {
                        mismatch = mismatch.or(Some("recorded_at"));
                    }
                    return;
                }
                _ => return,
            };
            checked |= bit;
            let agrees = match field {
                FieldRef::Revealed(v) => is_json_string(v, column),
                FieldRef::Withheld(_) => erasable && column == PLACEHOLDER,
            };
            if !agrees {
                mismatch = mismatch.or(Some(match bit {
                    1 => "actor",
                    2 => "action",
                    4 => "resource_type",
                    _ => "resource_id",
                }));
            }
        })
        .map_err(Unverifiable::Malformed)?;
    if let Some(name) = mismatch {
        return Err(Unverifiable::Column(name));
    }
    if checked != 31 {
        return Err(Unverifiable::Malformed("a required field is missing".to_owned()));
    }
    Ok(digest)
}

/// Why an entry's digest could not be recomputed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unverifiable {
    /// The log names an entry whose row is gone.
    Missing,
    Malformed(String),
    /// An index column does not repeat its committed field.
    Column(&'static str),
}

impl Unverifiable {
    /// What verification reports about entry `seq`.
    pub fn problem(&self, seq: u64) -> String {
        match self {
            Unverifiable::Missing => format!("hash mismatch: the content of entry {seq} is missing"),
            Unverifiable::Malformed(e) => format!("entry {seq} cannot be decoded: {e}"),
            Unverifiable::Column(c) => {
                format!("hash mismatch: the {c} column of entry {seq} differs from its committed field")
            }
        }
    }
}

impl crate::AuditChain {
    /// Entry `seq` of an organisation's log with its fields, if there is one.
    pub async fn entry(&self, tx: &mut Tx, org: Uuid, seq: i64) -> Result<Option<(LogRow, EntryRow)>, ChainError> {
        Ok(audit_log::table
            .inner_join(
                audit_entries::table.on(audit_entries::organization_id
                    .eq(audit_log::organization_id)
                    .and(audit_entries::event_id.eq(audit_log::event_id))),
            )
            .filter(audit_log::organization_id.eq(org))
            .filter(audit_log::seq.eq(seq))
            .select((LogRow::as_select(), EntryRow::as_select()))
            .first(tx.conn())
            .await
            .optional()?)
    }
}

pub fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

pub use custos_core::hex::{decode as from_hex, encode as hex};
