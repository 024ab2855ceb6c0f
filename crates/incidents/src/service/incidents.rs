//! Incidents: CRUD with SLA deadlines; deletion respects legal holds and linked records.

use custos_core::ctx::Access;
use custos_core::filter::{self, DayEdge, parse_id, parse_opt_time_bound, parse_opt_timestamp};
use custos_core::hold::ensure_not_held;
use custos_core::{Held, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::schema::incidents;
use custos_db::{DbError, Tx};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;
use crate::model::*;

fn not_found(id: impl std::fmt::Display) -> IncidentsError {
    Problem::not_found("Incident", id).into()
}

impl IncidentsService {
    pub async fn list_incidents(
        &self,
        ctx: &RequestCtx,
        req: pb::ListIncidentsRequest,
    ) -> Result<pb::ListIncidentsResponse> {
        // No cursor: rows recorded before detection times were stored have none, and sort first.
        let list = ListRequest::pages(req.page, req.page_size)?;
        let filters = IncidentFilters::parse(&req)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let q = filters
            .apply(org)
            .order((incidents::detected_at.desc(), incidents::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(IncidentRow::as_select());
        let rows: Vec<IncidentRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(&mut tx, &list, rows, |_| None, || filters.apply(org).select(list::row())).await?;
        tx.commit().await?;
        let now = timefmt::now();
        Ok(pb::ListIncidentsResponse::from_page(page.map(|r| r.to_pb(&self.slas, now))))
    }

    pub async fn get_incident(&self, ctx: &RequestCtx, req: pb::GetIncidentRequest) -> Result<pb::Incident> {
        let id = parse_id("Incident", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find_incident(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb(&self.slas, timefmt::now()))
    }

    pub async fn create_incident(&self, ctx: &RequestCtx, req: pb::CreateIncidentRequest) -> Result<pb::Incident> {
        let mut tx = self.begin(ctx, Access::Write).await?;
        let fields = validate_incident(&mut tx, ctx, req.incident.unwrap_or_default(), None).await?;
        let clocks = Clocks::started(&self.slas, fields.severity, fields.detected());
        let id = new_id();
        let row: IncidentRow = custos_db::prepared(
            diesel::insert_into(incidents::table)
                .values((
                    incidents::id.eq(id),
                    incidents::organization_id.eq(ctx.organization_id),
                    incidents::reported_by.eq(ctx.actor.label()),
                    &fields,
                    &clocks,
                ))
                .returning(IncidentRow::as_returning()),
        )
        .get_result(tx.conn())
        .await?;
        let created = row.to_pb(&self.slas, timefmt::now());
        record_change(&mut tx, ctx, "create", "incident", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_incident(&self, ctx: &RequestCtx, req: pb::UpdateIncidentRequest) -> Result<pb::Incident> {
        let id = parse_id("Incident", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_incident(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) = update::apply::<_, pb::Incident>(current.to_input(), req.incident.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            tx.commit().await?;
            return Ok(current.to_pb(&self.slas, timefmt::now()));
        };
        let fields = validate_incident(&mut tx, ctx, input, Some(&current)).await?;
        let now = timefmt::now();
        let clocks = current.clocks_after(&self.slas, fields.severity, fields.detected(), now);
        let before = current.to_pb(&self.slas, now);
        let row: IncidentRow = diesel::update(
            incidents::table.filter(incidents::organization_id.eq(ctx.organization_id)).filter(incidents::id.eq(id)),
        )
        .set((&fields, &clocks, incidents::updated_at.eq(now)))
        .returning(IncidentRow::as_returning())
        .get_result(tx.conn())
        .await?;
        let after = row.to_pb(&self.slas, now);
        record_change(&mut tx, ctx, "update", "incident", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes an incident unless a legal hold covers it (409 naming the hold) or records still
    /// link to it (409).
    pub async fn delete_incident(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteIncidentRequest,
    ) -> Result<pb::DeleteIncidentResponse> {
        let id = parse_id("Incident", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_incident(&mut tx, ctx, id, true).await?;
        ensure_not_held(&*self.holds, tx.conn(), ctx.organization_id, &Held::Incident(id), "delete").await?;
        diesel::delete(
            incidents::table.filter(incidents::organization_id.eq(ctx.organization_id)).filter(incidents::id.eq(id)),
        )
        .execute(tx.conn())
        .await
        .map_err(|e| linked_records(e, id))?;
        record_change(
            &mut tx,
            ctx,
            "delete",
            "incident",
            id,
            snapshot(&current.to_pb(&self.slas, timefmt::now())),
            Value::Null,
        )
        .await?;
        tx.commit().await?;
        Ok(pb::DeleteIncidentResponse {})
    }
}

/// A foreign-key violation on delete: something (a vulnerability, evidence) still links here.
fn linked_records(e: diesel::result::Error, id: Uuid) -> IncidentsError {
    let e = DbError::from(e);
    if e.is_foreign_key_violation() {
        Problem::state_conflict(
            "Incident has linked records",
            format!("Incident {id} is referenced by other records (vulnerabilities, evidence); unlink them first"),
        )
        .into()
    } else {
        e.into()
    }
}

/// An incident of the caller's organisation (locked `FOR UPDATE` when about to change it).
async fn find_incident(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<IncidentRow> {
    let q = incidents::table
        .filter(incidents::organization_id.eq(ctx.organization_id))
        .filter(incidents::id.eq(id))
        .select(IncidentRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| not_found(id))
}

async fn validate_incident(
    tx: &mut Tx,
    ctx: &RequestCtx,
    input: pb::IncidentInput,
    current: Option<&IncidentRow>,
) -> Result<IncidentFields> {
    let now = timefmt::now();
    let severity: Severity = choice("severity", &input.severity)?;
    let category: Category = choice("category", &input.category)?;
    let data_classification = opt_choice("data_classification", input.data_classification.as_deref())?
        .unwrap_or_else(|| current.map_or(DataClassification::Internal, |c| c.data_classification));
    let status = opt_choice("status", input.status.as_deref())?
        .unwrap_or_else(|| current.map_or(IncidentStatus::Open, |c| c.status));
    let occurred_at = parse_opt_timestamp("occurred_at", input.occurred_at.as_deref())?;
    let detected_at = parse_opt_timestamp("detected_at", input.detected_at.as_deref())?
        .or_else(|| current.map(IncidentRow::detected))
        .unwrap_or(now);
    if occurred_at.is_some_and(|o| detected_at < o) {
        return Err(Problem::invalid_field("detected_at", "detected_at cannot be before occurred_at").into());
    }
    // Stamped times never precede detection (a detection time a little ahead of this clock).
    let resolved_at = if status.is_resolved() {
        let at = parse_opt_timestamp("resolved_at", input.resolved_at.as_deref())?
            .or_else(|| current.and_then(|c| c.resolved_at))
            .unwrap_or(now.max(detected_at));
        if at < detected_at {
            return Err(Problem::invalid_field("resolved_at", "resolved_at cannot be before detected_at").into());
        }
        Some(at)
    } else {
        // Checked even when dropped: a malformed value is still an error.
        parse_opt_timestamp("resolved_at", input.resolved_at.as_deref())?;
        None
    };
    // Responding precedes resolving: an incident recorded after the fact as resolved was
    // responded to by its resolution at the latest, not when it was recorded.
    let responded_at: Option<OffsetDateTime> = parse_opt_timestamp("responded_at", input.responded_at.as_deref())?
        .or_else(|| current.and_then(|c| c.responded_at))
        .or_else(|| {
            (status != IncidentStatus::Open)
                .then_some(now.max(detected_at))
                .map(|r| resolved_at.map_or(r, |resolved| r.min(resolved)))
        });
    if responded_at.is_some_and(|r| r < detected_at) {
        return Err(Problem::invalid_field("responded_at", "responded_at cannot be before detected_at").into());
    }
    if let (Some(responded), Some(resolved)) = (responded_at, resolved_at)
        && responded > resolved
    {
        return Err(Problem::invalid_field("responded_at", "responded_at cannot be after resolved_at").into());
    }
    Ok(IncidentFields {
        title: filter::required_text("title", &input.title, TITLE_MAX)?,
        description: filter::bounded_text("description", &input.description, TEXT_MAX)?,
        severity,
        category,
        data_classification,
        status,
        occurred_at,
        detected_at: Some(detected_at),
        responded_at,
        resolved_at,
        assigned_to: refs::user(tx, ctx, "assigned_to", input.assigned_to.as_deref()).await?,
    })
}

/// Parsed list filters of incidents.
struct IncidentFilters {
    severity: Option<Severity>,
    category: Option<Category>,
    data_classification: Option<DataClassification>,
    status: Option<IncidentStatus>,
    assigned_to: Option<Uuid>,
    occurred_after: Option<OffsetDateTime>,
    occurred_before: Option<OffsetDateTime>,
    detected_after: Option<OffsetDateTime>,
    detected_before: Option<OffsetDateTime>,
    search: Option<String>,
}

impl IncidentFilters {
    fn parse(req: &pb::ListIncidentsRequest) -> Result<Self> {
        Ok(IncidentFilters {
            severity: opt_choice("severity", req.severity.as_deref())?,
            category: opt_choice("category", req.category.as_deref())?,
            data_classification: opt_choice("data_classification", req.data_classification.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            assigned_to: opt_uuid("assigned_to", req.assigned_to.as_deref())?,
            occurred_after: parse_opt_time_bound("occurred_after", req.occurred_after.as_deref(), DayEdge::Start)?,
            occurred_before: parse_opt_time_bound("occurred_before", req.occurred_before.as_deref(), DayEdge::End)?,
            detected_after: parse_opt_time_bound("detected_after", req.detected_after.as_deref(), DayEdge::Start)?,
            detected_before: parse_opt_time_bound("detected_before", req.detected_before.as_deref(), DayEdge::End)?,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid) -> incidents::BoxedQuery<'static, Pg> {
        let mut q = incidents::table.filter(incidents::organization_id.eq(org)).into_boxed();
        if let Some(v) = self.severity {
            q = q.filter(incidents::severity.eq(v));
        }
        if let Some(v) = self.category {
            q = q.filter(incidents::category.eq(v));
        }
        if let Some(v) = self.data_classification {
            q = q.filter(incidents::data_classification.eq(v));
        }
        if let Some(v) = self.status {
            q = q.filter(incidents::status.eq(v));
        }
        if let Some(u) = self.assigned_to {
            q = q.filter(incidents::assigned_to.eq(u));
        }
        if let Some(t) = self.occurred_after {
            q = q.filter(incidents::occurred_at.ge(t));
        }
        if let Some(t) = self.occurred_before {
            q = q.filter(incidents::occurred_at.le(t));
        }
        if let Some(t) = self.detected_after {
            q = q.filter(incidents::detected_at.ge(t));
        }
        if let Some(t) = self.detected_before {
            q = q.filter(incidents::detected_at.le(t));
        }
        if let Some(pattern) = &self.search {
            q = q.filter(incidents::title.ilike(pattern.clone()).or(incidents::description.ilike(pattern.clone())));
        }
        q
    }
}
