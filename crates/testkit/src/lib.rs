//! Test harness shared by every crate's integration tests.
//!
//! * [`TestDb`] — a fresh PostgreSQL database per test, cloned from a migrated template (fast),
//!   dropped when the test ends, even after a panic. The server is the one named by
//!   `CUSTOS_TEST_DATABASE_URL` (or `DATABASE_URL`), by default `postgres://postgres@127.0.0.1:5432/postgres`
//!   — `cargo xtask test` points it at a private cluster when none runs.
//! * [`TestServer`] — the real gateway on free ports over that database, with REST and gRPC
//!   clients and helpers to create organisations and tokens.
//! * [`SmtpSink`] and [`WebhookReceiver`] — real receivers (an SMTP server, an HTTP endpoint) that
//!   record what notifications deliver.

use std::net::SocketAddr;
use std::path::PathBuf;

use custos_core::Role;
use custos_db::Db;
pub use custos_gateway::config::Slas;

pub mod audit_sql;
use custos_gateway::{Config, RunningServer};
use custos_identity::JwtConfig;
use diesel_async::RunQueryDsl;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

/// The PostgreSQL server tests run against (an admin URL: it must be allowed to create databases).
pub fn admin_url() -> String {
    std::env::var("CUSTOS_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[authority_end..].find('/').map(|i| i + authority_end).unwrap_or(base.len());
    format!("{}/{db}{query}", &base[..path_start])
}

/// A file of the shared fixtures: real documents nobody in this project wrote (NIST's OSCAL
/// catalogs, another GRC tool's framework libraries), read as they are, never copied into the
/// repository. They live in `shared/fixtures/` beside the checkout (`../shared/fixtures` from the
/// workspace root, or the same beside any ancestor directory); `CUSTOS_FIXTURES_DIR` names
/// another place. A missing fixture fails the test that needs it, saying where it looked.
pub fn fixture(relative: &str) -> PathBuf {
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    if let Ok(dir) = std::env::var("CUSTOS_FIXTURES_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    candidates.extend(workspace.ancestors().map(|a| a.join("shared/fixtures")));
    for dir in candidates {
        let path = dir.join(relative);
        if path.is_file() {
            return path;
        }
        tried.push(path.display().to_string());
    }
    panic!("fixture {relative} not found; looked at {}; set CUSTOS_FIXTURES_DIR", tried.join(", "))
}

/// A database of its own for one test.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

const TEMPLATE_LOCK: i64 = 0x0c57_0500;

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
        let mut conn = custos_db::connect_once(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL server ({e}); run `cargo xtask test`, which starts one if needed")
        });
        let template = format!("custos_tpl_{}", custos_db::migrations_fingerprint());
        diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})")).execute(&mut conn).await.expect("lock");
        let exists: i64 = {
            diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{template}'"
            ))
            .get_result(&mut conn)
            .await
            .expect("query pg_database")
        };
        if exists == 0 {
            let building = format!("{template}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop");
            diesel::sql_query(format!("CREATE DATABASE {building}")).execute(&mut conn).await.expect("create template");
            custos_db::migrate(&with_database(&admin, &building)).await.expect("migrate template");
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {template}"))
                .execute(&mut conn)
                .await
                .expect("rename");
        }
        let name = format!("custos_t_{}", Uuid::new_v4().simple());
        let created = diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}")).execute(&mut conn).await;
        diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})"))
            .execute(&mut conn)
            .await
            .expect("unlock");
        created.expect("create test database");
        TestDb { url: with_database(&admin, &name), name, admin }
    }

    /// An empty database (no migrations applied), for testing `custos migrate` itself.
    pub async fn empty() -> TestDb {
        let admin = admin_url();
        let mut conn = custos_db::connect_once(&admin).await.expect("reach the test PostgreSQL server");
        let name = format!("custos_t_{}", Uuid::new_v4().simple());
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        TestDb { url: with_database(&admin, &name), name, admin }
    }

    /// A plain connection as the admin user (bypasses RLS: for assertions about raw state).
    pub async fn superuser(&self) -> custos_db::PgConn {
        custos_db::connect_once(&self.url).await.expect("connect test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // `CUSTOS_TEST_KEEP_DATABASE=1` leaves it behind, to look at with psql after a failure
        // or a benchmark.
        if std::env::var_os("CUSTOS_TEST_KEEP_DATABASE").is_some_and(|v| v == "1") {
            eprintln!("kept test database {} ({})", self.name, self.url);
            return;
        }
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread of its own with its own runtime: runs even while the test's runtime unwinds.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = custos_db::connect_once(&admin).await {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Logs of the code under test go to the test's captured output (`RUST_LOG`, default `warn`),
/// and are kept for [`captured_logs`].
pub fn init_logging() {
    init_logging_at("warn");
}

/// [`init_logging`] at `default` when `RUST_LOG` is not set — for a test that reads the logs
/// ([`captured_logs`]), before anything else logs (nextest runs each test in a process of its
/// own; under `cargo test` the first initialisation in the process wins).
pub fn init_logging_at(default: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(TeeWriter).try_init();
    });
}

