//! The queue's operations on `jobs` rows: enqueue, claim, heartbeat, finish, release and the
//! sweep of lapsed leases. Everything the runners do across organisations runs in the system
//! scope; each change to an organisation's job is recorded in its audit trail in the same
//! transaction.

use std::time::Duration;

use custos_audit_chain::record_change;
use custos_core::{RequestCtx, new_id, timefmt};
use custos_db::schema::jobs;
use custos_db::{Db, DbError, Tx};
use diesel::prelude::*;
use diesel::sql_types::{Array, Int8, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{JobRow, JobStatus};

/// The actor the runners record their own changes to a job as.
pub const RUNNER_ACTOR: &str = "jobs";

/// A job to start.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub organization_id: Option<Uuid>,
    pub kind: String,
    pub parameters: Value,
    pub max_attempts: i32,
    /// `user:<id>`, `operator:<name>`, `schedule:<name>`.
    pub created_by: String,
    /// The schedule that fires it and the time it is due: one job per pair, ever.
    pub schedule: Option<(String, OffsetDateTime)>,
}

/// Records `action` on `job` in its organisation's audit trail (nothing for a platform job),
/// as `ctx` or, without one, as the runners. In a system-scope transaction the tenant is set
/// to the job's organisation first.
pub(crate) async fn audit(
    tx: &mut Tx,
    ctx: Option<&RequestCtx>,
    action: &str,
    before: Option<&JobRow>,
    after: &JobRow,
) -> Result<(), DbError> {
    audit_in(tx, &mut None, ctx, action, before, after).await
}

/// [`audit`], where `tenant` is the organisation the system-scope transaction already acts for
/// (set again only when it changes: one round trip less per entry of a batch).
async fn audit_in(
    tx: &mut Tx,
    tenant: &mut Option<Uuid>,
    ctx: Option<&RequestCtx>,
    action: &str,
    before: Option<&JobRow>,
    after: &JobRow,
) -> Result<(), DbError> {
    let Some(org) = after.organization_id else { return Ok(()) };
    let runner;
    let ctx = match ctx {
        Some(ctx) => ctx,
        None => {
            if *tenant != Some(org) {
                tx.set_tenant(org).await?;
                *tenant = Some(org);
            }
            runner = RequestCtx::system(org, RUNNER_ACTOR);
            &runner
        }
    };
    record_change(tx, ctx, action, "job", after.id, before.map_or(Value::Null, JobRow::snapshot), after.snapshot())
        .await
}

/// Adds a job to the queue in `tx` (the caller's transaction, so that a job and the change that
/// asks for it commit together), recorded as created by `ctx` (or the runners). `None` when
/// its schedule already started a job for that time.
pub async fn enqueue(tx: &mut Tx, ctx: Option<&RequestCtx>, job: NewJob) -> Result<Option<JobRow>, DbError> {
    let (schedule_name, scheduled_for) = job.schedule.clone().unzip();
    let row: Option<JobRow> = diesel::insert_into(jobs::table)
        .values((
            jobs::id.eq(new_id()),
            jobs::organization_id.eq(job.organization_id),
            jobs::kind.eq(&job.kind),
            jobs::parameters.eq(&job.parameters),
            jobs::max_attempts.eq(job.max_attempts.max(1)),
            jobs::created_by.eq(&job.created_by),
            jobs::schedule_name.eq(schedule_name),
            jobs::scheduled_for.eq(scheduled_for),
            jobs::run_after.eq(timefmt::now()),
        ))
        .on_conflict_do_nothing()
        .returning(JobRow::as_returning())
        .get_result(tx.conn())
        .await
        .optional()?;
    if let Some(row) = &row {
        audit(tx, ctx, "create", None, row).await?;
        metrics::counter!("custos_jobs_created_total", "kind" => row.kind.clone()).increment(1);
    }
    Ok(row)
}

#[derive(QueryableByName)]
struct Picked {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    status: String,
}

