//! `custos-bench audit [--entries N]`: the audit chain's figures on this machine.
//! `custos-bench upload [--mib N]`: evidence file throughput and memory (see [`upload`]).
//! `custos-bench lists [--sizes N,N,…] [--runs N]`: the lists at scale (see [`lists`]).
//! `custos-bench vault [--rows N] [--runs R]`: field encryption and blind-index lookups (see [`vault`]).
//! `custos-bench reports [--requirements N] [--links L] [--runs R]`: report generation and renderings (see [`reports`]).
//!
//! Runs against a fresh database on the test PostgreSQL server (see `custos-testkit`), with the
//! real gateway: audited mutations per second with 1, 8 and 32 concurrent writers (in-process
//! service calls) and over REST with 32 concurrent clients; sequencing delay and checkpoint
//! coverage delay (p50/p99) under that load; raw sequencing throughput and verification speed
//! over N entries (default 1,000,000) with peak memory and CPU cost (see [`cpu`]); the export of
//! those entries and their offline verification (`verify-file`, no database) with the same;
//! inclusion proof size and check time at N. `--keep-export` keeps the export for
//! `custos-bench verify-file FILE`.

mod catalogue;
mod cpu;
mod jobs;
mod lists;
mod reports;
mod retention;
mod upload;
mod vault;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custos_audit_chain::merkle::verify_inclusion;
use custos_core::RequestCtx;
use custos_core::hex::decode_array;
use custos_proto::v1 as pb;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use diesel::sql_types::{Double, Uuid as SqlUuid};

const RUN: Duration = Duration::from_secs(5);

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

