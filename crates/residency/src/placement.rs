//! Where a write may go: the one decision every domain that stores files asks for.
//!
//! Without a configuration, data goes to the region the caller names (a region of
//! CUSTOS_BLOB_STORES) or the default store. With one, it goes to the region named or the primary
//! region, under the storage prefix, and three rules apply:
//!
//! * `data_residency.allowed_regions` — the region is one of the allowed regions;
//! * `data_residency.block_cross_region` — (when set) data already stored in one region is not
//!   copied to another (an archive of evidence kept in `eu-west-1` written to `us-east-1`);
//! * `data_residency.region_store` — the region has a blob store on this server.
//!
//! A broken rule under `enforce_region` is refused (409 naming the rule), recorded as a blocked
//! violation and audited; without enforcement the write goes ahead and the violation is recorded
//! as allowed (a region without a store then falls back to the default store).

use custos_blobs::BlobStore;
use custos_core::{Problem, RequestCtx};
use serde_json::json;
use uuid::Uuid;

use crate::violations::{Enforcement, NewViolation, Outcome};
use crate::{ResidencyService, Result};

/// A write to place.
#[derive(Debug, Clone, Default)]
pub struct Write<'a> {
    /// What is being done: `evidence.upload`, `retention.archive`, `export.write`.
    pub operation: &'a str,
    pub entity_type: Option<&'a str>,
    pub entity_id: Option<Uuid>,
    /// The region the caller asks for (an upload's `storage_region`).
    pub requested_region: Option<&'a str>,
    /// Regions the data is stored in now, for a copy of stored data (`None`: the default store).
    pub source_regions: Vec<Option<String>>,
}

/// Where to write: the store, its region (`None`: the default store) and the key prefix.
#[derive(Debug, Clone)]
pub struct Placement {
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub store: BlobStore,
}

impl ResidencyService {
    /// Decides where `write` goes for the caller's organisation, or refuses it (recorded and
    /// audited in a transaction of its own, so the refusal stays on record).
    pub async fn place(&self, ctx: &RequestCtx, write: Write<'_>) -> Result<Placement> {
        let config = {
            let mut tx = self.db.begin(ctx.organization_id).await?;
            let config = self.current_in(&mut tx, ctx.organization_id).await?;
            tx.commit().await?;
            config
        };
        let requested = write.requested_region.map(str::trim).filter(|r| !r.is_empty());
        let Some(config) = config else {
            // No residency: any configured region, or the default store.
            let store = self.stores.get(requested).ok_or_else(|| self.unknown_region(requested.unwrap_or("")))?;
            return Ok(Placement { region: requested.map(str::to_owned), prefix: None, store: store.clone() });
        };
        let target = requested.unwrap_or(&config.primary_region).to_owned();
        let enforcement = if config.enforce_region { Enforcement::Hard } else { Enforcement::Soft };
        let mut broken = Vec::new();
        if !config.allowed_regions.contains(&target) {
            broken.push((
                "data_residency.allowed_regions",
                format!(
                    "region {target} is not among this organisation's allowed regions ({})",
                    config.allowed_regions.join(", ")
                ),
            ));
        }
        if config.block_cross_region {
            let crossing: Vec<&str> =
                write.source_regions.iter().flatten().map(String::as_str).filter(|s| *s != target).collect();
            if !crossing.is_empty() {
                broken.push((
                    "data_residency.block_cross_region",
                    format!("data stored in {} may not be copied to region {target}", crossing.join(", ")),
                ));
            }
        }
        let store = self.stores.get(Some(&target)).cloned();
        if store.is_none() {
            broken.push((
                "data_residency.region_store",
                format!("this server has no blob store for region {target} (CUSTOS_BLOB_STORES)"),
            ));
        }
        for (rule, message) in &broken {
            let violation = NewViolation {
                policy: config.policy_id,
                rule: (*rule).to_owned(),
                enforcement,
                outcome: if config.enforce_region { Outcome::Blocked } else { Outcome::Allowed },
                operation: write.operation.to_owned(),
                entity_type: write.entity_type.map(str::to_owned),
                entity_id: write.entity_id,
                region: Some(target.clone()),
                message: message.clone(),
                details: json!({
                    "allowed_regions": config.allowed_regions,
                    "primary_region": config.primary_region,
                    "requested_region": requested,
                    "source_regions": write.source_regions,
                }),
            };
            self.record_violation(ctx, &violation).await?;
            if config.enforce_region {
                return Err(violation.refusal().into());
            }
        }
        match store {
            Some(store) => Ok(Placement { region: Some(target), prefix: config.storage_prefix, store }),
            // Not enforced, no store for the region: the default store (recorded above).
            None => Ok(Placement {
                region: None,
                prefix: config.storage_prefix,
                store: self.stores.default_store().clone(),
            }),
        }
    }

    fn unknown_region(&self, region: &str) -> crate::ResidencyError {
        let names = self.stores.region_names();
        Problem::invalid_field(
            "storage_region",
            format!(
                "this server has no blob store for region {region:?} (CUSTOS_BLOB_STORES names: {})",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ),
        )
        .into()
    }
}
