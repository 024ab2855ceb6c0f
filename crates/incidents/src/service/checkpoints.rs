//! Compliance checkpoints: scheduled milestones, optionally of a framework; `overdue` in SQL.

use custos_core::ctx::Access;
use custos_core::filter::{self, Choice, DayEdge, parse_id, parse_opt_date, parse_opt_time_bound};
use custos_core::{Problem, RequestCtx, new_id, timefmt, update};
use custos_db::Tx;
use custos_db::schema::compliance_checkpoints as cp;
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::Date;
use uuid::Uuid;

use super::*;
use crate::model::*;

const NAME_MAX: usize = 200;

fn not_found(id: impl std::fmt::Display) -> IncidentsError {
    Problem::not_found("Compliance checkpoint", id).into()
}

fn pending() -> Vec<CheckpointStatus> {
    CheckpointStatus::PENDING.to_vec()
}

impl IncidentsService {
    pub async fn list_compliance_checkpoints(
        &self,
        ctx: &RequestCtx,
        req: pb::ListComplianceCheckpointsRequest,
    ) -> Result<pb::ListComplianceCheckpointsResponse> {
        // No cursor: a checkpoint may have no due date, and those sort last.
        let list = ListRequest::pages(req.page, req.page_size)?;
        let filters = CheckpointFilters::parse(&req)?;
        let (org, today) = (ctx.organization_id, timefmt::today());
        let mut tx = self.begin(ctx, Access::Read).await?;
        let q = filters
            .apply(org, today)
            .order((cp::due_date.asc().nulls_last(), cp::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(CheckpointRow::as_select());
        let rows: Vec<CheckpointRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(&mut tx, &list, rows, |_| None, || filters.apply(org, today).select(list::row())).await?;
        tx.commit().await?;
        Ok(pb::ListComplianceCheckpointsResponse::from_page(page.map(|r| r.to_pb(today))))
    }

    pub async fn get_compliance_checkpoint(
        &self,
        ctx: &RequestCtx,
        req: pb::GetComplianceCheckpointRequest,
    ) -> Result<pb::ComplianceCheckpoint> {
        let id = parse_id("Compliance checkpoint", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find_checkpoint(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb(timefmt::today()))
    }

    pub async fn create_compliance_checkpoint(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateComplianceCheckpointRequest,
    ) -> Result<pb::ComplianceCheckpoint> {
        let mut tx = self.begin(ctx, Access::Write).await?;
        let fields = validate_checkpoint(&mut tx, ctx, req.checkpoint.unwrap_or_default(), None).await?;
        let id = new_id();
        let row: CheckpointRow = custos_db::prepared(
            diesel::insert_into(cp::table)
                .values((cp::id.eq(id), cp::organization_id.eq(ctx.organization_id), &fields))
                .returning(CheckpointRow::as_returning()),
        )
        .get_result(tx.conn())
        .await?;
        let created = row.to_pb(timefmt::today());
        record_change(&mut tx, ctx, "create", "compliance_checkpoint", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_compliance_checkpoint(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateComplianceCheckpointRequest,
    ) -> Result<pb::ComplianceCheckpoint> {
        let id = parse_id("Compliance checkpoint", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_checkpoint(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::ComplianceCheckpoint>(current.to_input(), req.checkpoint.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            tx.commit().await?;
            return Ok(current.to_pb(timefmt::today()));
        };
        let fields = validate_checkpoint(&mut tx, ctx, input, Some(&current)).await?;
        let today = timefmt::today();
        let before = current.to_pb(today);
        let row: CheckpointRow =
            diesel::update(cp::table.filter(cp::organization_id.eq(ctx.organization_id)).filter(cp::id.eq(id)))
                .set((&fields, cp::updated_at.eq(timefmt::now())))
                .returning(CheckpointRow::as_returning())
                .get_result(tx.conn())
                .await?;
        let after = row.to_pb(today);
        record_change(&mut tx, ctx, "update", "compliance_checkpoint", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn delete_compliance_checkpoint(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteComplianceCheckpointRequest,
    ) -> Result<pb::DeleteComplianceCheckpointResponse> {
        let id = parse_id("Compliance checkpoint", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_checkpoint(&mut tx, ctx, id, true).await?;
        diesel::delete(cp::table.filter(cp::organization_id.eq(ctx.organization_id)).filter(cp::id.eq(id)))
            .execute(tx.conn())
            .await?;
        record_change(
            &mut tx,
            ctx,
            "delete",
            "compliance_checkpoint",
            id,
            snapshot(&current.to_pb(timefmt::today())),
            Value::Null,
        )
        .await?;
        tx.commit().await?;
        Ok(pb::DeleteComplianceCheckpointResponse {})
    }
}

async fn find_checkpoint(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<CheckpointRow> {
    let q = cp::table
        .filter(cp::organization_id.eq(ctx.organization_id))
        .filter(cp::id.eq(id))
        .select(CheckpointRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| not_found(id))
}

async fn validate_checkpoint(
    tx: &mut Tx,
    ctx: &RequestCtx,
    input: pb::ComplianceCheckpointInput,
    current: Option<&CheckpointRow>,
) -> Result<CheckpointFields> {
    let status = opt_choice("status", input.status.as_deref())?
        .unwrap_or_else(|| current.map_or(CheckpointStatus::Planned, |c| c.status));
    let scheduled_date = parse_opt_date("scheduled_date", input.scheduled_date.as_deref())?;
    let due_date = parse_opt_date("due_date", input.due_date.as_deref())?;
    if let (Some(s), Some(d)) = (scheduled_date, due_date)
        && d < s
    {
        return Err(Problem::invalid_field("due_date", "due_date cannot be before scheduled_date").into());
    }
    let given_completed = parse_opt_date("completed_date", input.completed_date.as_deref())?;
    let completed_date = if status == CheckpointStatus::Completed {
        given_completed.or_else(|| current.and_then(|c| c.completed_date)).or_else(|| Some(timefmt::today()))
    } else {
        None
    };
    let framework_id = refs::framework(tx, ctx, "framework", input.framework.as_deref()).await?;
    Ok(CheckpointFields {
        name: filter::required_text("name", &input.name, NAME_MAX)?,
        description: filter::bounded_text("description", &input.description, TEXT_MAX)?,
        framework_id,
        status,
        scheduled_date,
        due_date,
        completed_date,
        owner: refs::user(tx, ctx, "owner", input.owner.as_deref()).await?,
        notes: filter::bounded_text("notes", &input.notes, TEXT_MAX)?,
    })
}

/// Parsed list filters of checkpoints.
struct CheckpointFilters {
    statuses: Vec<CheckpointStatus>,
    framework: Option<Uuid>,
    overdue: Option<bool>,
    due_after: Option<Date>,
    due_before: Option<Date>,
    search: Option<String>,
}

impl CheckpointFilters {
    fn parse(req: &pb::ListComplianceCheckpointsRequest) -> Result<Self> {
        // `status=PLANNED,IN_PROGRESS` selects either (the seed's `status__in`).
        let mut statuses = Vec::new();
        for raw in req.status.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            statuses.push(CheckpointStatus::parse_field("status", raw)?);
        }
        Ok(CheckpointFilters {
            statuses,
            framework: opt_uuid("framework", req.framework.as_deref())?,
            overdue: req.overdue,
            // A date, or a timestamp standing for its date in UTC (due dates are days).
            due_after: parse_opt_time_bound("due_after", req.due_after.as_deref(), DayEdge::Start)?.map(|t| t.date()),
            due_before: parse_opt_time_bound("due_before", req.due_before.as_deref(), DayEdge::End)?.map(|t| t.date()),
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid, today: Date) -> cp::BoxedQuery<'static, Pg> {
        let mut q = cp::table.filter(cp::organization_id.eq(org)).into_boxed();
        if !self.statuses.is_empty() {
            q = q.filter(cp::status.eq_any(self.statuses.clone()));
        }
        if let Some(f) = self.framework {
            q = q.filter(cp::framework_id.eq(f));
        }
        match self.overdue {
            Some(true) => q = q.filter(cp::status.eq_any(pending())).filter(cp::due_date.lt(today)),
            Some(false) => {
                q = q.filter(cp::status.ne_all(pending()).or(cp::due_date.is_null()).or(cp::due_date.ge(today)))
            }
            None => {}
        }
        if let Some(d) = self.due_after {
            q = q.filter(cp::due_date.ge(d));
        }
        if let Some(d) = self.due_before {
            q = q.filter(cp::due_date.le(d));
        }
        if let Some(p) = &self.search {
            q = q.filter(cp::name.ilike(p.clone()).or(cp::description.ilike(p.clone())).or(cp::notes.ilike(p.clone())));
        }
        q
    }
}
