//! `custos-bench lists [--sizes 10000,100000,1000000] [--runs N]`: the lists at scale.
//!
//! For each size N one organisation is filled by bulk SQL (`INSERT … SELECT … generate_series`,
//! not through the API) with N requirements in 10 frameworks and N evidence items: ids ordered in
//! time as UUIDv7 are, a spread of value sets, words in titles and descriptions. The two tables'
//! secondary indexes are dropped for the fill and rebuilt after it (the usual bulk-load order:
//! maintaining three trigram indexes row by row doubles a fill), then `VACUUM ANALYZE` sets the
//! visibility map and the statistics as autovacuum would. Sizes are filled in turn, each into the
//! same tables, so the last organisation is measured beside the others' rows.
//!
//! Then each list is asked for over REST through the running gateway, one request at a time,
//! with a page of 100: p50 and p99 of `--runs` requests (default 40) after three to warm up, and
//! how each grows from the first size to the last (the goal: at most 3×). Targets at 1,000,000
//! rows: p99 < 50 ms for page 1 with any filter and for the frameworks list, p99 < 100 ms for a
//! search. Figures marked (info) have no target: a page number deep in a list reads every row
//! before it (that is what the cursor is for), and a word that most rows contain is counted up
//! to 10,001 matches before the estimate is taken.

use std::time::{Duration, Instant};

