//! What a domain writes to define a kind of job ([`Kind`]), and what its code holds while one
//! runs ([`Job`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_core::{RequestCtx, timefmt};
use custos_db::schema::{job_steps, jobs};
use custos_db::{Db, Tx};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::JobError;
use crate::model::{JobRow, JobStatus};

pub use crate::model::JobScope as Scope;

type RunFn = Arc<dyn Fn(Job) -> BoxFuture<'static, Result<Value, JobError>> + Send + Sync>;

/// A kind of job: its name, whose it is, how often it is tried, and what it does.
#[derive(Clone)]
pub struct Kind {
    /// `<domain>.<what>`, e.g. `audit.retention`.
    pub name: &'static str,
    /// [`Scope::Organization`]: each job acts for one organisation (a schedule of this kind
    /// starts one per organisation). [`Scope::System`]: the platform's own work.
    pub scope: Scope,
    pub description: &'static str,
    /// Attempts before a failing job is given up (default 5).
    pub max_attempts: i32,
    run: RunFn,
}

impl Kind {
    pub fn new<F, Fut>(name: &'static str, scope: Scope, description: &'static str, run: F) -> Self
    where
        F: Fn(Job) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        Kind { name, scope, description, max_attempts: 5, run: Arc::new(move |job| Box::pin(run(job))) }
    }

    pub fn attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    pub(crate) fn start(&self, job: Job) -> BoxFuture<'static, Result<Value, JobError>> {
        (self.run)(job)
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind").field("name", &self.name).field("scope", &self.scope).finish()
    }
}

/// Why a running job must stop before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Cancelled,
    LeaseLost,
}

impl Stop {
    pub(crate) fn error(self) -> JobError {
        match self {
            Stop::Cancelled => JobError::Cancelled,
            Stop::LeaseLost => JobError::LeaseLost,
        }
    }
}

/// A job as its kind's code sees it while it runs: its input, where it stopped last time, and
/// the ways to report progress, save a checkpoint and do steps exactly once. Cheap to clone.
#[derive(Clone)]
pub struct Job {
    inner: Arc<Inner>,
}

struct Inner {
    row: JobRow,
    db: Db,
    runner: Uuid,
    lease: Duration,
    progress: Mutex<Progress>,
    stop: watch::Receiver<Option<Stop>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub fraction: f64,
    pub counters: Map<String, Value>,
}

impl Job {
    pub(crate) fn new(row: JobRow, db: Db, runner: Uuid, lease: Duration, stop: watch::Receiver<Option<Stop>>) -> Job {
        let counters = row.counters.as_object().cloned().unwrap_or_default();
        let progress = Mutex::new(Progress { fraction: row.progress, counters });
        Job { inner: Arc::new(Inner { row, db, runner, lease, progress, stop }) }
    }

    pub fn id(&self) -> Uuid {
        self.inner.row.id
    }

    pub fn kind(&self) -> &str {
        &self.inner.row.kind
    }

    /// Who started the job: `user:<id>`, `operator:<name>` or `schedule:<name>`.
    pub fn created_by(&self) -> &str {
        &self.inner.row.created_by
    }

    /// The organisation the job belongs to (`None`: a platform job).
    pub fn organization(&self) -> Option<Uuid> {
        self.inner.row.organization_id
    }

    /// This run's attempt, from 1.
    pub fn attempt(&self) -> i32 {
        self.inner.row.attempts
    }

    pub fn parameters(&self) -> &Value {
        &self.inner.row.parameters
    }

