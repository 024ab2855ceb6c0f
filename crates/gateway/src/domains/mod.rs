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
pub const ALL: &[Domain] =
    &[frameworks::DOMAIN, evidence::DOMAIN, holds::DOMAIN, incidents::DOMAIN, identity::DOMAIN, audit::DOMAIN];

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
    pub tasks: Vec<Task>,
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

impl Task {
    /// Soon after start (at a random moment in `first_pass`: replicas started together spread
    /// out, and servers restarted more often than daily still run it), then once a day.
    pub fn daily<F, Fut>(name: &'static str, first_pass: std::ops::Range<std::time::Duration>, mut pass: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        Task::new(name, move |mut stop: watch::Receiver<bool>| async move {
            let spread = (first_pass.end.saturating_sub(first_pass.start).as_millis() as u64).max(1);
            let mut wait = first_pass.start + std::time::Duration::from_millis(rand::random::<u64>() % spread);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                wait = std::time::Duration::from_secs(24 * 3600);
                pass().await;
            }
        })
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
pub fn compose(app: &App, config: &Config) -> Serving {
    compose_these(&ALL.iter().collect::<Vec<_>>(), app, config)
}

/// [`compose`] of these domains.
pub fn compose_these(domains: &[&Domain], app: &App, config: &Config) -> Serving {
    let mut all = Serving::default();
    for domain in domains {
        let serving = (domain.serve)(app, config);
        all.endpoints.extend(serving.endpoints);
        all.description.value_sets.extend(serving.description.value_sets);
        all.description.required.extend(serving.description.required);
        all.grpc.extend(serving.grpc);
        all.tasks.extend(serving.tasks);
    }
    all
}
