//! `custos-bench jobs [--jobs N] [--runs R] [--concurrency C]`: job-dispatch overhead.
//!
//! Empty jobs through the queue: N jobs are queued at once (one bulk `INSERT`, not through the
//! API: what is measured is the queue, not the request path), and the running servers' runners
//! claim, start, run (nothing) and finish them. The figure is N over the time from the first
//! start to the last finish (the database's own timestamps), so a runner's poll interval before
//! the first claim does not count. Measured with one server and with two replicas on the same
//! database, for an organisation's jobs (each start and end recorded in its audit trail, as in
//! production) and for the platform's (no audit entries). Target: ≥ 1,000 jobs/s with two
//! replicas. `CUSTOS_BENCH_JOBS_AUTOVACUUM="autovacuum_vacuum_threshold = 2000, …"` sets the
//! jobs table's storage parameters first (an experiment on the queue's dead tuples).

use std::time::Duration;

use custos_gateway::App;
use custos_gateway::config::Config;
use custos_gateway::domains::{Domain, Serving};
use custos_jobs::{Job, JobError, Kind, Scope};
use custos_testkit::{ServerOptions, TestServer, test_jobs_config};
use diesel::QueryableByName;
use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;
use serde_json::Value;

async fn empty(_job: Job) -> Result<Value, JobError> {
    Ok(Value::Null)
}

fn serve(_app: &App, _config: &Config) -> Serving {
    Serving {
        jobs: vec![
            Kind::new("bench.empty", Scope::Organization, "nothing, audited", empty),
            Kind::new("bench.empty_system", Scope::System, "nothing", empty),
        ],
        ..Serving::default()
    }
}

static EMPTY: Domain = Domain { name: "bench-jobs", serve, cli: None };

#[derive(QueryableByName)]
struct Span {
    #[diesel(sql_type = Double)]
    seconds: f64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    done: i64,
}

pub async fn run(args: &[String]) {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let n: i64 = flag("--jobs").and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let concurrency: usize = flag("--concurrency").and_then(|v| v.parse().ok()).unwrap_or(32);
    let mut jobs = test_jobs_config();
    jobs.runner.concurrency = concurrency;
    jobs.runner.lease = Duration::from_secs(30);
    let s = TestServer::start_with(ServerOptions {
        db_max_connections: Some(16),
        extra_domains: vec![&EMPTY],
        jobs: Some(jobs),
        ..Default::default()
    })
    .await;
    let org = s.org("bench").await;
    if let Ok(setting) = std::env::var("CUSTOS_BENCH_JOBS_AUTOVACUUM") {
        // An experiment: the queue table vacuumed more eagerly (dead entries of claimed rows).
        let mut conn = s.db.superuser().await;
        diesel::sql_query(format!("ALTER TABLE jobs SET ({setting})")).execute(&mut conn).await.expect("autovacuum");
        println!("jobs table: {setting}");
    }
    println!(
        "custos job-dispatch benchmark — {} cores, PostgreSQL at {}; {n} empty jobs per run, {runs} runs, {concurrency} at once per runner",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        custos_testkit::admin_url()
    );
    let mut replica = None;
    for replicas in [1, 2] {
        if replicas == 2 {
            replica = Some(s.replica().await);
        }
        for (label, kind, organization) in [
            ("organisation's (audited)", "bench.empty", format!("'{}'", org.id)),
            ("platform's", "bench.empty_system", "NULL".to_owned()),
        ] {
            let mut rates = Vec::new();
            let mut drains = Vec::new();
            for _ in 0..runs {
                rates.push(dispatch(&s, kind, &organization, n).await);
                // The audit trail takes each job's start and end entries behind the jobs
                // (sequenced, indexed, moved into runs): caught up before the next run, so
                // that a run is not measured beside the last one's backlog, and timed.
                let drained = std::time::Instant::now();
                s.app().audit.chain().sync(org.id).await.expect("audit trail catches up");
                drains.push(drained.elapsed().as_secs_f64());
            }
            rates.sort_by(f64::total_cmp);
            drains.sort_by(f64::total_cmp);
            println!(
                "  {replicas} replica{}  {label:<26} median {:>7.0} jobs/s  (min {:.0}, max {:.0}); audit trail caught up {:.1} s after (median)",
                if replicas == 1 { " " } else { "s" },
                rates[rates.len() / 2],
                rates[0],
                rates[rates.len() - 1],
                drains[drains.len() / 2]
            );
        }
    }
    if let Some(r) = replica {
        r.shutdown().await;
    }
}

/// Queues `n` empty jobs of `kind` at once and waits for all to succeed; jobs per second.
async fn dispatch(s: &TestServer, kind: &str, organization: &str, n: i64) -> f64 {
    let mut conn = s.db.superuser().await;
    // One transaction: every row has its `now()` as `created_at`, which finds the batch again
    // by index (a scan of the growing table every poll would cost the runners' CPU).
    diesel::sql_query("BEGIN").execute(&mut conn).await.expect("begin");
    diesel::sql_query(format!(
        "INSERT INTO jobs (id, organization_id, kind, created_by)
         SELECT gen_random_uuid(), {organization}, $1, 'bench' FROM generate_series(1, {n})"
    ))
    .bind::<Text, _>(kind)
    .execute(&mut conn)
    .await
    .expect("queue jobs");
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        at: time::OffsetDateTime,
    }
    let queued: Now = diesel::sql_query("SELECT now() AS at").get_result(&mut conn).await.expect("now");
    diesel::sql_query("COMMIT").execute(&mut conn).await.expect("commit");
    let batch = if organization == "NULL" {
        "organization_id IS NULL".to_owned()
    } else {
        format!("organization_id = {organization}")
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let span: Span = diesel::sql_query(format!(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at))::float8 AS seconds,
                    count(*) FILTER (WHERE status = 'succeeded') AS done
               FROM jobs WHERE {batch} AND created_at = $1"
        ))
        .bind::<diesel::sql_types::Timestamptz, _>(queued.at)
        .get_result(&mut conn)
        .await
        .expect("measure");
        if span.done == n {
            return n as f64 / span.seconds.max(1e-6);
        }
    }
}
