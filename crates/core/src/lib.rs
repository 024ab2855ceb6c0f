//! The shared kernel every Custos crate builds on.
//!
//! It knows nothing of HTTP or the database: a domain operation receives a [`RequestCtx`] (who is
//! calling, for which organisation, with which role), reports failures as a [`Problem`] of a given
//! [`ErrorKind`], and uses the pagination and filter helpers here so that every list endpoint
//! behaves the same way. The one mapping of an [`ErrorKind`] to a gRPC status lives in `custos-grpc`; the
//! gateway holds the one mapping to HTTP status codes. This crate knows no transport.

pub mod ctx;
pub mod error;
pub mod filter;
pub mod hex;
pub mod hold;
pub mod issue;
pub mod page;
pub mod timefmt;
pub mod update;

pub use ctx::{Actor, RequestCtx, Role};
pub use error::{ErrorKind, Problem};
pub use hold::{Held, HoldCheck, HoldRef};
pub use issue::Issue;
pub use page::{Count, ListRequest, Page, PageInfo, PageRequest};

/// A new time-ordered primary key (UUIDv7): index-friendly and sortable by creation time.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}
