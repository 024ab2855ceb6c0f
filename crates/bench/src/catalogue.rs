//! `custos-bench catalogue [--runs R] [--requirements N]`: framework imports, end to end through
//! the API (a multipart upload to `POST /api/compliance/frameworks/import/`, into a fresh
//! organisation each run): NIST's OSCAL LOW-baseline catalog, the CSF 2.0 framework library and
//! its CSF ↔ ISO 27001 mapping library (the shared fixtures, as they are), and a generated
//! library of N requirements (default 20,000; target: under 2 s). The generated library is timed
//! both ways: within the request, and as the job a large import becomes by default (from the
//! request to the job's success, polled every 10 ms). Reading alone (parse and checks, in
//! process) is timed too, so the figures show what costs what.

use std::time::{Duration, Instant};

use custos_frameworks::import::{self, ReadOptions};
use custos_testkit::{TestOrg, TestServer, fixture};
use serde_json::Value;

const IMPORT: &str = "/api/compliance/frameworks/import/";

fn generated_library(n: usize) -> String {
    let mut text = String::with_capacity(n * 220);
    text.push_str("urn: urn:custos:bench:library:big\nversion: 1\nobjects:\n  framework:\n    urn: urn:custos:bench:framework:big\n    name: Generated\n    requirement_nodes:\n");
    let groups = n.div_ceil(100);
    let mut made = 0;
    for g in 0..groups {
        if made == n {
            break;
        }
        text.push_str(&format!(
            "    - urn: urn:custos:bench:node:big:g{g}\n      ref_id: G{g}\n      name: Group {g}\n      assessable: false\n      depth: 1\n"
        ));
        made += 1;
        for r in 0..99 {
            if made == n {
                break;
            }
            text.push_str(&format!(
                "    - urn: urn:custos:bench:node:big:g{g}.r{r}\n      ref_id: G{g}.R{r}\n      parent_urn: urn:custos:bench:node:big:g{g}\n      description: Requirement {r} of group {g}, generated for the benchmark\n      assessable: true\n      depth: 2\n"
            ));
            made += 1;
        }
    }
    text
}

async fn upload(s: &TestServer, org: &TestOrg, name: &str, text: &str, fields: &[(&str, &str)]) -> Value {
    let (status, body) =
        s.upload(IMPORT, &org.editor, fields, Some((name, "application/octet-stream", text.as_bytes())), &[]).await;
    assert_eq!(status, 200, "{name}: {body}");
    body
}

fn summary(label: &str, items: usize, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "{label:<48} {items:>6} items  median {:>8.1} ms  (min {:.1}, max {:.1})  {:>7.1} µs/item  {:>8.0} items/s",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        median.as_secs_f64() * 1e6 / items as f64,
        items as f64 / median.as_secs_f64()
    );
}

