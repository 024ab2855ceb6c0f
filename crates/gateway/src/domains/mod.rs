//! The domains the gateway serves, each declared in one place: its REST endpoints (and which of
//! them are public), its gRPC service, its background tasks and its `custos` subcommands.
//!
//! `custos serve` composes [`ALL`]: the REST router, the gRPC router, the edge's public paths and
//! the tasks all come from it; the CLI adds each domain's subcommands. Adding a domain is one
//! module here and its line in [`ALL`] (plus its crate in `Cargo.toml`): see ARCHITECTURE.md,
//! "Adding a domain".

pub mod audit;
pub mod evidence;
pub mod frameworks;
pub mod holds;
pub mod identity;
pub mod incidents;
pub mod jobs;
pub mod notify;
pub mod reports;
pub mod residency;
pub mod retention;
pub mod status;
pub mod vault;
pub mod workflows;

use std::convert::Infallible;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::service::Routes;

use crate::config::Config;
use crate::rest::Endpoint;
use crate::rest::openapi::ApiDescription;
use crate::server::App;

/// Every domain, in the order their endpoints are documented.
pub const ALL: &[Domain] = &[
    frameworks::DOMAIN,
    evidence::DOMAIN,
    holds::DOMAIN,
    incidents::DOMAIN,
    identity::DOMAIN,
    audit::DOMAIN,
    jobs::DOMAIN,
    vault::DOMAIN,
    notify::DOMAIN,
    retention::DOMAIN,
    residency::DOMAIN,
    workflows::DOMAIN,
    reports::DOMAIN,
    status::DOMAIN,
];

/// A domain as the gateway sees it.
pub struct Domain {
    pub name: &'static str,
    /// What `custos serve` runs for it, from the services built once in [`App`]. A new domain
    /// may build its own service here from `app.db` and `app.holds` instead of adding to `App`.
    pub serve: fn(&App, &Config) -> Serving,
    /// Its `custos` subcommands, if any.
    pub cli: Option<Cli>,
}

/// What a domain serves.
#[derive(Default)]
pub struct Serving {
    pub endpoints: Vec<Endpoint>,
    /// What the descriptors cannot say of its API: value sets, required request fields.
    pub description: ApiDescription,
    pub grpc: Vec<GrpcService>,
    /// Loops that run as long as the server (the audit sequencer); periodic and long work is
    /// a job instead.
    pub tasks: Vec<Task>,
    /// The kinds of job it runs (`custos_jobs::Kind`), and the schedules that start them.
    pub jobs: Vec<custos_jobs::Kind>,
    pub schedules: Vec<custos_jobs::ScheduleDef>,
}

type AddService = Box<dyn FnOnce(Routes) -> Routes + Send>;

/// A tonic service of a domain, with the methods anonymous callers may call.
pub struct GrpcService {
    /// The full service name (`custos.v1.FrameworksService`), for health and reflection.
    pub name: &'static str,
    /// Methods answered without credentials (`GetPublicKey`).
    pub public_methods: Vec<&'static str>,
    add: AddService,
}

impl GrpcService {
    pub fn new<S>(server: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        GrpcService {
            name: S::NAME,
            public_methods: Vec::new(),
            add: Box::new(move |routes| routes.add_service(server)),
        }
    }

    /// Lets anonymous callers call `method` (e.g. `GetPublicKey`).
    pub fn public(mut self, method: &'static str) -> Self {
        self.public_methods.push(method);
        self
    }

    pub(crate) fn add_to(self, routes: Routes) -> Routes {
        (self.add)(routes)
    }
}

/// A background loop `custos serve` runs until shutdown.
pub struct Task {
    pub name: &'static str,
    pub run: Box<dyn FnOnce(watch::Receiver<bool>) -> BoxFuture<'static, ()> + Send>,
}

impl Task {
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Task { name, run: Box::new(move |stop| Box::pin(run(stop))) }
    }
}

