//! The value sets of workflows and their instances as stored, and their rows.

use custos_db::choice;
use custos_db::schema::{workflow_instance_history, workflow_instances, workflows};
use diesel::prelude::*;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

choice! {
    /// What a workflow is for.
    pub enum WorkflowType {
        BreachNotification = "BREACH_NOTIFICATION",
        ControlTesting = "CONTROL_TESTING",
        AccessReview = "ACCESS_REVIEW",
        DataSubjectRequest = "DATA_SUBJECT_REQUEST",
        Audit = "AUDIT",
        RiskAssessment = "RISK_ASSESSMENT",
        PolicyReview = "POLICY_REVIEW",
        Custom = "CUSTOM",
    }
}

choice! {
    /// A workflow's state: instances start from ACTIVE ones only.
    pub enum WorkflowStatus {
        Draft = "DRAFT",
        Active = "ACTIVE",
        Retired = "RETIRED",
    }
}

choice! {
    /// An instance's state.
    pub enum InstanceStatus {
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Cancelled = "CANCELLED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflows)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct WorkflowRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub workflow_type: WorkflowType,
    pub status: WorkflowStatus,
    pub is_template: bool,
    pub applicable_frameworks: Vec<Uuid>,
    pub definition: Value,
    pub template_key: Option<String>,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflow_instances)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct InstanceRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub title: String,
    pub description: String,
    pub related_incident: Option<Uuid>,
    pub assigned_to: Option<Uuid>,
    pub due_date: Option<OffsetDateTime>,
    pub status: InstanceStatus,
    pub current_step: String,
    pub definition: Value,
    pub deadlines: Value,
    pub current_due_at: Option<OffsetDateTime>,
    pub stakeholders: Vec<Uuid>,
    pub step_data: Value,
    pub started_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub created_by: String,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflow_instance_history)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct HistoryRow {
    pub instance_id: Uuid,
    pub sequence: i32,
    pub from_step: Option<String>,
    pub to_step: String,
    pub actor: String,
    pub at: OffsetDateTime,
    pub data: Value,
}