/// Everything logged in this process so far (by the servers and services under test).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().map(|l| l.clone()).unwrap_or_default()).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Writes each log line to the test's output (as `with_test_writer` does) and to [`LOGS`].
struct TeeWriter;

struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = LOGS.lock() {
            logs.extend_from_slice(buf);
        }
        // `print!` goes to the test harness's captured output, like `with_test_writer`.
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TeeWriter {
    type Writer = Tee;
    fn make_writer(&'a self) -> Tee {
        Tee
    }
}

/// How to start a test server.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// The vault's master-key settings (default: none, so the server generates one).
    pub vault: Option<custos_gateway::config::VaultConfig>,
    /// The SMTP server e-mail notifications go through (default: none).
    pub smtp: Option<custos_notify::service::SmtpConfig>,
    pub rate_limit_auth_per_hour: Option<u32>,
    pub rate_limit_anon_per_hour: Option<u32>,
    /// `CUSTOS_TRUSTED_PROXIES` (default: none).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub jwt: Option<JwtConfig>,
    /// Pool size (default 4).
    pub db_max_connections: Option<usize>,
    /// `CUSTOS_MAX_UPLOAD_BYTES` (default 64 MiB in tests).
    pub max_upload_bytes: Option<u64>,
    /// `CUSTOS_AUTH_CACHE_SECONDS` (default 5, as in production).
    pub auth_cache_seconds: Option<u64>,
    /// `CUSTOS_BLOB_STORE` (default: `blobs/` in the test's data directory).
    pub blob_store: Option<String>,
    /// `CUSTOS_BLOB_STORES` (default: none).
    pub blob_stores: Option<String>,
    /// Incident and vulnerability SLAs (default: the seed's).
    pub slas: Option<Slas>,
    /// `CUSTOS_AUDIT_SEARCH_SCAN` (default as in production).
    pub audit_search_scan: Option<usize>,
    /// `CUSTOS_AUDIT_RETENTION_DAYS` (default as in production).
    pub audit_retention_days: Option<u32>,
    /// Jobs and schedules (default: as in production, but polling every 50 ms, leases of 3 s
    /// and retries after 1 s, so that tests see takeovers and retries quickly).
    pub jobs: Option<custos_gateway::config::JobsConfig>,
    /// The listeners' timeouts and connection caps (default as in production).
    pub connections: Option<custos_gateway::config::ConnectionLimits>,
    /// Domains served beside `custos_gateway::domains::ALL` (a test's throwaway domain).
    pub extra_domains: Vec<&'static custos_gateway::domains::Domain>,
}