    /// The parameters as `T`; unreadable parameters fail the job for good.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.inner.row.parameters.clone())
            .map_err(|e| JobError::fatal(format!("invalid parameters: {e}")))
    }

    /// What the kind last saved with [`Job::save_checkpoint`], if anything.
    pub fn checkpoint<T: DeserializeOwned>(&self) -> Option<T> {
        self.inner.row.checkpoint.clone().and_then(|v| serde_json::from_value(v).ok())
    }

    /// The context the job's work for `organization` runs under: a system actor named after the
    /// job (`system:<kind>/<id>`) with full rights in that organisation only.
    pub fn ctx(&self, organization: Uuid) -> RequestCtx {
        RequestCtx::system(organization, format!("{}/{}", self.inner.row.kind, self.inner.row.id))
    }

    /// How far the job has got, 0–1 (written with the next heartbeat).
    pub fn set_progress(&self, fraction: f64) {
        if let Ok(mut p) = self.inner.progress.lock() {
            p.fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        }
    }

    /// Adds `n` to the counter `name` (written with the next heartbeat).
    pub fn count(&self, name: &str, n: i64) {
        if let Ok(mut p) = self.inner.progress.lock() {
            let now = p.counters.get(name).and_then(Value::as_i64).unwrap_or(0);
            p.counters.insert(name.to_owned(), Value::from(now + n));
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.inner.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// `Err` once the job must stop: cancelled by an admin, or taken over by another runner.
    pub fn check(&self) -> Result<(), JobError> {
        match *self.inner.stop.borrow() {
            Some(stop) => Err(stop.error()),
            None => Ok(()),
        }
    }

    /// Saves where the job has got (with its progress and counters), for a runner that takes
    /// it over to resume from; refused once this runner no longer holds the job.
    pub async fn save_checkpoint(&self, checkpoint: &impl Serialize) -> Result<(), JobError> {
        self.check()?;
        let value = serde_json::to_value(checkpoint).map_err(|e| JobError::fatal(format!("checkpoint: {e}")))?;
        let progress = self.progress();
        let mut tx = self.inner.db.begin_system().await?;
        let now = timefmt::now();
        let saved = diesel::update(
            jobs::table
                .filter(jobs::id.eq(self.id()))
                .filter(jobs::runner.eq(self.inner.runner))
                .filter(jobs::status.eq(JobStatus::Running)),
        )
        .set((
            jobs::checkpoint.eq(Some(value)),
            jobs::progress.eq(progress.fraction),
            jobs::counters.eq(Value::Object(progress.counters)),
            jobs::heartbeat_at.eq(now),
            jobs::lease_expires_at.eq(now + self.inner.lease),
            jobs::updated_at.eq(now),
        ))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        if saved == 0 { Err(JobError::LeaseLost) } else { Ok(()) }
    }

    /// Does `step` once for this job, whoever runs it and however often it is resumed: the
    /// step's record (`job_steps`) is written first in the same transaction as the step's own
    /// changes, so either both commit or neither does; a step already recorded is skipped
    /// (`Ok(None)`). Two runners racing on one step (a runner that has not yet noticed it lost
    /// the job) serialise on the record's key, and the second finds it done. The transaction
    /// is `organization`'s tenant transaction, or a system one for `None`.
    ///
    /// Effects outside the database (a file removed from the blob store) are not undone by a
    /// rollback: a step doing one must be idempotent itself.
    pub async fn step<T>(
        &self,
        name: &str,
        organization: Option<Uuid>,
        step: impl AsyncFnOnce(&mut Tx) -> Result<T, JobError>,
    ) -> Result<Option<T>, JobError> {
        self.check()?;
        let mut tx = match organization {
            Some(org) => self.inner.db.begin(org).await?,
            None => self.inner.db.begin_system().await?,
        };
        let recorded = diesel::insert_into(job_steps::table)
            .values((
                job_steps::job_id.eq(self.id()),
                job_steps::step.eq(name),
                job_steps::organization_id.eq(organization),
            ))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
        if recorded == 0 {
            return Ok(None);
        }
        let out = step(&mut tx).await?;
        // Stopped meanwhile: leave the step to whoever holds the job now.
        self.check()?;
        tx.commit().await?;
        Ok(Some(out))
    }
}
