//! The composition root: builds each service once and serves it over gRPC and REST.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use custos_audit_chain::keys::{self, KeySource};
use custos_audit_chain::{AuditChain, AuditService, SequencerConfig};
use custos_blobs::BlobStores;
use custos_db::{Db, DbConfig, Holds};
use custos_evidence::EvidenceService;
use custos_frameworks::FrameworksService;
use custos_holds::{LegalHoldCheck, LegalHoldsService};
use custos_identity::{Authenticator, IdentityService};
use custos_incidents::{IncidentsService, Slas};
use custos_jobs::JobsService;
use custos_notify::NotifyService;
use custos_residency::ResidencyService;
use custos_vault::KeyProvider;
use custos_vault::secrets::SecretsService;
use custos_vault::store::Vault;
use http::{StatusCode, header};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{AuditConfig, Config, EvidenceConfig};
use crate::domains;
use crate::edge::{self, Edge, PublicPaths, RateLimits};
use crate::listener::{self, Protocol};
use crate::rest;

/// Every domain service, built once. The REST facade, the gRPC adapters and the CLI all hold this.
#[derive(Clone)]
pub struct App {
    pub db: Db,
    pub identity: IdentityService,
    pub frameworks: FrameworksService,
    pub audit: AuditService,
    pub incidents: IncidentsService,
    /// The legal-hold check handed to every service that deletes or disposes data.
    pub holds: Holds,
    pub evidence: EvidenceService,
    pub legal_holds: LegalHoldsService,
    /// Jobs and schedules: the API, and the kinds every served domain registered.
    pub jobs: JobsService,
    /// Envelope encryption: data keys under the master keys (secrets, exports, DSR encrypt
    /// through it).
    pub vault: Vault,
    /// The secrets vault.
    pub secrets: SecretsService,
    /// Notification channels.
    pub notify: NotifyService,
    /// Data residency: where files may be stored (the blob stores by region), and violations.
    pub residency: ResidencyService,
    /// The key retention archives are signed with: the audit log's signing key; `None` in an
    /// operator command started without one (its archive runs fail, saying so).
    pub archive_signer: Option<custos_audit_chain::note::NoteSigner>,
}

impl App {
    pub fn new(
        db: Db,
        chain: AuditChain,
        slas: Slas,
        evidence: &EvidenceConfig,
        keys: Arc<dyn KeyProvider>,
    ) -> anyhow::Result<Self> {
        let holds: Holds = Arc::new(LegalHoldCheck);
        let stores = BlobStores::from_config(&evidence.blob_store, evidence.blob_stores.as_deref())
            .map_err(|e| anyhow::anyhow!("CUSTOS_BLOB_STORE(S): {e}"))?;
        let residency = ResidencyService::new(db.clone(), stores);
        let jobs = JobsService::new(db.clone());
        let archive_signer = Some(chain.signer().clone());
        Ok(App {
            archive_signer,
            identity: IdentityService::new(db.clone()),
            frameworks: FrameworksService::new(db.clone()).with_job_waker(jobs.waker()),
            audit: AuditService::new(chain, holds.clone()),
            evidence: EvidenceService::new(db.clone(), residency.clone(), holds.clone(), evidence.max_upload_bytes),
            residency,
            legal_holds: LegalHoldsService::new(db.clone()),
            jobs,
            vault: Vault::new(db.clone(), keys.clone()),
            secrets: SecretsService::new(Vault::new(db.clone(), keys.clone())),
            notify: NotifyService::new(Vault::new(db.clone(), keys)),
            incidents: IncidentsService::new(db.clone(), holds.clone(), slas),
            holds,
            db,
        })
    }
}

