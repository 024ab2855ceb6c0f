//! Retention policies: every role reads them, admins write them. A locked policy (a
//! preservation lock) can be extended but never loosened.

use custos_audit_chain::{changed_fields, record_change};
use custos_core::ctx::Access;
use custos_core::filter::{
    bounded_text, choice, opt_choice, opt_uuid, parse_id, parse_uuid, required_text, search_pattern,
};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::schema::retention_policies as policies;
use custos_db::values::{Category, DataClassification};
use custos_db::{Tx, list, refs};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{DeletionMethod, EntityType, PolicyRow, PolicyType, RetentionUnit};
use crate::{FromPage, Result, RetentionService};

const POLICIES: &str = "retention_policies";
const NAME_MAX: usize = 200;
const DESCRIPTION_MAX: usize = 5000;

impl PolicyRow {
    pub fn to_pb(&self) -> pb::RetentionPolicy {
        pb::RetentionPolicy {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            policy_type: self.policy_type.to_string(),
            entity_type: self.entity_type.to_string(),
            retention_period: self.retention_period,
            retention_unit: self.retention_unit.to_string(),
            retention_days: match self.retention_unit {
                RetentionUnit::Days => Some(self.retention_period),
                RetentionUnit::Weeks => self.retention_period.checked_mul(7),
                RetentionUnit::Months | RetentionUnit::Years => None,
            },
            deletion_method: self.deletion_method.to_string(),
            auto_archive: self.auto_archive,
            auto_delete: self.auto_delete,
            data_classification_levels: self.data_classification_levels.clone(),
            incident_categories: self.incident_categories.clone(),
            applicable_frameworks: self.applicable_frameworks.iter().map(Uuid::to_string).collect(),
            legal_hold_override: self.legal_hold_override,
            is_active: self.is_active,
            locked: self.locked,
            locked_at: self.locked_at.map(timefmt::timestamp),
            locked_by: self.locked_by.clone(),
            explicit_scope: self.explicit_scope(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
            managed_by_policy: self.managed_by_policy.map(|p| p.to_string()),
        }
    }

    fn to_input(&self) -> pb::RetentionPolicyInput {
        pb::RetentionPolicyInput {
            name: self.name.clone(),
            description: self.description.clone(),
            policy_type: self.policy_type.to_string(),
            entity_type: Some(self.entity_type.to_string()),
            retention_period: Some(self.retention_period),
            retention_unit: Some(self.retention_unit.to_string()),
            retention_days: None,
            deletion_method: Some(self.deletion_method.to_string()),
            auto_archive: Some(self.auto_archive),
            auto_delete: Some(self.auto_delete),
            data_classification_levels: self.data_classification_levels.clone(),
            incident_categories: self.incident_categories.clone(),
            applicable_frameworks: self.applicable_frameworks.iter().map(Uuid::to_string).collect(),
            legal_hold_override: Some(self.legal_hold_override),
            is_active: Some(self.is_active),
            locked: Some(self.locked),
        }
    }

    fn audited(&self) -> Value {
        serde_json::to_value(self.to_pb()).unwrap_or(Value::Null)
    }

    /// The retention in days at its shortest (a month of 28 days, a year of 365), to compare
    /// periods of different units.
    fn shortest_days(&self) -> i64 {
        shortest_days(self.retention_period, self.retention_unit)
    }
}

pub(crate) fn shortest_days(period: i32, unit: RetentionUnit) -> i64 {
    let n = i64::from(period);
    match unit {
        RetentionUnit::Days => n,
        RetentionUnit::Weeks => n * 7,
        RetentionUnit::Months => n * 28,
        RetentionUnit::Years => n * 365,
    }
}

/// A policy's fields, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fields {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) policy_type: PolicyType,
    pub(crate) entity_type: EntityType,
    pub(crate) retention_period: i32,
    pub(crate) retention_unit: RetentionUnit,
    pub(crate) deletion_method: DeletionMethod,
    pub(crate) auto_archive: bool,
    pub(crate) auto_delete: bool,
    pub(crate) data_classification_levels: Vec<String>,
    pub(crate) incident_categories: Vec<String>,
    pub(crate) applicable_frameworks: Vec<Uuid>,
    pub(crate) legal_hold_override: bool,
    pub(crate) is_active: bool,
    pub(crate) locked: bool,
}

