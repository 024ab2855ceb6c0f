//! The assessment watch (the `assessment-watch` schedule, daily at 06:00 UTC per organisation):
//! a requirement of an active framework whose `next_assessment_date` has passed is announced
//! once per due date — a `requirement.assessment_overdue` event for the notification channels
//! and an `assessment_overdue` entry in the audit trail, in one transaction. Assessing it (a
//! new `next_assessment_date`) and missing that date again announces it again; a rerun of the
//! watch announces nothing twice.

use custos_audit_chain::{Announcement, announce_once};
use custos_core::timefmt;
use custos_db::DbError;
use custos_db::schema::{frameworks, requirements};
use custos_jobs::{Job, JobError, Kind, Scope};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use time::Date;
use uuid::Uuid;

use crate::FrameworksService;

/// The kind of the watch's job.
pub const ASSESSMENT_WATCH_JOB: &str = "frameworks.assessment_watch";
/// The event it emits.
pub const ASSESSMENT_OVERDUE: &str = "requirement.assessment_overdue";

type Overdue = (Uuid, String, String, String, Option<Uuid>, Date, Uuid, String);

/// The watch's kind (one job per organisation).
pub fn assessment_watch_job(service: FrameworksService) -> Kind {
    Kind::new(
        ASSESSMENT_WATCH_JOB,
        Scope::Organization,
        "Announces requirements whose next assessment date has passed",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org = job.organization().ok_or_else(|| JobError::fatal("the watch belongs to an organisation"))?;
                let ctx = job.ctx(org);
                let today = timefmt::now().date();
                let mut tx = service.db().begin(org).await?;
                let overdue: Vec<Overdue> = requirements::table
                    .inner_join(frameworks::table)
                    .filter(requirements::organization_id.eq(org))
                    .filter(frameworks::is_active.eq(true))
                    .filter(requirements::next_assessment_date.lt(today))
                    .order((requirements::next_assessment_date.asc(), requirements::id.asc()))
                    .select((
                        requirements::id,
                        requirements::requirement_id,
                        requirements::title,
                        requirements::compliance_status,
                        requirements::assigned_to,
                        requirements::next_assessment_date.assume_not_null(),
                        frameworks::id,
                        frameworks::name,
                    ))
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                let mut announced = 0i64;
                for (id, requirement_id, title, status, assigned_to, due, framework, framework_name) in overdue {
                    let due = due.to_string();
                    let payload = json!({
                        "requirement": id,
                        "requirement_id": requirement_id,
                        "title": title,
                        "compliance_status": status,
                        "framework": framework,
                        "framework_name": framework_name,
                        "next_assessment_date": due,
                        "assigned_to": assigned_to,
                    });
                    let announcement = Announcement {
                        event_type: ASSESSMENT_OVERDUE,
                        key: format!("requirement:{id}:{due}"),
                        action: "assessment_overdue",
                        resource_type: "requirement",
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
