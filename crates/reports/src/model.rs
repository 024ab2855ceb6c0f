//! The value sets of reports as stored, and their rows.

use custos_db::choice;
use custos_db::schema::{compliance_reports, report_sign_offs};
use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

choice! {
    /// What a report is (seed 000), ISO 27001's Statement of Applicability among them.
    pub enum ReportType {
        Assessment = "ASSESSMENT",
        GapAnalysis = "GAP_ANALYSIS",
        Audit = "AUDIT",
        ExecutiveSummary = "EXECUTIVE_SUMMARY",
        StatementOfApplicability = "STATEMENT_OF_APPLICABILITY",
    }
}

choice! {
    /// DRAFT → IN_REVIEW → APPROVED → PUBLISHED.
    pub enum ReportStatus {
        Draft = "DRAFT",
        InReview = "IN_REVIEW",
        Approved = "APPROVED",
        Published = "PUBLISHED",
    }
}

choice! {
    /// A sign-off's decision.
    pub enum Decision {
        Approved = "APPROVED",
        Rejected = "REJECTED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = compliance_reports)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ReportRow {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub summary: String,
    pub report_type: ReportType,
    pub status: ReportStatus,
    pub framework_id: Option<Uuid>,
    pub prepared_by: String,
    pub content: Option<String>,
    pub content_sha256: Option<String>,
    pub generated_at: Option<OffsetDateTime>,
    pub job_id: Option<Uuid>,
    pub published_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = report_sign_offs)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct SignOffRow {
    pub report_id: Uuid,
    pub sequence: i32,
    pub decision: Decision,
    pub comment: String,
    pub signer: String,
    pub signed_at: OffsetDateTime,
    pub content_sha256: String,
}