/// The jobs configuration tests run with by default: quick polls, short leases, short retries.
pub fn test_jobs_config() -> custos_gateway::config::JobsConfig {
    let mut jobs = custos_gateway::config::JobsConfig::default();
    jobs.runner.poll = std::time::Duration::from_millis(50);
    jobs.runner.lease = std::time::Duration::from_secs(3);
    jobs.runner.retry_base = std::time::Duration::from_secs(1);
    jobs.scheduler_tick = std::time::Duration::from_millis(200);
    jobs
}

/// A running gateway over its own database.
pub struct TestServer {
    pub db: TestDb,
    pub server: Option<RunningServer>,
    pub http: reqwest::Client,
    pub base: String,
    pub grpc_addr: SocketAddr,
    data_dir: PathBuf,
    config: Config,
    domains: Vec<&'static custos_gateway::domains::Domain>,
}

/// An organisation created for a test, with a token per role.
#[derive(Clone, Debug)]
pub struct TestOrg {
    pub id: Uuid,
    pub slug: String,
    pub admin: String,
    pub editor: String,
    pub viewer: String,
    pub auditor: String,
}

impl TestOrg {
    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Admin => &self.admin,
            Role::Editor => &self.editor,
            Role::Viewer => &self.viewer,
            Role::Auditor => &self.auditor,
        }
    }
}

pub type GrpcChannel = InterceptedService<Channel, AuthHeader>;

