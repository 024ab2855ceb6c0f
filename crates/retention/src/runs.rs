//! Retention runs: a policy previewed (what would happen, at once, nothing changed) or executed
//! (the `retention.execute` job, in batches), and the daily run of every scheduled policy (the
//! `retention` schedule, 02:00). A preview and the execution that follows it agree because both
//! plan each batch with the same function, [`plan_batch`], by the precedence rules.
//!
//! Execution takes the covered records in id order, a batch at a time; each batch is one
//! transaction that locks its records, acts, writes an item per record (once per run: the items'
//! key), the run's counters and the last record done. A run resumed after a crash carries on
//! after that record: nothing is lost or done twice.
//!
//! Soft deletion sets `deleted_at`, which the tables' row-level-security policies hide from every
//! read path but a retention run's transaction (`custos.retention`); restoring clears it. Hard
//! deletion removes the row (an evidence item's file is left to the object sweep, which removes
//! what nothing refers to); an incident that evidence or vulnerabilities still refer to is
//! skipped, saying so. Audit entries name the record, the run and the policy — never the
//! record's content, which may be the personal data being deleted.

use custos_audit_chain::{Change, record_change, record_many};
use custos_core::ctx::{Access, Actor};
use custos_core::filter::{opt_choice, opt_uuid, parse_id};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, Role, new_id, timefmt};
use custos_db::schema::{
    evidence, incidents, jobs, retention_policies as policies, retention_run_items as items, retention_runs as runs,
    vulnerabilities,
};
use custos_db::{DbError, Tx, choice, list};
use custos_jobs::queue::{self, NewJob};
use custos_jobs::{Job, JobError, Kind, Scope as JobScope};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::explain::covering_of;
use crate::model::{DeletionMethod, EntityType, PolicyRow};
use crate::precedence::{self, Verdict};
use crate::records;
use crate::{FromPage, Result, RetentionService};

/// The kind of job that executes one run.
pub const EXECUTE_JOB: &str = "retention.execute";
/// The kind of job the daily schedule starts: a run of every scheduled policy.
pub const SCHEDULED_JOB: &str = "retention.scheduled";
/// Records per batch (one transaction each).
pub const BATCH: i64 = 1000;
const SAMPLE: usize = 20;
const RUNS: &str = "retention_runs";
const ITEMS: &str = "retention_run_items";
const JOB_ATTEMPTS: i32 = 5;

choice! {
    pub enum RunStatus {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
    }
}

choice! {
    pub enum ItemAction {
        Archived = "archived",
        SoftDeleted = "soft_deleted",
        HardDeleted = "hard_deleted",
        Skipped = "skipped",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = runs)]
pub(crate) struct RunRow {
    id: Uuid,
    policy_id: Uuid,
    policy_name: String,
    entity_type: EntityType,
    deletion_method: DeletionMethod,
    status: RunStatus,
    started_by: String,
    by_admin: bool,
    job_id: Option<Uuid>,
    started_at: OffsetDateTime,
    finished_at: Option<OffsetDateTime>,
    examined: i64,
    archived: i64,
    soft_deleted: i64,
    hard_deleted: i64,
    skipped: i64,
    restored: i64,
    errors_encountered: i64,
    error: Option<String>,
    last_record: Option<Uuid>,
}

impl RunRow {
    fn to_pb(&self, preview: bool) -> pb::RetentionRun {
        pb::RetentionRun {
            id: self.id.to_string(),
            policy: self.policy_id.to_string(),
            policy_name: self.policy_name.clone(),
            entity_type: self.entity_type.to_string(),
            deletion_method: self.deletion_method.to_string(),
            preview,
            status: self.status.to_string(),
            started_by: self.started_by.clone(),
            by_admin: self.by_admin,
            job_id: self.job_id.map(|j| j.to_string()),
            started_at: timefmt::timestamp(self.started_at),
            finished_at: self.finished_at.map(timefmt::timestamp),
            examined: self.examined,
            archived: self.archived,
            soft_deleted: self.soft_deleted,
            hard_deleted: self.hard_deleted,
            skipped: self.skipped,
            restored: self.restored,
            errors_encountered: self.errors_encountered,
            error: self.error.clone(),
            sample: Vec::new(),
            limited_by: Vec::new(),
        }
    }

    fn audited(&self) -> Value {
        serde_json::to_value(self.to_pb(false)).unwrap_or(Value::Null)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = items)]
struct ItemRow {
    record_id: Uuid,
    action: ItemAction,
    reason: String,
    at: OffsetDateTime,
    restored_at: Option<OffsetDateTime>,
}

impl ItemRow {
    fn to_pb(&self) -> pb::RetentionRunItem {
        pb::RetentionRunItem {
            record_id: self.record_id.to_string(),
            action: self.action.to_string(),
            reason: self.reason.clone(),
            at: timefmt::timestamp(self.at),
            restored_at: self.restored_at.map(timefmt::timestamp),
        }
    }
}

/// What a run does with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Planned {
    Act,
    Skip(String),
}

/// One batch as planned: each examined record's plan, the last record read (examined or not),
/// and whether records may remain after it.
pub(crate) struct Batch {
    pub plans: Vec<(Uuid, Planned)>,
    pub last: Option<Uuid>,
    pub more: bool,
}

