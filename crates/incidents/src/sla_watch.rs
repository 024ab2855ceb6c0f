//! The SLA watch (the `sla-watch` schedule, every five minutes per organisation): an open
//! incident whose response or resolution deadline has passed unmet, and an open vulnerability
//! past its remediation deadline, are announced once each — an `incident.sla_breached` or
//! `vulnerability.sla_breached` event for the notification channels and a `sla_breached` entry
//! in the audit trail, in one transaction. "Once" is per deadline: the event's key names the
//! deadline, so a deadline moved later (an escalation restarting a clock) and missed again is
//! announced again, and a rerun of the watch announces nothing twice.

use custos_audit_chain::{Announcement, announce_once};
use custos_core::timefmt;
use custos_db::DbError;
use custos_db::schema::{incidents, vulnerabilities};
use custos_jobs::{Job, JobError, Kind, Scope};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::IncidentsService;
use crate::model::{IncidentRow, IncidentStatus, VulnerabilityRow, VulnerabilityStatus};

/// The kind of the watch's job.
pub const SLA_WATCH_JOB: &str = "incidents.sla_watch";
/// The events it emits.
pub const INCIDENT_SLA_BREACHED: &str = "incident.sla_breached";
pub const VULNERABILITY_SLA_BREACHED: &str = "vulnerability.sla_breached";

/// The watch's kind (one job per organisation).
pub fn sla_watch_job(service: IncidentsService) -> Kind {
    Kind::new(
        SLA_WATCH_JOB,
        Scope::Organization,
        "Announces incidents and vulnerabilities whose SLA deadline has passed unmet",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org =
                    job.organization().ok_or_else(|| JobError::fatal("the SLA watch belongs to an organisation"))?;
                let ctx = job.ctx(org);
                let now = timefmt::now();
                let mut tx = service.db().begin(org).await?;
                let open: Vec<IncidentRow> = incidents::table
                    .filter(incidents::organization_id.eq(org))
                    .filter(incidents::status.ne_all([IncidentStatus::Resolved, IncidentStatus::Closed]))
                    .select(IncidentRow::as_select())
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                let mut announced = (0i64, 0i64);
                for incident in &open {
                    let (response, resolution) = incident.deadlines(service.slas());
                    for (deadline, due, met) in [
                        ("response", response, incident.responded_at),
                        ("resolution", resolution, incident.resolved_at),
                    ] {
                        if met.is_some() || due >= now {
                            continue;
                        }
                        let due_at = timefmt::timestamp(due);
                        let payload = json!({
                            "incident": incident.id,
                            "title": incident.title,
                            "severity": incident.severity.to_string(),
                            "status": incident.status.to_string(),
                            "deadline": deadline,
                            "due_at": due_at,
                            "assigned_to": incident.assigned_to,
                        });
                        let announcement = Announcement {
                            event_type: INCIDENT_SLA_BREACHED,
                            key: format!("incident:{}:{deadline}:{due_at}", incident.id),
                            action: "sla_breached",
                            resource_type: "incident",
                            resource_id: incident.id,
                            payload,
                        };
                        if announce_once(&mut tx, &ctx, announcement).await? {
                            announced.0 += 1;
                        }
                    }
                }
                let overdue: Vec<VulnerabilityRow> = vulnerabilities::table
                    .filter(vulnerabilities::organization_id.eq(org))
                    .filter(vulnerabilities::status.eq_any(VulnerabilityStatus::OPEN_LIKE))
                    .filter(vulnerabilities::due_at.lt(now))
                    .select(VulnerabilityRow::as_select())
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                for v in &overdue {
                    let due_at = timefmt::timestamp(v.due_at);
                    let payload = json!({
                        "vulnerability": v.id,
                        "title": v.title,
                        "severity": v.severity.to_string(),
                        "status": v.status.to_string(),
                        "cve_id": v.cve_id,
                        "affected_asset": v.affected_asset,
                        "sla_days": v.sla_days,
                        "due_at": due_at,
                        "assigned_to": v.assigned_to,
                    });
                    let announcement = Announcement {
                        event_type: VULNERABILITY_SLA_BREACHED,
                        key: format!("vulnerability:{}:{due_at}", v.id),
                        action: "sla_breached",
                        resource_type: "vulnerability",
                        resource_id: v.id,
                        payload,
                    };
                    if announce_once(&mut tx, &ctx, announcement).await? {
                        announced.1 += 1;
                    }
                }
                tx.commit().await?;
                job.count("incident_breaches", announced.0);
                job.count("vulnerability_breaches", announced.1);
                job.set_progress(1.0);
                Ok(json!({ "incident_breaches": announced.0, "vulnerability_breaches": announced.1 }))
            }
        },
    )
}
