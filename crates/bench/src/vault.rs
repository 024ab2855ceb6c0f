//! `custos-bench vault [--rows N] [--runs R]`: the vault's figures.
//!
//! Field encryption and decryption throughput (1 KiB values, `encrypt_field`/`decrypt_field`),
//! on one thread and on every core, R runs each (default 5; target: ≥ 200,000 encryptions/s on
//! one core), beside the other per-value costs (a small field, a blind index, a data key's
//! rewrap); these run before the test server starts, so that nothing else shares the cores.
//!
//! Then blind-index lookups among N encrypted e-mail addresses (default 1,000,000; target: p99
//! under 5 ms): a table of the benchmark's own in the test database, the platform's shape (RLS by
//! organisation, a btree on `(organization_id, email_index)`), filled with really encrypted and
//! indexed addresses generated in Rust and inserted in bulk; then 2,000 lookups of random
//! present addresses and 200 of absent ones, one after another through the app pool, each as a
//! request would do it: the blind index of the address as typed (normalised), a tenant
//! transaction, the query, the hit decrypted and compared.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_testkit::TestServer;
use custos_vault::{
    BlindIndex, DataKey, FieldContext, KeyProvider, LocalKeyProvider, MasterKey, MasterKeys, Normalize, WrapContext,
    decrypt_field, encrypt_field, rewrap,
};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

diesel::table! {
    bench_encrypted (id) {
        id -> Uuid,
        organization_id -> Uuid,
        email_index -> Bytea,
        email -> Bytea,
    }
}

const FIELD: usize = 1024;
const CHUNK: usize = 20_000;
const PRESENT: usize = 2_000;
const ABSENT: usize = 200;
const TARGET_PER_SECOND: f64 = 200_000.0;
const TARGET_P99_MS: f64 = 5.0;

fn summary(label: &str, items: usize, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[times.len() / 2];
    println!(
        "{label:<52} {items:>7} items  median {:>8.1} ms  (min {:.1}, max {:.1})  {:>7.2} µs/item  {:>9.0} items/s",
        ms(median),
        ms(times[0]),
        ms(times[times.len() - 1]),
        median.as_secs_f64() * 1e6 / items as f64,
        items as f64 / median.as_secs_f64()
    );
}

/// How many operations make a run of about half a second (at least 1,000), from a first 1,000.
fn calibrate(mut op: impl FnMut()) -> usize {
    let t = Instant::now();
    for _ in 0..1_000 {
        op();
    }
    let per = t.elapsed().as_secs_f64() / 1_000.0;
    (((0.5 / per) as usize).clamp(1_000, 2_000_000) / 1_000) * 1_000
}

/// `n` operations per run on one thread, `runs` runs.
fn one_thread(runs: usize, n: usize, mut op: impl FnMut()) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                op();
            }
            t.elapsed()
        })
        .collect()
}

/// `n` operations per thread on `threads` threads at once, `runs` runs (wall time).
fn all_threads(runs: usize, threads: usize, n: usize, op: impl Fn() + Sync) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..n {
                            op();
                        }
                    });
                }
            });
            t.elapsed()
        })
        .collect()
}