/// The audit chain with the configured signing key (generated on first use outside production).
pub fn audit_chain(db: Db, config: &AuditConfig, when_missing: keys::WhenMissing) -> anyhow::Result<AuditChain> {
    let (signer, source) = keys::load(&config.keys, when_missing)?;
    if let KeySource::Generated(path) = &source {
        let key = signer.verifier().to_note_key();
        tracing::warn!(path = %path.display(), verifier_key = %key, "USING A GENERATED AUDIT SIGNING KEY: set CUSTOS_SIGNING_KEY for production");
        eprintln!(
            "WARNING: audit checkpoints are signed with a generated key ({}); set CUSTOS_SIGNING_KEY for production",
            path.display()
        );
    }
    let trusted = keys::trusted(&config.keys, Some(&signer))?;
    let sequencer = SequencerConfig {
        checkpoint_interval: Duration::from_millis(config.checkpoint_interval_ms),
        search_scan: config.search_scan,
        ..SequencerConfig::default()
    };
    Ok(AuditChain::new(db, signer, trusted, sequencer))
}

/// Connects the pool and checks the database answers, with an error an operator can act on.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    let mut db_config = DbConfig::new(&config.database_url);
    db_config.max_connections = config.db_max_connections;
    let db = Db::connect(&db_config)?;
    db.ping()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the database at {}: {e}", redact(&config.database_url)))?;
    Ok(db)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Explicit buckets make latencies real Prometheus histograms (aggregatable across
            // replicas) rather than per-process summaries.
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let recorder =
                PrometheusBuilder::new().set_buckets(&buckets).expect("non-empty bucket list").build_recorder();
            let handle = recorder.handle();
            // Only the first server of a process installs the global recorder (tests start many).
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A running server: both listeners, stoppable.
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub app: App,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops every task at once, as a crash would: nothing is released or finished (jobs it
    /// held lapse and are taken over by another replica). For tests of recovery.
    pub fn kill(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Stops accepting, lets in-flight requests finish, and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_signal(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async move {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

/// Builds the services and starts both listeners (ports may be 0 for tests).
pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    start_with(config, domains::ALL.iter().collect()).await
}

/// [`start`] serving these domains (a test adds a throwaway one to [`domains::ALL`]).
pub async fn start_with(config: &Config, served: Vec<&'static domains::Domain>) -> anyhow::Result<RunningServer> {
    if config.migrate_on_start {
        let applied = custos_db::migrate(&config.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("migrations failed on {}: {e}", redact(&config.database_url)))?;
        for m in applied {
            tracing::info!(migration = %m, "applied migration");
        }
    }
    let db = connect(config).await?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create CUSTOS_DATA_DIR {}: {e}", config.data_dir.display()))?;
    let chain = audit_chain(db.clone(), &config.audit, keys::WhenMissing::Generate)?;
    chain.check_transaction_counter().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = crate::domains::vault::key_provider(&config.vault, &config.data_dir, true)?;
    let mut app = App::new(db.clone(), chain.clone(), config.slas, &config.evidence, keys)?;
    app.notify = app.notify.clone().with_smtp(config.smtp.clone());
    let authenticator = Authenticator::new(db.clone(), config.jwt.clone())
        .map_err(|e| anyhow::anyhow!(e))?
        .with_token_cache(Duration::from_secs(config.auth_cache_seconds))
        .with_credential_changes(app.identity.credential_changes());
    let limits = Arc::new(RateLimits::new(config.rate_limit_auth_per_hour, config.rate_limit_anon_per_hour));
    let domains = domains::compose_these(&served, &app, config)?;
    let public = PublicPaths::of(&domains.endpoints, &domains.grpc);
    let edge = Edge {
        authenticator,
        limits: limits.clone(),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        public: Arc::new(public),
    };
    let metrics = metrics_handle();

    let schema = rest::openapi::document(&domains.endpoints, &domains.description);
    let rest_router = rest_router(
        app.clone(),
        &domains.endpoints,
        schema,
        edge.clone(),
        metrics,
        config.connections.body_read_timeout,
    );
    let grpc_router = grpc_router(domains.grpc, edge).await?;

    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on CUSTOS_HTTP_ADDR {}: {e}", config.http_addr))?;
    let grpc = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on CUSTOS_GRPC_ADDR {}: {e}", config.grpc_addr))?;
    let (http_addr, grpc_addr) = (http.local_addr()?, grpc.local_addr()?);
    let (shutdown, _) = watch::channel(false);

    let connection_limits = config.connections.fit_to_file_limit();
    let proxies = Arc::new(config.trusted_proxies.clone());
    let serve = |listener: TcpListener, router: Router, protocol: Protocol, stop: watch::Receiver<bool>| {
        tokio::spawn(listener::serve(listener, router, protocol, connection_limits, proxies.clone(), stop))
    };
    let mut tasks = vec![
        serve(http, rest_router, Protocol::Rest, shutdown.subscribe()),
        serve(grpc, grpc_router, Protocol::Grpc, shutdown.subscribe()),
    ];
    for task in domains.tasks {
        tracing::debug!(task = task.name, "starting background task");
        tasks.push(tokio::spawn((task.run)(shutdown.subscribe())));
    }
    let mut stop = shutdown.subscribe();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => limits.shrink(),
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }));
    tracing::info!(%http_addr, %grpc_addr, "custos serving");
    Ok(RunningServer { http_addr, grpc_addr, app, shutdown, tasks })
}

fn rest_router(
    app: App,
    endpoints: &[rest::Endpoint],
    schema: serde_json::Value,
    edge: Edge,
    metrics: PrometheusHandle,
    body_timeout: Duration,
) -> Router {
    let schema = Arc::new(schema);
    rest::router(endpoints)
        .route("/health/", get(health))
        .route("/health", get(health))
        .route("/api/schema/", get(move || async move { axum::Json((*schema).clone()) }))
        .route(
            "/metrics",
            get(move |State(app): State<App>| async move {
                let pool = app.db.status();
                metrics::gauge!("custos_db_pool_max_connections").set(pool.max_size as f64);
                metrics::gauge!("custos_db_pool_connections", "state" => "open").set(pool.size as f64);
                metrics::gauge!("custos_db_pool_connections", "state" => "idle").set(pool.available as f64);
                metrics::gauge!("custos_db_pool_connections", "state" => "in_use")
                    .set(pool.size.saturating_sub(pool.available) as f64);
                metrics::gauge!("custos_db_pool_waiting").set(pool.waiting as f64);
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render())
            }),
        )
        .merge(rest::docs::router())
        .fallback(|| async {
            edge::problem_response(&custos_core::Problem::new(
                custos_core::ErrorKind::NotFound,
                "Not found",
                "No endpoint at this path; see /api/docs/",
            ))
        })
        .method_not_allowed_fallback(|| async {
            let problem = custos_core::Problem::new(
                custos_core::ErrorKind::InvalidArgument,
                "Method not allowed",
                "This endpoint does not accept this HTTP method; see /api/docs/",
            );
            let mut resp = edge::problem_response(&problem);
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp
        })
        .layer(axum::middleware::from_fn_with_state(edge, edge::middleware))
        .layer(axum::Extension(rest::BodyTimeout(body_timeout)))
        .with_state(app)
}

async fn health(State(app): State<App>) -> Response {
    match app.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({ "status": "ok", "database": "ok", "version": env!("CARGO_PKG_VERSION") })),
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "unavailable", "database": "unreachable" })))
                .into_response()
        }
    }
}

async fn grpc_router(services: Vec<domains::GrpcService>, edge: Edge) -> anyhow::Result<Router> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    for service in &services {
        health_reporter.set_service_status(service.name, tonic_health::ServingStatus::Serving).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(custos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(custos_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let routes = tonic::service::Routes::new(health_service).add_service(reflection_v1).add_service(reflection_v1alpha);
    let routes = services.into_iter().fold(routes, |routes, service| service.add_to(routes));
    Ok(routes.into_axum_router().layer(axum::middleware::from_fn_with_state(edge, edge::middleware)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
