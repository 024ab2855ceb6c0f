//! The runner: claims due jobs, runs each under a renewed lease, and writes how it ended.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_db::{Db, DbError};
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use crate::error::JobError;
use crate::job::{Job, Kind, Progress, Stop};
use crate::model::JobRow;
use crate::queue::{self, Ending, Outcome};

/// How a runner works.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Jobs run at once by one runner (`CUSTOS_JOB_CONCURRENCY`).
    pub concurrency: usize,
    /// How often an idle runner looks for due jobs (`CUSTOS_JOB_POLL_MS`); a job started on
    /// the same server wakes it at once.
    pub poll: Duration,
    /// How long a job stays held without a heartbeat (`CUSTOS_JOB_LEASE_SECS`); heartbeats
    /// come every third of it. A job whose runner died is resumed about this long after.
    pub lease: Duration,
    /// The first retry's wait (`CUSTOS_JOB_RETRY_BASE_SECS`), doubled on each further attempt
    /// up to `retry_max`, with ±20% jitter so jobs failing together do not retry together.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            concurrency: 8,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(30),
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3600),
        }
    }
}

impl RunnerConfig {
    /// The wait before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let plain = self.retry_base.saturating_mul(1u32 << doublings.min(20)).min(self.retry_max);
        let jitter = 0.8 + rand::random::<f64>() * 0.4;
        plain.mul_f64(jitter)
    }
}

/// Runs jobs of the kinds it was given. Cheap to clone; [`Runner::run`] until shutdown.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    kinds: Arc<HashMap<String, Kind>>,
    config: RunnerConfig,
    wake: Arc<Notify>,
    id: Uuid,
    /// Where runs' ends go to be written together (see [`finisher`]).
    endings: mpsc::UnboundedSender<EndingToWrite>,
}

/// A run's end and where to answer how writing it went.
type EndingToWrite = (Ending, oneshot::Sender<Result<Option<JobRow>, DbError>>);

/// Most runs' ends written in one transaction.
const ENDINGS_PER_WRITE: usize = 64;

