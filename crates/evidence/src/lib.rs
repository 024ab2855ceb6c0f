//! Evidence with its chain of custody (seed 000: Evidence Collection); its files live in the
//! platform's blob stores (`custos-blobs`), placed by data residency (`custos-residency`).
//!
//! * [`service::EvidenceService`] — evidence CRUD, streamed uploads and downloads, custody
//!   records, integrity verification; written once for REST, gRPC and the CLI. Legal holds are
//!   asked about through `custos_core::HoldCheck` (the `holds` crate implements it).
//! * [`custody`] — the hash-linked custody chain.
//! * [`model`] — value sets and rows; [`grpc`] — the thin tonic adapter.

pub mod custody;
pub mod grpc;
pub mod model;
pub mod service;

pub use service::{EvidenceError, EvidenceService};
