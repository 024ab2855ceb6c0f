//! The overdue watch (the `workflow-overdue-watch` schedule, daily at 06:30 UTC per
//! organisation): an instance in progress past its due date or its current step's deadline is
//! announced once per deadline — a `workflow.overdue` event for the notification channels and a
//! `workflow_overdue` entry in the audit trail, in one transaction. Moving on to a step with a
//! deadline of its own and missing that one announces it again; a rerun announces nothing twice.

use custos_audit_chain::{Announcement, announce_once};
use custos_core::timefmt;
use custos_db::DbError;
use custos_db::schema::{workflow_instances as instances, workflows};
use custos_jobs::{Job, JobError, Kind, Scope};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::WorkflowsService;
use crate::model::InstanceStatus;

/// The kind of the watch's job.
pub const OVERDUE_WATCH_JOB: &str = "workflows.overdue_watch";
/// The event it emits.
pub const WORKFLOW_OVERDUE: &str = "workflow.overdue";

type Overdue = (Uuid, String, String, Option<Uuid>, OffsetDateTime, Uuid, String);

/// The watch's kind (one job per organisation).
pub fn overdue_watch_job(service: WorkflowsService) -> Kind {
    Kind::new(
        OVERDUE_WATCH_JOB,
        Scope::Organization,
        "Announces workflow instances past their due date or their current step's deadline",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org = job.organization().ok_or_else(|| JobError::fatal("the watch belongs to an organisation"))?;
                let ctx = job.ctx(org);
                let now = timefmt::now();
                let mut tx = service.db.begin(org).await?;
                let overdue: Vec<Overdue> = instances::table
                    .inner_join(
                        workflows::table.on(workflows::id
                            .eq(instances::workflow_id)
                            .and(workflows::organization_id.eq(instances::organization_id))),
                    )
                    .filter(instances::organization_id.eq(org))
                    .filter(instances::status.eq(InstanceStatus::InProgress))
                    .filter(instances::current_due_at.lt(now))
                    .order((instances::current_due_at.asc(), instances::id.asc()))
                    .select((
                        instances::id,
                        instances::title,
                        instances::current_step,
                        instances::assigned_to,
                        instances::current_due_at.assume_not_null(),
                        workflows::id,
                        workflows::name,
                    ))
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                let mut announced = 0i64;
                for (id, title, step, assigned_to, due, workflow, workflow_name) in overdue {
                    let due = timefmt::timestamp(due);
                    let payload = json!({
                        "instance": id,
                        "title": title,
                        "current_step": step,
                        "due_at": due,
                        "assigned_to": assigned_to,
                        "workflow": workflow,
                        "workflow_name": workflow_name,
                    });
                    let announcement = Announcement {
                        event_type: WORKFLOW_OVERDUE,
                        key: format!("instance:{id}:{step}:{due}"),
                        action: "workflow_overdue",
                        resource_type: "workflow_instance",
                        resource_id: id,
                        payload,
                    };
                    if announce_once(&mut tx, &ctx, announcement).await? {
                        announced += 1;
                    }
                }
                tx.commit().await?;
                job.count("announced", announced);
                job.set_progress(1.0);
                Ok(json!({ "announced": announced }))
            }
        },
    )
}
