// Included by build.rs (to give these fields the `json_text` serde adapter) and by lib.rs (so
// the OpenAPI document describes them as objects): one list for both.
/// Fields (`Message.field`) holding a JSON document: JSON text over gRPC, the embedded document
/// in the REST/JSON form.
pub const JSON_TEXT_FIELDS: &[&str] =
    &["AuditEntry.before", "AuditEntry.after", "AuditEntry.actor_detail", "CustodyRecord.details",
      "Job.counters", "Job.parameters", "Job.result"];
