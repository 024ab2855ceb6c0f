//! Background work: the jobs and schedules API, and `custos jobs list|show|run|schedules`.
//! The job runner and the scheduler themselves are composed from every domain's kinds and
//! schedules in [`super::compose_these`].

use std::io::IsTerminal;

use clap::Subcommand;
use custos_core::filter::Choice;
use custos_jobs::model::{JobRow, JobStatus, ScheduleRow};
use custos_jobs::{Runner, Scope};
use custos_proto::v1::jobs_service_server::JobsServiceServer;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use super::{Domain, GrpcService, Serving};
use crate::cli::{DbArgs, app_for, audit_app_for, problem};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::{ApiDescription, ValueSet};
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "jobs", serve, cli: Some(crate::domain_cli!(JobsCommands, run, |_| false)) };

const JOBS: &str = "/api/compliance/jobs/";
const JOB_ID: &str = "/api/compliance/jobs/{id}/";
const SCHEDULES: &str = "/api/compliance/schedules/";
const SCHEDULE: &str = "/api/compliance/schedules/{name}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.jobs;
    Serving {
        endpoints: vec![
            Endpoint::get(
                JOBS,
                "List the organisation's jobs (admins, auditors), or the platform's (scope=system, admins)",
                op!(s, list_jobs),
            )
            .list(),
            Endpoint::get(JOB_ID, "Get a job: its status, progress, counters and outcome", op!(s, get_job)),
            Endpoint::post(
                "/api/compliance/jobs/{id}/cancel/",
                "Cancel a job (admins): a waiting one at once, a running one at its next heartbeat",
                op!(s, cancel_job),
            )
            .fails(StatusCode::CONFLICT, "The job has already finished"),
            Endpoint::get(SCHEDULES, "List the organisation's schedules (admins, auditors)", op!(s, list_schedules))
                .list(),
            Endpoint::put(SCHEDULE, "Change when a schedule runs, or turn it off (admins)", op!(s, update_schedule))
                .body_field("schedule"),
            Endpoint::patch(SCHEDULE, "Change part of a schedule (admins)", op!(s, update_schedule))
                .body_field("schedule"),
            Endpoint::post(
                "/api/compliance/schedules/{name}/run/",
                "Start the schedule's job now (admins)",
                op!(s, run_schedule),
            )
            .created(),
        ],
        description: ApiDescription {
            value_sets: vec![
                ValueSet::of::<JobStatus>(&["Job.status", "ListJobsRequest.status"]),
                ValueSet::of::<custos_jobs::model::JobScope>(&["Job.scope", "ListJobsRequest.scope", "Schedule.scope"]),
            ],
            required: vec!["ScheduleInput.cron"],
        },
        grpc: vec![GrpcService::new(JobsServiceServer::new(app.jobs.clone()))],
        ..Serving::default()
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommands {
    /// Background jobs: list, show, run a schedule's job now, list schedules.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs of every organisation and the platform's, newest first.
    List {
        /// Only this organisation's (its slug).
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// queued, running, succeeded, failed, cancelled or interrupted.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one job as JSON.
    Show {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Start a schedule's job now and run it here to its end, with its progress (a progress
    /// bar on a terminal, a line a second otherwise); the exit status is 1 unless it succeeds.
    Run {
        /// The schedule's name (see `custos jobs schedules`).
        name: String,
        /// The organisation (its slug), for a schedule that runs per organisation.
        #[arg(long)]
        org: Option<String>,
        /// Only queue it, for a server to run.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List every schedule: the platform's and each organisation's.
    Schedules {
        #[command(flatten)]
        db: DbArgs,
    },
}

async fn run(JobsCommands::Jobs(command): JobsCommands) -> anyhow::Result<()> {
    match command {
        JobsCommand::List { org, kind, status, limit, db } => {
            let app = app_for(&db).await?;
            let org = match org {
                Some(slug) => Some(app.identity.organization(&slug).await.map_err(problem)?.0),
                None => None,
            };
            let rows = app
                .jobs
                .operator_jobs(org, kind.as_deref(), status.as_deref(), limit.clamp(1, 10_000))
                .await
                .map_err(problem)?;
            println!("{:<36}  {:<28}  {:<11}  {:>5}  {:<36}  created", "id", "kind", "status", "done", "organisation");
            for row in rows {
                println!(
                    "{:<36}  {:<28}  {:<11}  {:>4}%  {:<36}  {}",
                    row.id,
                    row.kind,
                    row.status.as_str(),
                    (row.progress * 100.0).round(),
                    row.organization_id.map_or_else(|| "(platform)".to_owned(), |o| o.to_string()),
                    custos_core::timefmt::timestamp(row.created_at)
                );
            }
        }
        JobsCommand::Show { id, db } => {
            let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| anyhow::anyhow!("{id:?} is not a job id"))?;
            let app = app_for(&db).await?;
            let row = app.jobs.operator_job(id).await.map_err(problem)?;
            println!("{}", serde_json::to_string_pretty(&shown(&row))?);
        }
        JobsCommand::Schedules { db } => {
            let (app, _) = composed(&db).await?;
            app.jobs.sync_schedules().await.map_err(problem)?;
            let rows = app.jobs.operator_schedules().await.map_err(problem)?;
            println!("{:<28}  {:<14}  {:<8}  {:<36}  next run", "name", "cron", "enabled", "organisation");
            for ScheduleRow { name, cron, enabled, organization_id, next_run_at, .. } in rows {
                println!(
                    "{name:<28}  {cron:<14}  {:<8}  {:<36}  {}",
                    if enabled { "yes" } else { "no" },
                    organization_id.map_or_else(|| "(platform)".to_owned(), |o| o.to_string()),
                    next_run_at.filter(|_| enabled).map(custos_core::timefmt::timestamp).unwrap_or_default()
                );
            }
        }
        JobsCommand::Run { name, org, detach, db } => run_schedule(&name, org, detach, &db).await?,
    }
    Ok(())
}

/// `custos jobs run NAME`: queues the schedule's job now and (unless `detach`) runs it in this
/// process with its progress, or follows it where a server took it; an error unless it succeeded.
pub(crate) async fn run_schedule(name: &str, org: Option<String>, detach: bool, db: &DbArgs) -> anyhow::Result<()> {
    let (app, config) = composed(db).await?;
    let registry = app.jobs.registry();
    let def = registry.defs.iter().find(|d| d.name == name).ok_or_else(|| {
        let names: Vec<&str> = registry.defs.iter().map(|d| d.name).collect();
        anyhow::anyhow!("no schedule {name:?}; the schedules are: {}", names.join(", "))
    })?;
    let org = match (def.scope, org) {
        (Scope::Organization, Some(slug)) => Some(app.identity.organization(&slug).await.map_err(problem)?),
        (_, org) => org.map(|slug| (uuid::Uuid::nil(), slug)),
    };
    let job = app.jobs.enqueue_schedule_as_operator(name, org).await.map_err(problem)?;
    println!("job {} ({}) queued", job.id, job.kind);
    if detach {
        return Ok(());
    }
    run_to_end(&app, &config, job).await
}

/// Runs a job a domain's command has queued (its id) here, to its end, as `jobs run` does.
pub(crate) async fn run_queued(id: &str, db: &DbArgs) -> anyhow::Result<()> {
    let (app, config) = composed(db).await?;
    let id = uuid::Uuid::parse_str(id.trim()).map_err(|_| anyhow::anyhow!("{id:?} is not a job id"))?;
    let job = app.jobs.operator_job(id).await.map_err(problem)?;
    run_to_end(&app, &config, job).await
}

/// Runs `job` here with its progress, shows it, and is an error unless it succeeded.
async fn run_to_end(app: &App, config: &Config, job: JobRow) -> anyhow::Result<()> {
    let registry = app.jobs.registry();
    let kinds: Vec<_> = registry.kinds.values().cloned().collect();
    let runner = Runner::new(app.db.clone(), kinds, config.jobs.runner.clone(), app.jobs.waker());
    let ended = run_here(app, &runner, job).await?;
    println!("{}", serde_json::to_string_pretty(&shown(&ended))?);
    if ended.status != JobStatus::Succeeded {
        anyhow::bail!("job {} ended {}", ended.id, ended.status.as_str());
    }
    Ok(())
}

/// The services with every domain's kinds and schedules registered (no runner started).
async fn composed(db: &DbArgs) -> anyhow::Result<(App, Config)> {
    // The server's signing key, where there is one (resuming a verification authenticates its
    // saved state with it); without, a job that needs it reports what it could not resume.
    let app = match audit_app_for(db).await {
        Ok(app) => app,
        Err(_) => app_for(db).await?,
    };
    let mut config = Config::from_env_with(Some(db.database_url.clone()))?;
    config.jobs.run = false;
    super::compose(&app, &config)?;
    Ok((app, config))
}

/// Runs `job` in this process (or, should a server have claimed it first, watches it there)
/// until it ends, showing its progress.
async fn run_here(app: &App, runner: &Runner, job: JobRow) -> anyhow::Result<JobRow> {
    let (progress, mut watched) = watch::channel((0.0, Value::Null));
    let terminal = std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::new(1000);
    if terminal {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let show = {
        let bar = bar.clone();
        let mut ticker = crate::cli::Ticker::new();
        move |fraction: f64, counters: &Value| {
            let counters = match counters {
                Value::Object(m) if !m.is_empty() => {
                    m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
                }
                _ => String::new(),
            };
            if terminal {
                bar.set_position((fraction * 1000.0) as u64);
                bar.set_message(counters);
            } else if ticker.due() {
                eprintln!("[{:>6.1}s] {:>5.1}% {counters}", ticker.seconds(), fraction * 100.0);
            }
        }
    };
    let mut show = show;
    let ended = loop {
        let running = runner.run_now(job.id, progress.clone());
        tokio::pin!(running);
        let ran = loop {
            tokio::select! {
                ran = &mut running => break ran.map_err(problem)?,
                changed = watched.changed() => {
                    if changed.is_ok() {
                        let (fraction, counters) = watched.borrow_and_update().clone();
                        show(fraction, &counters);
                    }
                }
            }
        };
        // Not claimable here (a server runs it, or it waits out a retry's backoff): follow it.
        let row = match ran {
            Some(row) => row,
            None => app.jobs.operator_job(job.id).await.map_err(problem)?,
        };
        show(row.progress, &row.counters);
        if row.status.is_final() {
            break row;
        }
        if let (JobStatus::Queued, Some(error)) = (row.status, &row.error) {
            bar.suspend(|| {
                eprintln!(
                    "attempt {} failed: {error}; retrying at {}",
                    row.attempts,
                    custos_core::timefmt::timestamp(row.run_after)
                )
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    bar.finish_and_clear();
    Ok(ended)
}

/// The operator's view of a job: everything, its organisation included.
fn shown(row: &JobRow) -> Value {
    // The JSON form embeds the job's documents (counters, parameters, result) as they are.
    let mut v = serde_json::to_value(row.to_pb()).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("organization_id".into(), row.organization_id.map(|o| o.to_string()).into());
    }
    v
}
