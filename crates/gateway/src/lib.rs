//! The composition root of Custos: the `custos` binary's library.
//!
//! * [`config`] — configuration from the environment (`DATABASE_URL`, `CUSTOS_*`).
//! * [`domains`] — each domain declared in one place: REST endpoints, gRPC service, public paths,
//!   background tasks, CLI subcommands.
//! * [`server`] — builds the services once and serves them twice: gRPC (tonic, with health and
//!   reflection) on `CUSTOS_GRPC_ADDR` and the REST/JSON facade (axum) on `CUSTOS_HTTP_ADDR`.
//! * [`rest`] — the REST facade: endpoints mapping to service methods and their proto messages;
//!   request/response JSON is the messages' own serde form, so no endpoint has hand-written DTOs;
//!   the OpenAPI document is generated from the same endpoints and the proto descriptors.
//! * [`edge`] — what every request passes through on both protocols: request id, authentication,
//!   rate limits, metrics — and the one mapping of error kinds to HTTP status codes.
//! * [`listener`] — the accept loop of both listeners: header, body and idle timeouts, connection
//!   caps (overall and per client), HTTP/2 windows for gRPC, JSON for hyper's own error answers.
//! * [`cli`] — the command line: `serve`, `migrate`, and the domains' operator subcommands.

pub mod cli;
pub mod config;
pub mod domains;
pub mod edge;
pub mod listener;
pub mod rest;
pub mod server;

pub use config::Config;
pub use server::{App, RunningServer};