fn throughput(runs: usize, cores: usize) {
    let key = DataKey::generate();
    let record = format!("contact:{}", Uuid::now_v7());
    let ctx = FieldContext { organization: Uuid::now_v7(), data_key: Uuid::now_v7(), record: &record, field: "notes" };
    let plaintext: Vec<u8> = (0..FIELD).map(|_| rand::random()).collect();
    // Distinct ciphertexts to open, cycled through (1 MiB: what a batch of rows would be).
    let sealed: Vec<Vec<u8>> = (0..1024).map(|_| encrypt_field(&key, &ctx, &plaintext)).collect();
    let encrypt = || {
        black_box(encrypt_field(&key, &ctx, black_box(&plaintext)));
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let decrypt = || {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 1023;
        let opened = decrypt_field(&key, &ctx, black_box(&sealed[i])).expect("decrypt");
        black_box(opened);
    };
    println!(
        "field encryption, 1 KiB values (XChaCha20-Poly1305, random nonce, AAD = organisation, key, record, field):"
    );
    let n = calibrate(encrypt);
    let mut times = one_thread(runs, n, encrypt);
    summary("  encrypt_field 1 KiB, one thread", n, &mut times);
    let one_core = n as f64 / times[times.len() / 2].as_secs_f64();
    let n = calibrate(decrypt);
    summary("  decrypt_field 1 KiB, one thread", n, &mut one_thread(runs, n, decrypt));
    if cores > 1 {
        let n = calibrate(encrypt);
        summary(
            &format!("  encrypt_field 1 KiB, {cores} threads"),
            n * cores,
            &mut all_threads(runs, cores, n, encrypt),
        );
        let n = calibrate(decrypt);
        summary(
            &format!("  decrypt_field 1 KiB, {cores} threads"),
            n * cores,
            &mut all_threads(runs, cores, n, decrypt),
        );
    }
    println!(
        "  target ≥ {TARGET_PER_SECOND:.0} encryptions/s on one core: {} ({one_core:.0}/s, {:.1} MiB/s of plaintext)",
        if one_core >= TARGET_PER_SECOND { "met" } else { "MISSED" },
        one_core * FIELD as f64 / 1048576.0
    );

    println!();
    println!("other per-value costs, one thread:");
    let email = b"jane.doe@example.com";
    let small = || {
        black_box(encrypt_field(&key, &ctx, black_box(email)));
    };
    let n = calibrate(small);
    summary("  encrypt_field, an e-mail address (20 bytes)", n, &mut one_thread(runs, n, small));
    let blind = BlindIndex::new(&key, "contact.email");
    let index = || {
        black_box(blind.index(Normalize::Email, black_box(" Jane.Doe@Example.com")));
    };
    let n = calibrate(index);
    summary("  blind index of an e-mail (NFKC, lowercase, HMAC)", n, &mut one_thread(runs, n, index));
    // A master-key rotation's unit of work: a data key unwrapped under the old KEK, wrapped
    // under the new one (the data it encrypts is untouched).
    let old: [u8; 32] = rand::random();
    let master = |bytes: &[u8]| MasterKey::from_bytes(bytes).expect("master key");
    let old_provider = LocalKeyProvider::new(&MasterKeys::new(master(&old), []));
    let rotated = LocalKeyProvider::new(&MasterKeys::new(MasterKey::generate().expect("master key"), [master(&old)]));
    let wrap_ctx = WrapContext { organization: Uuid::now_v7(), data_key: Uuid::now_v7() };
    let wrapped = old_provider.wrap(&DataKey::generate(), &wrap_ctx).expect("wrap");
    let rewrap_one = || {
        black_box(rewrap(&rotated, black_box(&wrapped), &wrap_ctx).expect("rewrap"));
    };
    let n = calibrate(rewrap_one);
    summary("  rewrap a data key (unwrap old KEK, wrap new)", n, &mut one_thread(runs, n, rewrap_one));
}

/// The address of row `i`, as stored (already in normal form).
fn address(i: usize) -> String {
    format!("user{i}@example{}.com", i % 1000)
}

/// The same address as someone might type it: capitals, spaces around.
fn typed(i: usize) -> String {
    format!(" User{i}@Example{}.COM", i % 1000)
}

struct Keys {
    organization: Uuid,
    field_key: DataKey,
    field_key_id: Uuid,
    blind: BlindIndex,
}

impl Keys {
    fn record(id: Uuid) -> String {
        format!("bench_encrypted:{id}")
    }

    fn context<'a>(&self, record: &'a str) -> FieldContext<'a> {
        FieldContext { organization: self.organization, data_key: self.field_key_id, record, field: "email" }
    }
}

/// Rows `range` of the table: ids, blind indexes, sealed addresses.
fn rows(keys: &Keys, range: std::ops::Range<usize>) -> (Vec<Uuid>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut ids, mut indexes, mut sealed) =
        (Vec::with_capacity(range.len()), Vec::with_capacity(range.len()), Vec::with_capacity(range.len()));
    for i in range {
        let id = Uuid::now_v7();
        let address = address(i);
        let record = Keys::record(id);
        indexes.push(keys.blind.index(Normalize::Email, &address).to_vec());
        sealed.push(encrypt_field(&keys.field_key, &keys.context(&record), address.as_bytes()));
        ids.push(id);
    }
    (ids, indexes, sealed)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Creates and fills the table; returns nothing but prints how long it took.
