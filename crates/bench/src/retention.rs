//! `custos-bench retention [--incidents N] [--held-percent P]`: a retention run over N expired
//! incidents (default 1,000,000) of which P % (default 1) are under a legal hold — the issue's
//! target: under 30 s on this machine, memory flat.
//!
//! The incidents are written straight into the test database (closed in 2020, a policy soft-
//! deleting after a year), the held ones put on one legal hold. Then, through the retention
//! service as the API and the job call it: the preview (every batch planned, nothing changed),
//! and the execution a batch at a time (each one transaction: lock, plan by the precedence, act,
//! items, audit entries, counters), timed per batch; the process's resident memory before and
//! after. The server's job runner is off, so the run's batches run here and nowhere else.

use std::time::{Duration, Instant};

use custos_core::RequestCtx;
use custos_proto::v1 as pb;
use custos_retention::RetentionService;
use custos_testkit::{ServerOptions, TestServer};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// The process's resident and peak resident memory, in MiB (Linux).
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

pub async fn run(args: &[String]) {
    let n: i64 = arg(args, "--incidents").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let held_percent: i64 = arg(args, "--held-percent").and_then(|v| v.parse().ok()).unwrap_or(1);
    let mut jobs = custos_testkit::test_jobs_config();
    jobs.run = false;
    let s =
        TestServer::start_with(ServerOptions { jobs: Some(jobs), db_max_connections: Some(8), ..Default::default() })
            .await;
    let org = s.org("bench").await;

    let t = Instant::now();
    s.superuser_sql(&format!(
        "INSERT INTO incidents (id, organization_id, title, description, severity, category, data_classification,
                                status, reported_by, detected_at, responded_at, resolved_at)
         SELECT gen_random_uuid(), '{}', 'incident ' || g, '', 'LOW', 'OTHER', 'INTERNAL', 'CLOSED', 'bench',
                '2019-12-01', '2019-12-01', '2020-01-01'
           FROM generate_series(1, {n}) g",
        org.id
    ))
    .await
    .expect("fill incidents");
    let hold = custos_core::new_id();
    s.superuser_sql(&format!(
        "INSERT INTO legal_holds (id, organization_id, case_name, case_number, description, status, start_date, created_by)
         VALUES ('{hold}', '{}', 'Bench matter', 'B-1', '', 'ACTIVE', '2020-01-01', 'bench')",
        org.id
    ))
    .await
    .expect("hold");
    s.superuser_sql(&format!(
        "INSERT INTO legal_hold_items (organization_id, hold_id, resource_type, resource_id, added_by)
         SELECT organization_id, '{hold}', 'incident', id, 'bench'
           FROM (SELECT organization_id, id, row_number() OVER (ORDER BY id) AS r FROM incidents WHERE organization_id = '{}') x
          WHERE r % (100 / {held_percent}) = 0",
        org.id
    ))
    .await
    .expect("hold items");
    s.superuser_sql("ANALYZE incidents").await.expect("analyze");
    s.superuser_sql("ANALYZE legal_hold_items").await.expect("analyze");
    println!("fill: {n} closed incidents, {held_percent} % held, in {:.1} s", t.elapsed().as_secs_f64());

    let service = RetentionService::new(s.app().db.clone(), s.app().holds.clone());
    let admin = RequestCtx::operator(org.id, "bench");
    let policy = service
        .create_retention_policy(
            &admin,
            pb::CreateRetentionPolicyRequest {
                policy: Some(pb::RetentionPolicyInput {
                    name: "One year".into(),
                    policy_type: "INCIDENT_DATA".into(),
                    retention_days: Some(365),
                    auto_delete: Some(true),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("policy: {:?}", custos_core::Problem::from(e)));

    let (rss0, _) = memory();
    let t = Instant::now();
    let preview = service
        .execute_retention_policy(&admin, pb::ExecuteRetentionPolicyRequest { id: policy.id.clone(), preview: true })
        .await
        .unwrap_or_else(|e| panic!("preview: {:?}", custos_core::Problem::from(e)));
    let preview_time = t.elapsed();
    println!(
        "preview: {:.2} s ({:.1} µs/record): examined {}, would soft-delete {}, skip {}",
        preview_time.as_secs_f64(),
        preview_time.as_secs_f64() * 1e6 / n as f64,
        preview.examined,
        preview.soft_deleted,
        preview.skipped
    );

    let started = service
        .execute_retention_policy(&admin, pb::ExecuteRetentionPolicyRequest { id: policy.id.clone(), preview: false })
        .await
        .unwrap_or_else(|e| panic!("start: {:?}", custos_core::Problem::from(e)));
    let run = uuid::Uuid::parse_str(&started.id).expect("run id");
    let ctx = RequestCtx::system(org.id, "bench/retention");
    let mut batches: Vec<Duration> = Vec::new();
    let t = Instant::now();
    loop {
        let b = Instant::now();
        let more =
            service.run_batch(&ctx, run).await.unwrap_or_else(|e| panic!("batch: {:?}", custos_core::Problem::from(e)));
        batches.push(b.elapsed());
        if !more {
            break;
        }
    }
    let total = t.elapsed();
    let (rss1, peak) = memory();
    let done = service
        .get_retention_run(&admin, pb::GetRetentionRunRequest { id: started.id.clone() })
        .await
        .unwrap_or_else(|e| panic!("run: {:?}", custos_core::Problem::from(e)));
    batches.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "execution: {:.2} s ({:.1} µs/record) in {} batches of {}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        total.as_secs_f64(),
        total.as_secs_f64() * 1e6 / n as f64,
        batches.len(),
        custos_retention::runs::BATCH,
        ms(batches[batches.len() / 2]),
        ms(batches[batches.len() * 95 / 100]),
        ms(batches[batches.len() - 1])
    );
    println!(
        "result: {} examined, {} soft-deleted, {} skipped (held); the preview said {} / {}",
        done.examined, done.soft_deleted, done.skipped, preview.soft_deleted, preview.skipped
    );
    println!("memory: resident {rss0:.0} MiB before the runs, {rss1:.0} MiB after; peak {peak:.0} MiB");
    println!(
        "target: under 30 s for 1,000,000 records: {}",
        if total.as_secs_f64() < 30.0 { "met" } else { "NOT met" }
    );
    assert_eq!(
        (done.soft_deleted, done.skipped),
        (preview.soft_deleted, preview.skipped),
        "the preview and the run agree"
    );
}
