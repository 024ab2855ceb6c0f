//! The record of operations that broke a rule: blocked under hard enforcement, allowed and
//! recorded under soft. Written by the enforcement points only (residency's placement, policy
//! documents' rules), each row with an audit entry, in a transaction of its own — a refused
//! operation rolls its own transaction back, and its refusal must still be on record.

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{DayEdge, opt_uuid, parse_id, parse_opt_time_bound};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt};
use custos_db::schema::policy_violations as violations;
use custos_db::{Db, choice, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{FromPage, ResidencyService, Result};

const VIOLATIONS: &str = "policy_violations";

choice! {
    /// Whether the operation went ahead.
    pub enum Outcome {
        Blocked = "blocked",
        Allowed = "allowed",
    }
}

choice! {
    /// How a rule is enforced (a policy document's `enforcement.level`).
    pub enum Enforcement {
        Hard = "hard",
        Soft = "soft",
    }
}

/// A violation to record.
#[derive(Debug, Clone)]
pub struct NewViolation {
    pub policy: Option<Uuid>,
    pub rule: String,
    pub enforcement: Enforcement,
    pub outcome: Outcome,
    pub operation: String,
    pub entity_type: Option<String>,
    pub entity_id: Option<Uuid>,
    pub region: Option<String>,
    pub message: String,
    pub details: Value,
}

impl NewViolation {
    /// The refusal a blocked operation answers: 409 naming the rule.
    pub fn refusal(&self) -> Problem {
        Problem::state_conflict(
            format!("Refused by the compliance rule {}: {}", self.rule, self.message),
            json!({
                "rule": self.rule,
                "message": self.message,
                "policy": self.policy.map(|p| p.to_string()),
                "operation": self.operation,
                "region": self.region,
            }),
        )
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = violations)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct ViolationRow {
    id: Uuid,
    policy_id: Option<Uuid>,
    rule: String,
    enforcement: Enforcement,
    outcome: Outcome,
    operation: String,
    entity_type: Option<String>,
    entity_id: Option<Uuid>,
    region: Option<String>,
    message: String,
    details: Value,
    actor: String,
    request_id: Option<String>,
    occurred_at: OffsetDateTime,
}

impl ViolationRow {
    fn to_pb(&self) -> pb::PolicyViolation {
        pb::PolicyViolation {
            id: self.id.to_string(),
            policy: self.policy_id.map(|p| p.to_string()),
            rule: self.rule.clone(),
            enforcement: self.enforcement.to_string(),
            outcome: self.outcome.to_string(),
            operation: self.operation.clone(),
            entity_type: self.entity_type.clone(),
            entity_id: self.entity_id.map(|e| e.to_string()),
            region: self.region.clone(),
            message: self.message.clone(),
            details: self.details.to_string(),
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            occurred_at: timefmt::timestamp(self.occurred_at),
        }
    }
}

struct Filters {
    policy: Option<Uuid>,
    rule: Option<String>,
    outcome: Option<Outcome>,
    operation: Option<String>,
    after: Option<OffsetDateTime>,
    before: Option<OffsetDateTime>,
}

impl Filters {
    fn parse(req: &pb::ListPolicyViolationsRequest) -> Result<Self> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        Ok(Filters {
            policy: opt_uuid("policy", req.policy.as_deref())?,
            rule: text(&req.rule),
            outcome: custos_core::filter::opt_choice("outcome", req.outcome.as_deref())?,
            operation: text(&req.operation),
            after: parse_opt_time_bound("occurred_after", req.occurred_after.as_deref(), DayEdge::Start)?,
            before: parse_opt_time_bound("occurred_before", req.occurred_before.as_deref(), DayEdge::End)?,
        })
    }

    fn apply(&self, org: Uuid) -> violations::BoxedQuery<'static, Pg> {
        let mut q = violations::table.filter(violations::organization_id.eq(org)).into_boxed();
        if let Some(p) = self.policy {
            q = q.filter(violations::policy_id.eq(p));
        }
        if let Some(r) = &self.rule {
            q = q.filter(violations::rule.eq(r.clone()));
        }
        if let Some(o) = self.outcome {
            q = q.filter(violations::outcome.eq(o));
        }
        if let Some(o) = &self.operation {
            q = q.filter(violations::operation.eq(o.clone()));
        }
        if let Some(t) = self.after {
            q = q.filter(violations::occurred_at.ge(t));
        }
        if let Some(t) = self.before {
            q = q.filter(violations::occurred_at.le(t));
        }
        q
    }
}

