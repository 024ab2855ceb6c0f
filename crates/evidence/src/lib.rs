//! Evidence with its chain of custody, the blob store its files live in, and legal holds
//! (seed 000: Evidence Collection, Legal Holds).
//!
//! * [`service::EvidenceService`] — evidence CRUD, streamed uploads and downloads, custody
//!   records, integrity verification; written once for REST, gRPC and the CLI.
//! * [`holds::LegalHoldsService`] — legal holds and what they cover.
//! * [`hold_check::LegalHoldCheck`] — the one implementation of `custos_core::HoldCheck`: every
//!   deleting path of every crate asks it, inside its own transaction, whether a hold applies.
//! * [`blobs`] — the content-addressed blob store (`object_store`), hashing while streaming.
//! * [`custody`] — the hash-linked custody chain.
//! * [`model`] — value sets and rows; [`grpc`] — the thin tonic adapters.

pub mod blobs;
pub mod custody;
pub mod grpc;
pub mod hold_check;
pub mod holds;
pub mod model;
pub mod service;

pub use blobs::BlobStore;
pub use hold_check::LegalHoldCheck;
pub use holds::LegalHoldsService;
pub use service::{EvidenceError, EvidenceService};
