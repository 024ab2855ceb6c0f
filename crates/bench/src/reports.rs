//! `custos-bench reports [--requirements N] [--links L] [--runs R]`: compliance report generation
//! for a framework of N requirements (default 5,000) with L evidence links (default 50,000; one
//! evidence item per ten links) and a year of daily score snapshots (targets: JSON under 1 s, PDF
//! under 3 s).
//!
//! What is timed, each the median of R runs (default 5), so the figures show what costs what:
//! * generation: the content computed in one query, frozen with its SHA-256 and audited
//!   (`generate_now`, what the `reports.generate` job runs), and the same through the API (the
//!   request, the job queued, picked up and done; polled every 10 ms);
//! * renderings: JSON and PDF through the service (read, parse, lay out, write) and the PDF's
//!   layout and writing alone, in process; the PDF over REST;
//! * for an ASSESSMENT report (gaps and overdue assessments as tables) and for a Statement of
//!   Applicability (every requirement a row besides).

use std::time::{Duration, Instant};

use custos_core::{RequestCtx, Role};
use custos_proto::v1 as pb;
use custos_reports::ReportsService;
use custos_testkit::TestServer;
use serde_json::json;
use time::OffsetDateTime;

fn line(label: &str, times: &mut [Duration], extra: &str) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<58} median {:>8.1} ms  (min {:.1}, max {:.1})  {extra}",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

