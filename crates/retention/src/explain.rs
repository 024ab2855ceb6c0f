//! `GET /api/compliance/retention/explain/?entity_type=…&id=…`: for one record, which active
//! policies cover it, which retention is the longest, which deletion applies, when it becomes
//! eligible, and what holds it — the precedence of [`crate::precedence`] applied and said.
//!
//! The record is read as runs read theirs ([`crate::records`]), so an explanation and a run
//! always judge the same facts.

use custos_core::ctx::Access;
use custos_core::filter::{choice, parse_id};
use custos_core::{Problem, RequestCtx, timefmt};
use custos_db::schema::retention_policies as policies;
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;

use crate::model::{EntityType, PolicyRow};
use crate::precedence::{self, Covering};
use crate::records;
use crate::{Result, RetentionService};

impl RetentionService {
    /// Explains one record's retention (every role that can read the record: viewers and up).
    pub async fn explain_retention(
        &self,
        ctx: &RequestCtx,
        req: pb::ExplainRetentionRequest,
    ) -> Result<pb::RetentionExplanation> {
        let entity: EntityType = choice("entity_type", req.entity_type.trim())?;
        if entity == EntityType::AuditLog {
            return Err(Problem::invalid_field(
                "entity_type",
                "audit entries are kept by the audit chain's own retention (custos audit prune), not explained per entry",
            )
            .into());
        }
        let id = parse_id(entity.as_ref_name(), &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let (_, record, scope) = records::read(self, &mut tx, org, entity, &[id], false)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Problem::not_found(entity.as_ref_name(), id))?;
        let active: Vec<PolicyRow> = policies::table
            .filter(policies::organization_id.eq(org))
            .filter(policies::entity_type.eq(entity))
            .filter(policies::is_active.eq(true))
            .order((policies::created_at.asc(), policies::id.asc()))
            .select(PolicyRow::as_select())
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        let covering_rows: Vec<&PolicyRow> = active.iter().filter(|p| scope.covered_by(p)).collect();
        let covering: Vec<Covering> = covering_rows.iter().map(|p| covering_of(p)).collect();
        let decision = precedence::decide(&record, &covering, timefmt::now(), false);
        let ts = |t: OffsetDateTime| timefmt::timestamp(t);
        let policies = covering_rows
            .iter()
            .zip(&decision.per_policy)
            .map(|(p, o)| pb::CoveringPolicy {
                policy: p.id.to_string(),
                name: p.name.clone(),
                explicit_scope: p.explicit_scope(),
                retain_until: o.retain_until.map(ts),
                deletion_method: p.deletes().then(|| p.deletion_method.to_string()),
                deletes_at: o.deletes_at.map(ts),
                longest_retention: o.longest_retention,
                deletion_applies: o.deletion_applies,
            })
            .collect();
        Ok(pb::RetentionExplanation {
            entity_type: entity.to_string(),
            id: id.to_string(),
            retention_starts_at: record.starts_at.map(ts),
            retention_starts_from: record.starts_from.clone(),
            policies,
            retained_until: decision.retained_until.map(|(t, _)| ts(t)),
            retained_by: decision.retained_until.map(|(_, by)| match by {
                Some(p) => p.to_string(),
                None => "evidence.retention_period".to_owned(),
            }),
            deletion_policy: decision.deletion.map(|(p, _, _)| p.to_string()),
            deletion_method: decision.deletion.map(|(_, m, _)| m.to_string()),
            eligible_at: decision.eligible_at.map(ts),
            holds: record
                .holds
                .iter()
                .map(|h| pb::HoldReference {
                    id: h.id.to_string(),
                    case_name: h.case_name.clone(),
                    case_number: h.case_number.clone(),
                })
                .collect(),
            verdict: decision.verdict.as_str().to_owned(),
            reasons: decision.reasons,
        })
    }
}

/// A policy as the precedence sees it; it deletes if it deletes or archives by itself.
pub(crate) fn covering_of(p: &PolicyRow) -> Covering {
    Covering {
        policy: p.id,
        name: p.name.clone(),
        period: p.retention_period,
        unit: p.retention_unit,
        deletes: p.deletes().then_some(p.deletion_method),
        explicit: p.explicit_scope(),
        legal_hold_override: p.legal_hold_override,
    }
}

impl EntityType {
    /// The record's name in a 404 ("Incident", "Evidence", …).
    fn as_ref_name(self) -> &'static str {
        match self {
            EntityType::Incident => "Incident",
            EntityType::Evidence => "Evidence",
            EntityType::Vulnerability => "Vulnerability",
            EntityType::AuditLog => "Audit entry",
            EntityType::Job => "Job",
        }
    }
}