/// The largest period per unit: a century.
fn max_period(unit: RetentionUnit) -> i32 {
    match unit {
        RetentionUnit::Days => 36_500,
        RetentionUnit::Weeks => 5_200,
        RetentionUnit::Months => 1_200,
        RetentionUnit::Years => 100,
    }
}

/// Validates `input`; `named` says which fields the request itself set (a PATCH's mask; every
/// field of a PUT or a create), to tell `retention_days` from the stored period.
pub(crate) fn validate(input: pb::RetentionPolicyInput, named: &dyn Fn(&str) -> bool) -> Result<Fields> {
    let policy_type: PolicyType = choice("policy_type", &input.policy_type)?;
    let entity_type = match opt_choice::<EntityType>("entity_type", input.entity_type.as_deref())? {
        Some(e) => e,
        None => policy_type.default_entity().ok_or_else(|| {
            Problem::invalid_field(
                "entity_type",
                "a CUSTOM policy names its entity_type (incident, evidence, vulnerability, audit_log or job)",
            )
        })?,
    };
    let (retention_period, retention_unit) = match input.retention_days {
        Some(days) => {
            let other_period = named("retention_period") && input.retention_period.is_some_and(|p| p != days);
            let other_unit = named("retention_unit")
                && opt_choice::<RetentionUnit>("retention_unit", input.retention_unit.as_deref())?
                    .is_some_and(|u| u != RetentionUnit::Days);
            if other_period || other_unit {
                return Err(Problem::invalid_field(
                    "retention_days",
                    "give retention_days, or retention_period with retention_unit, not both",
                )
                .into());
            }
            (days, RetentionUnit::Days)
        }
        None => {
            let period = input.retention_period.ok_or_else(|| {
                Problem::invalid_field("retention_period", "required (with retention_unit), or retention_days")
            })?;
            let unit = opt_choice::<RetentionUnit>("retention_unit", input.retention_unit.as_deref())?
                .unwrap_or(RetentionUnit::Days);
            (period, unit)
        }
    };
    let field = if input.retention_days.is_some() { "retention_days" } else { "retention_period" };
    if !(1..=max_period(retention_unit)).contains(&retention_period) {
        return Err(Problem::invalid_field(
            field,
            format!("between 1 and {} {retention_unit} (a century)", max_period(retention_unit)),
        )
        .into());
    }
    let auto_archive = input.auto_archive.unwrap_or(false);
    let auto_delete = input.auto_delete.unwrap_or(false);
    let deletion_method = match opt_choice::<DeletionMethod>("deletion_method", input.deletion_method.as_deref())? {
        Some(m) => m,
        None if auto_archive => DeletionMethod::Archive,
        // Job records have no soft deletion: they go for good; audit entries are only pruned.
        None if matches!(entity_type, EntityType::Job | EntityType::AuditLog) => DeletionMethod::Hard,
        None => DeletionMethod::Soft,
    };
    if entity_type == EntityType::AuditLog && deletion_method != DeletionMethod::Hard {
        return Err(Problem::invalid_field(
            "deletion_method",
            "audit entries are only ever pruned (hard), through the audit chain, so the log stays verifiable",
        )
        .into());
    }
    if entity_type == EntityType::Job && deletion_method == DeletionMethod::Soft {
        return Err(Problem::invalid_field(
            "deletion_method",
            "job records are deleted hard (or archived), never soft",
        )
        .into());
    }
    if auto_archive && deletion_method != DeletionMethod::Archive {
        return Err(Problem::invalid_field(
            "auto_archive",
            format!("auto_archive archives: its deletion_method is archive, not {deletion_method}"),
        )
        .into());
    }
    let mut data_classification_levels = Vec::new();
    for raw in &input.data_classification_levels {
        let v: DataClassification = choice("data_classification_levels", raw.trim())?;
        if !data_classification_levels.contains(&v.to_string()) {
            data_classification_levels.push(v.to_string());
        }
    }
    let mut incident_categories = Vec::new();
    for raw in &input.incident_categories {
        let v: Category = choice("incident_categories", raw.trim())?;
        if !incident_categories.contains(&v.to_string()) {
            incident_categories.push(v.to_string());
        }
    }
    let scoped_by_incident = !(data_classification_levels.is_empty() && incident_categories.is_empty());
    if scoped_by_incident && !entity_type.has_incident_scope() {
        let which = if incident_categories.is_empty() { "data_classification_levels" } else { "incident_categories" };
        return Err(Problem::invalid_field(
            which,
            format!("scopes incidents and their evidence, not {entity_type} records"),
        )
        .into());
    }
    let mut applicable_frameworks = Vec::new();
    for raw in &input.applicable_frameworks {
        let id = parse_uuid("applicable_frameworks", raw)?;
        if !applicable_frameworks.contains(&id) {
            applicable_frameworks.push(id);
        }
    }
    Ok(Fields {
        name: required_text("name", input.name.trim(), NAME_MAX)?,
        description: bounded_text("description", &input.description, DESCRIPTION_MAX)?,
        policy_type,
        entity_type,
        retention_period,
        retention_unit,
        deletion_method,
        auto_archive,
        auto_delete,
        data_classification_levels,
        incident_categories,
        applicable_frameworks,
        legal_hold_override: input.legal_hold_override.unwrap_or(false),
        is_active: input.is_active.unwrap_or(true),
        locked: input.locked.unwrap_or(false),
    })
}

