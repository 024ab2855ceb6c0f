//! Rows and value sets of jobs and schedules.

use custos_core::filter::Choice;
use custos_core::timefmt;
use custos_db::choice;
use custos_db::schema::{job_schedules, jobs};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

choice! {
    /// Where a job stands. `interrupted`: its runner stopped holding it (crashed, shut down);
    /// the next runner to claim it resumes it.
    pub enum JobStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
        Interrupted = "interrupted",
    }
}

impl JobStatus {
    /// Finished for good: nothing will run it again.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
    }
}

choice! {
    /// Whose a job or schedule is: one organisation's, or the platform's own.
    pub enum JobScope {
        Organization = "organization",
        System = "system",
    }
}

/// A row of `jobs`.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = jobs)]
pub struct JobRow {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    pub kind: String,
    pub parameters: Value,
    pub status: JobStatus,
    pub progress: f64,
    pub counters: Value,
    pub checkpoint: Option<Value>,
    pub result: Option<Value>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub takeovers: i32,
    pub error: Option<String>,
    pub run_after: OffsetDateTime,
    pub runner: Option<Uuid>,
    pub lease_expires_at: Option<OffsetDateTime>,
    pub heartbeat_at: Option<OffsetDateTime>,
    pub cancel_requested_at: Option<OffsetDateTime>,
    pub cancel_requested_by: Option<String>,
    pub created_by: String,
    pub schedule_name: Option<String>,
    pub scheduled_for: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

fn ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(timefmt::timestamp)
}

impl JobRow {
    pub fn scope(&self) -> JobScope {
        if self.organization_id.is_some() { JobScope::Organization } else { JobScope::System }
    }

    /// The API's form of the row.
    pub fn to_pb(&self) -> pb::Job {
        pb::Job {
            id: self.id.to_string(),
            kind: self.kind.clone(),
            scope: self.scope().as_str().into(),
            status: self.status.as_str().into(),
            progress: self.progress,
            counters: self.counters.to_string(),
            parameters: self.parameters.to_string(),
            result: self.result.clone().unwrap_or(Value::Null).to_string(),
            attempts: self.attempts,
            max_attempts: self.max_attempts,
            takeovers: self.takeovers,
            error: self.error.clone(),
            created_by: self.created_by.clone(),
            schedule: self.schedule_name.clone(),
            scheduled_for: ts(self.scheduled_for),
            created_at: timefmt::timestamp(self.created_at),
            started_at: ts(self.started_at),
            finished_at: ts(self.finished_at),
            run_after: timefmt::timestamp(self.run_after),
            cancel_requested_at: ts(self.cancel_requested_at),
            cancel_requested_by: self.cancel_requested_by.clone(),
            heartbeat_at: ts(self.heartbeat_at),
        }
    }

    /// What the audit trail records of a job.
    pub fn snapshot(&self) -> Value {
        serde_json::json!({
            "kind": self.kind,
            "status": self.status.as_str(),
            "parameters": self.parameters,
            "attempts": self.attempts,
            "takeovers": self.takeovers,
            "progress": self.progress,
            "counters": self.counters,
            "error": self.error,
            "schedule": self.schedule_name,
            "scheduled_for": ts(self.scheduled_for),
            "created_by": self.created_by,
        })
    }
}

/// A platform job as an organisation's admins see it: kind, status and times.
pub fn system_job_pb(
    id: Uuid,
    kind: String,
    status: JobStatus,
    created_at: OffsetDateTime,
    started_at: Option<OffsetDateTime>,
    finished_at: Option<OffsetDateTime>,
) -> pb::Job {
    pb::Job {
        id: id.to_string(),
        kind,
        scope: JobScope::System.as_str().into(),
        status: status.as_str().into(),
        counters: "{}".into(),
        parameters: "{}".into(),
        result: "null".into(),
        created_by: "system".into(),
        created_at: timefmt::timestamp(created_at),
        started_at: ts(started_at),
        finished_at: ts(finished_at),
        run_after: timefmt::timestamp(created_at),
        ..pb::Job::default()
    }
}

/// A row of `job_schedules`.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = job_schedules)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub organization_id: Option<Uuid>,
    pub name: String,
    pub kind: String,
    pub cron: String,
    pub enabled: bool,
    pub customized: bool,
    pub next_run_at: Option<OffsetDateTime>,
    pub last_run_at: Option<OffsetDateTime>,
    pub last_job_id: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub updated_by: Option<String>,
}

impl ScheduleRow {
    pub fn to_pb(&self, default_cron: &str, description: &str) -> pb::Schedule {
        pb::Schedule {
            name: self.name.clone(),
            kind: self.kind.clone(),
            cron: self.cron.clone(),
            enabled: self.enabled,
            scope: if self.organization_id.is_some() { JobScope::Organization } else { JobScope::System }
                .as_str()
                .into(),
            default_cron: default_cron.into(),
            customized: self.customized,
            next_run_at: ts(self.next_run_at).filter(|_| self.enabled),
            last_run_at: ts(self.last_run_at),
            last_job_id: self.last_job_id.map(|id| id.to_string()),
            description: description.into(),
            updated_by: self.updated_by.clone(),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    pub fn snapshot(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "kind": self.kind,
            "cron": self.cron,
            "enabled": self.enabled,
            "customized": self.customized,
        })
    }
}
