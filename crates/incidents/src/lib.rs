//! Incident response (seed 003): incidents with response and resolution SLAs, whose deletion
//! respects legal holds.
//!
//! * [`model`] — the closed value sets (severities, categories, statuses) and database rows.
//! * [`sla`] — the configurable SLAs and the deadlines they give.
//! * [`service::IncidentsService`] — every operation, written once; REST and gRPC call it.
//! * [`grpc`] — the thin tonic adapter.

pub mod grpc;
pub mod model;
pub mod service;
pub mod sla;
pub mod sla_watch;

pub use service::{IncidentsError, IncidentsService};
pub use sla::Slas;
