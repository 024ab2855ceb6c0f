//! The organisation's residency configuration: every role reads it, admins set it. One per
//! organisation (a second create is a 409; change it with PUT/PATCH). Never deleted: an
//! organisation that no longer wants enforcement turns `enforce_region` off, which is audited.

use custos_audit_chain::{changed_fields, record_change};
use custos_blobs::{check_prefix, check_region_name};
use custos_core::ctx::Access;
use custos_core::filter::parse_id;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::Tx;
use custos_db::schema::data_residency as residency;
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::violations::{Enforcement, NewViolation, Outcome};
use crate::{ResidencyService, Result};

const FRAMEWORKS_MAX: usize = 20;
const LABEL_MAX: usize = 50;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = residency)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ResidencyRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub primary_region: String,
    pub allowed_regions: Vec<String>,
    pub storage_prefix: Option<String>,
    pub enforce_region: bool,
    pub block_cross_region: bool,
    pub compliance_frameworks: Vec<String>,
    pub policy_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl ResidencyRow {
    fn to_input(&self) -> pb::DataResidencyInput {
        pb::DataResidencyInput {
            primary_region: self.primary_region.clone(),
            allowed_regions: self.allowed_regions.clone(),
            storage_prefix: self.storage_prefix.clone(),
            enforce_region: Some(self.enforce_region),
            block_cross_region: Some(self.block_cross_region),
            compliance_frameworks: self.compliance_frameworks.clone(),
        }
    }
}

/// A configuration's fields, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub primary_region: String,
    pub allowed_regions: Vec<String>,
    pub storage_prefix: Option<String>,
    pub enforce_region: bool,
    pub block_cross_region: bool,
    pub compliance_frameworks: Vec<String>,
}

impl ResidencyService {
    fn to_pb(&self, row: &ResidencyRow) -> pb::DataResidency {
        pb::DataResidency {
            id: row.id.to_string(),
            primary_region: row.primary_region.clone(),
            allowed_regions: row.allowed_regions.clone(),
            storage_prefix: row.storage_prefix.clone(),
            enforce_region: row.enforce_region,
            block_cross_region: row.block_cross_region,
            compliance_frameworks: row.compliance_frameworks.clone(),
            policy: row.policy_id.map(|p| p.to_string()),
            regions_without_store: row
                .allowed_regions
                .iter()
                .filter(|r| self.stores.get(Some(r)).is_none())
                .cloned()
                .collect(),
            created_at: timefmt::timestamp(row.created_at),
            updated_at: timefmt::timestamp(row.updated_at),
        }
    }

    fn audited(&self, row: &ResidencyRow) -> Value {
        serde_json::to_value(self.to_pb(row)).unwrap_or(Value::Null)
    }

