//! `GET /api/compliance/retention/explain/?entity_type=…&id=…`: for one record, which active
//! policies cover it, which retention is the longest, which deletion applies, when it becomes
//! eligible, and what holds it — the precedence of [`crate::precedence`] applied and said.
//!
//! The record is read through `db::schema` (as the hold check reads incidents and evidence),
//! never through another domain's crate.

use custos_core::ctx::Access;
use custos_core::filter::{choice, parse_id};
use custos_core::{Held, Problem, RequestCtx, timefmt};
use custos_db::Tx;
use custos_db::schema::{
    evidence, evidence_requirements, incidents, jobs, requirements, retention_policies as policies, vulnerabilities,
};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{EntityType, PolicyRow};
use crate::precedence::{self, Covering, Record};
use crate::{Result, RetentionService};

/// What scopes a record: its incident's category and classification, and the frameworks its
/// requirements belong to (evidence).
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    pub category: Option<String>,
    pub classification: Option<String>,
    pub frameworks: Vec<Uuid>,
}

impl Scope {
    pub(crate) fn covered_by(&self, p: &PolicyRow) -> bool {
        let within =
            |values: &[String], v: &Option<String>| values.is_empty() || v.as_ref().is_some_and(|v| values.contains(v));
        within(&p.incident_categories, &self.category)
            && within(&p.data_classification_levels, &self.classification)
            && (p.entity_type != EntityType::Evidence
                || p.applicable_frameworks.is_empty()
                || p.applicable_frameworks.iter().any(|f| self.frameworks.contains(f)))
    }
}

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
        let (record, scope) = self.record(&mut tx, org, entity, id).await?;
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

    /// The record as the rules see it, and what scopes it; 404 when the organisation has none.
    async fn record(&self, tx: &mut Tx, org: Uuid, entity: EntityType, id: Uuid) -> Result<(Record, Scope)> {
        let missing = || Problem::not_found(entity.as_ref_name(), id);
        match entity {
            EntityType::Incident => {
                let (status, resolved_at, category, classification): (String, Option<OffsetDateTime>, String, String) =
                    incidents::table
                        .filter(incidents::organization_id.eq(org))
                        .filter(incidents::id.eq(id))
                        .select((
                            incidents::status,
                            incidents::resolved_at,
                            incidents::category,
                            incidents::data_classification,
                        ))
                        .first(tx.conn())
                        .await
                        .optional()?
                        .ok_or_else(missing)?;
                let closed = matches!(status.as_str(), "RESOLVED" | "CLOSED");
                let holds = self.holds.holds_on(tx.conn(), org, &Held::Incident(id)).await?;
                Ok((
                    Record {
                        starts_at: if closed { resolved_at } else { None },
                        starts_from: "resolved_at".into(),
                        own_retention_days: None,
                        holds,
                    },
                    Scope { category: Some(category), classification: Some(classification), frameworks: Vec::new() },
                ))
            }
            EntityType::Evidence => {
                let (collected_at, own, incident): (OffsetDateTime, Option<i32>, Option<Uuid>) = evidence::table
                    .filter(evidence::organization_id.eq(org))
                    .filter(evidence::id.eq(id))
                    .select((evidence::collected_at, evidence::retention_period, evidence::incident_id))
                    .first(tx.conn())
                    .await
                    .optional()?
                    .ok_or_else(missing)?;
                let mut scope = Scope::default();
                if let Some(incident) = incident {
                    let found: Option<(String, String)> = incidents::table
                        .filter(incidents::organization_id.eq(org))
                        .filter(incidents::id.eq(incident))
                        .select((incidents::category, incidents::data_classification))
                        .first(tx.conn())
                        .await
                        .optional()?;
                    (scope.category, scope.classification) = found.unzip();
                }
                scope.frameworks = evidence_requirements::table
                    .inner_join(requirements::table)
                    .filter(evidence_requirements::organization_id.eq(org))
                    .filter(evidence_requirements::evidence_id.eq(id))
                    .select(requirements::framework_id)
                    .distinct()
                    .load(tx.conn())
                    .await?;
                let mut holds = self.holds.holds_on_evidence(tx.conn(), org, &[id]).await?;
                Ok((
                    Record {
                        starts_at: Some(collected_at),
                        starts_from: "collected_at".into(),
                        own_retention_days: own,
                        holds: holds.remove(&id).unwrap_or_default(),
                    },
                    scope,
                ))
            }
            EntityType::Vulnerability => {
                let (status, remediated_at, updated_at): (String, Option<OffsetDateTime>, OffsetDateTime) =
                    vulnerabilities::table
                        .filter(vulnerabilities::organization_id.eq(org))
                        .filter(vulnerabilities::id.eq(id))
                        .select((vulnerabilities::status, vulnerabilities::remediated_at, vulnerabilities::updated_at))
                        .first(tx.conn())
                        .await
                        .optional()?
                        .ok_or_else(missing)?;
                let open = matches!(status.as_str(), "OPEN" | "IN_PROGRESS");
                Ok((
                    Record {
                        starts_at: if open { None } else { Some(remediated_at.unwrap_or(updated_at)) },
                        starts_from: "remediated_at (or its closing)".into(),
                        ..Record::default()
                    },
                    Scope::default(),
                ))
            }
            EntityType::Job => {
                let finished_at: Option<OffsetDateTime> = jobs::table
                    .filter(jobs::organization_id.eq(org))
                    .filter(jobs::id.eq(id))
                    .select(jobs::finished_at)
                    .first(tx.conn())
                    .await
                    .optional()?
                    .ok_or_else(missing)?;
                Ok((
                    Record { starts_at: finished_at, starts_from: "finished_at".into(), ..Record::default() },
                    Scope::default(),
                ))
            }
            EntityType::AuditLog => Err(missing().into()),
        }
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
