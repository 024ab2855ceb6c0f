//! Regulatory frameworks and their compliance requirements (seed 000), with live compliance
//! summaries and the built-in framework catalogue.
//!
//! * [`model`] — the closed value sets (framework types, priorities, statuses) and database rows.
//! * [`service::FrameworksService`] — every operation, written once; REST, gRPC and the CLI call it.
//! * [`catalog`] — the built-in catalogue (YAML data files under `catalog/`) and `custos seed`.
//! * [`import`] — OSCAL, framework-library and Custos documents in and out, as files or jobs.
//! * [`mappings`] — cross-framework mappings between requirements, read in both directions.
//! * [`grpc`] — the thin tonic adapter.

pub mod assessment_watch;
pub mod catalog;
pub mod grpc;
pub mod import;
pub mod mappings;
pub mod model;
pub mod score_history;
pub mod service;

pub use service::{FrameworksError, FrameworksService};
