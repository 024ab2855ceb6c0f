//! Where sequenced entries live: in runs of `audit_contents` beside the log, moved there by the
//! sequencer, searched run by run, and carried across the migration that introduced them.

use custos_testkit::audit_sql::ALL_AUDIT_FIELDS;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::audit_chain::{checkpoint, entries, sample, tamper, verify};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(s: &TestServer, sql: &str) -> i64 {
    let mut conn = s.db.superuser().await;
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}")).n
}

/// `n` entries recorded in one transaction; those whose index is in `marked` carry `needle` in
/// their after-state.
async fn record_many(s: &TestServer, org: uuid::Uuid, n: usize, marked: &[usize], needle: &str) {
    record_many_as(s, org, "acme", n, marked, needle, |i| i.to_string()).await
}

async fn record_many_as(
    s: &TestServer,
    org: uuid::Uuid,
    operator: &str,
    n: usize,
    marked: &[usize],
    needle: &str,
    resource_id: impl Fn(usize) -> String,
) {
    let ctx = custos_core::RequestCtx::operator(org, operator);
    let mut tx = s.db_pool().begin(org).await.unwrap();
    for i in 0..n {
        let note = if marked.contains(&i) { format!("entry {i} {needle}") } else { format!("entry {i}") };
        custos_audit_chain::record(
            &mut tx,
            &ctx,
            custos_audit_chain::Change {
                action: "create",
                resource_type: "probe",
                resource_id: resource_id(i),
                before: Value::Null,
                after: json!({ "note": note }),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sequencing_moves_entries_into_runs_beside_the_log() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 700, &[], "").await;
    let size = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    assert!(size >= 700);
    let o = org.id;
    // Nothing sequenced is left in the writers' table; every entry is in exactly one run's contents.
    assert_eq!(count(&s, &format!("SELECT count(*) AS n FROM audit_entries WHERE organization_id = '{o}'")).await, 0);
    assert_eq!(
        count(
            &s,
            &format!("SELECT sum(cardinality(fields))::bigint AS n FROM audit_contents WHERE organization_id = '{o}'")
        )
        .await,
        size
    );
    // The contents' runs are the log's runs.
    let mismatched = format!(
        "SELECT count(*) AS n FROM audit_log l FULL JOIN audit_contents c USING (organization_id, first_seq)
          WHERE organization_id = '{o}' AND (c.fields IS NULL OR l.event_ids IS NULL OR cardinality(c.fields) <> length(l.event_ids) / 16)"
    );
    assert_eq!(count(&s, &mismatched).await, 0);
    assert_eq!(
        count(&s, &format!("SELECT count(*) AS n FROM {ALL_AUDIT_FIELDS} WHERE organization_id = '{o}'")).await,
        size
    );
    assert_eq!(verify(&s, &org).await["ok"], true);

    // The hand-over is the sequencer's alone: the service role cannot empty the writers' table
    // through it for entries not in the log, nor for another organisation.
    let other = s.org("other").await;
    record_many(&s, other.id, 3, &[], "").await;
    let mut conn = custos_db::connect_once(&s.db.url).await.unwrap();
    diesel::sql_query("SET ROLE custos_app").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!("SELECT set_config('custos.org_id', '{}', false)", other.id))
        .execute(&mut conn)
        .await
        .unwrap();
    let refused = diesel::sql_query(format!("SELECT custos_audit_dequeue('{o}', 0, 1000000)")).execute(&mut conn).await;
    assert!(refused.is_err(), "another organisation's entries");
    let removed: Count = diesel::sql_query(format!("SELECT custos_audit_dequeue('{}', 0, 1000000) AS n", other.id))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed.n, 0, "entries not yet in the log stay queued");
    drop(conn);
    let queued = format!("SELECT count(*) AS n FROM audit_entries WHERE organization_id = '{}'", other.id);
    checkpoint(&s, &other).await;
    assert_eq!(count(&s, &queued).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_reads_the_runs_newest_first_across_chunks_and_pages() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // Matches far apart, so that the search needs several chunks of candidates and several runs.
    let marked = [5, 300, 301, 1200, 1790];
    record_many(&s, org.id, 1800, &marked, "needle-7q").await;
    checkpoint(&s, &org).await;

    let all = entries(&s, &org, "?search=NEEDLE-7q&page_size=100").await;
    let ids: Vec<&str> = all.iter().map(|e| e["resource_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1790", "1200", "301", "300", "5"], "every match, newest first");

    // Page by page, two at a time: the same entries, each once.
    let mut url = "/api/compliance/audit-log/?search=needle-7q&page_size=2".to_owned();
    let mut paged = Vec::new();
    loop {
        let (status, page) = s.get(&url, &org.auditor).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["results"].as_array().unwrap().iter().map(|e| e["resource_id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    // Combined with a filter, and matching an indexed value rather than the fields.
    assert_eq!(entries(&s, &org, "?search=needle-7q&resource_id=300").await.len(), 1);
    assert_eq!(entries(&s, &org, "?search=needle-7q&resource_id=299").await.len(), 0);
    assert_eq!(entries(&s, &org, "?search=PROB&resource_id=1799").await.len(), 1);
    assert!(entries(&s, &org, "?search=nothing-like-it").await.is_empty());
}

/// A search walked page by page from `query`: the resource ids found, and each page's size.
async fn search_pages(s: &TestServer, org: &TestOrg, query: &str) -> (Vec<String>, Vec<usize>) {
    let mut url = format!("/api/compliance/audit-log/?{query}");
    let (mut ids, mut sizes) = (Vec::new(), Vec::new());
    loop {
        let (status, page) = s.get(&url, &org.auditor).await;
        assert_eq!(status, 200, "{url}: {page}");
        let results = page["results"].as_array().unwrap();
        sizes.push(results.len());
        ids.extend(results.iter().map(|e| e["resource_id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return (ids, sizes),
        }
        assert!(sizes.len() < 100, "the search does not end: {sizes:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_that_spends_its_scan_budget_answers_with_a_cursor_to_carry_on() {
    let s = TestServer::start_with(ServerOptions { audit_search_scan: Some(300), ..Default::default() }).await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 1800, &[5, 1790], "needle-7q").await;
    checkpoint(&s, &org).await;
    let actor = entries(&s, &org, "?resource_type=probe&page_size=1").await[0]["actor"].as_str().unwrap().to_owned();

    // Nothing narrows it (the runs are read directly), then an actor filter (the index is walked).
    for query in ["search=needle-7q&page_size=10".to_owned(), format!("search=needle-7q&page_size=10&actor={actor}")] {
        let (ids, sizes) = search_pages(&s, &org, &query).await;
        assert_eq!(ids, ["1790", "5"], "{query}: every match, newest first, each once");
        // 1,800 entries at most 300 (and one window) a request: the first page stops short
        // of its ten, with a cursor; so does every page but the last.
        assert!(sizes.len() >= 3, "{query}: {sizes:?}");
        assert!(sizes[0] < 10, "{query}: {sizes:?}");
    }
    // A page the budget does not cut short is cut by its size, as always.
    let (ids, sizes) = search_pages(&s, &org, "search=entry%20179&page_size=1").await;
    let expected: Vec<String> = (1790..1800).rev().chain([179]).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(sizes.iter().all(|n| *n <= 1), "{sizes:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_search_matches_values_as_written_whatever_json_escapes_in_them() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let odd = r#"odd"id\x"#;
    record_many_as(&s, org.id, "acme", 40, &[7], r#"said "hi" \ then Ölund"#, |i| {
        if i == 30 { odd.to_owned() } else { i.to_string() }
    })
    .await;
    checkpoint(&s, &org).await;
    let found = |query: String| {
        let (s, org) = (&s, &org);
        async move { search_pages(s, org, &query).await.0 }
    };
    // A quote and a backslash in the after-state's text, stored escaped in its JSON.
    assert_eq!(found(r#"search=%22HI%22%20%5C"#.into()).await, ["7"]);
    assert_eq!(found(r#"search=%22hi%22%20%5C&action=create"#.into()).await, ["7"]);
    // Case folding beyond ASCII.
    assert_eq!(found("search=%C3%B6LUND".into()).await, ["7"]);
    // An indexed value with both, found through the fields and through the index.
    let encoded = "odd%22id%5Cx";
    assert_eq!(found(format!("search={encoded}")).await, [odd]);
    assert_eq!(found(format!("search=%22ID%5C&resource_id={encoded}")).await, [odd]);
    assert!(found(format!("search=said&resource_id={encoded}")).await.is_empty());
    assert!(found(r#"search=%5C%22hi"#.into()).await.is_empty(), "the escape itself is not in the text");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_contents_migration_moves_existing_entries_and_back() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 300, &[7], "moved").await;
    checkpoint(&s, &org).await;
    let seq = entries(&s, &org, "?search=moved").await[0]["seq"].as_i64().unwrap();
    let (status, _) = s
        .post(
            &format!("/api/compliance/audit-log/{seq}/withhold/"),
            &org.admin,
            json!({ "fields": ["after.note"], "reason": "test" }),
        )
        .await;
    assert_eq!(status, 200);
    let size = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    let listing = "?resource_type=probe&page_size=100";
    let before: Vec<Value> = entries(&s, &org, listing).await;
    let (_, withheld) = s.get(&format!("/api/compliance/audit-log/{seq}/"), &org.auditor).await;
    assert_eq!(withheld["withheld_fields"], json!(["after.note"]), "{withheld}");
    let o = org.id;

    // Back to one row per entry, as the previous release kept them.
    // The migrations after it first, newest first, then it.
    let mut reverted = Vec::new();
    while !reverted.last().is_some_and(|v: &String| v.ends_with("000015")) {
        assert!(reverted.len() < 40, "000015 was never reverted: {reverted:?}");
        reverted.push(custos_db::revert_last_migration(&s.db.url).await.expect("revert"));
    }
    let numbers: Vec<u32> = reverted.iter().map(|v| v[v.len() - 6..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] == w[1] + 1), "one at a time, newest first: {reverted:?}");
    assert_eq!(
        count(&s, &format!("SELECT count(*) AS n FROM audit_entries WHERE organization_id = '{o}'")).await,
        size
    );
    assert_eq!(count(&s, "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'audit_contents'").await, 0);

    // And forward again: every entry moves into its run, the log verifies and reads as before.
    custos_db::migrate(&s.db.url).await.expect("migrate");
    assert_eq!(count(&s, &format!("SELECT count(*) AS n FROM audit_entries WHERE organization_id = '{o}'")).await, 0);
    assert_eq!(verify(&s, &org).await["ok"], true);
    assert_eq!(entries(&s, &org, listing).await, before);
    assert_eq!(s.get(&format!("/api/compliance/audit-log/{seq}/"), &org.auditor).await.1, withheld);
}

/// How many times verification had to read the index row by row (because its digests disagreed
/// with the fields), in this process.
async fn index_rereads(s: &TestServer, org: &custos_testkit::TestOrg) -> f64 {
    let resp = s.raw(reqwest::Method::GET, "/metrics", Some(&org.viewer), None).await;
    sample(&resp.text().await.unwrap(), "custos_audit_verification_index_rereads_total").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn full_verification_checks_the_index_by_digests_that_agree_with_the_fields() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // Index values that are awkward to write out: multibyte text, spaces, quotes, backslashes,
    // newlines; across several runs, and one entry's actor withheld.
    record_many_as(&s, org.id, "Zoë Ångström (ops)", 600, &[42], "odd", |i| {
        format!("res {i} \"quoted\" back\\slash\nnew line é")
    })
    .await;
    checkpoint(&s, &org).await;
    let seq = entries(&s, &org, "?search=odd").await[0]["seq"].as_i64().unwrap();
    let (status, redacted) = s
        .post(
            &format!("/api/compliance/audit-log/{seq}/withhold/"),
            &org.admin,
            json!({ "fields": ["actor"], "reason": "test" }),
        )
        .await;
    assert_eq!((status.as_u16(), redacted["actor"].clone()), (200, json!("[withheld]")), "{redacted}");
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    assert_eq!(index_rereads(&s, &org).await, 0.0, "an intact index agrees with the fields block by block");

    // What listings would find an entry by, edited alone: the digests disagree, the index is read
    // row by row, and the entry is named.
    let o = org.id;
    tamper(
        &s,
        &format!("UPDATE audit_index SET resource_id = resource_id || ' ' WHERE organization_id = '{o}' AND seq = 300"),
    )
    .await;
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(300)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("indexed resource_id"), "{report}");
    assert!(index_rereads(&s, &org).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_sequenced_but_not_yet_moved_verify_and_export_from_where_they_were_written() {
    let mut s = TestServer::start().await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 400, &[], "").await;
    checkpoint(&s, &org).await;
    // The server's own sequencer and indexer stopped: more entries, sequenced and checkpointed
    // here but not indexed, so not yet moved into runs.
    let server = s.server.take().expect("running");
    let app = server.app.clone();
    server.shutdown().await;
    let ctx = custos_core::RequestCtx::operator(org.id, "acme");
    let mut tx = app.db.begin(org.id).await.unwrap();
    for i in 0..300 {
        let change = custos_audit_chain::Change {
            action: "create",
            resource_type: "probe",
            resource_id: i.to_string(),
            before: Value::Null,
            after: json!({ "note": format!("later {i}") }),
        };
        custos_audit_chain::record(&mut tx, &ctx, change).await.unwrap();
    }
    tx.commit().await.unwrap();
    let chain = app.audit.chain();
    while chain.integrate(org.id, true).await.unwrap().sequenced > 0 {}
    let o = org.id;
    let queued = format!("SELECT count(*) AS n FROM audit_entries WHERE organization_id = '{o}'");
    assert_eq!(count(&s, &queued).await, 300, "the new entries are still where their writer wrote them");

    let depth = custos_audit_chain::verify::Depth::Content;
    let report = chain.verify(org.id, None, depth).await.unwrap();
    assert!(report.ok && report.entries_checked >= 700, "{report:?}");
    assert_eq!(count(&s, &queued).await, 300, "verification reads them where they are");

    // An edit to one of them is caught there too, and named.
    let edit = |from: &str, to: &str| {
        format!(
            "UPDATE audit_entries SET fields = replace(fields, '\"{from}\"', '\"{to}\"')
              WHERE organization_id = '{o}' AND fields LIKE '%\"{from}\"%'"
        )
    };
    let mut conn = s.db.superuser().await;
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    assert_eq!(diesel::sql_query(edit("later 250", "later 25O")).execute(&mut conn).await.unwrap(), 1);
    let report = chain.verify(org.id, None, depth).await.unwrap();
    assert!(!report.ok && report.problem.as_deref().unwrap_or("").contains("hash mismatch"), "{report:?}");
    assert!(report.first_bad_seq.unwrap() >= 400, "{report:?}");
    assert_eq!(diesel::sql_query(edit("later 25O", "later 250")).execute(&mut conn).await.unwrap(), 1);

    // Exporting settles the log first: the entries move into their runs, and the file verifies.
    let mut export = Vec::new();
    chain.export(org.id, &mut export, |_, _| {}).await.expect("export");
    assert_eq!(count(&s, &queued).await, 0);
    let offline = custos_audit_chain::export::verify_file(&export[..], vec![], |_, _| {}).expect("readable");
    assert!(offline.ok && offline.entries >= 700, "{offline:?}");
    assert!(chain.verify(org.id, None, depth).await.unwrap().ok);
}

/// Full verification over a pool of `connections` of its own (the server's is left alone), in
/// steps of `batch` entries: whether it read beside its snapshot, and what it found.
async fn verify_on_pool(s: &TestServer, org: uuid::Uuid, connections: usize, batch: usize) -> (bool, Value) {
    let db = custos_db::Db::connect(&custos_db::DbConfig {
        max_connections: connections,
        ..custos_db::DbConfig::new(&s.db.url)
    })
    .unwrap();
    let app_chain = s.app().audit.chain();
    let config = custos_audit_chain::SequencerConfig { verify_batch: batch, ..app_chain.config().clone() };
    let chain = app_chain.with_db(db).with_config(config);
    let mut pass = chain.open_pass(org, None, custos_audit_chain::verify::Depth::Content, None).await.unwrap();
    let beside = pass.reads_beside();
    while pass.step().await.unwrap() {}
    let r = pass.finish().await.unwrap();
    let found = json!({
        "ok": r.ok, "first_bad_seq": r.first_bad_seq, "problem": r.problem, "tree_size": r.tree_size,
        "entries_checked": r.entries_checked, "checkpoints_checked": r.checkpoints_checked,
    });
    (beside, found)
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_on_one_connection_finds_what_two_on_one_snapshot_find() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 1300, &[], "").await;
    checkpoint(&s, &org).await;
    let o = org.id;
    // Steps of 300 entries, so that steps and runs of 256 do not line up.
    let compare = async || {
        let (two_read_beside, on_two) = verify_on_pool(&s, o, 2, 300).await;
        let (one_read_beside, on_one) = verify_on_pool(&s, o, 1, 300).await;
        assert!(two_read_beside, "a pool with a connection to spare reads beside the snapshot");
        assert!(!one_read_beside, "a pool with none to spare falls back to the one connection");
        assert_eq!(on_one, on_two);
        on_one
    };
    let intact = compare().await;
    assert_eq!(intact["ok"], true, "{intact}");
    assert!(intact["entries_checked"].as_u64().unwrap() >= 1300, "{intact}");

    // Only the index disagrees (what the second connection reads): named alike.
    tamper(&s, &format!("UPDATE audit_index SET action = 'forged' WHERE organization_id = '{o}' AND seq = 1000")).await;
    let found = compare().await;
    assert_eq!((found["ok"].clone(), found["first_bad_seq"].clone()), (json!(false), json!(1000)), "{found}");
    assert!(found["problem"].as_str().unwrap().contains("indexed action"), "{found}");

    // An earlier field edited (what the first reads): that entry is named first, alike.
    tamper(&s, &custos_testkit::audit_sql::edit_fields(o, 520, "replace($F, 'entry', 'forged')")).await;
    let found = compare().await;
    assert_eq!((found["ok"].clone(), found["first_bad_seq"].clone()), (json!(false), json!(520)), "{found}");
    assert!(found["problem"].as_str().unwrap().contains("hash mismatch"), "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_backlog_is_pruned_in_steps_each_recorded_and_verifiable() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 900, &[], "").await;
    let size = checkpoint(&s, &org).await["tree_size"].as_u64().unwrap();
    let step = custos_audit_chain::SequencerConfig { prune_step: 256, ..Default::default() };
    let chain = s.app().audit.chain().with_config(step);

    let outcome = chain.prune_before(org.id, time::OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!((outcome.removed, outcome.pruned_before), (size, size), "everything old goes, step by step");
    // One recorded pruning per step of at most 256 entries, each naming the boundary it left.
    let prunings = entries(&s, &org, "?action=prune&page_size=100").await;
    assert!(prunings.len() as u64 >= size.div_ceil(256), "{} prunings for {size} entries", prunings.len());
    let mut boundaries: Vec<u64> = prunings.iter().map(|p| p["after"]["pruned_before"].as_u64().unwrap()).collect();
    boundaries.reverse();
    assert!(boundaries.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= 256), "{boundaries:?}");
    assert_eq!(boundaries.last(), Some(&size));
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_seq"].clone()), (json!(true), json!(size)), "{report}");
}

/// The server prunes on its own: the organisation's `audit-retention` schedule starts a job
/// (daily by default; here an admin runs it now), which prunes past the retention period.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_retention_job_prunes_past_retention() {
    let s = TestServer::start_with(ServerOptions { audit_retention_days: Some(30), ..Default::default() }).await;
    let org = s.org("acme").await;
    record_many(&s, org.id, 300, &[], "").await;
    let size = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    // Entries recorded, as far as retention can tell, 40 days ago.
    tamper(
        &s,
        &format!(
            "UPDATE audit_index SET recorded_at = recorded_at - interval '40 days' WHERE organization_id = '{}'",
            org.id
        ),
    )
    .await;
    let (status, job) = s.post("/api/compliance/schedules/audit-retention/run/", &org.admin, json!({})).await;
    assert_eq!(status, 201, "{job}");
    let path = format!("/api/compliance/jobs/{}/", job["id"].as_str().unwrap());
    let started = std::time::Instant::now();
    let job = loop {
        let (_, job) = s.get(&path, &org.admin).await;
        if job["status"] == "succeeded" || started.elapsed() > std::time::Duration::from_secs(30) {
            break job;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["removed"], json!(size), "{job}");
    assert_eq!(job["counters"]["removed"], json!(size), "{job}");
    let prunings = entries(&s, &org, "?action=prune").await;
    assert!(!prunings.is_empty(), "the job pruned");
    assert_eq!(prunings[0]["actor"], "system:audit-retention");
    assert_eq!(prunings[0]["after"]["pruned_before"], json!(size), "{}", prunings[0]);
}
