//! The jobs and schedules API: an organisation's jobs (admins and auditors), the platform's
//! own as kind, status and times (admins), cancellation and the organisation's schedules
//! (admins); and the operator's view across organisations (`custos jobs`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::Choice;
use custos_core::filter::{DayEdge, opt_choice, opt_text, parse_id, parse_opt_time_bound};
use custos_core::page::{Count, Page, cursor};
use custos_core::{ListRequest, Problem, RequestCtx, timefmt, update};
use custos_db::schema::{job_schedules, jobs};
use custos_db::{Db, Tx, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::error::JobsError;
use crate::job::{Kind, Scope};
use crate::model::{JobRow, JobScope, JobStatus, ScheduleRow, system_job_pb};
use crate::queue::{self, NewJob};
use crate::schedule::{ScheduleDef, next_after, parse_cron, sync_all, sync_def};

type Result<T, E = JobsError> = std::result::Result<T, E>;

/// The list's cursor kind.
const JOBS: &str = "jobs";

custos_core::page_responses! {
    pb::ListJobsResponse { pb::Job } + next_cursor;
    pb::ListSchedulesResponse { pb::Schedule };
}

/// The kinds and schedules every served domain declared.
#[derive(Default)]
pub struct Registry {
    pub kinds: HashMap<String, Kind>,
    pub defs: Vec<ScheduleDef>,
}

#[derive(Clone)]
pub struct JobsService {
    db: Db,
    registry: Arc<RwLock<Arc<Registry>>>,
    wake: Arc<Notify>,
}

fn job_not_found(id: impl std::fmt::Display) -> JobsError {
    Problem::not_found("Job", id).into()
}

fn schedule_not_found(name: &str) -> JobsError {
    Problem::not_found("Schedule", name).into()
}

impl JobsService {
    pub fn new(db: Db) -> Self {
        JobsService { db, registry: Arc::default(), wake: Arc::new(Notify::new()) }
    }

    /// Declares what the served domains run (the composition root, once it has them all).
    pub fn register(&self, kinds: Vec<Kind>, defs: Vec<ScheduleDef>) {
        let registry = Registry { kinds: kinds.into_iter().map(|k| (k.name.to_owned(), k)).collect(), defs };
        if let Ok(mut r) = self.registry.write() {
            *r = Arc::new(registry);
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// The local runner's waker: a job queued here starts without waiting for the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub async fn list_jobs(&self, ctx: &RequestCtx, req: pb::ListJobsRequest) -> Result<pb::ListJobsResponse> {
        let scope = opt_choice::<JobScope>("scope", req.scope.as_deref())?.unwrap_or(JobScope::Organization);
        let filters = JobFilters::parse(&req)?;
        if scope == JobScope::System {
            return self.list_system_jobs(ctx, &req, &filters).await;
        }
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let after = list.after::<(OffsetDateTime, Uuid)>(JOBS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let mut q = filters
            .apply(org)
            .order((jobs::created_at.desc(), jobs::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(JobRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((jobs::created_at, jobs::id), key));
        }
        let rows: Vec<JobRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(JOBS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::ListJobsResponse::from_page(page.map(|r| r.to_pb())))
    }

    async fn list_system_jobs(
        &self,
        ctx: &RequestCtx,
        req: &pb::ListJobsRequest,
        filters: &JobFilters,
    ) -> Result<pb::ListJobsResponse> {
        if opt_text(req.cursor.as_deref()).is_some() {
            return Err(
                Problem::invalid_field("cursor", "The platform's jobs are listed by page; leave out cursor").into()
            );
        }
        if filters.created_after.is_some() || filters.created_before.is_some() {
            return Err(
                Problem::invalid_field("scope", "The platform's jobs are filtered by kind and status only").into()
            );
        }
        let list = ListRequest::pages(req.page, req.page_size)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let rows = system_jobs(&mut tx, None, filters, list.offset(), list.fetch()).await?;
        let count: i64 = diesel::select(
            diesel::dsl::sql::<BigInt>("custos_system_jobs_count(")
                .bind::<Nullable<Text>, _>(filters.kind.clone())
                .sql(", ")
                .bind::<Nullable<Text>, _>(filters.status.map(|s| s.as_str()))
                .sql(")"),
        )
        .get_result(tx.conn())
        .await?;
        tx.commit().await?;
        let page = list.page_of(rows, Count::exact(count), |_| None)?;
        Ok(pb::ListJobsResponse::from_page(page))
    }

    pub async fn get_job(&self, ctx: &RequestCtx, req: pb::GetJobRequest) -> Result<pb::Job> {
        let id = parse_id("Job", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        let job = match row {
            Some(row) => row.to_pb(),
            // The platform's own jobs, to admins, as kind, status and times.
            None if ctx.role.allows(Access::Admin) => {
                let filters = JobFilters::default();
                system_jobs(&mut tx, Some(id), &filters, 0, 1)
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| job_not_found(id))?
            }
            None => return Err(job_not_found(id)),
        };
        tx.commit().await?;
        Ok(job)
    }

    /// Cancels a job of the organisation (admins): one waiting to run ends now; a running one
    /// is stopped by its runner at its next heartbeat, its step in progress rolled back.
    pub async fn cancel_job(&self, ctx: &RequestCtx, req: pb::CancelJobRequest) -> Result<pb::Job> {
        let id = parse_id("Job", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let before = find(&mut tx, ctx.organization_id, id, true).await?.ok_or_else(|| job_not_found(id))?;
        if before.status.is_final() {
            return Err(Problem::state_conflict(
                "Job already finished",
                format!("The job ended as {}; there is nothing to cancel", before.status.as_str()),
            )
            .into());
        }
        if before.cancel_requested_at.is_some() {
            tx.commit().await?;
            return Ok(before.to_pb());
        }
        let now = timefmt::now();
        let who = ctx.actor.label();
        let target = jobs::table.filter(jobs::id.eq(id)).filter(jobs::organization_id.eq(ctx.organization_id));
        let after: JobRow = if before.status == JobStatus::Running {
            diesel::update(target)
                .set((
                    jobs::cancel_requested_at.eq(Some(now)),
                    jobs::cancel_requested_by.eq(Some(&who)),
                    jobs::updated_at.eq(now),
                ))
                .returning(JobRow::as_returning())
                .get_result(tx.conn())
                .await?
        } else {
            diesel::update(target)
                .set((
                    jobs::status.eq(JobStatus::Cancelled),
                    jobs::cancel_requested_at.eq(Some(now)),
                    jobs::cancel_requested_by.eq(Some(&who)),
                    jobs::finished_at.eq(Some(now)),
                    jobs::updated_at.eq(now),
                ))
                .returning(JobRow::as_returning())
                .get_result(tx.conn())
                .await?
        };
        let action = if after.status == JobStatus::Cancelled { "cancel" } else { "request_cancel" };
        queue::audit(&mut tx, Some(ctx), action, Some(&before), &after).await?;
        tx.commit().await?;
        Ok(after.to_pb())
    }

    /// The organisation's schedules (admins and auditors), each with the platform's default.
    pub async fn list_schedules(
        &self,
        ctx: &RequestCtx,
        _req: pb::ListSchedulesRequest,
    ) -> Result<pb::ListSchedulesResponse> {
        let registry = self.registry();
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        ensure_schedules(&mut tx, &registry, ctx.organization_id).await?;
        let rows: Vec<ScheduleRow> = job_schedules::table
            .filter(job_schedules::organization_id.eq(ctx.organization_id))
            .order(job_schedules::name.asc())
            .select(ScheduleRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        let results: Vec<pb::Schedule> = rows
            .iter()
            .filter_map(|row| {
                let def = org_def(&registry, &row.name)?;
                Some(row.to_pb(&def.cron, def.description))
            })
            .collect();
        Ok(pb::ListSchedulesResponse::from_page(Page::whole(results)))
    }

    /// Changes when one of the organisation's schedules runs, or turns it off (admins).
    pub async fn update_schedule(&self, ctx: &RequestCtx, req: pb::UpdateScheduleRequest) -> Result<pb::Schedule> {
        let registry = self.registry();
        let def = org_def(&registry, &req.name).ok_or_else(|| schedule_not_found(&req.name))?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        ensure_schedules(&mut tx, &registry, ctx.organization_id).await?;
        let before = find_schedule(&mut tx, ctx.organization_id, def.name).await?;
        let current = pb::ScheduleInput { cron: before.cron.clone(), enabled: before.enabled };
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) = update::apply::<_, pb::Schedule>(current, req.schedule.unwrap_or_default(), mask)? else {
            tx.commit().await?;
            return Ok(before.to_pb(&def.cron, def.description));
        };
        // At most once a minute: an admin may not give a seconds field (the operator's own
        // setting, kept as it is, may have one).
        let kept = input.cron.trim() == before.cron.trim();
        let cron = parse_cron(&input.cron, kept).map_err(|e| Problem::invalid_field("cron", e))?;
        let now = timefmt::now();
        let next = if input.enabled { next_after(&cron, now) } else { None };
        let after: ScheduleRow = diesel::update(job_schedules::table.find(before.id))
            .set((
                job_schedules::cron.eq(input.cron.trim()),
                job_schedules::enabled.eq(input.enabled),
                job_schedules::customized.eq(true),
                job_schedules::next_run_at.eq(next),
                job_schedules::updated_at.eq(now),
                job_schedules::updated_by.eq(Some(ctx.actor.label())),
            ))
            .returning(ScheduleRow::as_returning())
            .get_result(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "update", "job_schedule", after.id, before.snapshot(), after.snapshot()).await?;
        tx.commit().await?;
        Ok(after.to_pb(&def.cron, def.description))
    }

    /// Starts one of the organisation's schedules' job now, beside its regular runs (admins).
    pub async fn run_schedule(&self, ctx: &RequestCtx, req: pb::RunScheduleRequest) -> Result<pb::Job> {
        let registry = self.registry();
        let def = org_def(&registry, &req.name).ok_or_else(|| schedule_not_found(&req.name))?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let job =
            self.enqueue_in(&mut tx, Some(ctx), &registry, def, Some(ctx.organization_id), ctx.actor.label()).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(job.to_pb())
    }

    async fn enqueue_in(
        &self,
        tx: &mut Tx,
        ctx: Option<&RequestCtx>,
        registry: &Registry,
        def: &ScheduleDef,
        organization_id: Option<Uuid>,
        created_by: String,
    ) -> Result<JobRow> {
        let max_attempts = registry.kinds.get(def.kind).map_or(5, |k| k.max_attempts);
        let job = queue::enqueue(
            tx,
            ctx,
            NewJob {
                organization_id,
                kind: def.kind.to_owned(),
                parameters: def.parameters.clone(),
                max_attempts,
                created_by,
                schedule: None,
            },
        )
        .await?;
        Ok(job.ok_or_else(|| Problem::internal("the job was not queued"))?)
    }

    /// The operator's `custos jobs run NAME`: queues the schedule's job (for `organization`,
    /// which a per-organisation schedule needs) as `operator`.
    pub async fn enqueue_schedule_as_operator(
        &self,
        name: &str,
        organization: Option<(Uuid, String)>,
    ) -> Result<JobRow> {
        let registry = self.registry();
        let def = registry.defs.iter().find(|d| d.name == name).ok_or_else(|| schedule_not_found(name))?;
        let (mut tx, ctx) = match (def.scope, organization) {
            (Scope::Organization, Some((org, slug))) => {
                (self.db.begin(org).await?, Some(RequestCtx::operator(org, slug)))
            }
            (Scope::Organization, None) => {
                return Err(Problem::invalid_field(
                    "org",
                    format!("{name} runs per organisation: name one with --org"),
                )
                .into());
            }
            (Scope::System, None) => (self.db.begin_system().await?, None),
            (Scope::System, Some(_)) => {
                return Err(Problem::invalid_field("org", format!("{name} is a platform job; leave out --org")).into());
            }
        };
        let by = ctx.as_ref().map_or_else(|| format!("operator:{}", operator_name()), |c| c.actor.label());
        let org = ctx.as_ref().map(|c| c.organization_id);
        let job = self.enqueue_in(&mut tx, ctx.as_ref(), &registry, def, org, by).await?;
        tx.commit().await?;
        Ok(job)
    }

    /// Every job (the operator's view: all organisations and the platform's), newest first.
    pub async fn operator_jobs(
        &self,
        organization: Option<Uuid>,
        kind: Option<&str>,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRow>> {
        let status = opt_choice::<JobStatus>("status", status)?;
        let mut q = jobs::table.into_boxed::<Pg>();
        if let Some(org) = organization {
            q = q.filter(jobs::organization_id.eq(org));
        }
        if let Some(kind) = opt_text(kind) {
            q = q.filter(jobs::kind.eq(kind.to_owned()));
        }
        if let Some(status) = status {
            q = q.filter(jobs::status.eq(status));
        }
        let mut tx = self.db.begin_system().await?;
        let rows = q
            .order((jobs::created_at.desc(), jobs::id.desc()))
            .limit(limit)
            .select(JobRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// One job, whoever's (the operator's view).
    pub async fn operator_job(&self, id: Uuid) -> Result<JobRow> {
        let mut tx = self.db.begin_system().await?;
        let row = jobs::table.find(id).select(JobRow::as_select()).first(tx.conn()).await.optional()?;
        tx.commit().await?;
        row.ok_or_else(|| job_not_found(id))
    }

    /// Creates the missing schedule rows (the platform's, every organisation's) and applies
    /// the configured timing to those nobody changed, as a scheduler does when it starts.
    pub async fn sync_schedules(&self) -> Result<()> {
        Ok(sync_all(&self.db, &self.registry().defs).await?)
    }

    /// Every schedule row (the operator's view), with the platform's and the organisations'.
    pub async fn operator_schedules(&self) -> Result<Vec<ScheduleRow>> {
        let mut tx = self.db.begin_system().await?;
        let rows = job_schedules::table
            .order((job_schedules::name.asc(), job_schedules::organization_id.asc()))
            .select(ScheduleRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
}

fn operator_name() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".to_owned())
}

fn org_def<'a>(registry: &'a Registry, name: &str) -> Option<&'a ScheduleDef> {
    registry.defs.iter().find(|d| d.name == name && d.scope == Scope::Organization)
}

/// The organisation's schedule rows exist before they are shown or changed (the scheduler
/// creates them too, within a minute of an organisation's creation).
async fn ensure_schedules(tx: &mut Tx, registry: &Registry, org: Uuid) -> Result<()> {
    for def in registry.defs.iter().filter(|d| d.scope == Scope::Organization) {
        sync_def(tx, def, Some(org)).await?;
    }
    Ok(())
}

async fn find_schedule(tx: &mut Tx, org: Uuid, name: &str) -> Result<ScheduleRow> {
    job_schedules::table
        .filter(job_schedules::organization_id.eq(org))
        .filter(job_schedules::name.eq(name))
        .for_update()
        .select(ScheduleRow::as_select())
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| schedule_not_found(name))
}

async fn find(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<Option<JobRow>> {
    let q = jobs::table.filter(jobs::organization_id.eq(org)).filter(jobs::id.eq(id)).select(JobRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?)
}

/// The platform's jobs as an organisation's admins see them.
async fn system_jobs(
    tx: &mut Tx,
    id: Option<Uuid>,
    filters: &JobFilters,
    offset: i64,
    limit: i64,
) -> Result<Vec<pb::Job>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        status: JobStatus,
        #[diesel(sql_type = Timestamptz)]
        created_at: OffsetDateTime,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        started_at: Option<OffsetDateTime>,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        finished_at: Option<OffsetDateTime>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT id, kind, status, created_at, started_at, finished_at FROM custos_system_jobs($1, $2, $3, $4, $5)",
    )
    .bind::<Nullable<SqlUuid>, _>(id)
    .bind::<Nullable<Text>, _>(filters.kind.clone())
    .bind::<Nullable<Text>, _>(filters.status.map(|s| s.as_str()))
    .bind::<BigInt, _>(offset)
    .bind::<Integer, _>(limit.clamp(1, 101) as i32)
    .load(tx.conn())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| system_job_pb(r.id, r.kind, r.status, r.created_at, r.started_at, r.finished_at))
        .collect())
}

#[derive(Default)]
struct JobFilters {
    kind: Option<String>,
    status: Option<JobStatus>,
    created_after: Option<OffsetDateTime>,
    created_before: Option<OffsetDateTime>,
}

impl JobFilters {
    fn parse(req: &pb::ListJobsRequest) -> Result<Self> {
        Ok(JobFilters {
            kind: opt_text(req.kind.as_deref()).map(str::to_owned),
            status: opt_choice("status", req.status.as_deref())?,
            created_after: parse_opt_time_bound("created_after", req.created_after.as_deref(), DayEdge::Start)?,
            created_before: parse_opt_time_bound("created_before", req.created_before.as_deref(), DayEdge::End)?,
        })
    }

    fn apply(&self, org: Uuid) -> jobs::BoxedQuery<'static, Pg> {
        let mut q = jobs::table.filter(jobs::organization_id.eq(org)).into_boxed();
        if let Some(kind) = &self.kind {
            q = q.filter(jobs::kind.eq(kind.clone()));
        }
        if let Some(status) = self.status {
            q = q.filter(jobs::status.eq(status));
        }
        if let Some(t) = self.created_after {
            q = q.filter(jobs::created_at.ge(t));
        }
        if let Some(t) = self.created_before {
            q = q.filter(jobs::created_at.le(t));
        }
        q
    }
}
