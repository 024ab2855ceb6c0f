//! The audit tables' rows and how an entry's committed fields are rebuilt from them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::timefmt;
use custos_db::schema::{audit_log, audit_queue};
use diesel::prelude::*;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::encoding::{EntryValues, Field, Fields, Hash, Salt, derive_salt};

/// An entry written with its change, not yet sequenced.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_queue)]
pub struct QueueRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub recorded_at: OffsetDateTime,
    pub actor: String,
    pub actor_detail: Value,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub changes: Value,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

impl QueueRow {
    pub fn values(&self) -> EntryValues {
        values(
            self.recorded_at,
            &self.actor,
            &self.actor_detail,
            &self.action,
            &self.resource_type,
            &self.resource_id,
            &self.changes,
            &self.request_id,
            &self.client_addr,
        )
    }
}

/// A sequenced entry of the log.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct LogRow {
    pub organization_id: Uuid,
    pub seq: i64,
    pub event_id: Uuid,
    pub recorded_at: OffsetDateTime,
    pub sequenced_at: OffsetDateTime,
    pub actor: String,
    pub actor_detail: Value,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub changes: Value,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub salt_seed: Option<Vec<u8>>,
    pub salts: Option<Value>,
    pub withheld: Option<Value>,
    pub leaf_hash: Vec<u8>,
    pub chain_hash: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
fn values(
    recorded_at: OffsetDateTime,
    actor: &str,
    actor_detail: &Value,
    action: &str,
    resource_type: &str,
    resource_id: &str,
    changes: &Value,
    request_id: &Option<String>,
    client_addr: &Option<String>,
) -> EntryValues {
    EntryValues {
        recorded_at: timefmt::timestamp(recorded_at),
        actor: actor.to_owned(),
        actor_detail: actor_detail.clone(),
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id: resource_id.to_owned(),
        request_id: request_id.clone(),
        client_addr: client_addr.clone(),
        before: changes.get("before").cloned().unwrap_or(Value::Null),
        after: changes.get("after").cloned().unwrap_or(Value::Null),
    }
}

pub fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

pub use custos_core::hex::{decode as from_hex, encode as hex};

impl LogRow {
    pub fn values(&self) -> EntryValues {
        values(
            self.recorded_at,
            &self.actor,
            &self.actor_detail,
            &self.action,
            &self.resource_type,
            &self.resource_id,
            &self.changes,
            &self.request_id,
            &self.client_addr,
        )
    }

    /// Names of withheld fields, with their commitments.
    pub fn withheld_fields(&self) -> Result<BTreeMap<String, Hash>, String> {
        let Some(Value::Object(map)) = &self.withheld else { return Ok(BTreeMap::new()) };
        map.iter()
            .map(|(name, v)| {
                let c = v.as_str().and_then(from_hex).and_then(|b| to_hash(&b));
                c.map(|c| (name.clone(), c)).ok_or_else(|| format!("withheld field {name} has a malformed commitment"))
            })
            .collect()
    }

    /// The committed fields as stored: revealed values with their salts, withheld ones as commitments.
    pub fn fields(&self) -> Result<Fields, String> {
        let withheld = self.withheld_fields()?;
        let seed: Option<Hash> = match &self.salt_seed {
            Some(bytes) => Some(to_hash(bytes).ok_or("malformed salt seed")?),
            None => None,
        };
        let mut fields = Fields::new();
        for (name, value) in self.values().named() {
            if withheld.contains_key(&name) {
                continue;
            }
            let salt: Salt = match (&seed, &self.salts) {
                (Some(seed), _) => derive_salt(seed, &name),
                (None, Some(Value::Object(salts))) => salts
                    .get(&name)
                    .and_then(Value::as_str)
                    .and_then(|s| B64.decode(s).ok())
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("no salt for field {name}"))?,
                _ => return Err(format!("no salt for field {name}")),
            };
            fields.insert(name, Field::Revealed { value, salt });
        }
        for (name, commitment) in withheld {
            fields.insert(name, Field::Withheld { commitment });
        }
        Ok(fields)
    }
}