/// Writes the runs' ends as they come, as many as are waiting in one transaction (falling back
/// to one at a time should the batch fail, so that one bad row cannot hold back the others),
/// until every sender is gone.
async fn finisher(db: Db, mut endings: mpsc::UnboundedReceiver<EndingToWrite>) {
    while let Some(first) = endings.recv().await {
        let mut batch = vec![first];
        while batch.len() < ENDINGS_PER_WRITE {
            match endings.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // By organisation, so that a batch sets each tenant once.
        batch.sort_by_key(|(e, _)| e.job.organization_id);
        let all: Vec<&Ending> = batch.iter().map(|(e, _)| e).collect();
        match queue::finish_all(&db, &all).await {
            Ok(ended) => {
                for ((_, reply), ended) in batch.into_iter().zip(ended) {
                    let _ = reply.send(Ok(ended));
                }
            }
            Err(_) => {
                for (ending, reply) in batch {
                    let _ = reply.send(queue::finish(&db, &ending).await);
                }
            }
        }
    }
}

impl Runner {
    /// `wake`: notified when a job is queued on this server (see [`crate::JobsService::waker`]).
    pub fn new(db: Db, kinds: impl IntoIterator<Item = Kind>, config: RunnerConfig, wake: Arc<Notify>) -> Self {
        let kinds = kinds.into_iter().map(|k| (k.name.to_owned(), k)).collect();
        let (endings, pending) = mpsc::unbounded_channel();
        // It ends once the runner and its clones are gone (their senders with them).
        tokio::spawn(finisher(db.clone(), pending));
        Runner { db, kinds: Arc::new(kinds), config, wake, id: custos_core::new_id(), endings }
    }

    fn kind_names(&self) -> Vec<String> {
        self.kinds.keys().cloned().collect()
    }

    /// Until `shutdown`: claims due jobs while it has room, runs them, and every lease marks
    /// the jobs whose runners stopped as interrupted (any runner then resumes them). At
    /// shutdown the jobs it holds are stopped and released as interrupted, for the next runner.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let kinds = self.kind_names();
        if kinds.is_empty() {
            return;
        }
        let (halt, halted) = watch::channel(false);
        let mut running = JoinSet::new();
        let sweep_every = self.config.lease / 2;
        let mut swept: Option<Instant> = None;
        let mut claimed_at = Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            if swept.is_none_or(|at| at.elapsed() >= sweep_every) {
                swept = Some(Instant::now());
                match queue::interrupt_lapsed(&self.db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(jobs = n, "jobs whose runner stopped are marked interrupted, to resume"),
                    Err(e) => tracing::warn!(error = %e, "cannot sweep lapsed job leases"),
                }
                if let Ok(depth) = queue::depth(&self.db).await {
                    metrics::gauge!("custos_jobs_queue_depth").set(depth as f64);
                }
            }
            // Claim in batches: a claim is a transaction whatever its size, so a runner that
            // claimed one job per finished one would spend itself on claims. It claims when idle,
            // once half its slots are free, or at least once per poll whatever room it has (long
            // jobs holding most slots must not keep a due job waiting).
            let room = self.config.concurrency.saturating_sub(running.len());
            let mut claimed_all = false;
            let due =
                running.is_empty() || room * 2 >= self.config.concurrency || claimed_at.elapsed() >= self.config.poll;
            if room > 0 && due {
                claimed_at = Instant::now();
                match queue::claim(&self.db, self.id, self.config.lease, &kinds, room as i64, None).await {
                    Ok(rows) => {
                        claimed_all = !rows.is_empty() && rows.len() == room;
                        for row in rows {
                            running.spawn(self.clone().execute(row, halted.clone(), None));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim jobs"),
                }
            }
            // A full claim may have left more due jobs: look again as soon as there is room.
            if claimed_all && running.len() < self.config.concurrency {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = self.wake.notified() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {
                    while running.try_join_next().is_some() {}
                }
                _ = stopping(&mut shutdown) => break,
            }
        }
        let _ = halt.send(true);
        while running.join_next().await.is_some() {}
    }

    /// Claims job `id` if it is due and runs it here to its end, publishing its progress to
    /// `progress` as it goes (`custos jobs run`). `None` when it is not claimable (another
    /// runner holds it, or it has finished).
    pub async fn run_now(
        &self,
        id: Uuid,
        progress: watch::Sender<(f64, Value)>,
    ) -> Result<Option<JobRow>, custos_db::DbError> {
        let kinds = self.kind_names();
        let rows = queue::claim(&self.db, self.id, self.config.lease, &kinds, 1, Some(id)).await?;
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let (_halt, halted) = watch::channel(false);
        Ok(self.clone().execute(row, halted, Some(progress)).await)
    }

    /// Runs one claimed job to its end (or until it must stop) and writes the outcome; the
    /// row as it ended, `None` if another runner took it over.
    async fn execute(
        self,
        row: JobRow,
        mut halt: watch::Receiver<bool>,
        observer: Option<watch::Sender<(f64, Value)>>,
    ) -> Option<JobRow> {
        let started = Instant::now();
        let (stop, stopped) = watch::channel(None);
        let job = Job::new(row.clone(), self.db.clone(), self.id, self.config.lease, stopped);
        let Some(kind) = self.kinds.get(&row.kind).cloned() else {
            // Claimed only by name, so this is unreachable; released for a runner that knows it.
            return self.end(&row, &job, Outcome::Released, started).await;
        };
        tracing::info!(job = %row.id, kind = %row.kind, attempt = row.attempts, takeovers = row.takeovers, "job started");
        if row.attempts > row.max_attempts {
            let error = format!("gave up: its runner stopped during each of its {} attempts", row.max_attempts);
            return self.end(&row, &job, Outcome::Failed(error), started).await;
        }
        // On a task of its own, so that a panic fails this job alone; aborted (rolling back
        // the step in progress) when the job must stop.
        // Dropped with this future (a runner that is itself stopped), it is aborted too.
        let mut work = AbortOnDropHandle::new(tokio::spawn(kind.start(job.clone())));
        let beat = self.config.lease / 3;
        let mut next_beat = tokio::time::Instant::now() + beat;
        let tick = Duration::from_millis(200);
        let outcome = loop {
            let wake = if observer.is_some() { next_beat.min(tokio::time::Instant::now() + tick) } else { next_beat };
            tokio::select! {
                done = &mut work => break match done {
                    Ok(Ok(result)) => Outcome::Succeeded(result),
                    Ok(Err(e)) => self.failure(&row, e),
                    Err(e) if e.is_panic() => self.failure(&row, JobError::retry("the job panicked")),
                    Err(_) => Outcome::Released,
                },
                _ = tokio::time::sleep_until(wake) => {
                    if let Some(observer) = &observer {
                        let p = job.progress();
                        let _ = observer.send((p.fraction, Value::Object(p.counters)));
                    }
                    if tokio::time::Instant::now() < next_beat {
                        continue;
                    }
                    next_beat = tokio::time::Instant::now() + beat;
                    let p = job.progress();
                    match queue::heartbeat(&self.db, row.id, self.id, self.config.lease, p.fraction, Value::Object(p.counters)).await {
                        Ok(None) => {
                            let _ = stop.send(Some(Stop::LeaseLost));
                            work.abort();
                            tracing::warn!(job = %row.id, "lost the job's lease to another runner; stopped");
                            return None;
                        }
                        Ok(Some(true)) => {
                            let _ = stop.send(Some(Stop::Cancelled));
                            work.abort();
                            break Outcome::Cancelled;
                        }
                        Ok(Some(false)) => {}
                        // The database is unreachable: keep working; the lease decides.
                        Err(e) => tracing::warn!(job = %row.id, error = %e, "job heartbeat failed"),
                    }
                }
                _ = stopping(&mut halt) => {
                    work.abort();
                    break Outcome::Released;
                }
            }
        };
        self.end(&row, &job, outcome, started).await
    }

    fn failure(&self, row: &JobRow, error: JobError) -> Outcome {
        match error {
            JobError::Cancelled => Outcome::Cancelled,
            JobError::LeaseLost => Outcome::Released,
            JobError::Fatal(e) => Outcome::Failed(e),
            JobError::Retry(e) if row.attempts < row.max_attempts => {
                Outcome::Retry { error: e, after: self.config.backoff(row.attempts) }
            }
            JobError::Retry(e) => Outcome::Failed(format!("{e} (gave up after {} attempts)", row.attempts)),
        }
    }

    async fn end(&self, row: &JobRow, job: &Job, outcome: Outcome, started: Instant) -> Option<JobRow> {
        let Progress { fraction, counters } = job.progress();
        let label = match &outcome {
            Outcome::Succeeded(_) => "succeeded",
            Outcome::Failed(_) => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Retry { .. } => "retried",
            Outcome::Released => "interrupted",
        };
        let ending = Ending {
            job: row.clone(),
            runner: self.id,
            outcome: outcome.clone(),
            progress: fraction,
            counters: Value::Object(counters),
        };
        let (reply, written) = oneshot::channel();
        let ended = match self.endings.send((ending, reply)) {
            Ok(()) => written.await.unwrap_or_else(|_| Err(DbError::Unavailable("the job finisher stopped".into()))),
            Err(mpsc::error::SendError((ending, _))) => queue::finish(&self.db, &ending).await,
        };
        metrics::counter!("custos_jobs_total", "kind" => row.kind.clone(), "outcome" => label).increment(1);
        metrics::histogram!("custos_job_duration_seconds", "kind" => row.kind.clone())
            .record(started.elapsed().as_secs_f64());
        match ended {
            Ok(Some(ended)) => {
                match &outcome {
                    Outcome::Failed(e) => tracing::warn!(job = %row.id, kind = %row.kind, error = %e, "job failed"),
                    Outcome::Retry { error, after } => {
                        tracing::warn!(job = %row.id, kind = %row.kind, error = %error, retry_in = ?after, "job failed; will retry")
                    }
                    _ => tracing::info!(job = %row.id, kind = %row.kind, outcome = label, "job ended"),
                }
                Some(ended)
            }
            Ok(None) => None,
            Err(e) => {
                // Its lease lapses and another runner resumes it.
                tracing::warn!(job = %row.id, error = %e, "cannot record the job's end");
                None
            }
        }
    }
}

/// Resolves once `flag` is set (the guard `wait_for` answers is not held across the caller's
/// awaits: it is not `Send`).
async fn stopping(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}
