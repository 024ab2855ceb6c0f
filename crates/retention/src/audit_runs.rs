//! Retention runs over the audit log (`entity_type: audit_log`): entries go only through the audit
//! chain's own pruning (`AuditChain::prune_before`), which removes a prefix of the log and keeps
//! what remains verifiable (the boundary's hashes kept and signed, the pruning itself audited).
//!
//! The precedence applies as to any record: the longest retention among the active `audit_log`
//! policies wins (entries go only once every one of them lets them go), and a legal hold beats
//! the deletion — while a hold is unreleased, no entry recorded since the hold's start (or its
//! placing, if earlier) is pruned: the trail of what happened during the matter is evidence too.
//! The platform's own schedule (`audit-retention`, `CUSTOS_AUDIT_RETENTION_DAYS`) keeps to the same
//! limit ([`RetentionService::audit_prune_limit`]).

use custos_core::Problem;
use custos_db::schema::{audit_index, legal_holds, retention_policies as policies};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{EntityType, PolicyRow};
use crate::precedence::add_period;
use crate::{Result, RetentionService};

/// How far back an audit-log run may prune now, and why it stops there.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditCutoff {
    /// Entries recorded before this may go.
    pub before: OffsetDateTime,
    /// What set the limit, in words (the longest retention, a hold).
    pub reasons: Vec<String>,
}

impl RetentionService {
    /// The cutoff for pruning `org`'s audit log now: the earliest of `wanted` (a run's own policy,
    /// or the platform's retention), every active `audit_log` policy's retention and every
    /// unreleased legal hold's start.
    pub async fn audit_prune_limit(&self, org: Uuid, wanted: OffsetDateTime) -> Result<AuditCutoff> {
        let mut tx = self.db.begin(org).await?;
        let covering: Vec<PolicyRow> = policies::table
            .filter(policies::organization_id.eq(org))
            .filter(policies::is_active.eq(true))
            .filter(policies::entity_type.eq(EntityType::AuditLog))
            .select(PolicyRow::as_select())
            .load(tx.conn())
            .await?;
        let holds: Vec<(String, time::Date, OffsetDateTime)> = legal_holds::table
            .filter(legal_holds::organization_id.eq(org))
            .filter(legal_holds::released_at.is_null())
            .select((legal_holds::case_name, legal_holds::start_date, legal_holds::created_at))
            .load(tx.conn())
            .await?;
        tx.commit().await?;
        let now = custos_core::timefmt::now();
        let mut cutoff = AuditCutoff { before: wanted, reasons: Vec::new() };
        for p in &covering {
            let Some(kept_from) = add_period(now, -p.retention_period, p.retention_unit) else { continue };
            if kept_from < cutoff.before {
                cutoff.before = kept_from;
                cutoff.reasons.push(format!(
                    "policy {:?} retains audit entries {} {}",
                    p.name, p.retention_period, p.retention_unit
                ));
            }
        }
        for (case, start, placed) in holds {
            let since = start.midnight().assume_utc().min(placed);
            if since < cutoff.before {
                cutoff.before = since;
                cutoff.reasons.push(format!("legal hold {case:?} preserves entries since {}", start));
            }
        }
        Ok(cutoff)
    }

    /// The cutoff a run of `policy` (an `audit_log` one) prunes to.
    pub(crate) async fn audit_run_cutoff(&self, org: Uuid, policy: &PolicyRow) -> Result<AuditCutoff> {
        let now = custos_core::timefmt::now();
        let wanted = add_period(now, -policy.retention_period, policy.retention_unit)
            .ok_or_else(|| Problem::invalid("Retention period too long", "the period reaches past the calendar"))?;
        self.audit_prune_limit(org, wanted).await
    }

    /// How many entries pruning to `before` would remove now: the indexed prefix recorded before it.
    pub(crate) async fn audit_entries_before(&self, org: Uuid, before: OffsetDateTime) -> Result<i64> {
        let mut tx = self.db.begin(org).await?;
        let first_kept: Option<i64> = audit_index::table
            .filter(audit_index::organization_id.eq(org))
            .filter(audit_index::recorded_at.ge(before))
            .select(diesel::dsl::min(audit_index::seq))
            .first(tx.conn())
            .await?;
        let mut q = audit_index::table.filter(audit_index::organization_id.eq(org)).into_boxed();
        if let Some(seq) = first_kept {
            q = q.filter(audit_index::seq.lt(seq));
        }
        let n: i64 = q.count().get_result(tx.conn()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Prunes `org`'s audit log to `before` through the audit chain; how many entries went.
    pub(crate) async fn prune_audit(&self, org: Uuid, before: OffsetDateTime) -> Result<u64> {
        let chain = self.audit.as_ref().ok_or_else(|| Problem::internal("audit-log runs need the audit chain"))?;
        let outcome = chain.prune_before(org, before).await.map_err(|e| Problem::internal(e.to_string()))?;
        Ok(outcome.removed)
    }
}