/// What a change would loosen in a locked policy, in words (empty: nothing).
pub(crate) fn loosening(current: &PolicyRow, next: &Fields) -> Vec<String> {
    let mut out = Vec::new();
    if !next.locked {
        out.push("unlock it".to_owned());
    }
    if !next.is_active {
        out.push("deactivate it".to_owned());
    }
    if next.entity_type != current.entity_type {
        out.push("change the entity it governs".to_owned());
    }
    if shortest_days(next.retention_period, next.retention_unit) < current.shortest_days()
        || (next.retention_unit == current.retention_unit && next.retention_period < current.retention_period)
    {
        out.push("shorten its retention".to_owned());
    }
    if (next.auto_delete && !current.auto_delete) || (next.auto_archive && !current.auto_archive) {
        out.push("make it delete or archive by itself".to_owned());
    }
    let destructive = |m: DeletionMethod| match m {
        DeletionMethod::Archive => 0,
        DeletionMethod::Soft => 1,
        DeletionMethod::Hard => 2,
    };
    if destructive(next.deletion_method) > destructive(current.deletion_method) {
        out.push(format!(
            "delete more destructively ({} instead of {})",
            next.deletion_method, current.deletion_method
        ));
    }
    if next.legal_hold_override && !current.legal_hold_override {
        out.push("let it override legal holds".to_owned());
    }
    // A narrower scope retains fewer records: an empty list (every record) may not gain values,
    // and a list may not lose any.
    let narrows = |before: &[String], after: &[String]| {
        (before.is_empty() && !after.is_empty()) || before.iter().any(|b| !after.contains(b))
    };
    if narrows(&current.data_classification_levels, &next.data_classification_levels)
        || narrows(&current.incident_categories, &next.incident_categories)
    {
        out.push("narrow its scope".to_owned());
    }
    if current.entity_type == EntityType::Evidence {
        let before: Vec<String> = current.applicable_frameworks.iter().map(Uuid::to_string).collect();
        let after: Vec<String> = next.applicable_frameworks.iter().map(Uuid::to_string).collect();
        if narrows(&before, &after) {
            out.push("narrow its scope".to_owned());
        }
    }
    out.dedup();
    out
}

/// Parsed list filters.
struct Filters {
    policy_type: Option<PolicyType>,
    is_active: Option<bool>,
    framework: Option<Uuid>,
    entity_type: Option<EntityType>,
    search: Option<String>,
}