/// Records `v` in a transaction of its own, with its audit entry (`refused` for a blocked
/// operation, `violation` for an allowed one); the violation's id. Every enforcement point (here,
/// and policy documents' in the retention crate) records through this.
pub async fn record(db: &Db, ctx: &RequestCtx, v: &NewViolation) -> Result<Uuid> {
    let id = new_id();
    let mut tx = db.begin(ctx.organization_id).await?;
    diesel::insert_into(violations::table)
        .values((
            violations::id.eq(id),
            violations::organization_id.eq(ctx.organization_id),
            violations::policy_id.eq(v.policy),
            violations::rule.eq(&v.rule),
            violations::enforcement.eq(v.enforcement),
            violations::outcome.eq(v.outcome),
            violations::operation.eq(&v.operation),
            violations::entity_type.eq(&v.entity_type),
            violations::entity_id.eq(v.entity_id),
            violations::region.eq(&v.region),
            violations::message.eq(&v.message),
            violations::details.eq(&v.details),
            violations::actor.eq(ctx.actor.label()),
            violations::request_id.eq(&ctx.request_id),
        ))
        .execute(tx.conn())
        .await?;
    let action = match v.outcome {
        Outcome::Blocked => "refused",
        Outcome::Allowed => "violation",
    };
    let entry = json!({
        "rule": v.rule, "policy": v.policy.map(|p| p.to_string()), "enforcement": v.enforcement.to_string(),
        "outcome": v.outcome.to_string(), "operation": v.operation, "entity_type": v.entity_type,
        "entity_id": v.entity_id.map(|e| e.to_string()), "region": v.region, "message": v.message,
        "details": v.details,
    });
    record_change(&mut tx, ctx, action, "policy_violation", id, Value::Null, entry).await?;
    tx.commit().await?;
    tracing::info!(org = %ctx.organization_id, rule = %v.rule, outcome = %v.outcome, operation = %v.operation, "policy violation");
    Ok(id)
}

impl ResidencyService {
    pub async fn record_violation(&self, ctx: &RequestCtx, v: &NewViolation) -> Result<Uuid> {
        record(&self.db, ctx, v).await
    }

    /// `GET /api/compliance/policy-violations/` (admins and auditors): filters `policy`, `rule`,
    /// `outcome`, `operation`, `occurred_after`, `occurred_before`; newest first.
    pub async fn list_policy_violations(
        &self,
        ctx: &RequestCtx,
        req: pb::ListPolicyViolationsRequest,
    ) -> Result<pb::ListPolicyViolationsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(VIOLATIONS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let mut q = filters
            .apply(org)
            .order((violations::occurred_at.desc(), violations::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(ViolationRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((violations::occurred_at, violations::id), key));
        }
        let rows: Vec<ViolationRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(VIOLATIONS, &(r.occurred_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(ViolationRow::to_pb).collect();
        Ok(pb::ListPolicyViolationsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/policy-violations/{id}/` (admins and auditors).
    pub async fn get_policy_violation(
        &self,
        ctx: &RequestCtx,
        req: pb::GetPolicyViolationRequest,
    ) -> Result<pb::PolicyViolation> {
        let id = parse_id("Policy violation", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let row = violations::table
            .filter(violations::organization_id.eq(ctx.organization_id))
            .filter(violations::id.eq(id))
            .select(ViolationRow::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        tx.commit().await?;
        Ok(row.ok_or_else(|| Problem::not_found("Policy violation", id))?.to_pb())
    }
}
