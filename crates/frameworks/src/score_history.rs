//! Score history (seed 003's trends): each framework's compliance summary — mapped coverage
//! included — kept as a snapshot, daily by the `score-snapshot` schedule (once per framework and
//! day: the job's reruns add nothing) and on demand by an admin; read as a series for trend charts.

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{DayEdge, parse_id, parse_opt_time_bound};
use custos_core::{Problem, RequestCtx, new_id, timefmt};
use custos_db::schema::{framework_score_snapshots as snapshots, frameworks};
use custos_db::{DbError, Tx};
use custos_jobs::{Job, JobError, Kind, Scope};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::FrameworksService;
use crate::service::{Result, find_framework, summary_in};

/// The kind of the daily snapshot's job.
pub const SCORE_SNAPSHOT_JOB: &str = "frameworks.score_snapshot";
/// The most points one series answers: ten years of daily snapshots.
const POINTS_MAX: i64 = 3_660;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = snapshots)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct SnapshotRow {
    id: Uuid,
    taken_at: OffsetDateTime,
    source: String,
    taken_by: String,
    total_requirements: i64,
    compliant: i64,
    partially_compliant: i64,
    non_compliant: i64,
    not_assessed: i64,
    implemented: i64,
    overdue_assessments: i64,
    compliance_percentage: f64,
    covered_through_mappings: i64,
    compliance_percentage_with_mapped: f64,
}

impl SnapshotRow {
    fn to_pb(&self) -> pb::ScoreSnapshot {
        pb::ScoreSnapshot {
            id: self.id.to_string(),
            taken_at: timefmt::timestamp(self.taken_at),
            source: self.source.clone(),
            taken_by: self.taken_by.clone(),
            total_requirements: self.total_requirements,
            compliant: self.compliant,
            partially_compliant: self.partially_compliant,
            non_compliant: self.non_compliant,
            not_assessed: self.not_assessed,
            implemented: self.implemented,
            overdue_assessments: self.overdue_assessments,
            compliance_percentage: self.compliance_percentage,
            covered_through_mappings: self.covered_through_mappings,
            compliance_percentage_with_mapped: self.compliance_percentage_with_mapped,
        }
    }
}

/// Takes a snapshot of framework `id` in `tx` (audited); `None` when the day's scheduled one is
/// taken already.
async fn take(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, source: &str) -> Result<Option<SnapshotRow>> {
    let org = ctx.organization_id;
    let s = summary_in(tx, org, id, true).await?;
    let now = timefmt::now();
    let row: Option<SnapshotRow> = diesel::insert_into(snapshots::table)
        .values((
            snapshots::id.eq(new_id()),
            snapshots::organization_id.eq(org),
            snapshots::framework_id.eq(id),
            snapshots::taken_at.eq(now),
            snapshots::day.eq(now.date()),
            snapshots::source.eq(source),
            snapshots::taken_by.eq(ctx.actor.label()),
            snapshots::total_requirements.eq(s.total_requirements),
            snapshots::compliant.eq(s.compliant),
            snapshots::partially_compliant.eq(s.partially_compliant),
            snapshots::non_compliant.eq(s.non_compliant),
            snapshots::not_assessed.eq(s.not_assessed),
            snapshots::implemented.eq(s.implemented),
            snapshots::overdue_assessments.eq(s.overdue_assessments),
            snapshots::compliance_percentage.eq(s.compliance_percentage),
            snapshots::covered_through_mappings.eq(s.covered_through_mappings.unwrap_or(0)),
            snapshots::compliance_percentage_with_mapped
                .eq(s.compliance_percentage_with_mapped.unwrap_or(s.compliance_percentage)),
        ))
        .on_conflict_do_nothing()
        .returning(SnapshotRow::as_returning())
        .get_result(tx.conn())
        .await
        .optional()?;
    if let Some(r) = &row {
        let after = serde_json::to_value(r.to_pb()).unwrap_or(Value::Null);
        record_change(tx, ctx, "score_snapshot", "framework", id, Value::Null, after).await?;
    }
    Ok(row)
}