pub async fn run(args: &[String]) {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let n: usize = flag("--requirements").and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let s = TestServer::start().await;
    println!(
        "custos catalogue-import benchmark — {} cores, PostgreSQL at {}; {runs} runs each, a fresh organisation per run",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        custos_testkit::admin_url()
    );
    let read = |p: &str| std::fs::read_to_string(fixture(p)).expect("fixture");
    let oscal = read("oscal/NIST_SP-800-53_rev5_LOW-baseline-resolved-profile_catalog.json");
    let csf = read("ciso-assistant-library/nist-csf-2.0.yaml");
    let mapping = read("ciso-assistant-library/mapping-nist-csf-2.0-to-iso27001-2022.yaml");
    let big = generated_library(n);
    println!("generated library: {n} requirements, {:.1} MiB", big.len() as f64 / 1048576.0);

    // Reading alone, in process.
    for (label, text) in [
        ("read only: OSCAL LOW catalog", &oscal),
        ("read only: CSF library", &csf),
        ("read only: generated library", &big),
    ] {
        let mut times = Vec::new();
        let mut items = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let doc = import::read("bench", text, &ReadOptions::default()).expect("reads");
            times.push(t.elapsed());
            items = doc.requirement_count();
        }
        summary(label, items, &mut times);
    }

    let mut orgs = 0;
    // Each run starts once the audit sequencer has integrated the previous run's entries: on two
    // cores its hashing would otherwise be timed as part of the next import.
    let mut fresh = async || {
        sequencer_idle(&s).await;
        orgs += 1;
        s.org(&format!("bench-{orgs}")).await
    };
    let mut times = Vec::new();
    let mut items = 0;
    for _ in 0..runs {
        let org = fresh().await;
        let t = Instant::now();
        let body = upload(&s, &org, "low.json", &oscal, &[]).await;
        times.push(t.elapsed());
        items = body["frameworks"][0]["requirements_created"].as_u64().unwrap_or(0) as usize;
    }
    summary("API: OSCAL LOW catalog (2.5 MiB)", items, &mut times);

    let (mut f_times, mut m_times) = (Vec::new(), Vec::new());
    let (mut f_items, mut m_items) = (0, 0);
    let iso: Vec<_> = custos_frameworks::catalog::builtin()
        .expect("catalogue")
        .into_iter()
        .filter(|c| c.key == "iso27001-2022")
        .collect();
    for _ in 0..runs {
        let org = fresh().await;
        let ctx = custos_core::RequestCtx::operator(org.id, org.slug.clone());
        s.app().frameworks.seed(&ctx, &iso).await.expect("seed ISO 27001");
        let t = Instant::now();
        let body = upload(&s, &org, "csf.yaml", &csf, &[]).await;
        f_times.push(t.elapsed());
        f_items = body["frameworks"][0]["requirements_created"].as_u64().unwrap_or(0) as usize;
        let t = Instant::now();
        let body = upload(&s, &org, "mapping.yaml", &mapping, &[]).await;
        m_times.push(t.elapsed());
        m_items = body["mapping_sets"]
            .as_array()
            .map_or(0, |a| a.iter().map(|m| m["created"].as_u64().unwrap_or(0) as usize).sum());
    }
    summary("API: CSF 2.0 framework library", f_items, &mut f_times);
    summary("API: CSF ↔ ISO 27001 mapping library (pairs)", m_items, &mut m_times);

    // The database's own part: the requirements' rows alone, by one INSERT … SELECT (no
    // audit entries, no parsing, no transport), rolled back.
    let mut times = Vec::new();
    for _ in 0..runs {
        let org = fresh().await;
        times.push(sql_floor(&s, &org, n).await);
    }
    summary("SQL only: the rows and their indexes", n, &mut times);

    // The audit entries alone: as many as the import records, of the same shape.
    let mut times = Vec::new();
    for _ in 0..runs {
        let org = fresh().await;
        times.push(audit_floor(&s, &org, n).await);
    }
    summary("audit entries only: encode and insert", n, &mut times);

    // In process: the writer (rows, audit entries, commit) without HTTP or parsing.
    let document = import::read("bench", &big, &ReadOptions::default()).expect("reads");
    let mut times = Vec::new();
    for _ in 0..runs {
        let org = fresh().await;
        let ctx = custos_core::RequestCtx::operator(org.id, org.slug.clone());
        let t = Instant::now();
        s.app().frameworks.import_document(&ctx, &document, false).await.expect("imports");
        times.push(t.elapsed());
    }
    summary("in process: write (rows + audit entries + commit)", n, &mut times);

    let mut times = Vec::new();
    for _ in 0..runs {
        let org = fresh().await;
        let t = Instant::now();
        let body = upload(&s, &org, "big.yaml", &big, &[("as_job", "false")]).await;
        times.push(t.elapsed());
        assert_eq!(body["frameworks"][0]["requirements_created"].as_u64(), Some(n as u64), "{body}");
    }
    summary("API: generated library, within the request", n, &mut times);

    let mut times = Vec::new();
    for _ in 0..runs {
        let org = fresh().await;
        let t = Instant::now();
        let body = upload(&s, &org, "big.yaml", &big, &[]).await;
        let job = body["job"]["id"].as_str().expect("a large import runs as a job").to_owned();
        loop {
            let (_, j) = s.get(&format!("/api/compliance/jobs/{job}/"), &org.admin).await;
            match j["status"].as_str() {
                Some("succeeded") => break,
                Some("failed" | "cancelled") => panic!("import job failed: {j}"),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        times.push(t.elapsed());
    }
    summary("API: generated library, as a job (to success)", n, &mut times);
}

/// `n` requirement rows inserted by the database alone (as the import's rows: same columns,
/// similar text, the import's `gin_pending_list_limit`), timed, rolled back.
async fn sql_floor(s: &TestServer, org: &TestOrg, n: usize) -> Duration {
    use diesel_async::RunQueryDsl;
    let mut tx = s.db_pool().begin(org.id).await.expect("begin");
    let framework = uuid::Uuid::now_v7();
    diesel::sql_query(format!(
        "INSERT INTO frameworks (id, organization_id, name, framework_type) VALUES ('{framework}', '{}', 'Floor', 'CUSTOM')",
        org.id
    ))
    .execute(tx.conn())
    .await
    .expect("framework");
    diesel::sql_query("SET LOCAL gin_pending_list_limit = '64MB'").execute(tx.conn()).await.expect("set");
    let t = Instant::now();
    diesel::sql_query(format!(
        "INSERT INTO requirements (id, organization_id, framework_id, requirement_id, title, description, section, \
         requirement_type, priority, external_id, attributes) \
         SELECT gen_random_uuid(), '{org}', '{framework}', 'G' || (i / 100) || '.R' || (i % 100), \
                'Requirement ' || (i % 100) || ' of group ' || (i / 100) || ', generated for the benchmark', \
                'Requirement ' || (i % 100) || ' of group ' || (i / 100) || ', generated for the benchmark', \
                'Group ' || (i / 100), 'ADMINISTRATIVE', 'MEDIUM', 'urn:custos:bench:node:big:g' || i, \
                '{{\"library\": {{\"assessable\": true, \"depth\": 2}}}}' \
           FROM generate_series(1, {n}) i",
        org = org.id
    ))
    .execute(tx.conn())
    .await
    .expect("rows");
    t.elapsed()
}

/// Waits until no audit entry awaits the sequencer (or 60 s).
async fn sequencer_idle(s: &TestServer) {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = s.db.superuser().await;
    for _ in 0..600 {
        let left = diesel::sql_query("SELECT count(*) AS n FROM audit_entries").get_result::<N>(&mut conn).await;
        if left.map_or(true, |l| l.n == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` audit entries like an import's (a requirement's creation), encoded and inserted in one
/// transaction, timed, rolled back.
async fn audit_floor(s: &TestServer, org: &TestOrg, n: usize) -> Duration {
    let ctx = custos_core::RequestCtx::operator(org.id, org.slug.clone());
    let mut tx = s.db_pool().begin(org.id).await.expect("begin");
    let framework = uuid::Uuid::now_v7();
    let t = Instant::now();
    let changes = (0..n)
        .map(|i| {
            let id = uuid::Uuid::now_v7();
            custos_audit_chain::Change {
                action: "create",
                resource_type: "requirement",
                resource_id: id.to_string(),
                before: Value::Null,
                after: serde_json::json!({
                    "id": id, "framework": framework, "parent": framework, "requirement_id": format!("G{}.R{}", i / 100, i % 100),
                    "title": format!("Requirement {} of group {}, generated for the benchmark", i % 100, i / 100),
                    "requirement_type": "ADMINISTRATIVE", "priority": "MEDIUM", "compliance_status": "NOT_ASSESSED",
                    "external_id": format!("urn:custos:bench:node:big:g{}.r{}", i / 100, i % 100),
                }),
            }
        })
        .collect();
    custos_audit_chain::record_many(&mut tx, &ctx, changes).await.expect("record");
    t.elapsed()
}