/// Claims up to `limit` due jobs of `kinds` (queued, or interrupted and so resumed) for
/// `runner`, under a lease of `lease`, and records each one's start or resumption.
pub(crate) async fn claim(
    db: &Db,
    runner: Uuid,
    lease: Duration,
    kinds: &[String],
    limit: i64,
    only: Option<Uuid>,
) -> Result<Vec<JobRow>, DbError> {
    let mut tx = db.begin_system().await?;
    // SKIP LOCKED: replicas claiming at once each take different rows, never waiting on one
    // another; the partial index `jobs_claimable` serves the order. The rows stay locked
    // until this transaction ends.
    let picked: Vec<Picked> = diesel::sql_query(
        "SELECT id, status FROM jobs
          WHERE status IN ('queued', 'interrupted') AND run_after <= now() AND kind = ANY($1)
            AND ($2::uuid IS NULL OR id = $2)
          ORDER BY run_after, id
          LIMIT $3
          FOR UPDATE SKIP LOCKED",
    )
    .bind::<Array<Text>, _>(kinds)
    .bind::<diesel::sql_types::Nullable<SqlUuid>, _>(only)
    .bind::<Int8, _>(limit)
    .load(tx.conn())
    .await?;
    if picked.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let resumed: Vec<Uuid> = picked.iter().filter(|p| p.status == "interrupted").map(|p| p.id).collect();
    let ids: Vec<Uuid> = picked.iter().map(|p| p.id).collect();
    let now = timefmt::now();
    let rows: Vec<JobRow> = diesel::update(jobs::table.filter(jobs::id.eq_any(&ids)))
        .set((
            jobs::status.eq(JobStatus::Running),
            jobs::runner.eq(Some(runner)),
            jobs::attempts.eq(jobs::attempts + 1),
            jobs::takeovers.eq(diesel::dsl::sql::<diesel::sql_types::Integer>("takeovers + CASE WHEN id = ANY(")
                .bind::<Array<SqlUuid>, _>(resumed.clone())
                .sql(") THEN 1 ELSE 0 END")),
            jobs::lease_expires_at.eq(Some(now + lease)),
            jobs::heartbeat_at.eq(Some(now)),
            jobs::started_at.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(
                "coalesce(started_at, now())",
            )),
            jobs::updated_at.eq(now),
        ))
        .returning(JobRow::as_returning())
        .get_results(tx.conn())
        .await?;
    let mut rows = rows;
    rows.sort_by_key(|r| r.organization_id);
    let mut tenant = None;
    for row in &rows {
        let resumption = resumed.contains(&row.id);
        let mut before = row.clone();
        before.status = if resumption { JobStatus::Interrupted } else { JobStatus::Queued };
        audit_in(&mut tx, &mut tenant, None, if resumption { "resume" } else { "start" }, Some(&before), row).await?;
        if resumption {
            metrics::counter!("custos_job_lease_takeovers_total", "kind" => row.kind.clone()).increment(1);
        }
    }
    tx.commit().await?;
    Ok(rows)
}

/// Renews `runner`'s lease on job `id` and writes its progress. `None` once the runner no
/// longer holds the job; otherwise whether an admin asked to cancel it.
pub(crate) async fn heartbeat(
    db: &Db,
    id: Uuid,
    runner: Uuid,
    lease: Duration,
    progress: f64,
    counters: Value,
) -> Result<Option<bool>, DbError> {
    let mut tx = db.begin_system().await?;
    let now = timefmt::now();
    let cancel: Option<Option<OffsetDateTime>> = diesel::update(
        jobs::table.filter(jobs::id.eq(id)).filter(jobs::runner.eq(runner)).filter(jobs::status.eq(JobStatus::Running)),
    )
    .set((
        jobs::lease_expires_at.eq(now + lease),
        jobs::heartbeat_at.eq(now),
        jobs::progress.eq(progress),
        jobs::counters.eq(counters),
        jobs::updated_at.eq(now),
    ))
    .returning(jobs::cancel_requested_at)
    .get_result(tx.conn())
    .await
    .optional()?;
    tx.commit().await?;
    Ok(cancel.map(|c| c.is_some()))
}

/// How a run ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Succeeded(Value),
    Failed(String),
    Cancelled,
    /// Queued again, not before `after`.
    Retry {
        error: String,
        after: Duration,
    },
    /// Let go unfinished (the runner is shutting down): the next claim resumes it.
    Released,
}

/// Ends a run as `ending` says and records it; `None` when the runner no longer held the job
/// (another took it over: its outcome is the other's to write).
pub(crate) async fn finish(db: &Db, ending: &Ending) -> Result<Option<JobRow>, DbError> {
    Ok(finish_all(db, &[ending]).await?.pop().flatten())
}

/// A run's end, to be written.
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub job: JobRow,
    pub runner: Uuid,
    pub outcome: Outcome,
    pub progress: f64,
    pub counters: Value,
}

/// Writes several runs' ends in one system-scope transaction (a runner finishing many short
/// jobs pays one `BEGIN`/`COMMIT` for all of them); each one's row as it ended, or `None` where
/// the runner no longer held the job.
pub(crate) async fn finish_all(db: &Db, endings: &[&Ending]) -> Result<Vec<Option<JobRow>>, DbError> {
    let mut tx = db.begin_system().await?;
    let mut tenant = None;
    let mut ended = Vec::with_capacity(endings.len());
    for ending in endings {
        ended.push(finish_in(&mut tx, &mut tenant, ending).await?);
    }
    tx.commit().await?;
    Ok(ended)
}

/// What ending a run changes in its row: `None` leaves a column as it is, `Some(None)` clears it.
#[derive(AsChangeset)]
#[diesel(table_name = jobs)]
struct EndChanges {
    status: JobStatus,
    progress: f64,
    counters: Value,
    updated_at: OffsetDateTime,
    result: Option<Option<Value>>,
    error: Option<Option<String>>,
    finished_at: Option<Option<OffsetDateTime>>,
    run_after: Option<OffsetDateTime>,
    runner: Option<Option<Uuid>>,
    lease_expires_at: Option<Option<OffsetDateTime>>,
}

