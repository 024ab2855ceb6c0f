//! Retention (seeds 000 and 004): retention policies ([`policies`]), the precedence that decides
//! for each record how long it is kept and when and how it goes, implemented once
//! ([`precedence`]: a legal hold beats any deletion; retention wins over deletion and the longest
//! retention wins; an explicit scope beats an implicit one; the shortest deletion period wins),
//! its explanation for one record ([`explain`]), and runs: previews, executions in batches,
//! soft deletion and restore ([`runs`]); policy documents (policy-as-code) read and validated with
//! every problem located ([`document`]), stored, applied as immutable versions, dry-run, rolled
//! back and enforced ([`compliance_policies`]); archive runs, whose signed archive files
//! ([`archive_file`]) are verified offline and restored.

pub mod archive_file;
mod archives;
pub mod audit_runs;
pub mod compliance_policies;
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
use custos_residency::ResidencyService;
use tokio::sync::Notify;

custos_db::service_error! {
    pub enum RetentionError {
        Residency(custos_residency::ResidencyError),
    }
}

pub(crate) type Result<T, E = RetentionError> = std::result::Result<T, E>;

custos_core::page_responses! {
    pb::ListRetentionPoliciesResponse { pb::RetentionPolicy } + next_cursor;
    pb::ListRetentionRunsResponse { pb::RetentionRun } + next_cursor;
    pb::ListRetentionRunItemsResponse { pb::RetentionRunItem } + next_cursor;
    pb::ListCompliancePoliciesResponse { pb::CompliancePolicy } + next_cursor;
    pb::ListPolicyVersionsResponse { pb::PolicyVersion } + next_cursor;
}

/// Retention, written once: REST, gRPC and the CLI call it.
#[derive(Clone)]
pub struct RetentionService {
    pub(crate) db: Db,
    /// The legal-hold check (what holds a record).
    pub(crate) holds: Holds,
    /// Data residency, which policy documents set, and the record of violations.
    pub(crate) residency: ResidencyService,
    /// Wakes the job runner when a run is started.
    pub(crate) waker: Option<Arc<Notify>>,
    /// The platform's Ed25519 key (the audit log's), which signs archives.
    pub(crate) signer: Option<custos_audit_chain::note::NoteSigner>,
    /// The audit chain, whose pruning audit-log runs go through.
    pub(crate) audit: Option<custos_audit_chain::AuditChain>,
}

impl RetentionService {
    pub fn new(db: Db, holds: Holds, residency: ResidencyService) -> Self {
        RetentionService { db, holds, residency, waker: None, signer: None, audit: None }
    }

    /// Audit-log runs prune through `chain` (without it they fail, saying so).
    pub fn with_audit_chain(mut self, chain: custos_audit_chain::AuditChain) -> Self {
        self.audit = Some(chain);
        self
    }

    /// Archives are signed with `signer` (the platform's key, the audit log's); without one,
    /// archive runs fail.
    pub fn with_archive_signer(mut self, signer: custos_audit_chain::note::NoteSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    pub fn with_job_waker(mut self, waker: Arc<Notify>) -> Self {
        self.waker = Some(waker);
        self
    }
}