/// Makes soft-deleted rows visible to this transaction (a retention run's).
async fn see_deleted(tx: &mut Tx) -> Result<(), DbError> {
    diesel::sql_query("SELECT set_config('custos.retention', 'on', true)").execute(tx.conn()).await?;
    Ok(())
}

/// Whether `ctx` is an admin person (a user, an SSO caller or the operator) rather than the
/// platform's own schedule: only they may let a policy override legal holds.
fn admin_person(ctx: &RequestCtx) -> bool {
    ctx.role == Role::Admin && !matches!(ctx.actor, Actor::System { .. })
}

/// Plans the next batch of `policy`'s records after `after`, by the precedence rules with every
/// active policy of its entity; `lock` locks the batch's records (an execution).
pub(crate) async fn plan_batch(
    service: &RetentionService,
    tx: &mut Tx,
    org: Uuid,
    policy: &PolicyRow,
    after: Option<Uuid>,
    by_admin: bool,
    lock: bool,
) -> Result<Batch> {
    // Archiving removes records from the hot tables as hard deletion does.
    let hard = matches!(policy.deletion_method, DeletionMethod::Hard | DeletionMethod::Archive);
    // The next ids of the policy's records, in id order.
    let ids: Vec<Uuid> = match policy.entity_type {
        EntityType::Incident => {
            let mut q = incidents::table
                .filter(incidents::organization_id.eq(org))
                .filter(incidents::status.eq_any(["RESOLVED", "CLOSED"]))
                .into_boxed::<Pg>();
            if let Some(a) = after {
                q = q.filter(incidents::id.gt(a));
            }
            if !hard {
                q = q.filter(incidents::deleted_at.is_null());
            }
            if !policy.incident_categories.is_empty() {
                q = q.filter(incidents::category.eq_any(policy.incident_categories.clone()));
            }
            if !policy.data_classification_levels.is_empty() {
                q = q.filter(incidents::data_classification.eq_any(policy.data_classification_levels.clone()));
            }
            q.order(incidents::id.asc()).limit(BATCH).select(incidents::id).load(tx.conn()).await?
        }
        EntityType::Evidence => {
            let mut q = evidence::table.filter(evidence::organization_id.eq(org)).into_boxed::<Pg>();
            if let Some(a) = after {
                q = q.filter(evidence::id.gt(a));
            }
            if !hard {
                q = q.filter(evidence::deleted_at.is_null());
            }
            q.order(evidence::id.asc()).limit(BATCH).select(evidence::id).load(tx.conn()).await?
        }
        EntityType::Vulnerability => {
            let mut q = vulnerabilities::table
                .filter(vulnerabilities::organization_id.eq(org))
                .filter(vulnerabilities::status.ne_all(["OPEN", "IN_PROGRESS"]))
                .into_boxed::<Pg>();
            if let Some(a) = after {
                q = q.filter(vulnerabilities::id.gt(a));
            }
            if !hard {
                q = q.filter(vulnerabilities::deleted_at.is_null());
            }
            q.order(vulnerabilities::id.asc()).limit(BATCH).select(vulnerabilities::id).load(tx.conn()).await?
        }
        EntityType::Job => {
            // Finished jobs only: a queued or running one is work still to do.
            let mut q = jobs::table
                .filter(jobs::organization_id.eq(org))
                .filter(jobs::status.eq_any(FINAL_JOBS))
                .filter(jobs::finished_at.is_not_null())
                .into_boxed::<Pg>();
            if let Some(a) = after {
                q = q.filter(jobs::id.gt(a));
            }
            q.order(jobs::id.asc()).limit(BATCH).select(jobs::id).load(tx.conn()).await?
        }
        EntityType::AuditLog => {
            return Err(not_runnable(policy).into());
        }
    };
    let more = ids.len() as i64 == BATCH;
    let last = ids.last().copied();
    // Read again by id (under the lock, for a run): whatever became of them since.
    let rows = records::read(service, tx, org, policy.entity_type, &ids, lock).await?;
    let active: Vec<PolicyRow> = policies::table
        .filter(policies::organization_id.eq(org))
        .filter(policies::entity_type.eq(policy.entity_type))
        .filter(policies::is_active.eq(true))
        .select(PolicyRow::as_select())
        .load(tx.conn())
        .await?;
    // An incident still referred to is not hard-deleted (its evidence and vulnerabilities are
    // records with retentions of their own).
    let referred: Vec<Uuid> = if hard && policy.entity_type == EntityType::Incident {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        let mut from_evidence: Vec<Option<Uuid>> = evidence::table
            .filter(evidence::organization_id.eq(org))
            .filter(evidence::incident_id.eq_any(&ids))
            .select(evidence::incident_id)
            .distinct()
            .load(tx.conn())
            .await?;
        let from_vulns: Vec<Option<Uuid>> = vulnerabilities::table
            .filter(vulnerabilities::organization_id.eq(org))
            .filter(vulnerabilities::incident_id.eq_any(&ids))
            .select(vulnerabilities::incident_id)
            .distinct()
            .load(tx.conn())
            .await?;
        from_evidence.extend(from_vulns);
        from_evidence.into_iter().flatten().collect()
    } else {
        Vec::new()
    };
    // Sealed evidence is deleted by nobody until it is released (the evidence service's own
    // rule for its deletion and disposal): retention keeps to it.
    let sealed: Vec<Uuid> = if policy.entity_type == EntityType::Evidence {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
        evidence::table
            .filter(evidence::organization_id.eq(org))
            .filter(evidence::id.eq_any(&ids))
            .filter(evidence::status.eq("SEALED"))
            .select(evidence::id)
            .load(tx.conn())
            .await?
    } else {
        Vec::new()
    };
    let now = timefmt::now();
    let mut plans = Vec::new();
    for (id, record, scope) in rows {
        if !scope.covered_by(policy) {
            continue;
        }
        let covering: Vec<precedence::Covering> = active
            .iter()
            .filter(|p| p.id != policy.id && scope.covered_by(p))
            .map(covering_of)
            .chain(std::iter::once(precedence::Covering {
                // The run's own policy deletes by its method, whether or not it does so by itself.
                deletes: Some(policy.deletion_method),
                ..covering_of(policy)
            }))
            .collect();
        let decision = precedence::decide(&record, &covering, now, by_admin);
        let plan = match decision.verdict {
            Verdict::Eligible if decision.deletion.is_some_and(|d| d.0 == policy.id) => {
                if referred.contains(&id) {
                    Planned::Skip("evidence or vulnerabilities still refer to it: their retention comes first".into())
                } else if sealed.contains(&id) {
                    Planned::Skip("sealed evidence is kept until its custody chain records RELEASED".into())
                } else {
                    Planned::Act
                }
            }
            Verdict::Eligible => {
                let by = decision
                    .deletion
                    .and_then(|(p, _, _)| active.iter().find(|x| x.id == p))
                    .map_or_else(|| "another policy".to_owned(), |p| format!("policy {:?}", p.name));
                Planned::Skip(format!("{by} governs its deletion (explicit scope, then the shortest deletion period)"))
            }
            Verdict::Retained => {
                let until = decision.eligible_at.or(decision.retained_until.map(|r| r.0)).map(timefmt::timestamp);
                let until = until.unwrap_or_default();
                Planned::Skip(match decision.retained_until {
                    Some((_, Some(by))) if by != policy.id => {
                        let name = active.iter().find(|p| p.id == by).map_or("another policy", |p| p.name.as_str());
                        format!("policy {name:?} retains it until {until} (the longest retention wins)")
                    }
                    Some((_, None)) => format!("its own retention_period keeps it until {until}"),
                    _ => format!("within this policy's retention: eligible from {until}"),
                })
            }
            _ => {
                Planned::Skip(decision.reasons.last().cloned().unwrap_or_else(|| decision.verdict.as_str().to_owned()))
            }
        };
        plans.push((id, plan));
    }
    Ok(Batch { plans, last, more })
}