/// Adds `authorization` metadata to every gRPC call.
#[derive(Clone)]
pub struct AuthHeader(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AuthHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> TestServer {
        init_logging();
        let db = TestDb::new().await;
        let data_dir = std::env::temp_dir().join(format!("custos-test-{}", db.name));
        let config = Config {
            database_url: db.url.clone(),
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            data_dir: data_dir.clone(),
            migrate_on_start: false,
            db_max_connections: options.db_max_connections.unwrap_or(4),
            rate_limit_auth_per_hour: options.rate_limit_auth_per_hour.unwrap_or(1_000_000),
            rate_limit_anon_per_hour: options.rate_limit_anon_per_hour.unwrap_or(1_000_000),
            trusted_proxies: options.trusted_proxies,
            jwt: options.jwt,
            auth_cache_seconds: options.auth_cache_seconds.unwrap_or(5),
            log_json: false,
            audit: custos_gateway::config::AuditConfig {
                keys: custos_audit_chain::keys::KeyConfig {
                    key: None,
                    key_file: None,
                    data_dir: data_dir.clone(),
                    production: false,
                    origin: "custos.test/audit".into(),
                    trusted: vec![],
                },
                checkpoint_interval_ms: 200,
                retention_days: options.audit_retention_days.unwrap_or(2555),
                search_scan: options
                    .audit_search_scan
                    .unwrap_or(custos_audit_chain::SequencerConfig::default().search_scan),
            },
            evidence: custos_gateway::config::EvidenceConfig {
                blob_store: options
                    .blob_store
                    .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display())),
                blob_stores: options.blob_stores,
                max_upload_bytes: options.max_upload_bytes.unwrap_or(64 * 1024 * 1024),
            },
            slas: options.slas.unwrap_or_default(),
            connections: options.connections.unwrap_or_default(),
            jobs: options.jobs.unwrap_or_else(test_jobs_config),
            // A master key generated under the test's data directory unless the test gives one.
            vault: options.vault.unwrap_or_default(),
            smtp: options.smtp.unwrap_or_default(),
            access_reviews: Default::default(),
        };
        let domains: Vec<_> =
            custos_gateway::domains::ALL.iter().chain(options.extra_domains.iter().copied()).collect();
        let server = custos_gateway::server::start_with(&config, domains.clone()).await.expect("start gateway");
        TestServer {
            base: format!("http://{}", server.http_addr),
            grpc_addr: server.grpc_addr,
            server: Some(server),
            http: reqwest::Client::new(),
            db,
            data_dir,
            config,
            domains,
        }
    }

    /// Stops the server and starts a new one over the same database and data directory, as a
    /// deploy or a recovery from a crash does (new ports; tokens and keys stay valid).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let server =
            custos_gateway::server::start_with(&self.config, self.domains.clone()).await.expect("restart gateway");
        self.base = format!("http://{}", server.http_addr);
        self.grpc_addr = server.grpc_addr;
        self.server = Some(server);
    }

    /// Stops the server at once, as a crash would: nothing it held is released (its jobs'
    /// leases lapse for another replica to take over). [`TestServer::restart`] starts it again.
    pub fn kill(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts another server over the same database and data directory, serving the same
    /// domains: a replica (its own ports; stop it with `shutdown` or `kill`).
    pub async fn replica(&self) -> RunningServer {
        self.replica_with(|_| {}).await
    }

    /// [`TestServer::replica`] with its configuration changed (e.g. an API-only replica that
    /// runs no jobs).
    pub async fn replica_with(&self, change: impl FnOnce(&mut Config)) -> RunningServer {
        let mut config = self.config.clone();
        change(&mut config);
        custos_gateway::server::start_with(&config, self.domains.clone()).await.expect("start a replica")
    }

    /// Where this server's blob store keeps evidence files.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("blobs")
    }

    /// The configuration the server was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn app(&self) -> &custos_gateway::App {
        &self.server.as_ref().expect("running").app
    }

    pub fn db_pool(&self) -> &Db {
        &self.app().db
    }

    /// Creates an organisation with one user and token per role.
    pub async fn org(&self, slug: &str) -> TestOrg {
        let identity = &self.app().identity;
        let org = identity.create_organization(slug, &format!("{slug} Ltd")).await.expect("create org");
        let mut tokens = Vec::new();
        for role in [Role::Admin, Role::Editor, Role::Viewer, Role::Auditor] {
            let t = identity.issue_token(slug, &format!("{role}@{slug}.test"), role, "test").await.expect("token");
            tokens.push(t.token);
        }
        let [admin, editor, viewer, auditor]: [String; 4] = tokens.try_into().expect("four tokens");
        TestOrg { id: org.id, slug: slug.to_owned(), admin, editor, viewer, auditor }
    }

    /// One REST call; returns the status and the JSON body (`Value::Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let resp = self.raw(method, path, token, body).await;
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) };
        let mut req = self.http.request(method, url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Token {t}"));
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(&body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(token), Some(&body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(&body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// A `multipart/form-data` POST: the text `fields` in order, then (if any) the `file` part
    /// as `(file name, media type, bytes)`, then `trailing` text fields.
    pub async fn upload(
        &self,
        path: &str,
        token: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &str, &[u8])>,
        trailing: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let boundary = format!("custos-test-{}", Uuid::new_v4().simple());
        let mut body: Vec<u8> = Vec::new();
        let text = |body: &mut Vec<u8>, (name, value): &(&str, &str)| {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        };
        fields.iter().for_each(|f| text(&mut body, f));
        if let Some((name, media_type, bytes)) = file {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {media_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        trailing.iter().for_each(|f| text(&mut body, f));
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Token {token}"))
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// A GET returning the raw response (status, headers, body bytes).
    pub async fn download(&self, path: &str, token: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self.raw(Method::GET, path, Some(token), None).await;
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.bytes().await.expect("body").to_vec())
    }

    /// Runs statements as the database superuser (past RLS and privileges): for setting up and
    /// tampering with state the API would refuse to produce.
    pub async fn superuser_sql(&self, sql: &str) -> Result<usize, diesel::result::Error> {
        let mut conn = self.db.superuser().await;
        diesel::sql_query(sql).execute(&mut conn).await
    }

    /// A gRPC channel that sends `Authorization: Token <token>` (or nothing).
    pub async fn grpc(&self, token: Option<&str>) -> GrpcChannel {
        self.grpc_with_header(token.map(|t| format!("Token {t}"))).await
    }

    pub async fn grpc_with_header(&self, authorization: Option<String>) -> GrpcChannel {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect gRPC");
        let header = authorization.map(|a| a.parse().expect("ascii header"));
        InterceptedService::new(channel, AuthHeader(header))
    }

    /// Runs an organisation's schedule now (as `token`, an admin) and answers its job once it
    /// has ended (succeeded or failed).
    pub async fn run_schedule(&self, token: &str, name: &str) -> Value {
        let (status, job) = self.post(&format!("/api/compliance/schedules/{name}/run/"), token, json!({})).await;
        assert_eq!(status.as_u16() / 100, 2, "{job}");
        self.wait_for_job(token, job["id"].as_str().expect("the job's id")).await
    }

    /// Waits (up to 30 s) for a job to end (succeeded, failed or cancelled) and answers it.
    pub async fn wait_for_job(&self, token: &str, id: &str) -> Value {
        for _ in 0..300 {
            let (_, job) = self.get(&format!("/api/compliance/jobs/{id}/"), token).await;
            if ["succeeded", "failed", "cancelled"].iter().any(|s| job["status"] == *s) {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("job {id} did not end within 30 s");
    }

    /// Writes `n` closed incidents of `org` (category OTHER, classification INTERNAL, resolved at
    /// `resolved_at`) straight into the database, for retention tests and benchmarks at scale.
    pub async fn insert_closed_incidents(&self, org: Uuid, n: i64, resolved_at: &str) {
        self.superuser_sql(&format!(
            "INSERT INTO incidents (id, organization_id, title, description, severity, category, data_classification,
                                    status, reported_by, detected_at, responded_at, resolved_at)
             SELECT gen_random_uuid(), '{org}', 'incident ' || g, '', 'LOW', 'OTHER', 'INTERNAL', 'CLOSED', 'import',
                    '{resolved_at}'::timestamptz - interval '1 day', '{resolved_at}'::timestamptz - interval '1 day',
                    '{resolved_at}'
               FROM generate_series(1, {n}) g"
        ))
        .await
        .expect("insert closed incidents");
        self.superuser_sql("ANALYZE incidents").await.expect("analyze incidents");
    }

    /// Number of audit entries of the organisation with this action and resource type, whether
    /// still queued or already sequenced into the log.
    pub async fn audit_count(&self, org: Uuid, action: &str, resource_type: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db.superuser().await;
        let row: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM {} WHERE organization_id = $1
                    AND position(E'\naction\t' || to_json($2::text)::text || E'\n' IN E'\n' || fields) > 0
                    AND position(E'\nresource_type\t' || to_json($3::text)::text || E'\n' IN E'\n' || fields) > 0",
            audit_sql::ALL_AUDIT_FIELDS
        ))
        .bind::<diesel::sql_types::Uuid, _>(org)
        .bind::<diesel::sql_types::Text, _>(action)
        .bind::<diesel::sql_types::Text, _>(resource_type)
        .get_result(&mut conn)
        .await
        .expect("count audit entries");
        row.n
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A path in the temporary directory no other test of this process uses:
/// `custos-<what>-<pid>-<n><suffix>`, for the files and directories the real tools are given.
fn scratch_path(what: &str, suffix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("custos-{what}-{}-{n}{suffix}", std::process::id()))
}

/// Checks an OSCAL document (`{"catalog": …}`, `{"assessment-results": …}`, …) with a
/// third-party implementation: compliance-trestle's models, through `tests/tools/oscal_validate.py`
/// (unknown fields, malformed ids, uuids and timestamps, missing required fields are refused).
/// The command is `CUSTOS_OSCAL_VALIDATOR` (`cargo xtask test` installs compliance-trestle and
/// sets it), else `python3 <workspace>/tests/tools/oscal_validate.py`. `Err` holds the
/// validator's report; a missing python3 or compliance-trestle is an `Err` too, never a pass.
pub fn validate_oscal(document: &Value) -> Result<(), String> {
    const HINT: &str = "the OSCAL validator needs python3 and compliance-trestle: run the tests with \
                        `cargo xtask test` (it installs it), or `python3 -m pip install compliance-trestle`";
    let command = std::env::var("CUSTOS_OSCAL_VALIDATOR").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/tools/oscal_validate.py");
        format!("python3 {}", script.canonicalize().unwrap_or(script).display())
    });
    let mut words = command.split_whitespace();
    let program = words.next().ok_or("CUSTOS_OSCAL_VALIDATOR is blank")?;
    let path = scratch_path("oscal", ".json");
    let bytes = serde_json::to_vec_pretty(document).map_err(|e| format!("cannot serialise the document: {e}"))?;
    std::fs::write(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let output = std::process::Command::new(program).args(words).arg(&path).output();
    let _ = std::fs::remove_file(&path);
    let output = output.map_err(|e| format!("cannot run the OSCAL validator `{command}`: {e}; {HINT}"))?;
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    match output.status.code() {
        // It must say so: a command that checks nothing (or another tool) does not pass.
        Some(0) if report.lines().any(|l| l.starts_with("ok ")) => Ok(()),
        Some(0) => Err(format!("the OSCAL validator `{command}` said nothing about the document:\n{report}")),
        Some(1) => Err(report),
        _ => Err(format!("the OSCAL validator `{command}` could not run ({}):\n{report}\n{HINT}", output.status)),
    }
}

/// What a real PDF reader makes of a PDF: poppler's `pdftotext -layout` (the text, pages
/// separated by form feeds), `pdfinfo` (`Pages:`, `PDF version:`, …) and `pdffonts` (each font,
/// whether it is embedded). The tools are Debian's poppler-utils; `cargo xtask test` installs
/// them when missing, and their directory may be given as `CUSTOS_POPPLER_BIN`. A missing tool
/// fails the test.
pub struct PdfReading {
    pub text: String,
    pub info: String,
    pub fonts: String,
}

impl PdfReading {
    /// The pages' text, in order.
    pub fn pages(&self) -> Vec<&str> {
        self.text.trim_end_matches('\u{c}').split('\u{c}').collect()
    }

    /// A line of `pdfinfo`'s answer: `info("Pages")` → `"3"`.
    pub fn info(&self, key: &str) -> Option<&str> {
        self.info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
    }
}

/// Reads `pdf` with poppler (see [`PdfReading`]).
pub fn read_pdf(pdf: &[u8]) -> PdfReading {
    let path = scratch_path("pdf", ".pdf");
    std::fs::write(&path, pdf).expect("write the PDF to read");
    // Each tool as `TOOL OPTIONS… FILE [after…]` (pdftotext writes to standard output when told "-").
    let run = |tool: &str, args: &[&str], after: &[&str]| {
        let program = match std::env::var("CUSTOS_POPPLER_BIN") {
            Ok(dir) if !dir.trim().is_empty() => PathBuf::from(dir).join(tool),
            _ => PathBuf::from(tool),
        };
        let output =
            std::process::Command::new(&program).args(args).arg(&path).args(after).output().unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): the PDF tests read PDFs with poppler-utils; run them with `cargo xtask test` \
                 (it installs them) or `apt-get install poppler-utils`",
                    program.display()
                )
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{tool} could not read the PDF: {stderr}");
        assert!(!stderr.contains("Syntax Error"), "{tool} found the PDF malformed: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let reading = PdfReading {
        text: run("pdftotext", &["-layout", "-enc", "UTF-8"], &["-"]),
        info: run("pdfinfo", &[], &[]),
        fonts: run("pdffonts", &[], &[]),
    };
    let _ = std::fs::remove_file(&path);
    reading
}

// ---------------------------------------------------------------------------------------------
// Real receivers for notifications: an SMTP server and an HTTP webhook endpoint.
// ---------------------------------------------------------------------------------------------

/// A real SMTP server for one test: `tests/tools/smtp_sink.py` (aiosmtpd) on a free port of
/// 127.0.0.1, writing every message it receives to a temporary directory, where
/// [`SmtpSink::messages`] reads them back. The command is `CUSTOS_TEST_SMTP_SERVER`
/// (`cargo xtask test` installs aiosmtpd and sets it), else
/// `python3 <workspace>/tests/tools/smtp_sink.py`. A missing python3 or aiosmtpd fails the test.
/// Dropping it kills the server and removes the directory.
pub struct SmtpSink {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
}

/// One message received by an [`SmtpSink`].
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), not the `From:` header.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), in order.
    pub to: Vec<String>,
    /// The `Subject:` header as sent (RFC 2047 encoded words are not decoded).
    pub subject: String,
    /// Every header in order, unfolded, including the sink's `X-Envelope-From`/`X-Envelope-To`.
    pub headers: Vec<(String, String)>,
    /// The body, line endings as `\n`; decoded when the message declares
    /// `Content-Transfer-Encoding: quoted-printable` or `base64` and is not multipart (a
    /// multipart body is left as it came).
    pub body: String,
    /// The file as the sink wrote it: the envelope headers, then the message as received.
    pub raw: String,
}