    /// Validates `input`: region names, the primary region among the allowed ones (added when
    /// missing) and served by a blob store of this server, the storage prefix a plain path.
    pub fn validate(&self, input: pb::DataResidencyInput) -> Result<Fields> {
        let primary_region = input.primary_region.trim().to_owned();
        if primary_region.is_empty() {
            return Err(Problem::invalid_field("primary_region", "required").into());
        }
        check_region_name(&primary_region).map_err(|e| Problem::invalid_field("primary_region", e))?;
        if self.stores.get(Some(&primary_region)).is_none() {
            return Err(Problem::invalid_field(
                "primary_region",
                format!(
                    "this server has no blob store for region {primary_region} (CUSTOS_BLOB_STORES names: {})",
                    names_or_none(&self.stores.region_names())
                ),
            )
            .into());
        }
        let mut allowed_regions = vec![primary_region.clone()];
        for raw in &input.allowed_regions {
            let region = raw.trim();
            check_region_name(region).map_err(|e| Problem::invalid_field("allowed_regions", e))?;
            if !allowed_regions.iter().any(|r| r == region) {
                allowed_regions.push(region.to_owned());
            }
        }
        let storage_prefix = match input.storage_prefix.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                check_prefix(p).map_err(|e| Problem::invalid_field("storage_prefix", e))?;
                Some(p.to_owned())
            }
        };
        if input.compliance_frameworks.len() > FRAMEWORKS_MAX {
            return Err(Problem::invalid_field("compliance_frameworks", format!("at most {FRAMEWORKS_MAX}")).into());
        }
        let mut compliance_frameworks: Vec<String> = Vec::new();
        for raw in &input.compliance_frameworks {
            let label = raw.trim();
            if label.is_empty() || label.chars().count() > LABEL_MAX {
                return Err(Problem::invalid_field(
                    "compliance_frameworks",
                    format!("each a label of 1 to {LABEL_MAX} characters"),
                )
                .into());
            }
            if !compliance_frameworks.iter().any(|l| l == label) {
                compliance_frameworks.push(label.to_owned());
            }
        }
        Ok(Fields {
            primary_region,
            allowed_regions,
            storage_prefix,
            enforce_region: input.enforce_region.unwrap_or(true),
            block_cross_region: input.block_cross_region.unwrap_or(false),
            compliance_frameworks,
        })
    }

    /// `GET /api/compliance/data-residency/` (every role): the organisation's configuration, if
    /// it has one.
    pub async fn list_data_residency(
        &self,
        ctx: &RequestCtx,
        req: pb::ListDataResidencyRequest,
    ) -> Result<pb::ListDataResidencyResponse> {
        // At most one row: the paging arguments are checked, and there is never a next page.
        ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = current(&mut tx, ctx.organization_id, false).await?;
        tx.commit().await?;
        let results: Vec<_> = row.iter().map(|r| self.to_pb(r)).collect();
        Ok(pb::ListDataResidencyResponse { count: results.len() as i64, results, ..Default::default() })
    }

    /// `GET /api/compliance/data-residency/{id}/` (every role).
    pub async fn get_data_residency(
        &self,
        ctx: &RequestCtx,
        req: pb::GetDataResidencyRequest,
    ) -> Result<pb::DataResidency> {
        let id = parse_id("Data residency configuration", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id).await?;
        tx.commit().await?;
        Ok(self.to_pb(&row))
    }

    /// `POST /api/compliance/data-residency/` (admins); 409 when the organisation has one.
    pub async fn create_data_residency(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateDataResidencyRequest,
    ) -> Result<pb::DataResidency> {
        let fields = self.validate(req.residency.unwrap_or_default())?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let row = self.create_in(&mut tx, ctx, &fields).await?;
        tx.commit().await?;
        Ok(self.to_pb(&row))
    }

    /// `PUT`/`PATCH /api/compliance/data-residency/{id}/` (admins).
    pub async fn update_data_residency(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateDataResidencyRequest,
    ) -> Result<pb::DataResidency> {
        let id = parse_id("Data residency configuration", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx.organization_id, id).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.clone());
        let input = req.residency.unwrap_or_default();
        let Some(input) = update::apply::<_, pb::DataResidency>(current.to_input(), input, mask.as_deref())? else {
            tx.commit().await?;
            return Ok(self.to_pb(&current));
        };
        let fields = self.validate(input)?;
        if let Some(policy) = current.policy_id {
            self.guard_hand_change(&mut tx, ctx, &current, policy).await?;
        }
        let row = self.set_in(&mut tx, ctx, &fields, None).await?;
        tx.commit().await?;
        Ok(self.to_pb(&row))
    }

    /// A configuration a policy document set is the document's to change: by hand, the change is
    /// refused under the document's hard enforcement (409 naming it) and allowed under soft;
    /// either way recorded as a violation. (Allowed, the configuration is the organisation's own
    /// again until the document is applied once more.)
    async fn guard_hand_change(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        current: &ResidencyRow,
        policy: Uuid,
    ) -> Result<()> {
        use custos_db::schema::{compliance_policies as docs, compliance_policy_versions as versions};
        let governing: Option<(String, Value)> = docs::table
            .inner_join(
                versions::table
                    .on(versions::policy_id.eq(docs::id).and(versions::version.nullable().eq(docs::applied_version))),
            )
            .filter(docs::organization_id.eq(ctx.organization_id))
            .filter(docs::id.eq(policy))
            .select((docs::name, versions::effective))
            .first(tx.conn())
            .await
            .optional()?;
        let Some((name, effective)) = governing else { return Ok(()) };
        let hard = effective.get("enforcement").and_then(Value::as_str) == Some("hard");
        let violation = NewViolation {
            policy: Some(policy),
            rule: "data_residency".to_owned(),
            enforcement: if hard { Enforcement::Hard } else { Enforcement::Soft },
            outcome: if hard { Outcome::Blocked } else { Outcome::Allowed },
            operation: "data_residency.update".to_owned(),
            entity_type: Some("data_residency".to_owned()),
            entity_id: Some(current.id),
            region: None,
            message: format!("data residency is set by the policy document {name:?}: change the document and apply it"),
            details: serde_json::json!({ "policy_name": name }),
        };
        crate::violations::record(&self.db, ctx, &violation).await?;
        if hard { Err(violation.refusal().into()) } else { Ok(()) }
    }

    /// The organisation's configuration, if any, in the caller's transaction.
    pub async fn current_in(&self, tx: &mut Tx, organization_id: Uuid) -> Result<Option<ResidencyRow>> {
        current(tx, organization_id, false).await
    }

    /// Sets the organisation's configuration to `fields` in the caller's transaction, audited:
    /// created when it has none, else changed. `policy` names the policy document applying it
    /// (a create through the API refuses an existing configuration instead).
    pub async fn set_in(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        fields: &Fields,
        policy: Option<Uuid>,
    ) -> Result<ResidencyRow> {
        let org = ctx.organization_id;
        let existing = current(tx, org, true).await?;
        let now = timefmt::now();
        let values = (
            residency::primary_region.eq(fields.primary_region.clone()),
            residency::allowed_regions.eq(fields.allowed_regions.clone()),
            residency::storage_prefix.eq(fields.storage_prefix.clone()),
            residency::enforce_region.eq(fields.enforce_region),
            residency::block_cross_region.eq(fields.block_cross_region),
            residency::compliance_frameworks.eq(fields.compliance_frameworks.clone()),
            residency::policy_id.eq(policy),
        );
        let row = match existing {
            None => {
                let row: ResidencyRow = diesel::insert_into(residency::table)
                    .values((residency::id.eq(new_id()), residency::organization_id.eq(org), values))
                    .returning(ResidencyRow::as_returning())
                    .get_result(tx.conn())
                    .await
                    .map_err(|e| {
                        custos_db::DbError::from(e).unique_as_conflict(
                            "Data residency is configured",
                            "This organisation's configuration was created meanwhile; change it with PUT or PATCH"
                                .into(),
                        )
                    })?;
                record_change(tx, ctx, "create", "data_residency", row.id, Value::Null, self.audited(&row)).await?;
                row
            }
            Some(before) => {
                let row: ResidencyRow = diesel::update(residency::table.filter(residency::id.eq(before.id)))
                    .set((values, residency::updated_at.eq(now)))
                    .returning(ResidencyRow::as_returning())
                    .get_result(tx.conn())
                    .await?;
                record_change(tx, ctx, "update", "data_residency", row.id, self.audited(&before), self.audited(&row))
                    .await?;
                row
            }
        };
        Ok(row)
    }

    /// The configuration's create, which refuses an existing one (409).
    async fn create_in(&self, tx: &mut Tx, ctx: &RequestCtx, fields: &Fields) -> Result<ResidencyRow> {
        if let Some(existing) = current(tx, ctx.organization_id, true).await? {
            return Err(Problem::state_conflict(
                "Data residency is configured",
                format!("This organisation's configuration is {}; change it with PUT or PATCH", existing.id),
            )
            .into());
        }
        self.set_in(tx, ctx, fields, None).await
    }
}