impl FrameworksService {
    /// `GET /api/compliance/frameworks/{id}/score_history/?after=…&before=…` (every role): the
    /// snapshots, oldest first.
    pub async fn get_score_history(
        &self,
        ctx: &RequestCtx,
        req: pb::GetScoreHistoryRequest,
    ) -> Result<pb::ScoreHistory> {
        let id = parse_id("Framework", &req.id)?;
        let after = parse_opt_time_bound("after", req.after.as_deref(), DayEdge::Start)?;
        let before = parse_opt_time_bound("before", req.before.as_deref(), DayEdge::End)?;
        let mut tx = self.db().begin_as(ctx, Access::Read).await?;
        let framework = find_framework(&mut tx, ctx, id).await?;
        let mut q = snapshots::table
            .filter(snapshots::organization_id.eq(ctx.organization_id))
            .filter(snapshots::framework_id.eq(id))
            .into_boxed();
        if let Some(a) = after {
            q = q.filter(snapshots::taken_at.ge(a));
        }
        if let Some(b) = before {
            q = q.filter(snapshots::taken_at.le(b));
        }
        let rows: Vec<SnapshotRow> = q
            .order((snapshots::taken_at.asc(), snapshots::id.asc()))
            .limit(POINTS_MAX + 1)
            .select(SnapshotRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        if rows.len() as i64 > POINTS_MAX {
            return Err(Problem::invalid_field(
                "after",
                format!("more than {POINTS_MAX} snapshots in the window: narrow it with after and before"),
            )
            .into());
        }
        let change = match (<[SnapshotRow]>::first(&rows), rows.last()) {
            (Some(a), Some(b)) => Some(((b.compliance_percentage - a.compliance_percentage) * 10.0).round() / 10.0),
            _ => None,
        };
        Ok(pb::ScoreHistory {
            framework: id.to_string(),
            framework_name: framework.name,
            points: rows.iter().map(SnapshotRow::to_pb).collect(),
            change,
        })
    }

    /// `POST /api/compliance/frameworks/{id}/score_history/` (admins): a snapshot now.
    pub async fn take_score_snapshot(
        &self,
        ctx: &RequestCtx,
        req: pb::TakeScoreSnapshotRequest,
    ) -> Result<pb::ScoreSnapshot> {
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.db().begin_as(ctx, Access::Admin).await?;
        find_framework(&mut tx, ctx, id).await?;
        let row = take(&mut tx, ctx, id, "manual")
            .await?
            .ok_or_else(|| Problem::internal("a manual snapshot was not kept"))?;
        tx.commit().await?;
        Ok(row.to_pb())
    }
}

/// The daily snapshot's kind (one job per organisation): every active framework, once a day.
pub fn score_snapshot_job(service: FrameworksService) -> Kind {
    Kind::new(
        SCORE_SNAPSHOT_JOB,
        Scope::Organization,
        "Keeps today's compliance score of every active framework",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org =
                    job.organization().ok_or_else(|| JobError::fatal("the snapshot belongs to an organisation"))?;
                let ctx = job.ctx(org);
                let mut tx = service.db().begin(org).await?;
                let ids: Vec<Uuid> = frameworks::table
                    .filter(frameworks::organization_id.eq(org))
                    .filter(frameworks::is_active.eq(true))
                    .order(frameworks::id.asc())
                    .select(frameworks::id)
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                let mut taken = 0i64;
                for id in &ids {
                    if take(&mut tx, &ctx, *id, "schedule")
                        .await
                        .map_err(|e| JobError::from_problem(e.into()))?
                        .is_some()
                    {
                        taken += 1;
                    }
                }
                tx.commit().await?;
                job.count("taken", taken);
                job.set_progress(1.0);
                Ok(json!({ "taken": taken, "frameworks": ids.len() }))
            }
        },
    )
}