impl Filters {
    fn parse(req: &pb::ListRetentionPoliciesRequest) -> Result<Self> {
        Ok(Filters {
            policy_type: opt_choice("policy_type", req.policy_type.as_deref())?,
            is_active: req.is_active,
            framework: opt_uuid("applicable_frameworks", req.applicable_frameworks.as_deref())?,
            entity_type: opt_choice("entity_type", req.entity_type.as_deref())?,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid) -> policies::BoxedQuery<'static, Pg> {
        let mut q = policies::table.filter(policies::organization_id.eq(org)).into_boxed();
        if let Some(t) = self.policy_type {
            q = q.filter(policies::policy_type.eq(t));
        }
        if let Some(a) = self.is_active {
            q = q.filter(policies::is_active.eq(a));
        }
        if let Some(f) = self.framework {
            q = q.filter(policies::applicable_frameworks.contains(vec![f]));
        }
        if let Some(e) = self.entity_type {
            q = q.filter(policies::entity_type.eq(e));
        }
        if let Some(p) = &self.search {
            // An organisation has few policies: the ILIKE runs on its rows only.
            q = q.filter(policies::name.ilike(p.clone()).or(policies::description.ilike(p.clone())));
        }
        q
    }
}

impl RetentionService {
    /// `GET /api/compliance/retention-policies/` (every role): filters `policy_type`, `is_active`,
    /// `applicable_frameworks`, `entity_type`, `search`; oldest first.
    pub async fn list_retention_policies(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRetentionPoliciesRequest,
    ) -> Result<pb::ListRetentionPoliciesResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(POLICIES)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((policies::created_at.asc(), policies::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(PolicyRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((policies::created_at, policies::id), key));
        }
        let rows: Vec<PolicyRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(POLICIES, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(PolicyRow::to_pb).collect();
        Ok(pb::ListRetentionPoliciesResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/retention-policies/{id}/` (every role).
    pub async fn get_retention_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::GetRetentionPolicyRequest,
    ) -> Result<pb::RetentionPolicy> {
        let id = parse_id("Retention policy", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    /// `POST /api/compliance/retention-policies/` (admins).
    pub async fn create_retention_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateRetentionPolicyRequest,
    ) -> Result<pb::RetentionPolicy> {
        let fields = validate(req.policy.unwrap_or_default(), &|_| true)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        refs::all(&mut tx, ctx, refs::Kind::Framework, "applicable_frameworks", &fields.applicable_frameworks).await?;
        self.guard_retention_change(&mut tx, ctx, "retention_policy.create", None, Some(&fields)).await?;
        let now = timefmt::now();
        let row: PolicyRow = diesel::insert_into(policies::table)
            .values((
                policies::id.eq(new_id()),
                policies::organization_id.eq(ctx.organization_id),
                columns(&fields),
                policies::locked_at.eq(fields.locked.then_some(now)),
                policies::locked_by.eq(fields.locked.then(|| ctx.actor.label())),
            ))
            .returning(PolicyRow::as_returning())
            .get_result(tx.conn())
            .await
            .map_err(|e| taken(e.into(), &fields.name))?;
        record_change(&mut tx, ctx, "create", "retention_policy", row.id, Value::Null, row.audited()).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    /// `PUT`/`PATCH /api/compliance/retention-policies/{id}/` (admins). A locked policy takes
    /// only changes that keep at least as much for at least as long (409 naming what would
    /// loosen it).
    pub async fn update_retention_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateRetentionPolicyRequest,
    ) -> Result<pb::RetentionPolicy> {
        let id = parse_id("Retention policy", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx.organization_id, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.clone());
        let input = req.policy.unwrap_or_default();
        let Some(input) = update::apply::<_, pb::RetentionPolicy>(current.to_input(), input, mask.as_deref())? else {
            tx.commit().await?;
            return Ok(current.to_pb());
        };
        let named = |f: &str| mask.as_ref().is_none_or(|m| m.iter().any(|p| p == f));
        let mut fields = validate(input, &named)?;
        // As any replacement of an optional flag: a PUT without `locked` does not unlock (it
        // cannot), it keeps the lock.
        if current.locked && !named("locked") {
            fields.locked = true;
        }
        ensure_not_loosened(&current, &fields)?;
        refs::all(&mut tx, ctx, refs::Kind::Framework, "applicable_frameworks", &fields.applicable_frameworks).await?;
        let target = Some((id, current.name.as_str(), current.managed_by_policy));
        self.guard_retention_change(&mut tx, ctx, "retention_policy.update", target, Some(&fields)).await?;
        let now = timefmt::now();
        let (locked_at, locked_by) = lock_stamp(&current, fields.locked, ctx, now);
        let after: PolicyRow = diesel::update(
            policies::table.filter(policies::organization_id.eq(ctx.organization_id)).filter(policies::id.eq(id)),
        )
        .set((
            columns(&fields),
            policies::locked_at.eq(locked_at),
            policies::locked_by.eq(locked_by),
            policies::updated_at.eq(now),
        ))
        .returning(PolicyRow::as_returning())
        .get_result(tx.conn())
        .await
        .map_err(|e| taken(e.into(), &fields.name))?;
        let action = if after.locked && !current.locked { "lock" } else { "update" };
        record_change(&mut tx, ctx, action, "retention_policy", id, current.audited(), after.audited()).await?;
        tx.commit().await?;
        Ok(after.to_pb())
    }

    /// `DELETE /api/compliance/retention-policies/{id}/` (admins; never a locked policy).
    pub async fn delete_retention_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteRetentionPolicyRequest,
    ) -> Result<pb::DeleteRetentionPolicyResponse> {
        let id = parse_id("Retention policy", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx.organization_id, id, true).await?;
        if current.locked {
            return Err(Problem::state_conflict(
                "Retention policy is locked",
                format!("Policy {:?} is under a preservation lock and is never deleted", current.name),
            )
            .into());
        }
        let target = Some((id, current.name.as_str(), current.managed_by_policy));
        self.guard_retention_change(&mut tx, ctx, "retention_policy.delete", target, None).await?;
        diesel::delete(
            policies::table.filter(policies::organization_id.eq(ctx.organization_id)).filter(policies::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        record_change(&mut tx, ctx, "delete", "retention_policy", id, current.audited(), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteRetentionPolicyResponse {})
    }
}

type Columns = (
    diesel::dsl::Eq<policies::name, String>,
    diesel::dsl::Eq<policies::description, String>,
    diesel::dsl::Eq<policies::policy_type, PolicyType>,
    diesel::dsl::Eq<policies::entity_type, EntityType>,
    diesel::dsl::Eq<policies::retention_period, i32>,
    diesel::dsl::Eq<policies::retention_unit, RetentionUnit>,
    diesel::dsl::Eq<policies::deletion_method, DeletionMethod>,
    diesel::dsl::Eq<policies::auto_archive, bool>,
    diesel::dsl::Eq<policies::auto_delete, bool>,
    diesel::dsl::Eq<policies::data_classification_levels, Vec<String>>,
    diesel::dsl::Eq<policies::incident_categories, Vec<String>>,
    diesel::dsl::Eq<policies::applicable_frameworks, Vec<Uuid>>,
    diesel::dsl::Eq<policies::legal_hold_override, bool>,
    diesel::dsl::Eq<policies::is_active, bool>,
    diesel::dsl::Eq<policies::locked, bool>,
);

/// The writable columns, for an insert and an update alike.
fn columns(f: &Fields) -> Columns {
    (
        policies::name.eq(f.name.clone()),
        policies::description.eq(f.description.clone()),
        policies::policy_type.eq(f.policy_type),
        policies::entity_type.eq(f.entity_type),
        policies::retention_period.eq(f.retention_period),
        policies::retention_unit.eq(f.retention_unit),
        policies::deletion_method.eq(f.deletion_method),
        policies::auto_archive.eq(f.auto_archive),
        policies::auto_delete.eq(f.auto_delete),
        policies::data_classification_levels.eq(f.data_classification_levels.clone()),
        policies::incident_categories.eq(f.incident_categories.clone()),
        policies::applicable_frameworks.eq(f.applicable_frameworks.clone()),
        policies::legal_hold_override.eq(f.legal_hold_override),
        policies::is_active.eq(f.is_active),
        policies::locked.eq(f.locked),
    )
}

fn taken(e: custos_db::DbError, name: &str) -> crate::RetentionError {
    e.unique_as_conflict("Retention policy exists", format!("A retention policy named {name:?} exists")).into()
}

pub(crate) async fn find(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<PolicyRow> {
    let q = policies::table
        .filter(policies::organization_id.eq(org))
        .filter(policies::id.eq(id))
        .select(PolicyRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Retention policy", id))?)
}

/// Refuses (409, saying how) a change that would loosen a locked policy.
fn ensure_not_loosened(current: &PolicyRow, next: &Fields) -> Result<()> {
    if !current.locked {
        return Ok(());
    }
    let loosened = loosening(current, next);
    if loosened.is_empty() {
        return Ok(());
    }
    Err(Problem::state_conflict(
        "Retention policy is locked",
        format!(
            "Policy {:?} is under a preservation lock (since {}): it can be extended but never loosened; this change would {}",
            current.name,
            current.locked_at.map(timefmt::timestamp).unwrap_or_default(),
            loosened.join(", ")
        ),
    )
    .into())
}

/// When and by whom the policy was locked after a change: kept once locked, stamped when the
/// change locks it.
fn lock_stamp(
    current: &PolicyRow,
    locks: bool,
    ctx: &RequestCtx,
    now: OffsetDateTime,
) -> (Option<OffsetDateTime>, Option<String>) {
    match (current.locked, locks) {
        (true, _) => (current.locked_at, current.locked_by.clone()),
        (false, true) => (Some(now), Some(ctx.actor.label())),
        (false, false) => (None, None),
    }
}

/// What an impact report leaves out of a retention policy's changes.
const UNCHANGING: [&str; 4] = ["id", "created_at", "updated_at", "managed_by_policy"];

/// Makes the retention policies a policy document manages exactly `desired` (at most one per
/// entity type), in the caller's transaction, each change audited: updated in place, created,
/// or deleted when the document no longer names its entity. A locked one is never loosened nor
/// deleted (409). What happened to each, for the document's impact.
pub(crate) async fn converge_managed(
    tx: &mut Tx,
    ctx: &RequestCtx,
    document: Uuid,
    desired: Vec<pb::RetentionPolicyInput>,
) -> Result<Vec<(pb::RetentionPolicyImpact, Option<PolicyRow>)>> {
    let org = ctx.organization_id;
    let mut existing: Vec<PolicyRow> = policies::table
        .filter(policies::organization_id.eq(org))
        .filter(policies::managed_by_policy.eq(document))
        .order(policies::created_at.asc())
        .select(PolicyRow::as_select())
        .for_update()
        .load(tx.conn())
        .await?;
    let mut out = Vec::new();
    let now = timefmt::now();
    for input in desired {
        let fields = validate(input, &|_| true)?;
        let impact = |action: &str, id: Option<Uuid>, changes: Vec<pb::FieldChange>| pb::RetentionPolicyImpact {
            action: action.to_owned(),
            name: fields.name.clone(),
            entity_type: fields.entity_type.to_string(),
            retention_policy: id.map(|i| i.to_string()),
            changes,
            ..Default::default()
        };
        match existing.iter().position(|p| p.entity_type == fields.entity_type) {
            Some(at) => {
                let current = existing.remove(at);
                if validate(current.to_input(), &|_| true)? == fields {
                    out.push((impact("unchanged", Some(current.id), Vec::new()), Some(current)));
                    continue;
                }
                ensure_not_loosened(&current, &fields)?;
                let (locked_at, locked_by) = lock_stamp(&current, fields.locked, ctx, now);
                let after: PolicyRow = diesel::update(
                    policies::table.filter(policies::organization_id.eq(org)).filter(policies::id.eq(current.id)),
                )
                .set((
                    columns(&Fields { locked: fields.locked || current.locked, ..fields.clone() }),
                    policies::locked_at.eq(locked_at),
                    policies::locked_by.eq(locked_by),
                    policies::updated_at.eq(now),
                ))
                .returning(PolicyRow::as_returning())
                .get_result(tx.conn())
                .await
                .map_err(|e| taken(e.into(), &fields.name))?;
                record_change(tx, ctx, "update", "retention_policy", after.id, current.audited(), after.audited())
                    .await?;
                let changed = changed_fields(&current.audited(), &after.audited(), &UNCHANGING);
                out.push((impact("update", Some(after.id), changed), Some(after)));
            }
            None => {
                let row: PolicyRow = diesel::insert_into(policies::table)
                    .values((
                        policies::id.eq(new_id()),
                        policies::organization_id.eq(org),
                        columns(&fields),
                        policies::locked_at.eq(fields.locked.then_some(now)),
                        policies::locked_by.eq(fields.locked.then(|| ctx.actor.label())),
                        policies::managed_by_policy.eq(document),
                    ))
                    .returning(PolicyRow::as_returning())
                    .get_result(tx.conn())
                    .await
                    .map_err(|e| taken(e.into(), &fields.name))?;
                record_change(tx, ctx, "create", "retention_policy", row.id, Value::Null, row.audited()).await?;
                let changed = changed_fields(&Value::Null, &row.audited(), &UNCHANGING);
                out.push((impact("create", Some(row.id), changed), Some(row)));
            }
        }
    }
    for gone in existing {
        if gone.locked {
            return Err(Problem::state_conflict(
                "Retention policy is locked",
                format!("Policy {:?} is under a preservation lock and is never deleted", gone.name),
            )
            .into());
        }
        diesel::delete(policies::table.filter(policies::organization_id.eq(org)).filter(policies::id.eq(gone.id)))
            .execute(tx.conn())
            .await?;
        record_change(tx, ctx, "delete", "retention_policy", gone.id, gone.audited(), Value::Null).await?;
        out.push((
            pb::RetentionPolicyImpact {
                action: "delete".to_owned(),
                name: gone.name.clone(),
                entity_type: gone.entity_type.to_string(),
                retention_policy: Some(gone.id.to_string()),
                ..Default::default()
            },
            None,
        ));
    }
    Ok(out)
}
