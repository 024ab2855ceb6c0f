//! Value sets of the seed and the database rows of incidents.

use custos_core::timefmt;
use custos_db::choice;
use custos_db::schema::{compliance_checkpoints, incident_response_plans, incidents, vulnerabilities};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::sla::Slas;

choice! {
    pub enum Severity {
        Low = "LOW",
        Medium = "MEDIUM",
        High = "HIGH",
        Critical = "CRITICAL",
    }
}

impl Severity {
    /// Order of gravity: raising a severity is an escalation.
    pub fn rank(self) -> u8 {
        match self {
            Severity::Low => 0,
            Severity::Medium => 1,
            Severity::High => 2,
            Severity::Critical => 3,
        }
    }
}

// An incident's category and data classification are read by other domains too (retention
// scopes policies by them): they live in the kernel, `custos_db::values`.
pub use custos_db::values::{Category, DataClassification};

choice! {
    pub enum IncidentStatus {
        Open = "OPEN",
        Investigating = "INVESTIGATING",
        Contained = "CONTAINED",
        Resolved = "RESOLVED",
        Closed = "CLOSED",
    }
}

impl IncidentStatus {
    /// RESOLVED and CLOSED incidents carry a `resolved_at`.
    pub fn is_resolved(self) -> bool {
        matches!(self, IncidentStatus::Resolved | IncidentStatus::Closed)
    }
}

choice! {
    pub enum VulnerabilityStatus {
        Open = "OPEN",
        InProgress = "IN_PROGRESS",
        Remediated = "REMEDIATED",
        RiskAccepted = "RISK_ACCEPTED",
        FalsePositive = "FALSE_POSITIVE",
    }
}

impl VulnerabilityStatus {
    /// Statuses still counting against the remediation SLA.
    pub const OPEN_LIKE: [VulnerabilityStatus; 2] = [VulnerabilityStatus::Open, VulnerabilityStatus::InProgress];

    pub fn is_open(self) -> bool {
        Self::OPEN_LIKE.contains(&self)
    }
}

choice! {
    pub enum CheckpointStatus {
        Planned = "PLANNED",
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Missed = "MISSED",
        Cancelled = "CANCELLED",
    }
}

impl CheckpointStatus {
    /// Statuses of a checkpoint still ahead: they can be overdue.
    pub const PENDING: [CheckpointStatus; 2] = [CheckpointStatus::Planned, CheckpointStatus::InProgress];
}

fn opt_ts(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(timefmt::timestamp)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = incidents)]
pub struct IncidentRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: Category,
    pub data_classification: DataClassification,
    pub status: IncidentStatus,
    pub occurred_at: Option<OffsetDateTime>,
    pub detected_at: Option<OffsetDateTime>,
    pub responded_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub reported_by: String,
    pub assigned_to: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub response_due_at: Option<OffsetDateTime>,
    pub resolution_due_at: Option<OffsetDateTime>,
    pub severity_changed_at: Option<OffsetDateTime>,
}

impl IncidentRow {
    /// The response and resolution deadlines: as stored, or (rows from before deadlines were
    /// stored) from the detection time and the configured SLAs.
    pub fn deadlines(&self, slas: &Slas) -> (OffsetDateTime, OffsetDateTime) {
        let detected = self.detected();
        (
            self.response_due_at.unwrap_or_else(|| slas.response_due(self.severity, detected)),
            self.resolution_due_at.unwrap_or_else(|| slas.resolution_due(detected)),
        )
    }