fn not_runnable(policy: &PolicyRow) -> Problem {
    Problem::state_conflict(
        "Retention run not available",
        format!(
            "Policy {:?}: audit entries are only ever pruned (deletion_method hard), through the audit chain's own pruning, so the log stays verifiable; they are never soft-deleted or archived",
            policy.name
        ),
    )
}

/// Jobs that have ended.
const FINAL_JOBS: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// The parameters of an execution job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExecuteJob {
    run: Uuid,
}

impl RetentionService {
    /// `POST /api/compliance/retention-policies/{id}/execute/` (admins): `{"preview": true}`
    /// answers what a run would do, at once, changing nothing (and logs the preview); otherwise a
    /// run starts as a job and is answered running.
    pub async fn execute_retention_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::ExecuteRetentionPolicyRequest,
    ) -> Result<pb::RetentionRun> {
        let id = parse_id("Retention policy", &req.id)?;
        let org = ctx.organization_id;
        let by_admin = admin_person(ctx);
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let policy = crate::policies::find(&mut tx, org, id, false).await?;
        if !policy.is_active {
            return Err(Problem::state_conflict(
                "Retention policy inactive",
                format!("Policy {:?} is inactive: activate it to run it", policy.name),
            )
            .into());
        }
        if policy.entity_type == EntityType::AuditLog && policy.deletion_method != DeletionMethod::Hard {
            return Err(not_runnable(&policy).into());
        }
        if req.preview && policy.entity_type == EntityType::AuditLog {
            // The audit log goes by prefix, through its own pruning: the count of what would go.
            let cutoff = self.audit_run_cutoff(org, &policy).await?;
            let n = self.audit_entries_before(org, cutoff.before).await?;
            let mut row = self.insert_run(&mut tx, ctx, new_id(), &policy, by_admin, None, true).await?;
            row = diesel::update(runs::table.filter(runs::id.eq(row.id)))
                .set((
                    runs::status.eq(RunStatus::Completed),
                    runs::finished_at.eq(timefmt::now()),
                    runs::examined.eq(n),
                    runs::hard_deleted.eq(n),
                ))
                .returning(RunRow::as_returning())
                .get_result(tx.conn())
                .await?;
            tx.commit().await?;
            let mut out = row.to_pb(true);
            out.limited_by = cutoff.reasons;
            return Ok(out);
        }
        if req.preview {
            see_deleted(&mut tx).await?;
            let mut row = self.insert_run(&mut tx, ctx, new_id(), &policy, by_admin, None, true).await?;
            let mut sample = Vec::new();
            // How many records acted on and skipped the sample holds: up to SAMPLE of each.
            let (mut acted_sampled, mut skipped_sampled) = (0, 0);
            let mut after = None;
            loop {
                let batch = plan_batch(self, &mut tx, org, &policy, after, by_admin, false).await?;
                for (record, plan) in &batch.plans {
                    row.examined += 1;
                    let (action, reason, sampled) = match plan {
                        Planned::Act => (acted(policy.deletion_method), "", &mut acted_sampled),
                        Planned::Skip(why) => (ItemAction::Skipped, why.as_str(), &mut skipped_sampled),
                    };
                    bump(&mut row, action, 1);
                    if *sampled < SAMPLE {
                        *sampled += 1;
                        sample.push(pb::RetentionRunItem {
                            record_id: record.to_string(),
                            action: action.to_string(),
                            reason: reason.to_owned(),
                            at: timefmt::timestamp(timefmt::now()),
                            restored_at: None,
                        });
                    }
                }
                after = batch.last;
                if !batch.more {
                    break;
                }
            }
            let row: RunRow = diesel::update(runs::table.filter(runs::id.eq(row.id)))
                .set((
                    runs::status.eq(RunStatus::Completed),
                    runs::finished_at.eq(timefmt::now()),
                    runs::examined.eq(row.examined),
                    runs::archived.eq(row.archived),
                    runs::soft_deleted.eq(row.soft_deleted),
                    runs::hard_deleted.eq(row.hard_deleted),
                    runs::skipped.eq(row.skipped),
                ))
                .returning(RunRow::as_returning())
                .get_result(tx.conn())
                .await?;
            tx.commit().await?;
            let mut out = row.to_pb(true);
            out.sample = sample;
            return Ok(out);
        }
        let run_id = new_id();
        let job = queue::enqueue(
            &mut tx,
            Some(ctx),
            NewJob {
                organization_id: Some(org),
                kind: EXECUTE_JOB.to_owned(),
                parameters: serde_json::to_value(ExecuteJob { run: run_id }).map_err(Problem::internal)?,
                max_attempts: JOB_ATTEMPTS,
                created_by: ctx.actor.label(),
                schedule: None,
            },
        )
        .await?
        .ok_or_else(|| Problem::internal("the retention run's job was not queued"))?;
        let row = self.insert_run(&mut tx, ctx, run_id, &policy, by_admin, Some(job.id), false).await?;
        tx.commit().await?;
        if let Some(waker) = &self.waker {
            waker.notify_one();
        }
        Ok(row.to_pb(false))
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_run(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        id: Uuid,
        policy: &PolicyRow,
        by_admin: bool,
        job: Option<Uuid>,
        preview: bool,
    ) -> Result<RunRow> {
        let started_by = match &ctx.actor {
            Actor::System { .. } => job_creator(tx, job).await?.unwrap_or_else(|| ctx.actor.label()),
            _ => ctx.actor.label(),
        };
        let row: RunRow = diesel::insert_into(runs::table)
            .values((
                runs::id.eq(id),
                runs::organization_id.eq(ctx.organization_id),
                runs::policy_id.eq(policy.id),
                runs::policy_name.eq(&policy.name),
                runs::entity_type.eq(policy.entity_type),
                runs::deletion_method.eq(policy.deletion_method),
                runs::status.eq(RunStatus::Running),
                runs::started_by.eq(&started_by),
                runs::by_admin.eq(by_admin),
                runs::job_id.eq(job),
            ))
            .returning(RunRow::as_returning())
            .get_result(tx.conn())
            .await?;
        let action = if preview { "preview" } else { "start" };
        record_change(tx, ctx, action, "retention_run", id, Value::Null, row.audited()).await?;
        Ok(row)
    }

    /// One batch of a run, in its own transaction: plans it, acts, writes the items, the
    /// counters and the last record done. `false` once the run has nothing left.
    pub async fn run_batch(&self, ctx: &RequestCtx, run: Uuid) -> Result<bool> {
        let org = ctx.organization_id;
        let mut tx = self.db.begin(org).await?;
        see_deleted(&mut tx).await?;
        let row: RunRow = runs::table
            .filter(runs::organization_id.eq(org))
            .filter(runs::id.eq(run))
            .select(RunRow::as_select())
            .for_update()
            .first(tx.conn())
            .await
            .optional()?
            .ok_or_else(|| Problem::not_found("Retention run", run))?;
        if row.status != RunStatus::Running {
            tx.commit().await?;
            return Ok(false);
        }
        let policy = crate::policies::find(&mut tx, org, row.policy_id, false).await.map_err(|_| {
            Problem::state_conflict(
                "Retention policy gone",
                format!("Policy {:?} was deleted during the run", row.policy_name),
            )
        })?;
        if !policy.is_active || policy.deletion_method != row.deletion_method {
            return Err(Problem::state_conflict(
                "Retention policy changed",
                format!("Policy {:?} was deactivated or its deletion method changed during the run", row.policy_name),
            )
            .into());
        }
        if policy.entity_type == EntityType::AuditLog {
            // One step: the chain prunes in its own transactions (each audited), and a rerun
            // carries on where it stopped.
            tx.commit().await?;
            let cutoff = self.audit_run_cutoff(org, &policy).await?;
            let removed = self.prune_audit(org, cutoff.before).await? as i64;
            let mut tx = self.db.begin(org).await?;
            let done: RunRow =
                diesel::update(runs::table.filter(runs::organization_id.eq(org)).filter(runs::id.eq(run)))
                    .set((
                        runs::examined.eq(runs::examined + removed),
                        runs::hard_deleted.eq(runs::hard_deleted + removed),
                        runs::status.eq(RunStatus::Completed),
                        runs::finished_at.eq(timefmt::now()),
                    ))
                    .returning(RunRow::as_returning())
                    .get_result(tx.conn())
                    .await?;
            let mut after = done.audited();
            after["limited_by"] = serde_json::json!(cutoff.reasons);
            record_change(&mut tx, ctx, "complete", "retention_run", run, row.audited(), after).await?;
            tx.commit().await?;
            return Ok(false);
        }
        let batch = plan_batch(self, &mut tx, org, &policy, row.last_record, row.by_admin, true).await?;
        let acting: Vec<Uuid> = batch.plans.iter().filter(|(_, p)| *p == Planned::Act).map(|(id, _)| *id).collect();
        let now = timefmt::now();
        let action = acted(policy.deletion_method);
        // Where the batch's archive went (archive runs), written before anything is removed.
        let archived_to = if policy.deletion_method == DeletionMethod::Archive && !acting.is_empty() {
            Some(self.archive_batch(&mut tx, ctx, &policy, run, &acting).await?)
        } else {
            None
        };
        if !acting.is_empty() {
            apply(&mut tx, org, policy.entity_type, policy.deletion_method, &acting, run, now).await?;
        }
        let values: Vec<_> = batch
            .plans
            .iter()
            .map(|(id, plan)| {
                let (a, reason) = match plan {
                    Planned::Act => {
                        (action, archived_to.as_ref().map(|at| format!("archive {at}")).unwrap_or_default())
                    }
                    Planned::Skip(why) => (ItemAction::Skipped, why.clone()),
                };
                (
                    items::organization_id.eq(org),
                    items::run_id.eq(run),
                    items::record_id.eq(*id),
                    items::action.eq(a),
                    items::reason.eq(reason),
                )
            })
            .collect();
        for chunk in values.chunks(5000) {
            diesel::insert_into(items::table).values(chunk).on_conflict_do_nothing().execute(tx.conn()).await?;
        }
        let skipped = (batch.plans.len() - acting.len()) as i64;
        let acted_n = acting.len() as i64;
        diesel::update(runs::table.filter(runs::id.eq(run)))
            .set((
                runs::examined.eq(runs::examined + batch.plans.len() as i64),
                runs::skipped.eq(runs::skipped + skipped),
                runs::soft_deleted.eq(runs::soft_deleted + if action == ItemAction::SoftDeleted { acted_n } else { 0 }),
                runs::hard_deleted.eq(runs::hard_deleted + if action == ItemAction::HardDeleted { acted_n } else { 0 }),
                runs::archived.eq(runs::archived + if action == ItemAction::Archived { acted_n } else { 0 }),
                runs::last_record.eq(batch.last.or(row.last_record)),
            ))
            .execute(tx.conn())
            .await?;
        let resource = policy.entity_type.to_string();
        let audit_action = match action {
            ItemAction::HardDeleted => "retention_hard_delete",
            ItemAction::Archived => "retention_archive",
            _ => "retention_soft_delete",
        };
        record_many(
            &mut tx,
            ctx,
            acting
                .iter()
                .map(|id| Change {
                    action: audit_action,
                    resource_type: &resource,
                    resource_id: id.to_string(),
                    before: json!({ "id": id }),
                    after: json!({ "retention_run": run, "policy": policy.id, "policy_name": policy.name,
                                   "deletion_method": policy.deletion_method.to_string(), "held_override": row.by_admin && policy.legal_hold_override,
                                   "archive": archived_to }),
                })
                .collect(),
        )
        .await?;
        if !batch.more {
            let done: RunRow = diesel::update(runs::table.filter(runs::id.eq(run)))
                .set((runs::status.eq(RunStatus::Completed), runs::finished_at.eq(now)))
                .returning(RunRow::as_returning())
                .get_result(tx.conn())
                .await?;
            record_change(&mut tx, ctx, "complete", "retention_run", run, row.audited(), done.audited()).await?;
        }
        tx.commit().await?;
        Ok(batch.more)
    }

    /// Marks a run failed, saying why (its job gave up).
    async fn fail_run(&self, ctx: &RequestCtx, run: Uuid, error: &str) -> Result<()> {
        let mut tx = self.db.begin(ctx.organization_id).await?;
        let before: Option<RunRow> = runs::table
            .filter(runs::id.eq(run))
            .filter(runs::status.eq(RunStatus::Running))
            .select(RunRow::as_select())
            .for_update()
            .first(tx.conn())
            .await
            .optional()?;
        if let Some(before) = before {
            let after: RunRow = diesel::update(runs::table.filter(runs::id.eq(run)))
                .set((
                    runs::status.eq(RunStatus::Failed),
                    runs::error.eq(error),
                    runs::errors_encountered.eq(runs::errors_encountered + 1),
                    runs::finished_at.eq(timefmt::now()),
                ))
                .returning(RunRow::as_returning())
                .get_result(tx.conn())
                .await?;
            record_change(&mut tx, ctx, "fail", "retention_run", run, before.audited(), after.audited()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs `run`'s batches to its end, with progress; a failure no retry mends fails the run.
    async fn execute_run(&self, job: &Job, ctx: &RequestCtx, run: Uuid) -> std::result::Result<(), JobError> {
        let outcome: std::result::Result<(), JobError> = async {
            let mut batches = 0;
            while self.run_batch(ctx, run).await.map_err(|e| JobError::from_problem(e.into()))? {
                job.check()?;
                batches += 1;
                job.count("batches", 1);
                job.set_progress(1.0 - 1.0 / f64::from(batches + 1));
            }
            Ok(())
        }
        .await;
        if let Err(e) = &outcome {
            let last_attempt = job.attempt() >= JOB_ATTEMPTS;
            if matches!(e, JobError::Fatal(_)) || (matches!(e, JobError::Retry(_)) && last_attempt) {
                self.fail_run(ctx, run, &e.to_string()).await.map_err(|e| JobError::from_problem(e.into()))?;
            }
        }
        outcome
    }

    /// `GET /api/compliance/retention-runs/` (every role): newest first; filters `policy`,
    /// `status`, `errors`, `preview`.
    pub async fn list_retention_runs(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRetentionRunsRequest,
    ) -> Result<pb::ListRetentionRunsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let policy = opt_uuid("policy", req.policy.as_deref())?;
        let status: Option<RunStatus> = opt_choice("status", req.status.as_deref())?;
        let errors = req.errors;
        let preview = req.preview;
        let org = ctx.organization_id;
        let filtered = move || {
            let mut q = runs::table.filter(runs::organization_id.eq(org)).into_boxed::<Pg>();
            if let Some(p) = policy {
                q = q.filter(runs::policy_id.eq(p));
            }
            if let Some(s) = status {
                q = q.filter(runs::status.eq(s));
            }
            match errors {
                Some(true) => q = q.filter(runs::errors_encountered.gt(0).or(runs::status.eq(RunStatus::Failed))),
                Some(false) => q = q.filter(runs::errors_encountered.eq(0).and(runs::status.ne(RunStatus::Failed))),
                None => {}
            }
            match preview {
                Some(true) => q = q.filter(runs::job_id.is_null()),
                Some(false) => q = q.filter(runs::job_id.is_not_null()),
                None => {}
            }
            q
        };
        let after = list.after::<(OffsetDateTime, Uuid)>(RUNS)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filtered()
            .order((runs::started_at.desc(), runs::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(RunRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((runs::started_at, runs::id), key));
        }
        let rows: Vec<RunRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(RUNS, &(r.started_at, r.id))),
            || filtered().select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(|r| r.to_pb(r.job_id.is_none())).collect();
        Ok(pb::ListRetentionRunsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/retention-runs/{id}/` (every role).
    pub async fn get_retention_run(
        &self,
        ctx: &RequestCtx,
        req: pb::GetRetentionRunRequest,
    ) -> Result<pb::RetentionRun> {
        let id = parse_id("Retention run", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find_run(&mut tx, ctx.organization_id, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb(row.job_id.is_none()))
    }

    /// `GET /api/compliance/retention-runs/{id}/items/` (every role): each record the run
    /// acted on or skipped, with why; filter `action`.
    pub async fn list_retention_run_items(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRetentionRunItemsRequest,
    ) -> Result<pb::ListRetentionRunItemsResponse> {
        let id = parse_id("Retention run", &req.id)?;
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let action: Option<ItemAction> = opt_choice("action", req.action.as_deref())?;
        let org = ctx.organization_id;
        let filtered = move || {
            let mut q =
                items::table.filter(items::organization_id.eq(org)).filter(items::run_id.eq(id)).into_boxed::<Pg>();
            if let Some(a) = action {
                q = q.filter(items::action.eq(a));
            }
            q
        };
        let after = list.after::<Uuid>(ITEMS)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        find_run(&mut tx, org, id, false).await?;
        let mut q = filtered()
            .order(items::record_id.asc())
            .offset(list.offset())
            .limit(list.fetch())
            .select(ItemRow::as_select());
        if let Some(key) = after {
            q = q.filter(items::record_id.gt(key));
        }
        let rows: Vec<ItemRow> = list::one_shot(q).load(tx.conn()).await?;
        let page =
            list::page(&mut tx, &list, rows, |r| Some(cursor(ITEMS, &r.record_id)), || filtered().select(list::row()))
                .await?;
        tx.commit().await?;
        let results = page.results.iter().map(ItemRow::to_pb).collect();
        Ok(pb::ListRetentionRunItemsResponse::from_page(page.with_results(results)))
    }

    /// `POST /api/compliance/retention-runs/{id}/restore/` (admins): brings back what the run
    /// soft-deleted (every record, or `record_id`) that is still soft-deleted by it.
    pub async fn restore_retention_run(
        &self,
        ctx: &RequestCtx,
        req: pb::RestoreRetentionRunRequest,
    ) -> Result<pb::RestoreRetentionRunResponse> {
        let id = parse_id("Retention run", &req.id)?;
        let record = opt_uuid("record_id", req.record_id.as_deref())?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        see_deleted(&mut tx).await?;
        let row = find_run(&mut tx, org, id, true).await?;
        let mut q = items::table
            .filter(items::organization_id.eq(org))
            .filter(items::run_id.eq(id))
            .filter(items::action.eq(ItemAction::SoftDeleted))
            .filter(items::restored_at.is_null())
            .into_boxed::<Pg>();
        if let Some(r) = record {
            q = q.filter(items::record_id.eq(r));
        }
        let candidates: Vec<Uuid> = q.select(items::record_id).load(tx.conn()).await?;
        if let Some(r) = record
            && candidates.is_empty()
        {
            return Err(Problem::state_conflict(
                "Nothing to restore",
                format!("Record {r} is not one this run soft-deleted and has not restored"),
            )
            .into());
        }
        let restored: Vec<Uuid> = restore(&mut tx, org, row.entity_type, id, &candidates).await?;
        let now = timefmt::now();
        diesel::update(
            items::table
                .filter(items::organization_id.eq(org))
                .filter(items::run_id.eq(id))
                .filter(items::record_id.eq_any(&restored)),
        )
        .set(items::restored_at.eq(now))
        .execute(tx.conn())
        .await?;
        let after: RunRow = diesel::update(runs::table.filter(runs::id.eq(id)))
            .set(runs::restored.eq(runs::restored + restored.len() as i64))
            .returning(RunRow::as_returning())
            .get_result(tx.conn())
            .await?;
        let resource = row.entity_type.to_string();
        record_many(
            &mut tx,
            ctx,
            restored
                .iter()
                .map(|r| Change {
                    action: "retention_restore",
                    resource_type: &resource,
                    resource_id: r.to_string(),
                    before: json!({ "retention_run": id }),
                    after: json!({ "id": r }),
                })
                .collect(),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::RestoreRetentionRunResponse { restored: restored.len() as i64, run: Some(after.to_pb(false)) })
    }
}

fn acted(method: DeletionMethod) -> ItemAction {
    match method {
        DeletionMethod::Soft => ItemAction::SoftDeleted,
        DeletionMethod::Hard => ItemAction::HardDeleted,
        DeletionMethod::Archive => ItemAction::Archived,
    }
}

fn bump(row: &mut RunRow, action: ItemAction, n: i64) {
    match action {
        ItemAction::Archived => row.archived += n,
        ItemAction::SoftDeleted => row.soft_deleted += n,
        ItemAction::HardDeleted => row.hard_deleted += n,
        ItemAction::Skipped | ItemAction::Failed => row.skipped += n,
    }
}

/// Soft- or hard-deletes `ids` of `entity`.
async fn apply(
    tx: &mut Tx,
    org: Uuid,
    entity: EntityType,
    method: DeletionMethod,
    ids: &[Uuid],
    run: Uuid,
    now: OffsetDateTime,
) -> Result<()> {
    macro_rules! act_on {
        ($t:ident) => {
            match method {
                DeletionMethod::Soft => {
                    diesel::update($t::table.filter($t::organization_id.eq(org)).filter($t::id.eq_any(ids)))
                        .set(($t::deleted_at.eq(now), $t::deleted_by_run.eq(run)))
                        .execute(tx.conn())
                        .await?;
                }
                // Archived records leave the hot tables once their archive is written.
                DeletionMethod::Hard | DeletionMethod::Archive => {
                    diesel::delete($t::table.filter($t::organization_id.eq(org)).filter($t::id.eq_any(ids)))
                        .execute(tx.conn())
                        .await?;
                }
            }
        };
    }
    match entity {
        EntityType::Incident => act_on!(incidents),
        EntityType::Evidence => act_on!(evidence),
        EntityType::Vulnerability => act_on!(vulnerabilities),
        // Job records are only ever deleted for good or archived (policies say `hard` or `archive`).
        EntityType::Job => {
            diesel::delete(jobs::table.filter(jobs::organization_id.eq(org)).filter(jobs::id.eq_any(ids)))
                .execute(tx.conn())
                .await?;
        }
        EntityType::AuditLog => {
            return Err(Problem::state_conflict("Retention run not available", format!("not for {entity}")).into());
        }
    }
    Ok(())
}

/// Clears the soft deletion of those of `ids` the run `run` soft-deleted; answers which.
async fn restore(tx: &mut Tx, org: Uuid, entity: EntityType, run: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    macro_rules! restore_in {
        ($t:ident) => {
            diesel::update(
                $t::table
                    .filter($t::organization_id.eq(org))
                    .filter($t::id.eq_any(ids))
                    .filter($t::deleted_by_run.eq(run)),
            )
            .set(($t::deleted_at.eq(None::<OffsetDateTime>), $t::deleted_by_run.eq(None::<Uuid>)))
            .returning($t::id)
            .get_results(tx.conn())
            .await?
        };
    }
    Ok(match entity {
        EntityType::Incident => restore_in!(incidents),
        EntityType::Evidence => restore_in!(evidence),
        EntityType::Vulnerability => restore_in!(vulnerabilities),
        EntityType::AuditLog | EntityType::Job => Vec::new(),
    })
}

async fn find_run(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<RunRow> {
    let q = runs::table.filter(runs::organization_id.eq(org)).filter(runs::id.eq(id)).select(RunRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Retention run", id))?)
}

/// Who started the job (`schedule:retention`, `operator:…`), for a run a job starts.
async fn job_creator(tx: &mut Tx, job: Option<Uuid>) -> Result<Option<String>, DbError> {
    let Some(job) = job else { return Ok(None) };
    custos_db::schema::jobs::table
        .filter(custos_db::schema::jobs::id.eq(job))
        .select(custos_db::schema::jobs::created_by)
        .first(tx.conn())
        .await
        .optional()
        .map_err(DbError::from)
}

/// The kind that executes one run (`POST …/execute/`).
pub fn execute_job(service: RetentionService) -> Kind {
    Kind::new(EXECUTE_JOB, JobScope::Organization, "Executes a retention run, a batch at a time", move |job: Job| {
        let service = service.clone();
        async move {
            let org =
                job.organization().ok_or_else(|| JobError::fatal("a retention run belongs to an organisation"))?;
            let params: ExecuteJob = job.params()?;
            let ctx = job.ctx(org);
            service.execute_run(&job, &ctx, params.run).await?;
            let mut tx = service.db.begin(org).await?;
            let row = find_run(&mut tx, org, params.run, false).await.map_err(|e| JobError::from_problem(e.into()))?;
            tx.commit().await?;
            Ok(serde_json::to_value(row.to_pb(false)).unwrap_or(Value::Null))
        }
    })
    .attempts(JOB_ATTEMPTS)
}

/// The kind the daily `retention` schedule starts: a run of every active policy that deletes or
/// archives by itself, one after another; each run started once (a job step).
pub fn scheduled_job(service: RetentionService) -> Kind {
    Kind::new(SCHEDULED_JOB, JobScope::Organization, "Runs every scheduled retention policy", move |job: Job| {
        let service = service.clone();
        async move {
            let org = job.organization().ok_or_else(|| JobError::fatal("retention belongs to an organisation"))?;
            let ctx = job.ctx(org);
            let scheduled: Vec<PolicyRow> = {
                let mut tx = service.db.begin(org).await?;
                let rows = policies::table
                    .filter(policies::organization_id.eq(org))
                    .filter(policies::is_active.eq(true))
                    .filter(policies::auto_delete.eq(true).or(policies::auto_archive.eq(true)))
                    .filter(policies::entity_type.ne(EntityType::AuditLog))
                    .order(policies::id.asc())
                    .select(PolicyRow::as_select())
                    .load(tx.conn())
                    .await
                    .map_err(DbError::from)?;
                tx.commit().await?;
                rows
            };
            let mut report = serde_json::Map::new();
            for (i, policy) in scheduled.iter().enumerate() {
                let step = format!("start:{}", policy.id);
                let started = job
                    .step(&step, Some(org), async |tx| {
                        see_deleted(tx).await.map_err(JobError::from)?;
                        service
                            .insert_run(tx, &ctx, new_id(), policy, false, Some(job.id()), false)
                            .await
                            .map(|r| r.id)
                            .map_err(|e| JobError::from_problem(e.into()))
                    })
                    .await?;
                let run = match started {
                    Some(run) => run,
                    None => {
                        let mut tx = service.db.begin(org).await?;
                        let run: Uuid = runs::table
                            .filter(runs::organization_id.eq(org))
                            .filter(runs::job_id.eq(job.id()))
                            .filter(runs::policy_id.eq(policy.id))
                            .select(runs::id)
                            .first(tx.conn())
                            .await
                            .map_err(DbError::from)?;
                        tx.commit().await?;
                        run
                    }
                };
                // One policy's run failing for good (its policy changed meanwhile) fails that run,
                // recorded, not the others: the next policy still runs today.
                match service.execute_run(&job, &ctx, run).await {
                    Ok(()) => {
                        report.insert(policy.name.clone(), json!({ "run": run }));
                    }
                    Err(JobError::Fatal(why)) => {
                        job.count("failed_runs", 1);
                        report.insert(policy.name.clone(), json!({ "run": run, "failed": why }));
                    }
                    Err(other) => return Err(other),
                }
                job.set_progress((i + 1) as f64 / scheduled.len() as f64);
            }
            Ok(Value::Object(report))
        }
    })
    .attempts(JOB_ATTEMPTS)
}

/// What a run of `policy` would do now, by the precedence rules with every active policy of its
/// entity, in the caller's transaction: records acted on (deleted or archived) and skipped. For a
/// policy document's dry run, whose transaction holds the configuration it would apply.
pub(crate) async fn count_now(
    service: &RetentionService,
    tx: &mut Tx,
    ctx: &RequestCtx,
    policy: &PolicyRow,
) -> Result<(i64, i64)> {
    if !policy.is_active || !(policy.auto_delete || policy.auto_archive) || policy.entity_type == EntityType::AuditLog {
        return Ok((0, 0));
    }
    see_deleted(tx).await?;
    let (mut acted, mut skipped) = (0, 0);
    let mut after = None;
    loop {
        // The daily run's view: it is not an admin's, so holds are never overridden.
        let batch = plan_batch(service, tx, ctx.organization_id, policy, after, false, false).await?;
        for (_, plan) in &batch.plans {
            match plan {
                Planned::Act => acted += 1,
                Planned::Skip(_) => skipped += 1,
            }
        }
        after = batch.last;
        if !batch.more {
            return Ok((acted, skipped));
        }
    }
}