/// A domain's `custos` subcommands (a clap `Subcommand` enum of its own, added to the command).
pub struct Cli {
    /// Adds the subcommands to the `custos` command.
    pub augment: fn(clap::Command) -> clap::Command,
    /// Runs the subcommand the arguments name, if it is one of this domain's.
    pub run: fn(&clap::ArgMatches) -> Option<BoxFuture<'static, anyhow::Result<()>>>,
    /// Whether that subcommand verifies something (its "not intact" exit status differs from
    /// its "could not check" one: see `cli::Broken`).
    pub verifies: fn(&clap::ArgMatches) -> bool,
}

/// Declares a domain's [`Cli`] from its clap `Subcommand` enum and its `run` function.
#[macro_export]
macro_rules! domain_cli {
    ($command:ty, $run:path, $verifies:expr) => {
        $crate::domains::Cli {
            augment: <$command as ::clap::Subcommand>::augment_subcommands,
            run: |matches| {
                let command = <$command as ::clap::FromArgMatches>::from_arg_matches(matches).ok()?;
                Some(Box::pin($run(command)))
            },
            verifies: |matches| {
                <$command as ::clap::FromArgMatches>::from_arg_matches(matches).is_ok_and(|c| ($verifies)(&c))
            },
        }
    };
}

/// Everything the domains serve, composed.
pub fn compose(app: &App, config: &Config) -> anyhow::Result<Serving> {
    compose_these(&ALL.iter().collect::<Vec<_>>(), app, config)
}

/// [`compose`] of these domains: their endpoints, services and tasks, and the platform's job
/// runner and scheduler over the kinds and schedules they declare (registered with
/// `app.jobs`, whose API lists and starts them). A `CUSTOS_SCHEDULE_*` setting naming no
/// schedule, or not a cron expression, is an error.
pub fn compose_these(domains: &[&Domain], app: &App, config: &Config) -> anyhow::Result<Serving> {
    let mut all = Serving::default();
    for domain in domains {
        let serving = (domain.serve)(app, config);
        all.endpoints.extend(serving.endpoints);
        all.description.value_sets.extend(serving.description.value_sets);
        all.description.required.extend(serving.description.required);
        all.grpc.extend(serving.grpc);
        all.tasks.extend(serving.tasks);
        all.jobs.extend(serving.jobs);
        all.schedules.extend(serving.schedules);
    }
    for (name, _) in &config.jobs.schedules {
        if !all.schedules.iter().any(|d| d.name == name) {
            let known: Vec<&str> = all.schedules.iter().map(|d| d.name).collect();
            anyhow::bail!(
                "CUSTOS_SCHEDULE_{} names no schedule; the schedules are: {}",
                name.to_ascii_uppercase().replace('-', "_"),
                known.join(", ")
            );
        }
    }
    let defs = std::mem::take(&mut all.schedules)
        .into_iter()
        .map(|def| {
            let setting = config.jobs.schedules.iter().find(|(n, _)| n == def.name).map(|(_, v)| v.as_str());
            def.configured(setting).map_err(|e| anyhow::anyhow!(e))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for def in &defs {
        if !all.jobs.iter().any(|k| k.name == def.kind) {
            anyhow::bail!("schedule {} starts {}, a kind of job no served domain runs", def.name, def.kind);
        }
    }
    app.jobs.register(all.jobs.clone(), defs.clone());
    if config.jobs.run {
        let runner =
            custos_jobs::Runner::new(app.db.clone(), all.jobs.clone(), config.jobs.runner.clone(), app.jobs.waker());
        let attempts = all.jobs.iter().map(|k| (k.name.to_owned(), k.max_attempts)).collect();
        let scheduler = custos_jobs::Scheduler::new(
            app.db.clone(),
            defs.clone(),
            attempts,
            app.jobs.waker(),
            config.jobs.scheduler_tick,
        );
        all.tasks.push(Task::new("job runner", move |stop| runner.run(stop)));
        all.tasks.push(Task::new("job scheduler", move |stop| scheduler.run(stop)));
    }
    all.schedules = defs;
    Ok(all)
}