async fn fill(s: &TestServer, keys: &Arc<Keys>, n: usize) {
    let mut conn = s.db.superuser().await;
    for sql in [
        "CREATE TABLE bench_encrypted (id uuid PRIMARY KEY, organization_id uuid NOT NULL, email_index bytea NOT NULL, email bytea NOT NULL)",
        "ALTER TABLE bench_encrypted ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY tenant_isolation ON bench_encrypted USING (organization_id = custos_current_org()) WITH CHECK (organization_id = custos_current_org())",
        "GRANT SELECT ON bench_encrypted TO custos_app",
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.expect(sql);
    }
    // Generated on a thread of its own, a chunk ahead of the inserts.
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let generator = {
        let keys = keys.clone();
        std::thread::spawn(move || {
            let mut spent = Duration::ZERO;
            let mut at = 0;
            while at < n {
                let t = Instant::now();
                let chunk = rows(&keys, at..(at + CHUNK).min(n));
                spent += t.elapsed();
                at += chunk.0.len();
                if tx.blocking_send(chunk).is_err() {
                    break;
                }
            }
            spent
        })
    };
    let started = Instant::now();
    diesel::sql_query("BEGIN").execute(&mut conn).await.expect("begin");
    let mut inserting = Duration::ZERO;
    while let Some((ids, indexes, sealed)) = rx.recv().await {
        let t = Instant::now();
        diesel::sql_query(
            "INSERT INTO bench_encrypted (id, organization_id, email_index, email)
             SELECT v.id, $1, v.email_index, v.email FROM unnest($2::uuid[], $3::bytea[], $4::bytea[]) AS v (id, email_index, email)",
        )
        .bind::<SqlUuid, _>(keys.organization)
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<Bytea>, _>(indexes)
        .bind::<Array<Bytea>, _>(sealed)
        .execute(&mut conn)
        .await
        .expect("insert");
        inserting += t.elapsed();
    }
    diesel::sql_query("COMMIT").execute(&mut conn).await.expect("commit");
    let filled = started.elapsed();
    let generating = generator.join().expect("generator");
    let t = Instant::now();
    diesel::sql_query("CREATE INDEX bench_encrypted_email ON bench_encrypted (organization_id, email_index)")
        .execute(&mut conn)
        .await
        .expect("index");
    let indexed = t.elapsed();
    let t = Instant::now();
    diesel::sql_query("ANALYZE bench_encrypted").execute(&mut conn).await.expect("analyze");
    let analyzed = t.elapsed();
    let count: Count =
        diesel::sql_query("SELECT count(*) AS n FROM bench_encrypted").get_result(&mut conn).await.expect("count");
    assert_eq!(count.n as usize, n);
    let size = |what: &'static str| {
        let sql = format!("SELECT {what} AS n");
        async move {
            let mut conn = s.db.superuser().await;
            diesel::sql_query(sql).get_result::<Count>(&mut conn).await.expect("size").n as f64 / 1048576.0
        }
    };
    let table = size("pg_table_size('bench_encrypted')").await;
    let index = size("pg_relation_size('bench_encrypted_email')").await;
    let secs = filled.as_secs_f64();
    println!(
        "  filled in {secs:.1}s ({:.2} µs/row, {:.0} rows/s; one transaction, {CHUNK}-row INSERT … SELECT FROM unnest)",
        secs * 1e6 / n as f64,
        n as f64 / secs
    );
    println!(
        "    of which generating in Rust (address, blind index, encryption; a thread of its own, overlapped): {:.1}s ({:.2} µs/row)",
        generating.as_secs_f64(),
        generating.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "    and the INSERT statements: {:.1}s ({:.2} µs/row)",
        inserting.as_secs_f64(),
        inserting.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "  then the btree on (organization_id, email_index) built in {:.1}s, ANALYZE {:.1}s; table {table:.0} MiB, that index {index:.0} MiB",
        indexed.as_secs_f64(),
        analyzed.as_secs_f64()
    );
}

/// The parts of one lookup, in seconds: the whole, the blind index, the transaction and query,
/// the decryption.
struct Lookup {
    total: f64,
    index: f64,
    query: f64,
    decrypt: f64,
}

async fn lookup(s: &TestServer, keys: &Keys, typed: &str, expect: Option<&str>) -> Lookup {
    let started = Instant::now();
    let blind = keys.blind.index(Normalize::Email, typed);
    let indexed = Instant::now();
    let mut tx = s.db_pool().begin(keys.organization).await.expect("begin");
    let found: Vec<(Uuid, Vec<u8>)> = bench_encrypted::table
        .filter(bench_encrypted::organization_id.eq(keys.organization))
        .filter(bench_encrypted::email_index.eq(&blind[..]))
        .select((bench_encrypted::id, bench_encrypted::email))
        .load(tx.conn())
        .await
        .expect("lookup");
    tx.commit().await.expect("commit");
    let queried = Instant::now();
    match expect {
        Some(address) => {
            assert_eq!(found.len(), 1, "{typed}");
            let (id, sealed) = &found[0];
            let record = Keys::record(*id);
            let plain = decrypt_field(&keys.field_key, &keys.context(&record), sealed).expect("decrypt");
            assert_eq!(&plain[..], address.as_bytes());
        }
        None => assert!(found.is_empty(), "{typed}"),
    }
    let done = Instant::now();
    Lookup {
        total: (done - started).as_secs_f64(),
        index: (indexed - started).as_secs_f64(),
        query: (queried - indexed).as_secs_f64(),
        decrypt: (done - queried).as_secs_f64(),
    }
}

