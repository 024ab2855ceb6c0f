//! Data residency (seed 004): where an organisation's files may be stored, decided once for every
//! write, and the record of operations that broke a rule.
//!
//! * [`config`] — the organisation's residency configuration (`/api/compliance/data-residency/`):
//!   primary and allowed regions, storage prefix, enforcement, cross-region blocking.
//! * [`placement`] — [`ResidencyService::place`]: the one answer to "where may this write go?",
//!   asked by every domain that stores files (evidence uploads, retention archives, later
//!   exports). It answers the blob store and key prefix, or refuses with a 409 naming the rule.
//! * [`violations`] — the append-only record of operations that broke a rule, blocked (hard
//!   enforcement) or allowed (soft), each also an audit entry; policy documents' rules write here
//!   too (`/api/compliance/policy-violations/`).
//! * [`grpc`] — the thin tonic adapter.
//!
//! A platform crate (like the vault): domains that write files depend on it, so residency is
//! enforced in one place.

pub mod config;
pub mod grpc;
pub mod placement;
pub mod violations;

use custos_blobs::BlobStores;
use custos_db::Db;
use custos_proto::v1 as pb;

pub use placement::{Placement, Write};
pub use violations::NewViolation;

custos_db::service_error! {
    pub enum ResidencyError {}
}

pub(crate) type Result<T, E = ResidencyError> = std::result::Result<T, E>;

custos_core::page_responses! {
    pb::ListPolicyViolationsResponse { pb::PolicyViolation } + next_cursor;
}

/// Data residency, written once: REST, gRPC, the CLI and every writing domain call it.
#[derive(Clone)]
pub struct ResidencyService {
    pub(crate) db: Db,
    pub(crate) stores: BlobStores,
}

impl ResidencyService {
    pub fn new(db: Db, stores: BlobStores) -> Self {
        ResidencyService { db, stores }
    }

    /// The platform's blob stores, to read what [`ResidencyService::place`] placed.
    pub fn stores(&self) -> &BlobStores {
        &self.stores
    }
}
