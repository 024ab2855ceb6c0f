//! What a report holds, computed from the live state in one query (read through
//! `custos_db::schema`'s tables, never through their crates), and its text rendering.
//!
//! Mapped coverage is the framework's latest score snapshot's (the frameworks domain computes
//! it; a report does not compute it a second time): a report generated before any snapshot says
//! so.

use custos_db::Tx;
use diesel::sql_types::{Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

/// The content's format, named in it.
pub const FORMAT: &str = "custos-report/v1";

#[derive(diesel::QueryableByName)]
struct Content {
    #[diesel(sql_type = Jsonb)]
    content: Value,
}

/// One query: every figure of the report at one snapshot of the database.
const CONTENT_SQL: &str = r#"
WITH req AS (
  SELECT r.* FROM requirements r
   WHERE r.organization_id = $1 AND ($2::uuid IS NULL OR r.framework_id = $2)
),
prio AS (SELECT * FROM (VALUES ('CRITICAL', 0), ('HIGH', 1), ('MEDIUM', 2), ('LOW', 3)) AS p(priority, rank))
SELECT jsonb_build_object(
  'format', $3::text,
  'framework', (SELECT jsonb_build_object('id', f.id, 'name', f.name, 'version', f.version, 'framework_type', f.framework_type)
                  FROM frameworks f WHERE f.organization_id = $1 AND f.id = $2),
  'summary', (SELECT jsonb_build_object(
                 'total_requirements', count(*),
                 'compliant', count(*) FILTER (WHERE compliance_status = 'COMPLIANT'),
                 'partially_compliant', count(*) FILTER (WHERE compliance_status = 'PARTIALLY_COMPLIANT'),
                 'non_compliant', count(*) FILTER (WHERE compliance_status = 'NON_COMPLIANT'),
                 'not_assessed', count(*) FILTER (WHERE compliance_status = 'NOT_ASSESSED'),
                 'compliance_percentage', CASE WHEN count(*) = 0 THEN 0
                    ELSE round(count(*) FILTER (WHERE compliance_status = 'COMPLIANT') * 100.0 / count(*), 1) END)
                FROM req),
  'gaps', (SELECT coalesce(jsonb_agg(jsonb_build_object('requirement', req.id, 'requirement_id', req.requirement_id,
                    'title', req.title, 'priority', req.priority, 'compliance_status', req.compliance_status)
                    ORDER BY coalesce(prio.rank, 9), req.requirement_id), '[]'::jsonb)
             FROM req LEFT JOIN prio ON prio.priority = req.priority
            WHERE req.compliance_status IN ('NON_COMPLIANT', 'NOT_ASSESSED')),
  'overdue_assessments', (SELECT coalesce(jsonb_agg(jsonb_build_object('requirement', id, 'requirement_id', requirement_id,
                    'title', title, 'next_assessment_date', next_assessment_date) ORDER BY next_assessment_date, requirement_id), '[]'::jsonb)
             FROM req WHERE next_assessment_date < (now() AT TIME ZONE 'UTC')::date),
  'score_trend', (SELECT coalesce(jsonb_agg(jsonb_build_object('taken_at', s.taken_at, 'compliance_percentage', s.compliance_percentage)
                    ORDER BY s.taken_at), '[]'::jsonb)
             FROM framework_score_snapshots s
            WHERE s.organization_id = $1 AND s.framework_id = $2 AND s.taken_at > now() - interval '365 days'),
  'mapped_coverage', (SELECT jsonb_build_object('covered_through_mappings', s.covered_through_mappings,
                    'compliance_percentage_with_mapped', s.compliance_percentage_with_mapped, 'as_of', s.taken_at)
             FROM framework_score_snapshots s WHERE s.organization_id = $1 AND s.framework_id = $2
            ORDER BY s.taken_at DESC LIMIT 1),
  'vulnerabilities_past_sla', (SELECT jsonb_build_object('count', count(*),
                    'critical', count(*) FILTER (WHERE severity = 'CRITICAL'), 'high', count(*) FILTER (WHERE severity = 'HIGH'))
             FROM vulnerabilities v WHERE v.organization_id = $1 AND v.status IN ('OPEN', 'IN_PROGRESS') AND v.due_at < now()),
  'incidents', (SELECT jsonb_build_object('total', count(*),
                    'open', count(*) FILTER (WHERE status NOT IN ('RESOLVED', 'CLOSED')),
                    'critical', count(*) FILTER (WHERE severity = 'CRITICAL'),
                    'mean_response_hours', round((avg(extract(epoch FROM responded_at - detected_at)) / 3600)::numeric, 1))
             FROM incidents i WHERE i.organization_id = $1),
  'evidence', (SELECT jsonb_build_object(
                    'requirements_with_valid_evidence', (SELECT count(DISTINCT er.requirement_id)
                        FROM evidence_requirements er JOIN req ON req.id = er.requirement_id
                        JOIN evidence e ON e.organization_id = er.organization_id AND e.id = er.evidence_id
                       WHERE e.disposed_at IS NULL AND (e.valid_until IS NULL OR e.valid_until >= (now() AT TIME ZONE 'UTC')::date)),
                    'expiring_within_30_days', (SELECT count(*) FROM evidence e WHERE e.organization_id = $1 AND e.disposed_at IS NULL
                        AND e.valid_until BETWEEN (now() AT TIME ZONE 'UTC')::date AND (now() AT TIME ZONE 'UTC')::date + 30)))
) || CASE WHEN $4 THEN jsonb_build_object('statement_of_applicability',
       (SELECT coalesce(jsonb_agg(jsonb_build_object('requirement', id, 'requirement_id', requirement_id, 'title', title,
                  'applicable', is_applicable, 'justification', applicability_justification, 'implemented', is_implemented,
                  'compliance_status', compliance_status, 'implementation_notes', implementation_notes)
                  ORDER BY section, requirement_id), '[]'::jsonb) FROM req))
     ELSE '{}'::jsonb END AS content
"#;

/// Computes the content for organisation `org` (and `framework`, if given) in `tx`; with
/// `applicability`, the Statement of Applicability too: every requirement, applicable or not
/// with its justification, and its implementation.
pub async fn compute(
    tx: &mut Tx,
    org: Uuid,
    framework: Option<Uuid>,
    applicability: bool,
) -> Result<Value, custos_db::DbError> {
    let row: Content = diesel::sql_query(CONTENT_SQL)
        .bind::<SqlUuid, _>(org)
        .bind::<Nullable<SqlUuid>, _>(framework)
        .bind::<Text, _>(FORMAT)
        .bind::<diesel::sql_types::Bool, _>(applicability)
        .get_result(tx.conn())
        .await?;
    Ok(row.content)
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The report as text: a header, the figures, and the gaps listed by priority.
pub fn render_text(
    title: &str,
    report_type: &str,
    generated_at: &str,
    content_sha256: &str,
    content: &Value,
) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(title.to_owned());
    line("=".repeat(title.chars().count()));
    line(format!("{report_type} — generated {generated_at}"));
    line(format!("Content SHA-256: {content_sha256}"));
    if let Some(f) = content.get("framework").filter(|f| !f.is_null()) {
        line(format!("Framework: {} {}", num(&f["name"]), num(&f["version"])));
    }
    let s = &content["summary"];
    line(String::new());
    line(format!(
        "Compliance: {}% ({} of {} requirements compliant)",
        num(&s["compliance_percentage"]),
        num(&s["compliant"]),
        num(&s["total_requirements"])
    ));
    line(format!(
        "Partially compliant: {}  Non-compliant: {}  Not assessed: {}",
        num(&s["partially_compliant"]),
        num(&s["non_compliant"]),
        num(&s["not_assessed"])
    ));
    match content.get("mapped_coverage").filter(|m| !m.is_null()) {
        Some(m) => line(format!(
            "With mapped coverage: {}% ({} covered through mappings, as of {})",
            num(&m["compliance_percentage_with_mapped"]),
            num(&m["covered_through_mappings"]),
            num(&m["as_of"])
        )),
        None => line("Mapped coverage: no score snapshot yet".to_owned()),
    }
    let trend = content["score_trend"].as_array().cloned().unwrap_or_default();
    if let (Some(first), Some(last)) = (<[Value]>::first(&trend), trend.last()) {
        line(format!(
            "Trend: {}% → {}% over {} snapshot(s)",
            num(&first["compliance_percentage"]),
            num(&last["compliance_percentage"]),
            trend.len()
        ));
    }
    let gaps = content["gaps"].as_array().cloned().unwrap_or_default();
    line(String::new());
    line(format!("Gaps ({}):", gaps.len()));
    for g in &gaps {
        line(format!(
            "  [{}] {} {} — {}",
            num(&g["priority"]),
            num(&g["requirement_id"]),
            num(&g["title"]),
            num(&g["compliance_status"])
        ));
    }
    let overdue = content["overdue_assessments"].as_array().cloned().unwrap_or_default();
    line(format!("Overdue assessments ({}):", overdue.len()));
    for o in &overdue {
        line(format!("  {} {} — due {}", num(&o["requirement_id"]), num(&o["title"]), num(&o["next_assessment_date"])));
    }
    let v = &content["vulnerabilities_past_sla"];
    line(format!(
        "Vulnerabilities past SLA: {} (critical {}, high {})",
        num(&v["count"]),
        num(&v["critical"]),
        num(&v["high"])
    ));
    let i = &content["incidents"];
    line(format!(
        "Incidents: {} ({} open, {} critical); mean response {} h",
        num(&i["total"]),
        num(&i["open"]),
        num(&i["critical"]),
        num(&i["mean_response_hours"])
    ));
    if let Some(soa) = content.get("statement_of_applicability").and_then(Value::as_array) {
        line(String::new());
        line(format!("Statement of Applicability ({} controls):", soa.len()));
        for c in soa {
            let state = if c["applicable"] == Value::Bool(true) {
                format!(
                    "applicable, {} ({})",
                    if c["implemented"] == Value::Bool(true) { "implemented" } else { "not implemented" },
                    num(&c["compliance_status"])
                )
            } else {
                format!("not applicable: {}", num(&c["justification"]))
            };
            line(format!("  {} {} — {state}", num(&c["requirement_id"]), num(&c["title"])));
        }
    }
    let e = &content["evidence"];
    line(format!(
        "Evidence: {} requirement(s) with valid evidence; {} item(s) expiring within 30 days",
        num(&e["requirements_with_valid_evidence"]),
        num(&e["expiring_within_30_days"])
    ));
    out
}
