//! A report as the PDF a board member reads (`custos_pdf`, PDF/A-2b): a title page (what, of
//! which framework, its status, who prepared and signed it, the SHA-256 of the content it shows),
//! the summary's figures, the score trend as a chart, risks and operations, the gaps by
//! priority, overdue assessments, the Statement of Applicability when it has one, and the
//! sign-offs — every figure read from the frozen content, none computed again.

use std::collections::HashMap;

use custos_pdf::{Column, Document, LineChart, Meta, PdfError};
use custos_proto::v1 as pb;
use serde_json::Value;
use time::OffsetDateTime;

/// Who an actor label (`user:<id>`) is, for people reading the report: "Ada (ada@example.org)".
pub type Names = HashMap<String, String>;

fn show(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn percent(v: &Value) -> String {
    match v {
        Value::Null => "—".to_owned(),
        other => format!("{}%", show(other)),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn who(names: &Names, label: &str) -> String {
    names.get(label).cloned().unwrap_or_else(|| label.to_owned())
}

/// `2026-12-07T10:00:00Z` → `2026-12-07 10:00 UTC`; anything else as given.
fn when(v: &str) -> String {
    match OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
        }
        Err(_) => v.to_owned(),
    }
}

fn title_case(value: &str) -> String {
    let lower = value.replace('_', " ").to_lowercase();
    let mut c = lower.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The report's PDF. `generated_at` is the content's generation time (the file's creation date,
/// so the same content renders to the same bytes).
pub fn render(
    report: &pb::ComplianceReport,
    content: &Value,
    organisation: &str,
    generated_at: OffsetDateTime,
    names: &Names,
) -> Result<Vec<u8>, PdfError> {
    let digest = report.content_sha256.clone().unwrap_or_default();
    let framework = content.get("framework").filter(|f| !f.is_null());
    let scope = match framework {
        Some(f) => format!("{} {}", show(&f["name"]), show(&f["version"])).trim().to_owned(),
        None => format!("All frameworks of {organisation}"),
    };
    let mut doc = Document::new(Meta {
        title: report.title.clone(),
        subject: format!("{} — {scope}", title_case(&report.report_type)),
        author: who(names, &report.prepared_by),
        created: generated_at,
        document_id: digest.clone(),
        footer: format!(
            "{} · {} · content SHA-256 {}…",
            report.title,
            title_case(&report.status),
            digest.get(..16).unwrap_or(&digest)
        ),
    });

    let mut facts = vec![
        ("Report".to_owned(), title_case(&report.report_type)),
        ("Scope".to_owned(), scope.clone()),
        ("Organisation".to_owned(), organisation.to_owned()),
        ("Status".to_owned(), title_case(&report.status)),
        ("Prepared by".to_owned(), who(names, &report.prepared_by)),
        ("Generated".to_owned(), report.generated_at.as_deref().map(when).unwrap_or_default()),
    ];
    for s in &report.sign_offs {
        facts.push((title_case(&s.decision), format!("{} on {}", who(names, &s.signer), when(&s.signed_at))));
    }
    if let Some(published) = &report.published_at {
        facts.push(("Published".to_owned(), when(published)));
    }
    facts.push(("Content SHA-256".to_owned(), digest.clone()));
    doc.title_page(
        &report.title,
        &format!("{} — {scope}", title_case(&report.report_type)),
        &facts,
        "Every figure in this document was computed by Custos from the live state at the generation time, in one \
         database snapshot, and frozen. The content SHA-256 above is the digest of that frozen content; each \
         sign-off records the digest of the content it decided on, so a reader can check that what was signed \
         is what this document shows.",
    );

    // Summary.
    let s = &content["summary"];
    doc.heading("Summary");
    for text in [&report.description, &report.summary] {
        if !text.trim().is_empty() {
            doc.paragraph(text);
        }
    }
    let mut figures = vec![
        ("Compliance".to_owned(), percent(&s["compliance_percentage"])),
        ("Requirements".to_owned(), show(&s["total_requirements"])),
        ("Compliant".to_owned(), show(&s["compliant"])),
        ("Partially compliant".to_owned(), show(&s["partially_compliant"])),
        ("Non-compliant".to_owned(), show(&s["non_compliant"])),
        ("Not assessed".to_owned(), show(&s["not_assessed"])),
    ];
    match content.get("mapped_coverage").filter(|m| !m.is_null()) {
        Some(m) => figures.push((
            "With mapped coverage".to_owned(),
            format!(
                "{} ({} covered through mappings, as of {})",
                percent(&m["compliance_percentage_with_mapped"]),
                show(&m["covered_through_mappings"]),
                when(&show(&m["as_of"]))
            ),
        )),
        None => figures.push(("With mapped coverage".to_owned(), "no score snapshot yet".to_owned())),
    }
    doc.facts(&figures);

    // Score trend.
    doc.heading("Compliance score trend");
    let trend = list(&content["score_trend"]);
    let points: Vec<(String, f64)> = trend
        .iter()
        .filter_map(|p| {
            let at = show(&p["taken_at"]);
            let v = p["compliance_percentage"].as_f64()?;
            Some((at.get(..10).unwrap_or(&at).to_owned(), v))
        })
        .collect();
    match (<[(String, f64)]>::first(&points), points.last()) {
        (Some(first), Some(last)) => {
            doc.paragraph(&format!(
                "From {}% on {} to {}% on {}, over {} daily snapshot(s) of the last 365 days.",
                first.1,
                first.0,
                last.1,
                last.0,
                points.len()
            ));
            doc.line_chart(&LineChart { points, y_min: 0.0, y_max: 100.0, unit: "%".into(), height: 170.0 });
        }
        _ => doc.paragraph("No score snapshot in the last 365 days: the trend starts with the first daily snapshot."),
    }

    // Risks and operations.
    doc.heading("Risks and operations");
    let v = &content["vulnerabilities_past_sla"];
    let i = &content["incidents"];
    let e = &content["evidence"];
    doc.facts(&[
        (
            "Vulnerabilities past SLA".to_owned(),
            format!("{} (critical {}, high {})", show(&v["count"]), show(&v["critical"]), show(&v["high"])),
        ),
        (
            "Incidents".to_owned(),
            format!("{} ({} open, {} critical)", show(&i["total"]), show(&i["open"]), show(&i["critical"])),
        ),
        (
            "Mean response time".to_owned(),
            match &i["mean_response_hours"] {
                Value::Null => "— (no incident responded to)".to_owned(),
                hours => format!("{} hours", show(hours)),
            },
        ),
        ("Requirements with valid evidence".to_owned(), show(&e["requirements_with_valid_evidence"])),
        ("Evidence expiring within 30 days".to_owned(), show(&e["expiring_within_30_days"])),
    ]);

    // Gaps.
    let gaps = list(&content["gaps"]);
    doc.heading(&format!("Gaps ({})", gaps.len()));
    if gaps.is_empty() {
        doc.paragraph("No requirement is non-compliant or unassessed.");
    } else {
        let rows: Vec<Vec<String>> = gaps
            .iter()
            .map(|g| {
                vec![
                    title_case(&show(&g["priority"])),
                    show(&g["requirement_id"]),
                    show(&g["title"]),
                    title_case(&show(&g["compliance_status"])),
                ]
            })
            .collect();
        doc.table(
            &[
                Column::left("Priority", 1.0),
                Column::left("Requirement", 1.3),
                Column::left("Title", 4.0),
                Column::left("Status", 1.5),
            ],
            &rows,
        );
    }

    // Overdue assessments.
    let overdue = list(&content["overdue_assessments"]);
    doc.heading(&format!("Overdue assessments ({})", overdue.len()));
    if overdue.is_empty() {
        doc.paragraph("No assessment is overdue.");
    } else {
        let rows: Vec<Vec<String>> = overdue
            .iter()
            .map(|o| vec![show(&o["requirement_id"]), show(&o["title"]), show(&o["next_assessment_date"])])
            .collect();
        doc.table(&[Column::left("Requirement", 1.3), Column::left("Title", 4.5), Column::right("Due", 1.2)], &rows);
    }

    // Statement of Applicability.
    if let Some(soa) = content.get("statement_of_applicability").and_then(Value::as_array) {
        doc.heading(&format!("Statement of Applicability ({} controls)", soa.len()));
        let rows: Vec<Vec<String>> = soa
            .iter()
            .map(|c| {
                let applicable = c["applicable"] == Value::Bool(true);
                let reason = if applicable {
                    let implemented =
                        if c["implemented"] == Value::Bool(true) { "Implemented" } else { "Not implemented" };
                    match c["implementation_notes"].as_str().filter(|n| !n.trim().is_empty()) {
                        Some(notes) => format!("{implemented}: {notes}"),
                        None => implemented.to_owned(),
                    }
                } else {
                    show(&c["justification"])
                };
                vec![
                    show(&c["requirement_id"]),
                    show(&c["title"]),
                    if applicable { "Yes" } else { "No" }.to_owned(),
                    reason,
                    title_case(&show(&c["compliance_status"])),
                ]
            })
            .collect();
        doc.table(
            &[
                Column::left("Control", 1.1),
                Column::left("Title", 2.6),
                Column::left("Applicable", 1.0),
                Column::left("Justification / implementation", 3.0),
                Column::left("Status", 1.3),
            ],
            &rows,
        );
    }

    // Sign-offs.
    doc.heading("Sign-offs");
    if report.sign_offs.is_empty() {
        doc.paragraph("Not signed off yet.");
    } else {
        let rows: Vec<Vec<String>> = report
            .sign_offs
            .iter()
            .map(|s| {
                vec![
                    title_case(&s.decision),
                    who(names, &s.signer),
                    when(&s.signed_at),
                    s.content_sha256.clone(),
                    s.comment.clone(),
                ]
            })
            .collect();
        doc.table(
            &[
                Column::left("Decision", 1.0),
                Column::left("By", 1.8),
                Column::left("When", 1.3),
                Column::left("Content SHA-256", 2.2),
                Column::left("Comment", 2.0),
            ],
            &rows,
        );
    }
    doc.finish()
}