pub async fn run(args: &[String]) {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let n: usize = flag("--requirements").and_then(|v| v.parse().ok()).unwrap_or(5_000).max(10);
    let links: usize = flag("--links").and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let s = TestServer::start().await;
    let org = s.org("bench").await;
    println!(
        "custos report benchmark — {} cores, PostgreSQL at {}; {n} requirements, {links} evidence links, {runs} runs each",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        custos_testkit::admin_url()
    );
    let (status, fw) = s
        .post(
            "/api/compliance/frameworks/",
            &org.editor,
            json!({"name": "Generated framework", "framework_type": "ISO27001", "version": "2026"}),
        )
        .await;
    assert_eq!(status, 201, "{fw}");
    let fw = fw["id"].as_str().expect("framework id").to_owned();
    let o = org.id;
    let setup = Instant::now();
    // Statuses 40 % compliant, 20 % partially, 20 % non-compliant, 20 % not assessed; one in ten
    // overdue; one in twenty excluded from the SoA with its justification.
    for sql in [
        format!(
            "INSERT INTO requirements (id, organization_id, framework_id, requirement_id, title, description, section,
                                       requirement_type, priority, compliance_status, is_implemented,
                                       next_assessment_date, implementation_notes, is_applicable, applicability_justification)
             SELECT gen_random_uuid(), '{o}', '{fw}', 'R-' || lpad(g::text, 5, '0'),
                    'Requirement ' || g || ': access to systems holding personal data is reviewed and logged',
                    'Generated for the benchmark', 'S' || (g / 100), 'TECHNICAL',
                    (ARRAY['CRITICAL','HIGH','MEDIUM','LOW'])[1 + g % 4],
                    (ARRAY['COMPLIANT','COMPLIANT','PARTIALLY_COMPLIANT','NON_COMPLIANT','NOT_ASSESSED'])[1 + g % 5],
                    g % 5 < 2,
                    CASE WHEN g % 10 = 0 THEN DATE '2026-01-01' ELSE DATE '2030-01-01' END,
                    CASE WHEN g % 5 < 2 THEN 'Enforced by the identity provider; quarterly review' ELSE '' END,
                    g % 20 <> 7,
                    CASE WHEN g % 20 = 7 THEN 'Not in scope: no such systems' ELSE '' END
               FROM generate_series(1, {n}) g"
        ),
        format!(
            "INSERT INTO evidence (id, organization_id, title, evidence_type, status, collected_by, collected_at, valid_until)
             SELECT gen_random_uuid(), '{o}', 'Evidence ' || g, 'DOCUMENT', 'COLLECTED', 'bench', now(),
                    CASE WHEN g % 7 = 0 THEN current_date + 10 ELSE current_date + 400 END
               FROM generate_series(1, {}) g",
            links.div_ceil(10)
        ),
        format!(
            "INSERT INTO evidence_requirements (organization_id, evidence_id, requirement_id)
             SELECT '{o}', e.id, r.id
               FROM (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM evidence WHERE organization_id = '{o}') e
               CROSS JOIN generate_series(0, 9) k
               JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS j FROM requirements WHERE framework_id = '{fw}') r
                 ON r.j = (e.i * 10 + k) % {n}
              LIMIT {links}"
        ),
        format!(
            "INSERT INTO framework_score_snapshots (id, organization_id, framework_id, taken_at, day, source, taken_by,
                 total_requirements, compliant, partially_compliant, non_compliant, not_assessed, implemented,
                 overdue_assessments, compliance_percentage, covered_through_mappings, compliance_percentage_with_mapped)
             SELECT gen_random_uuid(), '{o}', '{fw}', now() - d * interval '1 day', (now() - d * interval '1 day')::date,
                    'schedule', 'system:score-snapshot', {n}, {n} * (364 - d) / 910, 0, 0, 0, 0, 0,
                    round(((364 - d) * 40.0 / 364)::numeric, 1), 0, round(((364 - d) * 40.0 / 364)::numeric, 1)
               FROM generate_series(1, 364) d"
        ),
        "ANALYZE requirements, evidence, evidence_requirements, framework_score_snapshots".to_owned(),
    ] {
        s.superuser_sql(&sql).await.expect("set up the framework");
    }
    println!("set-up: {:.1} s", setup.elapsed().as_secs_f64());

    let service = ReportsService::new(s.app().db.clone());
    let ctx = RequestCtx { role: Role::Admin, ..RequestCtx::operator(org.id, &org.slug) };
    for report_type in ["ASSESSMENT", "STATEMENT_OF_APPLICABILITY"] {
        println!("— {report_type}");
        let report = service
            .create_compliance_report(
                &ctx,
                pb::CreateComplianceReportRequest {
                    report: Some(pb::ComplianceReportInput {
                        title: format!("Benchmark {report_type}"),
                        report_type: report_type.into(),
                        framework: Some(fw.clone()),
                        ..Default::default()
                    }),
                },
            )
            .await
            .expect("prepare");
        let id = uuid::Uuid::parse_str(&report.id).expect("id");
        let mut generate = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            service.generate_now(&ctx, id, None).await.expect("generate");
            generate.push(t.elapsed());
        }
        let stored =
            service.get_compliance_report(&ctx, pb::GetComplianceReportRequest { id: report.id.clone() }).await;
        let stored = stored.expect("get");
        let content: serde_json::Value = serde_json::from_str(&stored.content).expect("content");
        let gaps = content["gaps"].as_array().map_or(0, Vec::len);
        line(
            "generate (one query, frozen, audited)",
            &mut generate,
            &format!("content {:.1} MiB, {gaps} gaps", stored.content.len() as f64 / 1048576.0),
        );

        let path = format!("/api/compliance/reports/{}/", report.id);
        let mut api = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let (status, queued) = s.post(&format!("{path}generate/"), &org.editor, json!({})).await;
            assert_eq!(status, 200, "{queued}");
            let job = queued["job_id"].as_str().expect("job").to_owned();
            loop {
                let (_, j) = s.get(&format!("/api/compliance/jobs/{job}/"), &org.admin).await;
                match j["status"].as_str() {
                    Some("succeeded") => break,
                    Some("failed" | "cancelled") => panic!("generation failed: {j}"),
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
            api.push(t.elapsed());
        }
        line("generate through the API (request → job done)", &mut api, "");

        for format in ["json", "pdf"] {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let r = service
                    .render_compliance_report(
                        &ctx,
                        pb::RenderComplianceReportRequest { id: report.id.clone(), format: format.into() },
                    )
                    .await
                    .expect("render");
                times.push(t.elapsed());
                size = r.body.len();
            }
            line(&format!("render {format} (service)"), &mut times, &format!("{:.2} MiB", size as f64 / 1048576.0));
        }

        let stored =
            service.get_compliance_report(&ctx, pb::GetComplianceReportRequest { id: report.id.clone() }).await;
        let stored = stored.expect("get");
        let content: serde_json::Value = serde_json::from_str(&stored.content).expect("content");
        let mut layout = Vec::new();
        let mut pdf = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            pdf =
                custos_reports::pdf::render(&stored, &content, "Bench", OffsetDateTime::now_utc(), &Default::default())
                    .expect("pdf");
            layout.push(t.elapsed());
        }
        // Read back once (untimed) by poppler, for the page count.
        let pages = custos_testkit::read_pdf(&pdf).info("Pages").unwrap_or("?").to_owned();
        line("  of which PDF layout and writing alone", &mut layout, &format!("{pages} pages"));

        let mut rest = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let (status, _, body) = s.download(&format!("{path}render/?format=pdf"), &org.viewer).await;
            assert_eq!(status, 200);
            assert!(body.starts_with(b"%PDF"));
            rest.push(t.elapsed());
        }
        line("render pdf over REST (GET …/render/?format=pdf)", &mut rest, "");
    }
}
