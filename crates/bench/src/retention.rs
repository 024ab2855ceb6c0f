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
    s.insert_closed_incidents(org.id, n, "2020-01-01T00:00:00Z").await;
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
    s.superuser_sql("ANALYZE legal_hold_items").await.expect("analyze");
    println!("fill: {n} closed incidents, {held_percent} % held, in {:.1} s", t.elapsed().as_secs_f64());

    let service = RetentionService::new(s.app().db.clone(), s.app().holds.clone(), s.app().residency.clone());
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
    let per_million = total.as_secs_f64() * 1_000_000.0 / n as f64;
    println!(
        "target: 1,000,000 records under 30 s: {} ({per_million:.1} s per 1,000,000 at this rate)",
        if per_million < 30.0 { "met" } else { "NOT met" }
    );
    assert_eq!(
        (done.soft_deleted, done.skipped),
        (preview.soft_deleted, preview.skipped),
        "the preview and the run agree"
    );
    breakdown(&s, &service).await;
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
}

/// What each part of a batch costs, per record: the statements a batch runs, each timed on its
/// own over 20 batches of 1,000 fresh incidents of another organisation.
async fn breakdown(s: &TestServer, service: &RetentionService) {
    use diesel::sql_types::{Array, Nullable, Uuid as SqlUuid};
    use diesel_async::RunQueryDsl;
    const BATCHES: usize = 20;
    let org = s.org("bench-parts").await;
    s.insert_closed_incidents(org.id, BATCHES as i64 * custos_retention::runs::BATCH, "2020-01-01T00:00:00Z").await;
    let admin = RequestCtx::operator(org.id, "bench-parts");
    let policy = service
        .create_retention_policy(
            &admin,
            pb::CreateRetentionPolicyRequest {
                policy: Some(pb::RetentionPolicyInput {
                    name: "parts".into(),
                    policy_type: "INCIDENT_DATA".into(),
                    retention_days: Some(365),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("policy: {:?}", custos_core::Problem::from(e)));
    // A run row for the items to belong to (a preview's).
    let run = service
        .execute_retention_policy(&admin, pb::ExecuteRetentionPolicyRequest { id: policy.id, preview: true })
        .await
        .unwrap_or_else(|e| panic!("preview: {:?}", custos_core::Problem::from(e)));
    let run = uuid::Uuid::parse_str(&run.id).expect("run id");
    let ctx = RequestCtx::system(org.id, "bench/parts");
    let names =
        ["next ids", "lock and read again", "holds", "soft-delete UPDATE", "items INSERT", "audit entries", "commit"];
    let mut spent = [Duration::ZERO; 7];
    let mut after: Option<uuid::Uuid> = None;
    let mut records = 0usize;
    for _ in 0..BATCHES {
        let mut tx = s.app().db.begin(org.id).await.expect("begin");
        diesel::sql_query("SELECT set_config('custos.retention', 'on', true)").execute(tx.conn()).await.expect("set");
        let t = Instant::now();
        let ids: Vec<uuid::Uuid> = diesel::sql_query(
            "SELECT id FROM incidents WHERE organization_id = $1 AND status IN ('RESOLVED', 'CLOSED')
                AND deleted_at IS NULL AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT 1000",
        )
        .bind::<SqlUuid, _>(org.id)
        .bind::<Nullable<SqlUuid>, _>(after)
        .load::<IdRow>(tx.conn())
        .await
        .expect("ids")
        .into_iter()
        .map(|r| r.id)
        .collect();
        spent[0] += t.elapsed();
        let t = Instant::now();
        diesel::sql_query(
            "SELECT id FROM incidents WHERE organization_id = $1 AND id = ANY($2) ORDER BY id FOR UPDATE",
        )
        .bind::<SqlUuid, _>(org.id)
        .bind::<Array<SqlUuid>, _>(&ids)
        .load::<IdRow>(tx.conn())
        .await
        .expect("lock");
        spent[1] += t.elapsed();
        let t = Instant::now();
        s.app().holds.holds_on_incidents(tx.conn(), org.id, &ids).await.expect("holds");
        spent[2] += t.elapsed();
        let t = Instant::now();
        diesel::sql_query(
            "UPDATE incidents SET deleted_at = now(), deleted_by_run = $3 WHERE organization_id = $1 AND id = ANY($2)",
        )
        .bind::<SqlUuid, _>(org.id)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<SqlUuid, _>(run)
        .execute(tx.conn())
        .await
        .expect("update");
        spent[3] += t.elapsed();
        let t = Instant::now();
        diesel::sql_query(
            "INSERT INTO retention_run_items (organization_id, run_id, record_id, action, reason)
             SELECT $1, $3, r, 'soft_deleted', '' FROM unnest($2::uuid[]) r",
        )
        .bind::<SqlUuid, _>(org.id)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<SqlUuid, _>(run)
        .execute(tx.conn())
        .await
        .expect("items");
        spent[4] += t.elapsed();
        let t = Instant::now();
        let changes = ids
            .iter()
            .map(|id| custos_audit_chain::Change {
                action: "retention_soft_delete",
                resource_type: "incident",
                resource_id: id.to_string(),
                before: serde_json::json!({ "id": id }),
                after: serde_json::json!({ "retention_run": run }),
            })
            .collect();
        custos_audit_chain::record_many(&mut tx, &ctx, changes).await.expect("audit");
        spent[5] += t.elapsed();
        let t = Instant::now();
        tx.commit().await.expect("commit");
        spent[6] += t.elapsed();
        records += ids.len();
        after = ids.last().copied();
    }
    println!("what a batch's parts cost, per record ({records} records in {BATCHES} batches):");
    for (name, d) in names.iter().zip(spent) {
        println!("  {name:<24} {:>7.1} µs", d.as_secs_f64() * 1e6 / records as f64);
    }
}
