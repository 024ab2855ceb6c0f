//! The value sets of retention policies as stored, and their rows.

use custos_db::choice;
use custos_db::schema::retention_policies;
use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

choice! {
    /// What a policy is about (seed 000).
    pub enum PolicyType {
        IncidentData = "INCIDENT_DATA",
        Evidence = "EVIDENCE",
        VulnerabilityData = "VULNERABILITY_DATA",
        AuditLogs = "AUDIT_LOGS",
        JobRecords = "JOB_RECORDS",
        Custom = "CUSTOM",
    }
}

choice! {
    /// The platform entity a policy governs (seed 004's `entity_type`).
    pub enum EntityType {
        Incident = "incident",
        Evidence = "evidence",
        Vulnerability = "vulnerability",
        AuditLog = "audit_log",
        Job = "job",
    }
}

impl PolicyType {
    /// The entity a policy of this type governs unless it names one.
    pub fn default_entity(self) -> Option<EntityType> {
        match self {
            PolicyType::IncidentData => Some(EntityType::Incident),
            PolicyType::Evidence => Some(EntityType::Evidence),
            PolicyType::VulnerabilityData => Some(EntityType::Vulnerability),
            PolicyType::AuditLogs => Some(EntityType::AuditLog),
            PolicyType::JobRecords => Some(EntityType::Job),
            PolicyType::Custom => None,
        }
    }
}

impl EntityType {
    /// Whether categories and classifications can scope it (incidents, and evidence through its
    /// incident).
    pub fn has_incident_scope(self) -> bool {
        matches!(self, EntityType::Incident | EntityType::Evidence)
    }
}

choice! {
    /// The unit of a retention period.
    pub enum RetentionUnit {
        Days = "DAYS",
        Weeks = "WEEKS",
        Months = "MONTHS",
        Years = "YEARS",
    }
}

choice! {
    /// What happens to a record once its retention ends (seed 004's `deletion_method`).
    pub enum DeletionMethod {
        Soft = "soft",
        Hard = "hard",
        Archive = "archive",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = retention_policies)]
pub struct PolicyRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub policy_type: PolicyType,
    pub entity_type: EntityType,
    pub retention_period: i32,
    pub retention_unit: RetentionUnit,
    pub deletion_method: DeletionMethod,
    pub auto_archive: bool,
    pub auto_delete: bool,
    pub data_classification_levels: Vec<String>,
    pub incident_categories: Vec<String>,
    pub applicable_frameworks: Vec<Uuid>,
    pub legal_hold_override: bool,
    pub is_active: bool,
    pub locked: bool,
    pub locked_at: Option<OffsetDateTime>,
    pub locked_by: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub managed_by_policy: Option<Uuid>,
}

impl PolicyRow {
    /// Whether the policy names its records by a narrower scope than "every record of its type".
    pub fn explicit_scope(&self) -> bool {
        (self.entity_type.has_incident_scope()
            && (!self.data_classification_levels.is_empty() || !self.incident_categories.is_empty()))
            || (self.entity_type == EntityType::Evidence && !self.applicable_frameworks.is_empty())
    }

    /// Whether the daily run deletes or archives by it.
    pub fn deletes(&self) -> bool {
        self.auto_archive || self.auto_delete
    }
}