impl ReceivedMail {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A deliberately small parser: headers up to the first blank line (a line starting with a
    /// space or tab continues the previous one), then the body, decoded as described on
    /// [`ReceivedMail::body`].
    pub fn parse(raw: &str) -> ReceivedMail {
        let text = raw.replace("\r\n", "\n");
        let (head, body) = match text.split_once("\n\n") {
            Some((h, b)) => (h, b),
            None => (text.as_str(), ""),
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let find = |name: &str| {
            headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        let multipart = find("Content-Type").to_ascii_lowercase().starts_with("multipart/");
        let encoding = find("Content-Transfer-Encoding").to_ascii_lowercase();
        let body = match encoding.as_str() {
            "quoted-printable" if !multipart => String::from_utf8_lossy(&decode_quoted_printable(body)).into_owned(),
            "base64" if !multipart => {
                use base64::Engine as _;
                let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
                    Err(_) => body.to_owned(),
                }
            }
            _ => body.to_owned(),
        };
        ReceivedMail {
            from: find("X-Envelope-From"),
            to: find("X-Envelope-To").split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            subject: find("Subject"),
            headers,
            body,
            raw: raw.to_owned(),
        }
    }
}

/// Quoted-printable (RFC 2045 §6.7) over `\n` line endings: `=XX` is a byte, `=` before a line
/// end is a soft line break; anything else is kept as it is.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

impl SmtpSink {
    /// A sink that accepts any sender, recipient and message, without authentication.
    pub async fn start() -> SmtpSink {
        SmtpSink::start_with(&[]).await
    }

    /// A sink with extra options of `smtp_sink.py`: `["--auth", "USER:PASSWORD"]` requires AUTH
    /// PLAIN/LOGIN with exactly those credentials (others get 535); `["--tls-cert", CERT,
    /// "--tls-key", KEY]` offers STARTTLS (add `"--require-starttls"` to insist on it).
    pub async fn start_with(args: &[&str]) -> SmtpSink {
        use tokio::io::AsyncBufReadExt;

        const HINT: &str = "the SMTP sink needs python3 and aiosmtpd: run the tests with `cargo xtask test` \
                            (it installs it), or `python3 -m pip install aiosmtpd`";
        let command =
            std::env::var("CUSTOS_TEST_SMTP_SERVER").ok().filter(|c| !c.trim().is_empty()).unwrap_or_else(|| {
                let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/tools/smtp_sink.py");
                format!("python3 {}", script.canonicalize().unwrap_or(script).display())
            });
        let dir = scratch_path("smtp", "");
        let mail = dir.join("mail");
        std::fs::create_dir_all(&mail).unwrap_or_else(|e| panic!("cannot create {}: {e}", mail.display()));
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("create the SMTP sink's stderr log");
        let mut words = command.split_whitespace();
        let program = words.next().expect("CUSTOS_TEST_SMTP_SERVER is blank");
        let mut child = tokio::process::Command::new(program)
            .args(words)
            .arg("--port")
            .arg("0")
            .arg("--out")
            .arg(&mail)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                panic!("cannot run the SMTP sink `{command}`: {e}; {HINT}")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(15), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(port) = line.strip_prefix("listening 127.0.0.1:").and_then(|p| p.trim().parse().ok()) {
                    return Some(port);
                }
            }
            None
        })
        .await;
        let port: u16 = match waited {
            Ok(Some(port)) => port,
            failed => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                let what = if failed.is_err() { "did not start listening within 15 s" } else { "exited" };
                panic!("the SMTP sink `{command}` {what}:\n{log}\n{HINT}");
            }
        };
        SmtpSink { child, port, dir }
    }

    /// `smtp://127.0.0.1:PORT` (plain SMTP; STARTTLS when started with a certificate).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, in the order received.
    pub async fn messages(&self) -> Vec<ReceivedMail> {
        let mail = self.dir.join("mail");
        let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(&mail)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", mail.display()))
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                // `<n>.eml` only: the sink writes under a temporary name, then renames.
                let n = path.file_name()?.to_str()?.strip_suffix(".eml")?.parse().ok()?;
                Some((n, path))
            })
            .collect();
        numbered.sort();
        numbered
            .into_iter()
            .map(|(_, path)| {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                ReceivedMail::parse(&String::from_utf8_lossy(&bytes))
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived and returns them all; panics, saying what
    /// did arrive, after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages().await;
            if messages.len() >= n {
                return messages;
            }
            if tokio::time::Instant::now() >= deadline {
                let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
                panic!(
                    "expected {n} message(s) within {timeout:?}, the SMTP sink received {}: {subjects:?}",
                    messages.len()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.try_wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP request received by a [`WebhookReceiver`].
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The path and query, e.g. `/hooks/a?x=1`.
    pub path: String,
    /// Every header in order, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

struct WebhookState {
    requests: std::sync::Mutex<Vec<RecordedRequest>>,
    status: std::sync::atomic::AtomicU16,
}

/// An HTTP server in the test's process on a free port of 127.0.0.1 that records every request
/// (any method, any path) and answers each with an empty body and the status set with
/// [`WebhookReceiver::set_status`] (200 at first). Dropping it stops the server.
pub struct WebhookReceiver {
    addr: SocketAddr,
    state: std::sync::Arc<WebhookState>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use std::sync::Arc;

        async fn record(
            State(state): State<Arc<WebhookState>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let request = RecordedRequest {
                method: method.to_string(),
                path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| uri.path().to_owned()),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect(),
                body: body.to_vec(),
            };
            state.requests.lock().expect("webhook requests lock").push(request);
            // (Spelled out: diesel_async's `RunQueryDsl::load` is in scope too.)
            let status = std::sync::atomic::AtomicU16::load(&state.status, std::sync::atomic::Ordering::SeqCst);
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }

        let state = Arc::new(WebhookState {
            requests: std::sync::Mutex::new(Vec::new()),
            status: std::sync::atomic::AtomicU16::new(200),
        });
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("webhook receiver address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver { addr, state, task }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash; every path is accepted).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The status of every later answer, e.g. 500 to make deliveries fail.
    pub fn set_status(&self, status: u16) {
        assert!((100..=999).contains(&status), "not an HTTP status: {status}");
        self.state.status.store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().expect("webhook requests lock").clone()
    }

    /// Waits until at least `n` requests have arrived and returns them all; panics, saying what
    /// did arrive, after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::Instant::now() >= deadline {
                let seen: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
                panic!(
                    "expected {n} request(s) within {timeout:?}, the webhook receiver got {}: {seen:?}",
                    requests.len()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
