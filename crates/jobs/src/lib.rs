//! Background work for every domain: jobs and the schedules that start them.
//!
//! * A **job** is a row of `jobs` ([`model::JobRow`]) of some [`Kind`]. Runners ([`Runner`]: one
//!   in every `custos serve`, and `custos jobs run` in a terminal) claim due jobs with
//!   `FOR UPDATE SKIP LOCKED` and hold each under a lease their heartbeat renews. A job whose
//!   runner died is marked *interrupted* once its lease lapses and is claimed again; its kind
//!   resumes from the checkpoint it saved ([`Job::save_checkpoint`]), and every step it did in
//!   [`Job::step`] is skipped, because a step's record commits in the same transaction as the
//!   step's own changes. Failures are retried with exponential backoff up to the kind's
//!   attempts; an admin may cancel a job (`queue::cancel`).
//! * A **schedule** ([`ScheduleDef`]) starts a kind of job by a cron expression (UTC, via
//!   `croner`): once for the platform, or once per organisation, in that organisation's scope.
//!   Each fire time starts exactly one job however many replicas run the [`Scheduler`].
//! * Every job's creation, start, takeover and end are recorded in its organisation's audit
//!   trail; a platform job (no organisation) is recorded in the trails of the organisations
//!   its steps act on, by those steps.
//!
//! Domains declare their kinds and schedules where they declare the rest of what they serve
//! (the gateway's `domains/` modules); this crate knows none of them.

mod error;
mod job;
pub mod model;
pub mod queue;
mod runner;
mod schedule;
mod service;

pub mod grpc;

pub use error::{JobError, JobsError};
pub use job::{Job, Kind, Scope};
pub use runner::{Runner, RunnerConfig};
pub use schedule::{ScheduleDef, Scheduler, parse_cron};
pub use service::{JobsService, Registry};
