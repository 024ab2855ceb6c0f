//! Every incident-response operation, written once. One submodule per resource; what they share
//! (errors, the transaction, the list responses) is here; filters, references and pages come
//! from the kit in `custos_core` and `custos_db`.

mod checkpoints;
mod incidents;
mod plans;
mod vulnerabilities;

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{choice, opt_choice, opt_uuid, search_pattern};
use custos_core::{ListRequest, RequestCtx};
use custos_db::{Db, Holds, Tx, list, refs};
use custos_proto::v1 as pb;

use crate::sla::Slas;

custos_db::service_error! {
    pub enum IncidentsError {}
}

type Result<T, E = IncidentsError> = std::result::Result<T, E>;

const TITLE_MAX: usize = 500;
const TEXT_MAX: usize = 20_000;

#[derive(Clone)]
pub struct IncidentsService {
    db: Db,
    holds: Holds,
    slas: Slas,
}

impl IncidentsService {
    pub fn new(db: Db, holds: Holds, slas: Slas) -> Self {
        IncidentsService { db, holds, slas }
    }

    pub fn slas(&self) -> &Slas {
        &self.slas
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.db.begin_as(ctx, access).await?)
    }
}

custos_core::page_responses! {
    pb::ListIncidentsResponse { pb::Incident };
    pb::ListVulnerabilitiesResponse { pb::Vulnerability } + next_cursor;
    pb::ListComplianceCheckpointsResponse { pb::ComplianceCheckpoint };
    pb::ListIncidentResponsePlansResponse { pb::IncidentResponsePlan } + next_cursor;
}
