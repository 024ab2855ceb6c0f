//! SQL for tests that read or tamper with the audit trail's stored form directly, as a
//! database superuser would: entries live in `audit_entries` until sequenced, then as elements of
//! their run's row in `audit_contents`.

use uuid::Uuid;

/// Every audit entry's stored fields, sequenced or not, as a relation `audit_fields
/// (organization_id, fields)` to select from.
pub const ALL_AUDIT_FIELDS: &str = "(SELECT organization_id, fields FROM audit_entries
     UNION ALL
     SELECT c.organization_id, f FROM audit_contents c CROSS JOIN LATERAL unnest(c.fields) AS f) AS audit_fields";

/// The run of `audit_contents` holding entry `seq`, and the element that is it.
fn element(org: Uuid, seq: i64, column: &str) -> (String, String) {
    (
        format!("{column}[{seq} - first_seq + 1]"),
        format!(
            "organization_id = '{org}' AND first_seq <= {seq} AND first_seq > {seq} - 256
             AND first_seq + cardinality(fields) > {seq}"
        ),
    )
}

/// An UPDATE setting sequenced entry `seq`'s stored fields to `expr`, in which `$F` stands for
/// them as they are.
pub fn edit_fields(org: Uuid, seq: i64, expr: &str) -> String {
    let (f, run) = element(org, seq, "fields");
    format!("UPDATE audit_contents SET {f} = {} WHERE {run}", expr.replace("$F", &f))
}

/// An UPDATE removing sequenced entry `seq`'s content while its place in the log stays.
pub fn remove_content(org: Uuid, seq: i64) -> String {
    let ((f, run), (s, _)) = (element(org, seq, "fields"), element(org, seq, "salts"));
    format!("UPDATE audit_contents SET {f} = NULL, {s} = NULL WHERE {run}")
}

/// A statement swapping sequenced entries `a` and `b` wholesale, as stored: their ids in the
/// log, their contents and their index rows; only their places (and the hashes) stay.
pub fn swap_entries(org: Uuid, a: i64, b: i64) -> String {
    let ((fa, run_a), (sa, _)) = (element(org, a, "fields"), element(org, a, "salts"));
    let ((fb, run_b), (sb, _)) = (element(org, b, "fields"), element(org, b, "salts"));
    let place = |seq: i64, id: &str| {
        format!(
            "UPDATE audit_log SET event_ids = overlay(event_ids PLACING uuid_send({id}) FROM ({seq} - first_seq)::int * 16 + 1 FOR 16)
              WHERE organization_id = '{org}' AND first_seq <= {seq} AND first_seq + length(event_ids) / 16 > {seq};"
        )
    };
    format!(
        "DO $$ DECLARE ia uuid := custos_audit_event_id('{org}', {a}); ib uuid := custos_audit_event_id('{org}', {b});
                       f_a text; s_a bytea; f_b text; s_b bytea;
         BEGIN
           {} {}
           SELECT {fa}, {sa} INTO f_a, s_a FROM audit_contents WHERE {run_a};
           SELECT {fb}, {sb} INTO f_b, s_b FROM audit_contents WHERE {run_b};
           UPDATE audit_contents SET {fa} = f_b, {sa} = s_b WHERE {run_a};
           UPDATE audit_contents SET {fb} = f_a, {sb} = s_a WHERE {run_b};
           UPDATE audit_index i SET event_id = o.event_id, recorded_at = o.recorded_at, actor = o.actor,
                  action = o.action, resource_type = o.resource_type, resource_id = o.resource_id
             FROM audit_index o
            WHERE i.organization_id = '{org}' AND o.organization_id = '{org}'
              AND ((i.seq = {a} AND o.seq = {b}) OR (i.seq = {b} AND o.seq = {a}));
         END $$",
        place(a, "ib"),
        place(b, "ia")
    )
}