    /// The clocks an update leaves running, given the severity and detection time it writes.
    ///
    /// - Raising the severity starts the new severity's clocks at `now` — except for a deadline
    ///   already met (responded, resolved) or already missed: a met deadline stays met, and a
    ///   missed one stays missed (escalating must not erase a breach).
    /// - Lowering the severity keeps the deadlines as they are.
    /// - Correcting the detection time of an incident whose severity never changed moves its
    ///   clocks with it.
    pub fn clocks_after(
        &self,
        slas: &Slas,
        severity: Severity,
        detected: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Clocks {
        let was = self.severity;
        let (response, resolution) = self.deadlines(slas);
        if severity.rank() > was.rank() {
            let standing = |deadline: OffsetDateTime, met: Option<OffsetDateTime>| met.is_some() || deadline < now;
            Clocks {
                response_due_at: if standing(response, self.responded_at) {
                    response
                } else {
                    slas.response_due(severity, now)
                },
                resolution_due_at: if standing(resolution, self.resolved_at) {
                    resolution
                } else {
                    slas.resolution_due(now)
                },
                severity_changed_at: Some(now),
            }
        } else if severity.rank() < was.rank() {
            Clocks { response_due_at: response, resolution_due_at: resolution, severity_changed_at: Some(now) }
        } else if self.severity_changed_at.is_none() && detected != self.detected() {
            Clocks::started(slas, severity, detected)
        } else {
            Clocks {
                response_due_at: response,
                resolution_due_at: resolution,
                severity_changed_at: self.severity_changed_at,
            }
        }
    }

    /// When the incident was detected (rows written by this service always say; older ones fall
    /// back to when they were recorded).
    pub fn detected(&self) -> OffsetDateTime {
        self.detected_at.unwrap_or(self.created_at)
    }

    /// The API shape, with the SLA deadlines and whether one of them is (or was) missed at `now`.
    pub fn to_pb(&self, slas: &Slas, now: OffsetDateTime) -> pb::Incident {
        let detected = self.detected();
        let (response_due, resolution_due) = self.deadlines(slas);
        let sla_breached =
            self.responded_at.unwrap_or(now) > response_due || self.resolved_at.unwrap_or(now) > resolution_due;
        pb::Incident {
            id: self.id.to_string(),
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity.to_string(),
            category: self.category.to_string(),
            data_classification: self.data_classification.to_string(),
            status: self.status.to_string(),
            occurred_at: opt_ts(self.occurred_at),
            detected_at: timefmt::timestamp(detected),
            responded_at: opt_ts(self.responded_at),
            resolved_at: opt_ts(self.resolved_at),
            reported_by: self.reported_by.clone(),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
            response_due_at: timefmt::timestamp(response_due),
            resolution_due_at: timefmt::timestamp(resolution_due),
            sla_breached,
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
            severity_changed_at: opt_ts(self.severity_changed_at),
        }
    }

    /// The writable fields as they stand, the base a partial update overlays.
    pub fn to_input(&self) -> pb::IncidentInput {
        pb::IncidentInput {
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity.to_string(),
            category: self.category.to_string(),
            data_classification: Some(self.data_classification.to_string()),
            status: Some(self.status.to_string()),
            occurred_at: opt_ts(self.occurred_at),
            detected_at: Some(timefmt::timestamp(self.detected())),
            responded_at: opt_ts(self.responded_at),
            resolved_at: opt_ts(self.resolved_at),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
        }
    }
}

/// An incident's SLA clocks as stored (see [`IncidentRow::clocks_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsChangeset, Insertable)]
#[diesel(table_name = incidents, treat_none_as_null = true)]
pub struct Clocks {
    pub response_due_at: OffsetDateTime,
    pub resolution_due_at: OffsetDateTime,
    pub severity_changed_at: Option<OffsetDateTime>,
}

impl Clocks {
    /// The clocks of a new incident: from its detection.
    pub fn started(slas: &Slas, severity: Severity, detected: OffsetDateTime) -> Self {
        Clocks {
            response_due_at: slas.response_due(severity, detected),
            resolution_due_at: slas.resolution_due(detected),
            severity_changed_at: None,
        }
    }
}

/// Validated writable fields of an incident.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = incidents, treat_none_as_null = true)]
pub struct IncidentFields {
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub category: Category,
    pub data_classification: DataClassification,
    pub status: IncidentStatus,
    pub occurred_at: Option<OffsetDateTime>,
    pub detected_at: Option<OffsetDateTime>,
    pub responded_at: Option<OffsetDateTime>,
    pub resolved_at: Option<OffsetDateTime>,
    pub assigned_to: Option<Uuid>,
}

impl IncidentFields {
    /// Validation always sets the detection time.
    pub fn detected(&self) -> OffsetDateTime {
        self.detected_at.unwrap_or_else(timefmt::now)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = vulnerabilities)]
pub struct VulnerabilityRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub status: VulnerabilityStatus,
    pub cve_id: Option<String>,
    pub cvss_score: Option<f64>,
    pub affected_asset: String,
    pub discovered_at: OffsetDateTime,
    pub sla_days: i32,
    pub due_at: OffsetDateTime,
    pub remediated_at: Option<OffsetDateTime>,
    pub incident_id: Option<Uuid>,
    pub assigned_to: Option<Uuid>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl VulnerabilityRow {
    /// Still open (OPEN, IN_PROGRESS) and past its deadline at `now`.
    pub fn overdue(&self, now: OffsetDateTime) -> bool {
        self.status.is_open() && now > self.due_at
    }

    pub fn to_pb(&self, now: OffsetDateTime) -> pb::Vulnerability {
        let overdue = self.overdue(now);
        pb::Vulnerability {
            id: self.id.to_string(),
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity.to_string(),
            status: self.status.to_string(),
            cve_id: self.cve_id.clone(),
            cvss_score: self.cvss_score,
            affected_asset: self.affected_asset.clone(),
            discovered_at: timefmt::timestamp(self.discovered_at),
            sla_days: self.sla_days,
            due_at: timefmt::timestamp(self.due_at),
            remediated_at: opt_ts(self.remediated_at),
            incident: self.incident_id.map(|i| i.to_string()),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
            overdue,
            sla_breached: overdue || self.remediated_at.is_some_and(|r| r > self.due_at),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    pub fn to_input(&self) -> pb::VulnerabilityInput {
        pb::VulnerabilityInput {
            title: self.title.clone(),
            description: self.description.clone(),
            severity: self.severity.to_string(),
            status: Some(self.status.to_string()),
            cve_id: self.cve_id.clone(),
            cvss_score: self.cvss_score,
            affected_asset: self.affected_asset.clone(),
            discovered_at: Some(timefmt::timestamp(self.discovered_at)),
            remediated_at: opt_ts(self.remediated_at),
            incident: self.incident_id.map(|i| i.to_string()),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
        }
    }
}

/// Validated writable fields of a vulnerability, with the deadline they give.
#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = vulnerabilities, treat_none_as_null = true)]
pub struct VulnerabilityFields {
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub status: VulnerabilityStatus,
    pub cve_id: Option<String>,
    pub cvss_score: Option<f64>,
    pub affected_asset: String,
    pub discovered_at: OffsetDateTime,
    pub sla_days: i32,
    pub due_at: OffsetDateTime,
    pub remediated_at: Option<OffsetDateTime>,
    pub incident_id: Option<Uuid>,
    pub assigned_to: Option<Uuid>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = compliance_checkpoints)]
pub struct CheckpointRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub description: String,
    pub framework_id: Option<Uuid>,
    pub status: CheckpointStatus,
    pub scheduled_date: Option<Date>,
    pub due_date: Option<Date>,
    pub completed_date: Option<Date>,
    pub owner: Option<Uuid>,
    pub notes: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl CheckpointRow {
    pub fn to_pb(&self, today: Date) -> pb::ComplianceCheckpoint {
        let pending = CheckpointStatus::PENDING.contains(&self.status);
        pb::ComplianceCheckpoint {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            framework: self.framework_id.map(|f| f.to_string()),
            status: self.status.to_string(),
            scheduled_date: self.scheduled_date.map(timefmt::date),
            due_date: self.due_date.map(timefmt::date),
            completed_date: self.completed_date.map(timefmt::date),
            owner: self.owner.map(|u| u.to_string()),
            notes: self.notes.clone(),
            overdue: pending && self.due_date.is_some_and(|d| d < today),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    pub fn to_input(&self) -> pb::ComplianceCheckpointInput {
        pb::ComplianceCheckpointInput {
            name: self.name.clone(),
            description: self.description.clone(),
            framework: self.framework_id.map(|f| f.to_string()),
            status: Some(self.status.to_string()),
            scheduled_date: self.scheduled_date.map(timefmt::date),
            due_date: self.due_date.map(timefmt::date),
            completed_date: self.completed_date.map(timefmt::date),
            owner: self.owner.map(|u| u.to_string()),
            notes: self.notes.clone(),
        }
    }
}

#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = compliance_checkpoints, treat_none_as_null = true)]
pub struct CheckpointFields {
    pub name: String,
    pub description: String,
    pub framework_id: Option<Uuid>,
    pub status: CheckpointStatus,
    pub scheduled_date: Option<Date>,
    pub due_date: Option<Date>,
    pub completed_date: Option<Date>,
    pub owner: Option<Uuid>,
    pub notes: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = incident_response_plans)]
pub struct PlanRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub incident_type: Category,
    pub severity: Severity,
    pub detection_procedures: String,
    pub initial_response: String,
    pub escalation_path: String,
    pub investigation_procedures: String,
    pub recovery_procedures: String,
    pub primary_contact: Option<Uuid>,
    pub is_active: bool,
    pub review_date: Option<Date>,
    pub version: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl PlanRow {
    pub fn to_pb(&self) -> pb::IncidentResponsePlan {
        pb::IncidentResponsePlan {
            id: self.id.to_string(),
            name: self.name.clone(),
            incident_type: self.incident_type.to_string(),
            severity: self.severity.to_string(),
            detection_procedures: self.detection_procedures.clone(),
            initial_response: self.initial_response.clone(),
            escalation_path: self.escalation_path.clone(),
            investigation_procedures: self.investigation_procedures.clone(),
            recovery_procedures: self.recovery_procedures.clone(),
            primary_contact: self.primary_contact.map(|u| u.to_string()),
            is_active: self.is_active,
            review_date: self.review_date.map(timefmt::date),
            version: self.version.clone(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    pub fn to_input(&self) -> pb::IncidentResponsePlanInput {
        pb::IncidentResponsePlanInput {
            name: self.name.clone(),
            incident_type: self.incident_type.to_string(),
            severity: self.severity.to_string(),
            detection_procedures: self.detection_procedures.clone(),
            initial_response: self.initial_response.clone(),
            escalation_path: self.escalation_path.clone(),
            investigation_procedures: self.investigation_procedures.clone(),
            recovery_procedures: self.recovery_procedures.clone(),
            primary_contact: self.primary_contact.map(|u| u.to_string()),
            is_active: Some(self.is_active),
            review_date: self.review_date.map(timefmt::date),
            version: self.version.clone(),
        }
    }
}

#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = incident_response_plans, treat_none_as_null = true)]
pub struct PlanFields {
    pub name: String,
    pub incident_type: Category,
    pub severity: Severity,
    pub detection_procedures: String,
    pub initial_response: String,
    pub escalation_path: String,
    pub investigation_procedures: String,
    pub recovery_procedures: String,
    pub primary_contact: Option<Uuid>,
    pub is_active: bool,
    pub review_date: Option<Date>,
    pub version: String,
}

/// Whether `raw` is a CVE identifier: `CVE-`, a four-digit year, `-`, four or more digits.
pub fn is_cve_id(raw: &str) -> bool {
    let Some(rest) = raw.strip_prefix("CVE-") else { return false };
    let Some((year, number)) = rest.split_once('-') else { return false };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && number.len() >= 4
        && number.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cve_ids() {
        for ok in ["CVE-2024-3094", "CVE-2021-44228", "CVE-1999-0001"] {
            assert!(is_cve_id(ok), "{ok}");
        }
        for bad in ["CVE-24-3094", "CVE-2024-309", "cve-2024-3094", "CVE-2024-30a4", "CVE-2024", "2024-3094", ""] {
            assert!(!is_cve_id(bad), "{bad}");
        }
    }
}
