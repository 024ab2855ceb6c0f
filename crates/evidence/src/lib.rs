//! Evidence with its chain of custody and the blob store its files live in (seed 000: Evidence
//! Collection).
//!
//! * [`service::EvidenceService`] — evidence CRUD, streamed uploads and downloads, custody
//!   records, integrity verification; written once for REST, gRPC and the CLI. Legal holds are
//!   asked about through `custos_core::HoldCheck` (the `holds` crate implements it).
//! * [`blobs`] — the content-addressed blob store (`object_store`), hashing while streaming.
//! * [`custody`] — the hash-linked custody chain.
//! * [`model`] — value sets and rows; [`grpc`] — the thin tonic adapter.

pub mod blobs;
pub mod custody;
pub mod grpc;
pub mod model;
pub mod service;

pub use blobs::BlobStore;
pub use service::{EvidenceError, EvidenceService};