use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use diesel::sql_types::{Integer, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;

const REQ: &str = "/api/compliance/requirements/";
const EV: &str = "/api/compliance/evidence/";

/// p50 and p99, in milliseconds.
type Percentiles = (f64, f64);

struct Case {
    label: &'static str,
    path: String,
    /// p99 target in ms at 1,000,000 rows (none: informational).
    target_ms: Option<f64>,
}

pub async fn run(args: &[String]) {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let sizes: Vec<i64> = flag("--sizes")
        .map(|s| s.split(',').map(|n| n.trim().replace('_', "").parse().expect("--sizes 10000,100000,…")).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let runs: usize = flag("--runs").and_then(|r| r.parse().ok()).unwrap_or(40).max(2);
    let s = TestServer::start_with(ServerOptions {
        rate_limit_auth_per_hour: Some(u32::MAX),
        db_max_connections: Some(16),
        ..Default::default()
    })
    .await;
    println!(
        "custos lists benchmark — {} cores, PostgreSQL at {}; REST, one request at a time, page of 100, {runs} runs each",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        custos_testkit::admin_url()
    );
    // Per case: its label, target and (p50, p99) per size, in the order of `sizes`.
    let mut figures: Vec<(&'static str, Option<f64>, Vec<Percentiles>)> = Vec::new();
    for &n in &sizes {
        let org = s.org(&format!("lists-{n}")).await;
        let started = Instant::now();
        fill(&s, &org, n).await;
        println!();
        println!("{n} requirements and {n} evidence items: filled in {:.1}s", started.elapsed().as_secs_f64());
        for case in cases(&s, &org, n).await {
            let (p50, p99) = measure(&s, &org, &case.path, runs).await;
            println!("  {:<58} p50 {:>8.1} ms   p99 {:>8.1} ms", case.label, p50, p99);
            match figures.iter_mut().find(|(label, _, _)| *label == case.label) {
                Some((_, _, per_size)) => per_size.push((p50, p99)),
                None => figures.push((case.label, case.target_ms, vec![(p50, p99)])),
            }
        }
    }
    if sizes.len() < 2 {
        return;
    }
    let (first, last) = (sizes[0], sizes[sizes.len() - 1]);
    println!();
    println!("growth from {first} to {last} rows (goal: at most 3×), and the targets at {last}:");
    for (label, target, per_size) in &figures {
        let (a, b) = (per_size[0], per_size[per_size.len() - 1]);
        let target = match target {
            Some(t) => format!("p99 < {t:.0} ms: {}", if b.1 < *t { "met" } else { "MISSED" }),
            None => "(info)".to_owned(),
        };
        println!("  {:<58} p50 {:>5.1}×   p99 {:>5.1}×   {target}", label, b.0 / a.0, b.1 / a.1);
    }
}

/// The lists asked for at size `n`: page 1 plain and filtered, a search for one id, the
/// frameworks list, and a deep page by cursor and by number.
async fn cases(s: &TestServer, org: &TestOrg, n: i64) -> Vec<Case> {
    let mid = n / 2;
    let assignee: uuid::Uuid = {
        #[derive(diesel::QueryableByName)]
        struct Id {
            #[diesel(sql_type = SqlUuid)]
            id: uuid::Uuid,
        }
        let mut conn = s.db.superuser().await;
        diesel::sql_query("SELECT id FROM users WHERE organization_id = $1 ORDER BY email LIMIT 1")
            .bind::<SqlUuid, _>(org.id)
            .get_result::<Id>(&mut conn)
            .await
            .expect("a user")
            .id
    };
    // Deep positions, taken once through gRPC (whose page answers carry the next cursor): the
    // row at 90% of each list.
    let deep = (n * 9 / 10) as u32;
    let mut frameworks = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let requirement_cursor = frameworks
        .list_requirements(pb::ListRequirementsRequest { page: Some(deep), page_size: Some(1), ..Default::default() })
        .await
        .expect("a deep requirement")
        .into_inner()
        .next_cursor
        .expect("a cursor");
    let mut evidence = EvidenceServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let evidence_cursor = evidence
        .list_evidence(pb::ListEvidenceRequest { page: Some(deep), page_size: Some(1), ..Default::default() })
        .await
        .expect("a deep evidence item")
        .into_inner()
        .next_cursor
        .expect("a cursor");
    let case = |label, path: String, target_ms| Case { label, path, target_ms };
    vec![
        case("requirements: page 1", format!("{REQ}?page_size=100"), Some(50.0)),
        case(
            "requirements: page 1, compliance_status + priority",
            format!("{REQ}?page_size=100&compliance_status=NON_COMPLIANT&priority=HIGH"),
            Some(50.0),
        ),
        case(
            "requirements: page 1, assigned_to (1% of rows)",
            format!("{REQ}?page_size=100&assigned_to={assignee}"),
            Some(50.0),
        ),
        case("requirements: page 1, overdue", format!("{REQ}?page_size=100&overdue=true"), Some(50.0)),
        case("requirements: search for one id", format!("{REQ}?page_size=100&search=R-{mid:07}"), Some(100.0)),
        case("requirements: search for a common word (info)", format!("{REQ}?page_size=100&search=encryption"), None),
        case(
            "requirements: page after a cursor at 90%",
            format!("{REQ}?page_size=100&cursor={requirement_cursor}"),
            Some(50.0),
        ),
        case("requirements: page number at 50% (info)", format!("{REQ}?page_size=100&page={}", (n / 200).max(1)), None),
        case("frameworks list (requirement counts)", "/api/compliance/frameworks/".to_owned(), Some(50.0)),
        case("evidence: page 1", format!("{EV}?page_size=100"), Some(50.0)),
        case(
            "evidence: page 1, evidence_type + status",
            format!("{EV}?page_size=100&evidence_type=REPORT&status=VERIFIED"),
            Some(50.0),
        ),
        case("evidence: search for one id", format!("{EV}?page_size=100&search=E-{mid:07}"), Some(100.0)),
        case(
            "evidence: page after a cursor at 90%",
            format!("{EV}?page_size=100&cursor={evidence_cursor}"),
            Some(50.0),
        ),
    ]
}

async fn measure(s: &TestServer, org: &TestOrg, path: &str, runs: usize) -> Percentiles {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", s.base);
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 3 {
        let started = Instant::now();
        let resp =
            client.get(&url).header("Authorization", format!("Token {}", org.viewer)).send().await.expect("request");
        let status = resp.status();
        let body = resp.bytes().await.expect("body");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        if i >= 3 {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(at(0.5)), ms(at(0.99)))
}

/// Fills `org` with `n` requirements (in 10 frameworks) and `n` evidence items, the two tables
/// at once on two connections.
async fn fill(s: &TestServer, org: &TestOrg, n: i64) {
    let frameworks = format!(
        "INSERT INTO frameworks (id, organization_id, name, framework_type)
         SELECT gen_random_uuid(), '{}', 'Bench framework ' || k, 'CUSTOM' FROM generate_series(1, 10) k",
        org.id
    );
    s.superuser_sql(&frameworks).await.expect("frameworks");
    let requirements = async {
        let mut conn = s.db.superuser().await;
        let kept = drop_indexes(&mut conn, "requirements").await;
        sql(&mut conn, "SET synchronous_commit = off").await;
        diesel::sql_query(format!(
            "INSERT INTO requirements (id, organization_id, framework_id, requirement_id, title, description, section,
                                       requirement_type, priority, compliance_status, is_implemented, assigned_to,
                                       next_assessment_date, created_at, updated_at)
             SELECT {id}, $1, f.ids[1 + g % 10], 'R-' || lpad(g::text, 7, '0'),
                    w[1 + g % 17] || ' ' || w[1 + (g / 17) % 17] || ' ' || w[1 + (g / 289) % 17] || ' requirement',
                    'The organisation shall ' || lower(w[1 + (g / 7) % 17]) || ' and ' || lower(w[1 + (g / 11) % 17])
                      || ' every ' || lower(w[1 + (g / 13) % 17]) || ' record in scope.',
                    'Section ' || (g % 40),
                    (ARRAY['TECHNICAL','ADMINISTRATIVE','PHYSICAL','ORGANIZATIONAL','PEOPLE','LEGAL','PROCEDURAL'])[1 + g % 7],
                    (ARRAY['CRITICAL','HIGH','MEDIUM','LOW'])[1 + (g / 4) % 4],
                    (ARRAY['COMPLIANT','PARTIALLY_COMPLIANT','NON_COMPLIANT','NOT_ASSESSED'])[1 + g % 4],
                    g % 3 = 0,
                    CASE WHEN g % 25 = 0 THEN u.ids[1 + (g / 25) % cardinality(u.ids)] END,
                    current_date + (g % 730 - 365),
                    t, t
               FROM generate_series(1, $2) g
               CROSS JOIN LATERAL (SELECT now() - make_interval(secs => $2 - g) AS t) at
               CROSS JOIN (SELECT array_agg(id ORDER BY name) AS ids FROM frameworks WHERE organization_id = $1) f
               CROSS JOIN (SELECT array_agg(id ORDER BY email) AS ids FROM users WHERE organization_id = $1) u
               CROSS JOIN (SELECT ARRAY['Access','Control','Encryption','Logging','Monitoring','Backup','Incident',
                                        'Response','Vendor','Risk','Asset','Inventory','Training','Awareness',
                                        'Network','Segmentation','Retention'] AS w) words",
            id = v7_id("t", '8')
        ))
        .bind::<SqlUuid, _>(org.id)
        .bind::<Integer, _>(n as i32)
        .execute(&mut conn)
        .await
        .expect("requirements");
        restore_indexes(&mut conn, kept).await;
    };
    let evidence = async {
        let mut conn = s.db.superuser().await;
        let kept = drop_indexes(&mut conn, "evidence").await;
        sql(&mut conn, "SET synchronous_commit = off").await;
        diesel::sql_query(format!(
            "INSERT INTO evidence (id, organization_id, title, description, notes, evidence_type, status, source,
                                   collected_by, collected_at, valid_until, created_at, updated_at)
             SELECT {id}, $1,
                    'Evidence E-' || lpad(g::text, 7, '0') || ': ' || w[1 + g % 17] || ' ' || lower(w[1 + (g / 17) % 17]),
                    'Exported ' || lower(w[1 + (g / 7) % 17]) || ' records of the ' || lower(w[1 + (g / 11) % 17]) || ' system.',
                    'Collected for the ' || lower(w[1 + (g / 13) % 17]) || ' review.',
                    (ARRAY['LOG_FILE','SCREENSHOT','DOCUMENT','EMAIL','NETWORK_CAPTURE','DATABASE_EXPORT','CONFIGURATION',
                           'POLICY','REPORT','CERTIFICATE','AUDIT_TRAIL','INTERVIEW','PHOTO','VIDEO','OTHER'])[1 + g % 15],
                    (ARRAY['COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED',
                           'COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED','COLLECTED',
                           'VERIFIED','VERIFIED','VERIFIED','ANALYZED','SEALED','RELEASED'])[1 + (g / 15) % 20],
                    'bench', 'collector' || (g % 20) || '@bench.test', t,
                    CASE WHEN g % 5 = 0 THEN current_date + (g % 730 - 365) END,
                    t, t
               FROM generate_series(1, $2) g
               CROSS JOIN LATERAL (SELECT date_trunc('milliseconds', now()) - make_interval(secs => $2 - g) AS t) at
               CROSS JOIN (SELECT ARRAY['Access','Control','Encryption','Logging','Monitoring','Backup','Incident',
                                        'Response','Vendor','Risk','Asset','Inventory','Training','Awareness',
                                        'Network','Segmentation','Retention'] AS w) words",
            id = v7_id("t", '9')
        ))
        .bind::<SqlUuid, _>(org.id)
        .bind::<Integer, _>(n as i32)
        .execute(&mut conn)
        .await
        .expect("evidence");
        restore_indexes(&mut conn, kept).await;
    };
    tokio::join!(requirements, evidence);
    let mut conn = s.db.superuser().await;
    sql(&mut conn, "VACUUM ANALYZE requirements, evidence, frameworks, framework_requirement_counts").await;
}

/// An id ordered in time, as the service's UUIDv7 keys are: the milliseconds of `at`, then
/// bits of the row number (which keep ids of one fill apart; `variant` those of two tables).
fn v7_id(at: &str, variant: char) -> String {
    format!(
        "(lpad(to_hex(floor(extract(epoch FROM {at}) * 1000)::bigint), 12, '0') || '7' || lpad(to_hex(g % 4096), 3, '0')
          || '{variant}' || lpad(to_hex((g / 4096) % 4096), 3, '0') || lpad(to_hex(g), 12, '0'))::uuid"
    )
}

async fn sql(conn: &mut custos_db::PgConn, statement: &str) {
    diesel::sql_query(statement).execute(conn).await.unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Drops `table`'s indexes that back no constraint; their definitions, to rebuild them.
async fn drop_indexes(conn: &mut custos_db::PgConn, table: &str) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Index {
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = Text)]
        def: String,
    }
    let indexes: Vec<Index> = diesel::sql_query(
        "SELECT c.relname::text AS name, pg_get_indexdef(i.indexrelid) AS def
           FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
          WHERE i.indrelid = $1::regclass
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
    )
    .bind::<Text, _>(table)
    .load(conn)
    .await
    .expect("indexes");
    for index in &indexes {
        sql(conn, &format!("DROP INDEX {}", index.name)).await;
    }
    indexes.into_iter().map(|i| i.def).collect()
}

async fn restore_indexes(conn: &mut custos_db::PgConn, definitions: Vec<String>) {
    sql(conn, "SET maintenance_work_mem = '256MB'").await;
    for def in definitions {
        sql(conn, &def).await;
    }
}