/// The nearest-rank percentile `q` of sorted `values`, in milliseconds.
fn pct(values: &[f64], q: f64) -> f64 {
    values[((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1] * 1e3
}

fn report(label: &str, lookups: &[Lookup], target: bool) {
    let sorted = |f: fn(&Lookup) -> f64| {
        let mut v: Vec<f64> = lookups.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let total = sorted(|l| l.total);
    let verdict = if target {
        format!(
            "   target p99 < {TARGET_P99_MS:.0} ms: {}",
            if pct(&total, 0.99) < TARGET_P99_MS { "met" } else { "MISSED" }
        )
    } else {
        String::new()
    };
    println!(
        "  {label:<26} p50 {:>6.2} ms   p95 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms{verdict}",
        pct(&total, 0.5),
        pct(&total, 0.95),
        pct(&total, 0.99),
        total[total.len() - 1] * 1e3
    );
    let (index, query, decrypt) = (sorted(|l| l.index), sorted(|l| l.query), sorted(|l| l.decrypt));
    println!(
        "    of which (p50 / p99): blind index {:.1} / {:.1} µs; transaction + query {:.2} / {:.2} ms; decrypt + check {:.1} / {:.1} µs",
        pct(&index, 0.5) * 1e3,
        pct(&index, 0.99) * 1e3,
        pct(&query, 0.5),
        pct(&query, 0.99),
        pct(&decrypt, 0.5) * 1e3,
        pct(&decrypt, 0.99) * 1e3
    );
}

async fn lookups(n: usize) {
    let s = TestServer::start().await;
    let org = s.org("vault-bench").await;
    let field_key = DataKey::generate();
    let keys = Arc::new(Keys {
        organization: org.id,
        field_key,
        field_key_id: Uuid::now_v7(),
        blind: BlindIndex::new(&DataKey::generate(), "bench.email"),
    });
    println!();
    println!(
        "blind-index lookups among {n} encrypted e-mail addresses (one organisation; PostgreSQL at {}):",
        custos_testkit::admin_url()
    );
    fill(&s, &keys, n).await;
    // The pool's connections opened and the statement prepared on them first (not timed).
    for i in 0..50 {
        let i = (i * 7_919) % n;
        lookup(&s, &keys, &typed(i), Some(&address(i))).await;
    }
    let mut present = Vec::with_capacity(PRESENT);
    for _ in 0..PRESENT {
        let i = rand::random_range(0..n);
        present.push(lookup(&s, &keys, &typed(i), Some(&address(i))).await);
    }
    let mut absent = Vec::with_capacity(ABSENT);
    for i in 0..ABSENT {
        absent.push(lookup(&s, &keys, &format!("nobody{i}@example{}.com", i % 1000), None).await);
    }
    println!(
        "  one lookup: the blind index of the address as typed (\" User7@Example7.COM\"); a tenant transaction from the"
    );
    println!(
        "  app pool (BEGIN, role, tenant; SELECT id, email … WHERE organization_id = $1 AND email_index = $2; COMMIT);"
    );
    println!("  the hit decrypted and compared. One after another, after 50 untimed (the pool's connections opened):");
    report(&format!("{PRESENT} present, random:"), &present, true);
    report(&format!("{ABSENT} absent:"), &absent, false);
}

pub async fn run(args: &[String]) {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let rows: usize = flag("--rows").and_then(|v| v.parse().ok()).unwrap_or(1_000_000).max(1);
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    #[cfg(target_arch = "x86_64")]
    let simd = format!(
        ", AVX2 {}, AVX-512 {}",
        if std::is_x86_feature_detected!("avx2") { "yes" } else { "no" },
        if std::is_x86_feature_detected!("avx512f") { "yes" } else { "no" }
    );
    #[cfg(not(target_arch = "x86_64"))]
    let simd = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    println!(
        "custos vault benchmark — {cores} cores{simd}, load average {load}; {runs} runs each, runs of about 0.5 s"
    );
    println!();
    throughput(runs, cores);
    lookups(rows).await;
}
