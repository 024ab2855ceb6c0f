//! Incident response plans: how the organisation responds to each type of incident.

use custos_core::ctx::Access;
use custos_core::filter::{self, parse_id, parse_opt_date};
use custos_core::page::cursor;
use custos_core::{Problem, RequestCtx, new_id, timefmt, update};
use custos_db::Tx;
use custos_db::schema::incident_response_plans as plans;
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use super::*;
use crate::model::*;

const NAME_MAX: usize = 200;

/// The list's cursor kind.
const PLANS: &str = "incident_response_plans";

fn not_found(id: impl std::fmt::Display) -> IncidentsError {
    Problem::not_found("Incident response plan", id).into()
}

impl IncidentsService {
    pub async fn list_incident_response_plans(
        &self,
        ctx: &RequestCtx,
        req: pb::ListIncidentResponsePlansRequest,
    ) -> Result<pb::ListIncidentResponsePlansResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = PlanFilters::parse(&req)?;
        let after = list.after::<(String, Uuid)>(PLANS)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((plans::name.asc(), plans::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(PlanRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((plans::name, plans::id), key));
        }
        let rows: Vec<PlanRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(PLANS, &(r.name.clone(), r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::ListIncidentResponsePlansResponse::from_page(page.map(|r| r.to_pb())))
    }

    pub async fn get_incident_response_plan(
        &self,
        ctx: &RequestCtx,
        req: pb::GetIncidentResponsePlanRequest,
    ) -> Result<pb::IncidentResponsePlan> {
        let id = parse_id("Incident response plan", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find_plan(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    pub async fn create_incident_response_plan(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateIncidentResponsePlanRequest,
    ) -> Result<pb::IncidentResponsePlan> {
        let mut tx = self.begin(ctx, Access::Write).await?;
        let fields = validate_plan(&mut tx, ctx, req.plan.unwrap_or_default()).await?;
        let id = new_id();
        let row: PlanRow = custos_db::prepared(
            diesel::insert_into(plans::table)
                .values((plans::id.eq(id), plans::organization_id.eq(ctx.organization_id), &fields))
                .returning(PlanRow::as_returning()),
        )
        .get_result(tx.conn())
        .await?;
        let created = row.to_pb();
        record_change(&mut tx, ctx, "create", "incident_response_plan", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_incident_response_plan(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateIncidentResponsePlanRequest,
    ) -> Result<pb::IncidentResponsePlan> {
        let id = parse_id("Incident response plan", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_plan(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::IncidentResponsePlan>(current.to_input(), req.plan.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            tx.commit().await?;
            return Ok(current.to_pb());
        };
        let fields = validate_plan(&mut tx, ctx, input).await?;
        let before = current.to_pb();
        let row: PlanRow = diesel::update(
            plans::table.filter(plans::organization_id.eq(ctx.organization_id)).filter(plans::id.eq(id)),
        )
        .set((&fields, plans::updated_at.eq(timefmt::now())))
        .returning(PlanRow::as_returning())
        .get_result(tx.conn())
        .await?;
        let after = row.to_pb();
        record_change(&mut tx, ctx, "update", "incident_response_plan", id, snapshot(&before), snapshot(&after))
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn delete_incident_response_plan(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteIncidentResponsePlanRequest,
    ) -> Result<pb::DeleteIncidentResponsePlanResponse> {
        let id = parse_id("Incident response plan", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_plan(&mut tx, ctx, id, true).await?;
        diesel::delete(plans::table.filter(plans::organization_id.eq(ctx.organization_id)).filter(plans::id.eq(id)))
            .execute(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "delete", "incident_response_plan", id, snapshot(&current.to_pb()), Value::Null)
            .await?;
        tx.commit().await?;
        Ok(pb::DeleteIncidentResponsePlanResponse {})
    }
}

async fn find_plan(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<PlanRow> {
    let q = plans::table
        .filter(plans::organization_id.eq(ctx.organization_id))
        .filter(plans::id.eq(id))
        .select(PlanRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| not_found(id))
}

async fn validate_plan(tx: &mut Tx, ctx: &RequestCtx, input: pb::IncidentResponsePlanInput) -> Result<PlanFields> {
    let incident_type: Category = choice("incident_type", &input.incident_type)?;
    let severity: Severity = choice("severity", &input.severity)?;
    let version = input.version.trim();
    Ok(PlanFields {
        name: filter::required_text("name", &input.name, NAME_MAX)?,
        incident_type,
        severity,
        detection_procedures: filter::bounded_text("detection_procedures", &input.detection_procedures, TEXT_MAX)?,
        initial_response: filter::bounded_text("initial_response", &input.initial_response, TEXT_MAX)?,
        escalation_path: filter::bounded_text("escalation_path", &input.escalation_path, TEXT_MAX)?,
        investigation_procedures: filter::bounded_text(
            "investigation_procedures",
            &input.investigation_procedures,
            TEXT_MAX,
        )?,
        recovery_procedures: filter::bounded_text("recovery_procedures", &input.recovery_procedures, TEXT_MAX)?,
        primary_contact: refs::user(tx, ctx, "primary_contact", input.primary_contact.as_deref()).await?,
        is_active: input.is_active.unwrap_or(true),
        review_date: parse_opt_date("review_date", input.review_date.as_deref())?,
        version: filter::bounded_text("version", if version.is_empty() { "1.0" } else { version }, 50)?,
    })
}

/// Parsed list filters of response plans.
struct PlanFilters {
    incident_type: Option<Category>,
    severity: Option<Severity>,
    is_active: Option<bool>,
    search: Option<String>,
}

impl PlanFilters {
    fn parse(req: &pb::ListIncidentResponsePlansRequest) -> Result<Self> {
        Ok(PlanFilters {
            incident_type: opt_choice("incident_type", req.incident_type.as_deref())?,
            severity: opt_choice("severity", req.severity.as_deref())?,
            is_active: req.is_active,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid) -> plans::BoxedQuery<'static, Pg> {
        let mut q = plans::table.filter(plans::organization_id.eq(org)).into_boxed();
        if let Some(t) = self.incident_type {
            q = q.filter(plans::incident_type.eq(t));
        }
        if let Some(s) = self.severity {
            q = q.filter(plans::severity.eq(s));
        }
        if let Some(a) = self.is_active {
            q = q.filter(plans::is_active.eq(a));
        }
        if let Some(p) = &self.search {
            q = q.filter(
                plans::name
                    .ilike(p.clone())
                    .or(plans::detection_procedures.ilike(p.clone()))
                    .or(plans::initial_response.ilike(p.clone()))
                    .or(plans::escalation_path.ilike(p.clone()))
                    .or(plans::investigation_procedures.ilike(p.clone()))
                    .or(plans::recovery_procedures.ilike(p.clone())),
            );
        }
        q
    }
}
