// Included by build.rs (to give these fields their serde attributes) and by lib.rs (so
// the OpenAPI document describes them as they are written): one list each for both.
/// Fields (`Message.field`) holding a JSON document: JSON text over gRPC, the embedded document
/// in the REST/JSON form.
pub const JSON_TEXT_FIELDS: &[&str] =
    &["AuditEntry.before", "AuditEntry.after", "AuditEntry.actor_detail", "CustodyRecord.details",
      "Job.counters", "Job.parameters", "Job.result", "AdvanceWorkflowStepRequest.step_data",
      "WorkflowInstance.step_data", "WorkflowHistoryEntry.data", "ComplianceReport.content"];

/// Fields (`Message.field`) a response carries only when the request asked for them: absent
/// rather than `null` otherwise (so the seed's JSON shapes stay as they were), and not
/// `required` in the OpenAPI document.
pub const OMITTED_WHEN_ABSENT: &[&str] =
    &[
        "ComplianceSummary.covered_through_mappings",
        "ComplianceSummary.compliance_percentage_with_mapped",
        "Requirement.status_derived_from",
    ];