async fn writers(s: &TestServer, org: &TestOrg, concurrency: usize) -> f64 {
    let ctx = custos_core::RequestCtx { role: custos_core::Role::Editor, ..RequestCtx::operator(org.id, &org.slug) };
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for w in 0..concurrency {
        let (app, ctx, done, stop) = (s.app().clone(), ctx.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let input = pb::FrameworkInput {
                    name: format!("w{w}-{i}"),
                    framework_type: "CUSTOM".into(),
                    ..Default::default()
                };
                app.frameworks
                    .create_framework(&ctx, pb::CreateFrameworkRequest { framework: Some(input) })
                    .await
                    .expect("create");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn rest_clients(s: &TestServer, org: &TestOrg, concurrency: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for w in 0..concurrency {
        let (client, base, token, done, stop) =
            (reqwest::Client::new(), s.base.clone(), org.editor.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = serde_json::json!({ "name": format!("rest{w}-{i}"), "framework_type": "CUSTOM" });
                let resp = client
                    .post(format!("{base}/api/compliance/frameworks/"))
                    .header("Authorization", format!("Token {token}"))
                    .json(&body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(resp.status(), 201);
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

#[derive(diesel::QueryableByName)]
struct Percentiles {
    #[diesel(sql_type = Double)]
    p50: f64,
    #[diesel(sql_type = Double)]
    p99: f64,
    #[diesel(sql_type = Double)]
    max: f64,
}

async fn delays(s: &TestServer, org: uuid::Uuid) -> (Percentiles, Percentiles) {
    use diesel_async::RunQueryDsl;
    let mut conn = s.db.superuser().await;
    let sequencing: Percentiles = diesel::sql_query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS max
           FROM (SELECT extract(epoch FROM l.sequenced_at - e.recorded_at)::float8 AS d
                   FROM audit_index e CROSS JOIN LATERAL (
                          SELECT sequenced_at FROM audit_log r
                           WHERE r.organization_id = e.organization_id AND r.first_seq <= e.seq
                           ORDER BY r.first_seq DESC LIMIT 1) l
                  WHERE e.organization_id = $1) x",
    )
    .bind::<SqlUuid, _>(org)
    .get_result(&mut conn)
    .await
    .expect("sequencing delay");
    let coverage: Percentiles = diesel::sql_query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY d) AS p99, max(d) AS max
           FROM (SELECT extract(epoch FROM (SELECT min(c.created_at) FROM audit_checkpoints c
                                            WHERE c.organization_id = e.organization_id AND c.tree_size > e.seq) - e.recorded_at)::float8 AS d
                   FROM audit_index e
                  WHERE e.organization_id = $1) x",
    )
    .bind::<SqlUuid, _>(org)
    .get_result(&mut conn)
    .await
    .expect("coverage delay");
    (sequencing, coverage)
}

/// A typical entry: a requirement assessed (three attributes before and after).
fn sample_values(i: i64, recorded_at: &str) -> custos_audit_chain::encoding::EntryValues {
    custos_audit_chain::encoding::EntryValues {
        recorded_at: recorded_at.to_owned(),
        actor: "system:bench".into(),
        actor_detail: serde_json::json!({"actor": {"type": "system", "job": "bench"}, "role": "editor"}),
        action: "update".into(),
        resource_type: "requirement".into(),
        resource_id: uuid::Uuid::now_v7().to_string(),
        request_id: Some(format!("bench-{i}")),
        client_addr: Some("127.0.0.1".into()),
        before: serde_json::json!({"compliance_status": "NOT_ASSESSED", "title": format!("Requirement {i}"), "is_implemented": false}),
        after: serde_json::json!({"compliance_status": "COMPLIANT", "title": format!("Requirement {i}"), "is_implemented": true}),
    }
}

/// Writes `n` entries as writers would (encoded and hashed in Rust), in bulk statements of one
/// transaction, so that the server's own sequencer cannot start on them before they are all there.
async fn write_entries(s: &TestServer, org: uuid::Uuid, n: i64) {
    use diesel::sql_types::{Array, Bytea, Text};
    use diesel_async::RunQueryDsl;
    let mut conn = s.db.superuser().await;
    diesel::sql_query("BEGIN").execute(&mut conn).await.expect("begin");
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(10_000);
        let rows: Vec<_> = (done..done + chunk)
            .map(|i| {
                let at = custos_core::timefmt::timestamp(custos_audit_chain::recording_time());
                (uuid::Uuid::now_v7(), sample_values(i, &at).encode(&rand::random()))
            })
            .collect();
        diesel::sql_query(
            "INSERT INTO audit_entries (organization_id, event_id, fields, salts, digest)
             SELECT $1, v.* FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) AS v",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<Array<SqlUuid>, _>(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(rows.iter().map(|r| r.1.fields.clone()).collect::<Vec<_>>())
        .bind::<Array<Bytea>, _>(rows.iter().map(|r| r.1.salts.clone()).collect::<Vec<_>>())
        .bind::<Array<Bytea>, _>(rows.iter().map(|r| r.1.digest.to_vec()).collect::<Vec<_>>())
        .execute(&mut conn)
        .await
        .expect("write entries");
        done += chunk;
    }
    diesel::sql_query("COMMIT").execute(&mut conn).await.expect("commit");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("upload") {
        return upload::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("catalogue") {
        return catalogue::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("jobs") {
        return jobs::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("reports") {
        return reports::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("retention") {
        return retention::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("vault") {
        return vault::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("lists") {
        return lists::run(&args[2..]).await;
    }
    if args.get(1).map(String::as_str) == Some("verify-file") {
        return verify_file_figure(args.get(2).expect("usage: custos-bench verify-file FILE"));
    }
    if args.get(1).map(String::as_str) == Some("leaf") {
        return leaf_cost();
    }
    if args.get(1).map(String::as_str) != Some("audit") {
        eprintln!(
            "usage: custos-bench audit [--entries N] [--skip-load | --load-only] [--pool N] [--verify-repeat K] [--verify-only] [--keep-export] | verify-file FILE | upload [--mib N] | lists [--sizes N,N,…] [--runs N] | jobs [--jobs N] [--runs R] [--concurrency C] | catalogue [--runs R] [--requirements N] | vault [--rows N] [--runs R] | retention [--incidents N] [--held-percent P] | reports [--requirements N] [--links L] [--runs R] | leaf"
        );
        std::process::exit(2);
    }
    let entries: i64 =
        args.iter().position(|a| a == "--entries").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1_000_000);
    // `--pool N`: the server's connection pool (default: the production default,
    // `CUSTOS_DB_MAX_CONNECTIONS` unset).
    let pool: usize = args.iter().position(|a| a == "--pool").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(16);
    let s = TestServer::start_with(ServerOptions {
        rate_limit_auth_per_hour: Some(u32::MAX),
        db_max_connections: Some(pool),
        ..Default::default()
    })
    .await;
    println!(
        "custos audit-chain benchmark — {} cores, PostgreSQL at {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        custos_testkit::admin_url()
    );
    println!();
    let skip_load = args.iter().any(|a| a == "--skip-load");
    if !skip_load {
        load_figures(&s).await;
    }
    // `--load-only`: the mutation and delay figures alone, what a profiler of the write path runs.
    if args.iter().any(|a| a == "--load-only") {
        return;
    }
    let big = s.org("big").await;
    // The chain's own figures are taken with the server stopped, so that its sequencer and
    // indexer do not share the two cores with the stage being measured.
    let mut s = s;
    let server = s.server.take().expect("running");
    let app = server.app.clone();
    server.shutdown().await;
    chain_figures(&s, &app, &big, entries).await;
}

async fn load_figures(s: &TestServer) {
    println!("audited mutations (create framework + audit entry, one transaction each, {}s per run):", RUN.as_secs());
    let load = s.org("load").await;
    for c in [1, 8, 32] {
        println!("  {c:>2} concurrent writers (in-process):  {:>8.0} mutations/s", writers(s, &load, c).await);
    }
    println!("  32 concurrent REST clients:           {:>8.0} mutations/s", rest_clients(s, &load, 32).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (seq, cov) = delays(s, load.id).await;
    println!();
    println!("under that load (sequencer running, checkpoint interval 200 ms):");
    println!(
        "  recorded → integrated in the log:   p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms",
        seq.p50 * 1e3,
        seq.p99 * 1e3,
        seq.max * 1e3
    );
    println!(
        "  recorded → covered by a checkpoint: p50 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms",
        cov.p50 * 1e3,
        cov.p99 * 1e3,
        cov.max * 1e3
    );
}

async fn chain_figures(s: &TestServer, app: &custos_gateway::App, big: &TestOrg, entries: i64) {
    let chain = app.audit.chain().clone();
    let before = chain.sync(big.id).await.expect("sync").tree_size;
    let started = Instant::now();
    write_entries(s, big.id, entries).await;
    println!();
    println!("{entries} entries written in {:.1}s (bulk SQL, outside the chain)", started.elapsed().as_secs_f64());
    let batch = custos_audit_chain::SequencerConfig::default().batch_size;
    let started = Instant::now();
    let size = loop {
        let outcome = chain.integrate(big.id, false).await.expect("sequence");
        if outcome.sequenced < batch {
            break outcome.tree_size;
        }
    };
    chain.integrate(big.id, true).await.expect("checkpoint");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  sequencing (take committed entries, leaf, chain, tree, store, checkpoints): {:>9.0} entries/s  ({} in {secs:.1}s)",
        (size - before) as f64 / secs,
        size - before
    );
    let started = Instant::now();
    let mut indexed = 0;
    loop {
        let n = chain.index(big.id, true).await.expect("index");
        indexed += n;
        if n < batch {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  indexing for listings, behind the sequencer:                       {:>9.0} entries/s  ({indexed} in {secs:.1}s)",
        indexed as f64 / secs
    );
    // A bulk load leaves the planner's statistics describing empty tables until autovacuum's next
    // round (within a minute); the figures below are the steady state, not that first minute.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = s.db.superuser().await;
        diesel::sql_query("ANALYZE audit_log, audit_index, audit_contents, audit_tree_nodes")
            .execute(&mut conn)
            .await
            .expect("analyze");
    }

    use custos_audit_chain::verify::Depth;
    let mut tree_size = 0;
    // `--verify-repeat K` runs each verification K (at least 1) times: what a profiler attaches to.
    let repeat: usize =
        std::env::args().skip_while(|a| a != "--verify-repeat").nth(1).and_then(|k| k.parse().ok()).unwrap_or(1).max(1);
    for (depth, what) in std::iter::repeat_n(
        [
            (Depth::Content, "verification (every entry recomputed from its fields, chain link, tree"),
            (Depth::Structure, "structure-only verification (stored leaves chained, tree"),
        ],
        repeat,
    )
    .flatten()
    {
        let cpu = cpu::CpuClock::now();
        let (report, secs, peak, above) = with_peak_memory(chain.verify(big.id, None, depth)).await;
        let cpu = cpu.per_million_since(report.as_ref().map_or(0, |r| r.entries_checked), true);
        let report = report.expect("verify");
        assert!(report.ok, "{report:?}");
        tree_size = report.tree_size;
        println!(
            "  {what}, {} checkpoints): {:>9.0} entries/s  ({} in {secs:.2}s)",
            report.checkpoints_checked,
            report.entries_checked as f64 / secs,
            report.entries_checked
        );
        println!("    memory: peak RSS {peak:.1} MiB, {above:.1} MiB above the process before it");
        println!("    {cpu}");
    }
    // What bounds a full verification: the database reading what it reads, and the hashing.
    // The CPU clock first: reading it scans `/proc`, which is not the stage's time.
    let cpu = cpu::CpuClock::now();
    let started = Instant::now();
    let read = chain.read_like_verification(big.id).await.expect("read");
    println!(
        "    of which the database: reading what a full verification reads, checking nothing: {:>9.0} entries/s",
        read as f64 / started.elapsed().as_secs_f64()
    );
    println!("      {}", cpu.per_million_since(read, true));
    println!(
        "    and the hashing: recomputing leaves, no database, one core, batched in SIMD lanes: {:>9.0} entries/s",
        leaf_rate(200_000, true)
    );

    // `--verify-only`: the verification figures alone, what a profiler of verification runs.
    if std::env::args().any(|a| a == "--verify-only") {
        return;
    }
    offline_figures(&chain, big.id).await;

    let ctx = RequestCtx { role: custos_core::Role::Auditor, ..RequestCtx::operator(big.id, "big") };
    let size = tree_size;
    let mut fetch = Duration::ZERO;
    let mut check = Duration::ZERO;
    let mut bytes = 0usize;
    let samples = 200u64;
    for k in 0..samples {
        let seq = (k * 7_919_993) % size;
        let started = Instant::now();
        let proof = app
            .audit
            .get_inclusion_proof(&ctx, pb::InclusionProofRequest { seq: Some(seq as i64), tree_size: None })
            .await
            .expect("proof");
        fetch += started.elapsed();
        let leaf: [u8; 32] = decode_array(&proof.leaf_hash).unwrap();
        let root: [u8; 32] = decode_array(&proof.root_hash).unwrap();
        let path: Vec<[u8; 32]> = proof.proof.iter().map(|h| decode_array(h).unwrap()).collect();
        bytes = bytes.max(path.len() * 32);
        let started = Instant::now();
        assert!(verify_inclusion(seq, proof.tree_size as u64, &leaf, &path, &root));
        check += started.elapsed();
    }
    println!();
    println!("inclusion proofs in a tree of {size} entries ({samples} samples):");
    println!("  size: {bytes} bytes of hashes at most ({} hashes)", bytes / 32);
    println!(
        "  served in {:.2} ms on average; checked in {:.1} µs on average",
        fetch.as_secs_f64() * 1e3 / samples as f64,
        check.as_secs_f64() * 1e6 / samples as f64
    );
    listing_figures(app, &ctx, size).await;
}

/// Listing latency at this size: pages read through the index, their contents from the runs.
async fn listing_figures(app: &custos_gateway::App, ctx: &RequestCtx, size: u64) {
    let list = |req: pb::ListAuditEntriesRequest| async move {
        let started = Instant::now();
        let page = app.audit.list_entries(ctx, req).await.expect("list");
        (started.elapsed().as_secs_f64() * 1e3, page)
    };
    println!();
    println!("listing the audit log at {size} entries (50 per page):");
    let mut req = pb::ListAuditEntriesRequest { page_size: Some(50), ..Default::default() };
    let (mut total, mut pages) = (0.0, 0);
    for _ in 0..20 {
        let (ms, page) = list(req.clone()).await;
        total += ms;
        pages += 1;
        match page.next_cursor {
            Some(c) => req.cursor = Some(c),
            None => break,
        }
    }
    println!("  newest first, {pages} pages walked by cursor: {:.2} ms per page", total / pages as f64);
    let filtered = pb::ListAuditEntriesRequest {
        page_size: Some(50),
        action: Some("update".into()),
        resource_type: Some("requirement".into()),
        ..Default::default()
    };
    let (ms, _) = list(filtered).await;
    println!("  filtered by action and resource type: {ms:.2} ms");
    // One object's history, by its id alone, for an object among the oldest: an index range,
    // not a walk back through every newer entry.
    let old_object = app.audit.get_entry(ctx, pb::GetAuditEntryRequest { seq: 50 }).await.expect("entry").resource_id;
    let history =
        pb::ListAuditEntriesRequest { page_size: Some(50), resource_id: Some(old_object), ..Default::default() };
    let (ms, page) = list(history).await;
    println!("  one old object's history, by resource id alone: {ms:.2} ms ({} entry)", page.results.len());
    // A window of recording times deep in the log, and the next page of it by cursor.
    let recorded = |seq: u64| async move {
        app.audit.get_entry(ctx, pb::GetAuditEntryRequest { seq: seq as i64 }).await.expect("entry").recorded_at
    };
    let window = pb::ListAuditEntriesRequest {
        page_size: Some(50),
        recorded_after: Some(recorded(size / 2).await),
        recorded_before: Some(recorded((size / 2 + 1000).min(size - 1)).await),
        ..Default::default()
    };
    let (first_ms, mut page) = list(window.clone()).await;
    let (mut rest_ms, mut rest_pages, mut seen) = (0.0, 0, page.results.len());
    while let Some(cursor) = page.next_cursor.clone().filter(|_| rest_pages < 19) {
        let (ms, next) = list(pb::ListAuditEntriesRequest { cursor: Some(cursor), ..window.clone() }).await;
        (rest_ms, rest_pages, seen, page) = (rest_ms + ms, rest_pages + 1, seen + next.results.len(), next);
    }
    println!(
        "  a date range in the middle of the log: first page {first_ms:.2} ms; {rest_pages} more by cursor {:.2} ms per page ({seen} entries)",
        rest_ms / rest_pages.max(1) as f64
    );
    // A search walked by cursor until its page is full or the log is searched through: each
    // request reads at most the scan budget, then answers with a cursor.
    let search = |needle: String| async move {
        let mut req = pb::ListAuditEntriesRequest { search: Some(needle), page_size: Some(50), ..Default::default() };
        let (mut requests, mut total, mut slowest, mut found) = (0, 0.0f64, 0.0f64, 0);
        loop {
            let (ms, page) = list(req.clone()).await;
            requests += 1;
            total += ms;
            slowest = slowest.max(ms);
            found += page.results.len();
            match page.next_cursor {
                Some(c) if found < 50 => req.cursor = Some(c),
                _ => return (requests, total, slowest, found),
            }
        }
    };
    // Resource ids are unique: a search for one has one match to find.
    let resource_of = |seq: u64| async move {
        let entry = app.audit.get_entry(ctx, pb::GetAuditEntryRequest { seq: seq as i64 }).await.expect("entry");
        entry.resource_id
    };
    for (what, needle) in [
        ("a common word (a full first page)", "COMPLIANT".to_owned()),
        ("one recent entry", resource_of(size.saturating_sub(100)).await),
        ("one among the oldest (the whole log searched)", resource_of(size.min(50)).await),
    ] {
        let (requests, total, slowest, found) = search(needle).await;
        println!(
            "  search, {what}: {found} found in {total:.0} ms over {requests} requests (the slowest {slowest:.0} ms)"
        );
    }
}

/// What a regulator runs: the log exported to a file, then verified from it with no database.
async fn offline_figures(chain: &custos_audit_chain::AuditChain, org: uuid::Uuid) {
    let path = std::env::temp_dir().join(format!("custos-bench-export-{org}.jsonl"));
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create export file"));
    let written = chain.export(org, &mut out, |_, _| {}).await.expect("export");
    // On disk before it is read back, as `custos audit export` leaves it: the writeback would
    // otherwise run during (and be counted in) the verification below.
    out.into_inner().expect("flush export").sync_all().expect("sync export");
    let secs = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!();
    println!(
        "offline: `custos audit export` {:>9.0} entries/s  ({written} entries, {:.0} MiB, in {secs:.1}s)",
        written as f64 / secs,
        bytes as f64 / (1 << 20) as f64
    );
    let cpu = cpu::CpuClock::now();
    let (report, secs, peak, above) = with_peak_memory(async {
        let file = std::io::BufReader::new(std::fs::File::open(&path).expect("open export"));
        custos_audit_chain::export::verify_file(file, vec![], |_, _| {}).expect("verify-file")
    })
    .await;
    assert!(report.ok, "{report:?}");
    println!(
        "  `custos audit verify-file` (no database: every entry recomputed, chain, tree, {} checkpoints): {:>9.0} entries/s  ({} in {secs:.2}s)",
        report.checkpoints,
        report.entries as f64 / secs,
        report.entries
    );
    println!("    memory: peak RSS {peak:.1} MiB, {above:.1} MiB above the process before it");
    println!("    {}", cpu.per_million_since(report.entries, false));
    if std::env::args().any(|a| a == "--keep-export") {
        println!("    kept the export at {} (`custos-bench verify-file FILE` times its verification)", path.display());
    } else {
        let _ = std::fs::remove_file(&path);
    }
}

/// `custos-bench verify-file FILE`: the offline verification alone, over an export kept by
/// `audit --keep-export`.
fn verify_file_figure(path: &str) {
    let cpu = cpu::CpuClock::now();
    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("open export"));
    let report = custos_audit_chain::export::verify_file(file, vec![], |_, _| {}).expect("verify-file");
    let secs = started.elapsed().as_secs_f64();
    assert!(report.ok, "{report:?}");
    println!("verify-file: {:>9.0} entries/s  ({} in {secs:.2}s)", report.entries as f64 / secs, report.entries);
    println!("  {}", cpu.per_million_since(report.entries, false));
}

/// `work`'s result, its duration in seconds, and the process's peak RSS while it ran and how far
/// that was above the RSS before it, in MiB.
async fn with_peak_memory<T>(work: impl std::future::Future<Output = T>) -> (T, f64, f64, f64) {
    let baseline = rss_kib("VmRSS:");
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let result = work.await;
    let secs = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    (result, secs, peak as f64 / 1024.0, peak.saturating_sub(baseline) as f64 / 1024.0)
}

/// The CPU cost of recomputing one typical entry's leaf hash from its stored form, without the
/// database: what verification does for every entry, on one core — one by one, and batched as
/// verification does it (many entries' hashes across the SIMD lanes).
fn leaf_cost() {
    let encoded = sample_values(1, "2026-11-23T09:00:00.123456Z").encode(&[3u8; 32]);
    let stored = custos_audit_chain::encoding::StoredEntry { fields: encoded.fields.as_bytes(), salts: &encoded.salts };
    println!(
        "leaf recomputation ({} fields, {} bytes stored), one core: {:.0} entries/s one by one, {:.0} entries/s batched in SIMD lanes ({:?})",
        stored.len(),
        encoded.fields.len() + encoded.salts.len(),
        leaf_rate(1_000_000, false),
        leaf_rate(1_000_000, true),
        blake3::platform::Platform::detect(),
    );
}

/// Leaves recomputed per second from typical entries' stored forms, `n` of them on one core.
fn leaf_rate(n: u64, batched: bool) -> f64 {
    use custos_audit_chain::encoding::{DigestBatch, Scratch, StoredEntry, leaf_hash};
    // Distinct entries, as a log holds, read in verification's batches.
    const BATCH: u64 = 2500;
    let encoded: Vec<_> =
        (0..BATCH as i64).map(|i| sample_values(i, "2026-11-23T09:00:00.123456Z").encode(&rand::random())).collect();
    let stored: Vec<_> = encoded.iter().map(|e| StoredEntry { fields: e.fields.as_bytes(), salts: &e.salts }).collect();
    let org = uuid::Uuid::now_v7();
    let mut scratch = Scratch::default();
    let mut batch = DigestBatch::default();
    let started = Instant::now();
    let mut acc = 0u8;
    let mut seq = 0;
    while seq < n {
        if batched {
            stored.iter().for_each(|s| batch.push(s, |_, _| {}));
            for digest in batch.finish() {
                acc ^= leaf_hash(&org, seq, &digest.expect("digest"))[0];
                seq += 1;
            }
        } else {
            for s in &stored {
                acc ^= leaf_hash(&org, seq, &s.digest(&mut scratch).expect("digest"))[0];
                seq += 1;
            }
        }
    }
    std::hint::black_box(acc);
    seq as f64 / started.elapsed().as_secs_f64()
}
