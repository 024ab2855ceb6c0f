//! Legal holds (seed 000: Legal Holds): preservation orders over incidents, evidence and
//! custodian/subject identifiers, and the one answer to "is this held?".
//!
//! * [`service::LegalHoldsService`] — legal holds and what they cover; written once for REST,
//!   gRPC and the CLI.
//! * [`hold_check::LegalHoldCheck`] — the one implementation of `custos_core::HoldCheck`: every
//!   deleting path of every crate asks it, inside its own transaction, whether a hold applies.
//!   Callers (incidents, evidence, and later retention and DSR) hold it as `custos_db::Holds` and
//!   never depend on this crate.
//! * [`model`] — the value set and rows; [`grpc`] — the thin tonic adapter.
//!
//! This crate reads the `incidents` and `evidence` tables (to lock and check what a hold names)
//! through `custos_db::schema`, never through those crates.

pub mod grpc;
pub mod hold_check;
pub mod model;
pub mod service;

pub use hold_check::LegalHoldCheck;
pub use service::{HoldsError, LegalHoldsService};
