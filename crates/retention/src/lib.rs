//! Retention (seeds 000 and 004): retention policies ([`policies`]), the precedence that decides
//! for each record how long it is kept and when and how it goes, implemented once
//! ([`precedence`]: a legal hold beats any deletion; retention wins over deletion and the longest
//! retention wins; an explicit scope beats an implicit one; the shortest deletion period wins),
//! its explanation for one record ([`explain`]), and runs: previews, executions in batches,
//! soft deletion and restore ([`runs`]); policy documents (policy-as-code) read and validated with
//! every problem located ([`document`]). Archives, applying policies and data residency come next.

pub mod document;
pub mod explain;
pub mod grpc;
pub mod model;
pub mod policies;
pub mod precedence;
mod records;
pub mod runs;

use std::sync::Arc;

use custos_db::{Db, Holds};
use custos_proto::v1 as pb;
use tokio::sync::Notify;

custos_db::service_error! {
    pub enum RetentionError {}
}

pub(crate) type Result<T, E = RetentionError> = std::result::Result<T, E>;

custos_core::page_responses! {
    pb::ListRetentionPoliciesResponse { pb::RetentionPolicy } + next_cursor;
    pb::ListRetentionRunsResponse { pb::RetentionRun } + next_cursor;
    pb::ListRetentionRunItemsResponse { pb::RetentionRunItem } + next_cursor;
}

/// Retention, written once: REST, gRPC and the CLI call it.
#[derive(Clone)]
pub struct RetentionService {
    pub(crate) db: Db,
    /// The legal-hold check (what holds a record).
    pub(crate) holds: Holds,
    /// Wakes the job runner when a run is started.
    pub(crate) waker: Option<Arc<Notify>>,
}

impl RetentionService {
    pub fn new(db: Db, holds: Holds) -> Self {
        RetentionService { db, holds, waker: None }
    }

    pub fn with_job_waker(mut self, waker: Arc<Notify>) -> Self {
        self.waker = Some(waker);
        self
    }
}