fn names_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

async fn current(tx: &mut Tx, org: Uuid, lock: bool) -> Result<Option<ResidencyRow>> {
    let q = residency::table.filter(residency::organization_id.eq(org)).select(ResidencyRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?)
}

async fn find(tx: &mut Tx, org: Uuid, id: Uuid) -> Result<ResidencyRow> {
    let row = residency::table
        .filter(residency::organization_id.eq(org))
        .filter(residency::id.eq(id))
        .select(ResidencyRow::as_select())
        .first(tx.conn())
        .await
        .optional()?;
    Ok(row.ok_or_else(|| Problem::not_found("Data residency configuration", id))?)
}

impl ResidencyService {
    /// Makes the configuration what policy document `policy` says, in the caller's transaction,
    /// audited: `target` set (marked as the document's), or, when the document does not govern
    /// residency, the configuration it had set removed. `None` when nothing is the document's to
    /// change; else what changed, field by field.
    pub async fn converge_in(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        policy: Uuid,
        target: Option<&Fields>,
    ) -> Result<Option<pb::ResidencyImpact>> {
        let org = ctx.organization_id;
        let before = current(tx, org, true).await?;
        let before_json = before.as_ref().map(|r| self.audited(r)).unwrap_or(Value::Null);
        match (target, before) {
            (None, Some(row)) if row.policy_id == Some(policy) => {
                diesel::delete(residency::table.filter(residency::id.eq(row.id))).execute(tx.conn()).await?;
                record_change(tx, ctx, "delete", "data_residency", row.id, self.audited(&row), Value::Null).await?;
                Ok(Some(pb::ResidencyImpact {
                    action: "remove".to_owned(),
                    changes: changed_fields(&before_json, &Value::Null, &UNCHANGING),
                }))
            }
            (None, _) => Ok(None),
            (Some(fields), before) => {
                let same = before.as_ref().is_some_and(|r| {
                    r.policy_id == Some(policy)
                        && r.primary_region == fields.primary_region
                        && r.allowed_regions == fields.allowed_regions
                        && r.storage_prefix == fields.storage_prefix
                        && r.enforce_region == fields.enforce_region
                        && r.block_cross_region == fields.block_cross_region
                        && r.compliance_frameworks == fields.compliance_frameworks
                });
                if same {
                    return Ok(Some(pb::ResidencyImpact { action: "unchanged".to_owned(), changes: Vec::new() }));
                }
                let action = if before.is_some() { "update" } else { "create" };
                let row = self.set_in(tx, ctx, fields, Some(policy)).await?;
                Ok(Some(pb::ResidencyImpact {
                    action: action.to_owned(),
                    changes: changed_fields(&before_json, &self.audited(&row), &UNCHANGING),
                }))
            }
        }
    }
}

/// What an impact report leaves out of the configuration's changes.
const UNCHANGING: [&str; 4] = ["id", "created_at", "updated_at", "regions_without_store"];