async fn finish_in(tx: &mut Tx, tenant: &mut Option<Uuid>, ending: &Ending) -> Result<Option<JobRow>, DbError> {
    let Ending { job, runner, outcome, progress, counters } = ending;
    let now = timefmt::now();
    let mut changes = EndChanges {
        status: JobStatus::Running,
        progress: *progress,
        counters: counters.clone(),
        updated_at: now,
        result: None,
        error: None,
        finished_at: None,
        run_after: None,
        runner: None,
        // No lease once a runner lets go, whatever the outcome.
        lease_expires_at: Some(None),
    };
    let action = match outcome {
        Outcome::Succeeded(result) => {
            (changes.status, changes.progress) = (JobStatus::Succeeded, 1.0);
            (changes.result, changes.error, changes.finished_at) =
                (Some(Some(result.clone())), Some(None), Some(Some(now)));
            "succeed"
        }
        Outcome::Failed(error) => {
            changes.status = JobStatus::Failed;
            (changes.error, changes.finished_at) = (Some(Some(error.clone())), Some(Some(now)));
            "fail"
        }
        Outcome::Cancelled => {
            changes.status = JobStatus::Cancelled;
            changes.finished_at = Some(Some(now));
            "cancel"
        }
        Outcome::Retry { error, after } => {
            changes.status = JobStatus::Queued;
            (changes.error, changes.run_after, changes.runner) =
                (Some(Some(error.clone())), Some(now + *after), Some(None));
            "retry"
        }
        Outcome::Released => {
            changes.status = JobStatus::Interrupted;
            (changes.run_after, changes.runner) = (Some(now), Some(None));
            "interrupt"
        }
    };
    // Only while this runner still holds it: one that lost the job writes nothing.
    let held = jobs::table
        .filter(jobs::id.eq(job.id))
        .filter(jobs::runner.eq(*runner))
        .filter(jobs::status.eq(JobStatus::Running));
    let ended: Option<JobRow> =
        diesel::update(held).set(&changes).returning(JobRow::as_returning()).get_result(tx.conn()).await.optional()?;
    let Some(row) = ended else { return Ok(None) };
    audit_in(tx, tenant, None, action, Some(job), &row).await?;
    Ok(Some(row))
}

/// Marks the running jobs whose lease lapsed (their runner died or lost the database) as
/// interrupted, for any runner to resume — or as cancelled, when an admin asked to cancel one
/// its dead runner could no longer stop; how many.
pub(crate) async fn interrupt_lapsed(db: &Db) -> Result<usize, DbError> {
    let mut tx = db.begin_system().await?;
    let lapsed =
        || jobs::table.filter(jobs::status.eq(JobStatus::Running)).filter(jobs::lease_expires_at.lt(diesel::dsl::now));
    let mut cancelled: Vec<JobRow> = diesel::update(lapsed().filter(jobs::cancel_requested_at.is_not_null()))
        .set((
            jobs::status.eq(JobStatus::Cancelled),
            jobs::runner.eq(None::<Uuid>),
            jobs::lease_expires_at.eq(None::<OffsetDateTime>),
            jobs::finished_at.eq(Some(timefmt::now())),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .returning(JobRow::as_returning())
        .get_results(tx.conn())
        .await?;
    let mut interrupted: Vec<JobRow> = diesel::update(lapsed())
        .set((
            jobs::status.eq(JobStatus::Interrupted),
            jobs::runner.eq(None::<Uuid>),
            jobs::run_after.eq(diesel::dsl::now),
            jobs::updated_at.eq(diesel::dsl::now),
        ))
        .returning(JobRow::as_returning())
        .get_results(tx.conn())
        .await?;
    cancelled.sort_by_key(|r| r.organization_id);
    interrupted.sort_by_key(|r| r.organization_id);
    let mut tenant = None;
    for (action, rows) in [("cancel", &cancelled), ("interrupt", &interrupted)] {
        for row in rows {
            let mut before = row.clone();
            before.status = JobStatus::Running;
            audit_in(&mut tx, &mut tenant, None, action, Some(&before), row).await?;
        }
    }
    tx.commit().await?;
    Ok(cancelled.len() + interrupted.len())
}

/// Jobs waiting to run (queued or interrupted, due or not), for the queue-depth gauge.
pub(crate) async fn depth(db: &Db) -> Result<i64, DbError> {
    let mut tx = db.begin_system().await?;
    let n = jobs::table
        .filter(jobs::status.eq_any([JobStatus::Queued, JobStatus::Interrupted]))
        .count()
        .get_result(tx.conn())
        .await?;
    tx.commit().await?;
    Ok(n)
}
