//! Policy documents stored and applied (policy-as-code, seed 004; `/api/compliance/policies/`).
//!
//! A document (read and validated by [`crate::document`]) says which retention policies the
//! organisation has for the entities it names, whether and how data residency is enforced, and
//! rules (`rules[]`) that hand-made changes must keep. Every role reads documents; admins store,
//! apply and roll them back.
//!
//! * **Apply** makes the configuration what the document says — the retention policies it
//!   manages (one per entity type it names, marked `managed_by_policy`), and the residency
//!   configuration — in one transaction, each change audited, and records an immutable version
//!   holding the document and the *effective configuration* after it.
//! * **Dry run** is that same apply in a transaction that is rolled back: the changes it would
//!   make, field by field, and the records each retention policy's run would delete, archive or
//!   skip now (counted by the precedence rules with the new configuration in place), so the
//!   answer is exactly what an apply does.
//! * **Rollback** makes the configuration a version's effective configuration again (the one
//!   before the version in effect, or any named one), exactly, and records that as a new version.
//! * **Enforcement**: a hand-made change that breaks an applied document — changing or deleting a
//!   retention policy it manages, changing the residency it set, a retention policy contradicting
//!   one of its retention rules — is refused under `enforcement.level: hard` (409 naming the rule)
//!   and allowed under `soft`; either way it is recorded as a policy violation.
//! * **Lock** (`locked: true`, a regulator's preservation lock): once a locked version is in
//!   effect, later versions (new content, applies, rollbacks) may extend it but never loosen it.

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{Choice, opt_choice, parse_id, search_pattern};
use custos_core::page::cursor;
use custos_core::{ErrorKind, Issue, ListRequest, Problem, RequestCtx, hex, new_id, timefmt};
use custos_db::schema::compliance_policies as docs;
use custos_db::schema::compliance_policy_versions as versions;
use custos_db::{Tx, list};
use custos_proto::v1 as pb;
use custos_residency::violations::{self, Enforcement, NewViolation, Outcome};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::document::{self, PolicyDocument};
use crate::model::{DeletionMethod, PolicyRow, RetentionUnit};
use crate::policies::{Fields, shortest_days};
use crate::{FromPage, Result, RetentionService};

const DOCUMENTS: &str = "compliance_policies";
const VERSIONS: &str = "compliance_policy_versions";
/// The largest document stored: policy documents are written by people.
const CONTENT_MAX: usize = 256 * 1024;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = docs)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct DocRow {
    id: Uuid,
    name: String,
    version_label: String,
    policy_type: String,
    description: String,
    enforcement_level: String,
    enforcement_scope: String,
    locked: bool,
    content: String,
    content_sha256: String,
    applied_version: Option<i32>,
    applied_at: Option<OffsetDateTime>,
    applied_by: Option<String>,
    created_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = versions)]
#[diesel(check_for_backend(diesel::pg::Pg))]
struct VersionRow {
    policy_id: Uuid,
    version: i32,
    action: String,
    restored_version: Option<i32>,
    content: String,
    content_sha256: String,
    effective: Value,
    applied_by: String,
    applied_at: OffsetDateTime,
}

impl VersionRow {
    fn to_pb(&self) -> pb::PolicyVersion {
        pb::PolicyVersion {
            policy: self.policy_id.to_string(),
            version: self.version,
            action: self.action.clone(),
            restored_version: self.restored_version,
            content: self.content.clone(),
            content_sha256: self.content_sha256.clone(),
            effective: self.effective.to_string(),
            applied_by: self.applied_by.clone(),
            applied_at: timefmt::timestamp(self.applied_at),
        }
    }
}

/// A retention rule of a document (`rules[]` of type `retention`): records of `entity_type` are
/// deleted (`delete`, `archive`) or kept (`retain`) once `age_days` old.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct RetentionRule {
    id: String,
    name: String,
    entity_type: String,
    age_days: i64,
    action: String,
}

/// The configuration a version put in effect: what its apply made, and what a rollback to it
/// makes again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub(crate) struct Effective {
    enforcement: String,
    locked: bool,
    retention_policies: Vec<pb::RetentionPolicyInput>,
    /// Whether the document governs data residency (it has a `data_residency` section).
    governs_residency: bool,
    data_residency: Option<pb::DataResidencyInput>,
    rules: Vec<RetentionRule>,
}

fn sha256(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes()))
}

fn invalid_content(message: impl Into<String>) -> crate::RetentionError {
    Problem::invalid_field("content", message.into()).into()
}

/// The retention policy type of the policies a document makes for `entity`.
fn policy_type_of(entity: &str) -> &'static str {
    match entity {
        "incident" => "INCIDENT_DATA",
        "evidence" => "EVIDENCE",
        "vulnerability" => "VULNERABILITY_DATA",
        "audit_log" => "AUDIT_LOGS",
        _ => "JOB_RECORDS",
    }
}

/// What applying `doc` puts in effect. Entries for entities Custos does not govern yet (the seed's
/// `Lead`, `Contact`) wait for them: they are warnings of the validation, and make nothing.
pub(crate) fn effective_of(doc: &PolicyDocument) -> Result<Effective> {
    let mut retention_policies: Vec<pb::RetentionPolicyInput> = Vec::new();
    for entry in doc.retention.iter().filter(|e| e.known) {
        // The document's validation refuses this with its place; stored versions were validated
        // by earlier releases, so it is checked again rather than assumed.
        if retention_policies.iter().any(|p| p.entity_type.as_deref() == Some(entry.entity_type.as_str())) {
            return Err(invalid_content(format!(
                "retention.policies names {} twice: a document makes one retention policy per entity type",
                entry.entity_type
            )));
        }
        let period = i32::try_from(entry.retention_period)
            .map_err(|_| invalid_content(format!("retention period {} is too large", entry.retention_period)))?;
        let archive = entry.deletion_method == "archive";
        let name: String = format!("{}: {}", doc.name, entry.entity_type).chars().take(200).collect();
        retention_policies.push(pb::RetentionPolicyInput {
            name,
            description: format!("Managed by the policy document {:?}", doc.name),
            policy_type: policy_type_of(&entry.entity_type).to_owned(),
            entity_type: Some(entry.entity_type.clone()),
            retention_period: Some(period),
            retention_unit: Some(entry.retention_unit.clone()),
            retention_days: None,
            deletion_method: Some(entry.deletion_method.clone()),
            auto_archive: Some(archive),
            auto_delete: Some(!archive),
            legal_hold_override: Some(entry.legal_hold_override),
            is_active: Some(true),
            locked: Some(doc.locked),
            ..Default::default()
        });
    }
    let data_residency = match &doc.data_residency {
        None => None,
        Some(r) => {
            let primary =
                r.primary_region.clone().or_else(|| <[String]>::first(&r.regions).cloned()).ok_or_else(|| {
                    invalid_content("data_residency names no region: give regions (and primary_region)")
                })?;
            Some(pb::DataResidencyInput {
                primary_region: primary,
                allowed_regions: r.regions.clone(),
                storage_prefix: r.storage_prefix.clone(),
                // Soft enforcement allows writes elsewhere and records them.
                enforce_region: Some(r.enforce && doc.enforcement_level == "hard"),
                block_cross_region: Some(r.block_cross_region),
                compliance_frameworks: vec![doc.policy_type.to_uppercase()],
            })
        }
    };
    let rules = doc
        .rules
        .iter()
        .filter(|r| r.rule_type == "retention" && matches!(r.action.as_str(), "delete" | "archive" | "retain"))
        .filter_map(|r| {
            let entity = r.condition.get("entity_type")?.as_str()?;
            let age_days = r.condition.get("age_days")?.as_i64()?;
            document::KNOWN_ENTITIES.contains(&entity).then(|| RetentionRule {
                id: r.id.clone(),
                name: r.name.clone(),
                entity_type: entity.to_owned(),
                age_days,
                action: r.action.clone(),
            })
        })
        .collect();
    Ok(Effective {
        enforcement: doc.enforcement_level.clone(),
        locked: doc.locked,
        retention_policies,
        governs_residency: data_residency.is_some(),
        data_residency,
        rules,
    })
}

/// The shortest retention of an input, in days (a month 28, a year 365), to compare periods.
fn input_days(p: &pb::RetentionPolicyInput) -> i64 {
    let unit = p
        .retention_unit
        .as_deref()
        .and_then(|u| RetentionUnit::ALL.iter().copied().find(|c| c.as_str() == u))
        .unwrap_or(RetentionUnit::Days);
    shortest_days(p.retention_period.unwrap_or(0), unit)
}

fn destructive(method: Option<&str>) -> u8 {
    match method {
        Some("hard") => 2,
        Some("soft") => 1,
        _ => 0,
    }
}

/// What moving from `before` (a locked version in effect) to `after` would loosen, in words.
pub(crate) fn loosening(before: &Effective, after: &Effective) -> Vec<String> {
    let mut out = Vec::new();
    if !before.locked {
        return out;
    }
    if !after.locked {
        out.push("lift its lock".to_owned());
    }
    if before.enforcement == "hard" && after.enforcement != "hard" {
        out.push("weaken its enforcement to soft".to_owned());
    }
    for b in &before.retention_policies {
        let entity = b.entity_type.as_deref().unwrap_or_default();
        match after.retention_policies.iter().find(|a| a.entity_type == b.entity_type) {
            None => out.push(format!("stop retaining {entity} records")),
            Some(a) => {
                if input_days(a) < input_days(b) {
                    out.push(format!("shorten the retention of {entity} records"));
                }
                if destructive(a.deletion_method.as_deref()) > destructive(b.deletion_method.as_deref()) {
                    out.push(format!("delete {entity} records more destructively"));
                }
                if a.legal_hold_override == Some(true) && b.legal_hold_override != Some(true) {
                    out.push(format!("let the {entity} policy override legal holds"));
                }
            }
        }
    }
    if let Some(b) = before.data_residency.as_ref().filter(|_| before.governs_residency) {
        match after.data_residency.as_ref().filter(|_| after.governs_residency) {
            None => out.push("stop governing data residency".to_owned()),
            Some(a) => {
                let widened: Vec<&str> = a
                    .allowed_regions
                    .iter()
                    .chain(std::iter::once(&a.primary_region))
                    .filter(|r| *r != &b.primary_region && !b.allowed_regions.contains(r))
                    .map(String::as_str)
                    .collect();
                if !widened.is_empty() {
                    out.push(format!("allow data in {}", widened.join(", ")));
                }
                if b.enforce_region == Some(true) && a.enforce_region != Some(true) {
                    out.push("stop enforcing regions".to_owned());
                }
                if b.block_cross_region == Some(true) && a.block_cross_region != Some(true) {
                    out.push("allow cross-region copies".to_owned());
                }
            }
        }
    }
    for rule in before.rules.iter().filter(|r| r.action == "retain") {
        let kept = after
            .rules
            .iter()
            .any(|a| a.action == "retain" && a.entity_type == rule.entity_type && a.age_days >= rule.age_days);
        if !kept {
            out.push(format!(
                "drop or shorten rule {} (retain {} records {} days)",
                rule.id, rule.entity_type, rule.age_days
            ));
        }
    }
    out.dedup();
    out
}

fn issues_pb(issues: &[Issue]) -> Vec<pb::PolicyIssue> {
    issues
        .iter()
        .map(|i| pb::PolicyIssue {
            path: i.path.clone(),
            line: i.line.map(|l| l as u32),
            column: i.column.map(|c| c as u32),
            message: i.message.clone(),
        })
        .collect()
}

/// A document's content, read: the document, or a 400 with every problem located.
fn read(content: &str) -> Result<(PolicyDocument, Vec<Issue>)> {
    if content.len() > CONTENT_MAX {
        return Err(invalid_content(format!("at most {CONTENT_MAX} bytes")));
    }
    let v = document::validate(content);
    match v.document {
        Some(doc) if v.errors.is_empty() => Ok((doc, v.warnings)),
        _ => Err(Problem::new(
            ErrorKind::InvalidArgument,
            "Invalid policy document",
            json!({ "errors": issues_pb(&v.errors), "warnings": issues_pb(&v.warnings) }),
        )
        .into()),
    }
}

impl DocRow {
    fn to_pb(&self) -> pb::CompliancePolicy {
        let warnings = document::validate(&self.content).warnings;
        pb::CompliancePolicy {
            id: self.id.to_string(),
            name: self.name.clone(),
            version: self.version_label.clone(),
            policy_type: self.policy_type.clone(),
            description: self.description.clone(),
            enforcement_level: self.enforcement_level.clone(),
            enforcement_scope: self.enforcement_scope.clone(),
            locked: self.locked,
            content: self.content.clone(),
            content_sha256: self.content_sha256.clone(),
            applied_version: self.applied_version,
            applied_at: self.applied_at.map(timefmt::timestamp),
            applied_by: self.applied_by.clone(),
            pending_changes: false,
            warnings: issues_pb(&warnings),
            created_by: self.created_by.clone(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    fn audited(&self) -> Value {
        json!({
            "name": self.name, "version": self.version_label, "type": self.policy_type,
            "enforcement_level": self.enforcement_level, "locked": self.locked,
            "content_sha256": self.content_sha256, "applied_version": self.applied_version,
        })
    }
}

/// The columns a document's content sets.
type ContentColumns = (
    diesel::dsl::Eq<docs::name, String>,
    diesel::dsl::Eq<docs::version_label, String>,
    diesel::dsl::Eq<docs::policy_type, String>,
    diesel::dsl::Eq<docs::description, String>,
    diesel::dsl::Eq<docs::enforcement_level, String>,
    diesel::dsl::Eq<docs::enforcement_scope, String>,
    diesel::dsl::Eq<docs::locked, bool>,
    diesel::dsl::Eq<docs::content, String>,
    diesel::dsl::Eq<docs::content_sha256, String>,
    diesel::dsl::Eq<docs::document, Value>,
);

fn content_columns(doc: &PolicyDocument, content: &str) -> ContentColumns {
    (
        docs::name.eq(doc.name.clone()),
        docs::version_label.eq(doc.version.clone()),
        docs::policy_type.eq(doc.policy_type.clone()),
        docs::description.eq(doc.description.clone().unwrap_or_default()),
        docs::enforcement_level.eq(doc.enforcement_level.clone()),
        docs::enforcement_scope.eq(doc.enforcement_scope.clone()),
        docs::locked.eq(doc.locked),
        docs::content.eq(content.to_owned()),
        docs::content_sha256.eq(sha256(content)),
        docs::document.eq(document::as_json(doc)),
    )
}

struct Filters {
    policy_type: Option<String>,
    enforcement: Option<Enforcement>,
    applied: Option<bool>,
    search: Option<String>,
}

impl Filters {
    fn apply(&self, org: Uuid) -> docs::BoxedQuery<'static, Pg> {
        let mut q = docs::table.filter(docs::organization_id.eq(org)).into_boxed();
        if let Some(t) = &self.policy_type {
            q = q.filter(docs::policy_type.eq(t.clone()));
        }
        if let Some(e) = self.enforcement {
            q = q.filter(docs::enforcement_level.eq(e.as_str()));
        }
        match self.applied {
            Some(true) => q = q.filter(docs::applied_version.is_not_null()),
            Some(false) => q = q.filter(docs::applied_version.is_null()),
            None => {}
        }
        if let Some(p) = &self.search {
            q = q.filter(docs::name.ilike(p.clone()).or(docs::description.ilike(p.clone())));
        }
        q
    }
}

async fn find(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<DocRow> {
    let q = docs::table.filter(docs::organization_id.eq(org)).filter(docs::id.eq(id)).select(DocRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Policy", id))?)
}

async fn version(tx: &mut Tx, org: Uuid, policy: Uuid, n: i32) -> Result<Option<VersionRow>> {
    Ok(versions::table
        .filter(versions::organization_id.eq(org))
        .filter(versions::policy_id.eq(policy))
        .filter(versions::version.eq(n))
        .select(VersionRow::as_select())
        .first(tx.conn())
        .await
        .optional()?)
}

fn effective(row: &VersionRow) -> Result<Effective> {
    Ok(serde_json::from_value(row.effective.clone()).map_err(Problem::internal)?)
}

/// The effective configuration of the version in effect, if any.
async fn in_effect(tx: &mut Tx, org: Uuid, doc: &DocRow) -> Result<Option<(VersionRow, Effective)>> {
    let Some(n) = doc.applied_version else { return Ok(None) };
    let Some(row) = version(tx, org, doc.id, n).await? else { return Ok(None) };
    let eff = effective(&row)?;
    Ok(Some((row, eff)))
}

fn refuse_loosening(doc: &DocRow, loosened: &[String]) -> crate::RetentionError {
    Problem::state_conflict(
        "Policy is locked",
        format!(
            "Policy {:?} is under a preservation lock: it can be extended but never loosened; this would {}",
            doc.name,
            loosened.join(", ")
        ),
    )
    .into()
}

/// What an apply or rollback did (or, in a dry run, would do).
struct Converged {
    impact: pb::PolicyImpact,
    /// The retention policies the document manages afterwards, for counting a dry run's records.
    managed: Vec<PolicyRow>,
}

impl RetentionService {
    /// Makes the configuration `eff` for document `id` in `tx`: its retention policies and, if it
    /// governs it, the residency configuration (a document no longer governing residency removes
    /// the configuration it had set).
    async fn converge(&self, tx: &mut Tx, ctx: &RequestCtx, id: Uuid, eff: &Effective) -> Result<Converged> {
        let managed = crate::policies::converge_managed(tx, ctx, id, eff.retention_policies.clone()).await?;
        let residency_target = match eff.data_residency.as_ref().filter(|_| eff.governs_residency) {
            Some(input) => Some(self.residency.validate(input.clone()).map_err(|e| {
                let p = Problem::from(e);
                Problem::state_conflict("Data residency cannot be applied", json!({ "data_residency": p.details }))
            })?),
            None => None,
        };
        let residency = self.residency.converge_in(tx, ctx, id, residency_target.as_ref()).await?;
        let (impacts, rows): (Vec<_>, Vec<_>) = managed.into_iter().unzip();
        Ok(Converged {
            impact: pb::PolicyImpact { retention_policies: impacts, data_residency: residency, ..Default::default() },
            managed: rows.into_iter().flatten().collect(),
        })
    }

    /// Counts, for a dry run, what each retention policy's run would do now.
    async fn count_records(&self, tx: &mut Tx, ctx: &RequestCtx, converged: &mut Converged) -> Result<()> {
        let (mut deleted, mut archived) = (0, 0);
        for impact in &mut converged.impact.retention_policies {
            let Some(policy) = converged.managed.iter().find(|p| Some(p.id.to_string()) == impact.retention_policy)
            else {
                continue;
            };
            let (acted, skipped) = crate::runs::count_now(self, tx, ctx, policy).await?;
            if policy.deletion_method == DeletionMethod::Archive {
                impact.would_archive_now = Some(acted);
                impact.would_delete_now = Some(0);
                archived += acted;
            } else {
                impact.would_delete_now = Some(acted);
                impact.would_archive_now = Some(0);
                deleted += acted;
            }
            impact.would_skip_now = Some(skipped);
        }
        converged.impact.records_deleted_now = Some(deleted);
        converged.impact.records_archived_now = Some(archived);
        Ok(())
    }

    /// `GET /api/compliance/policies/` (every role): filters `policy_type`, `enforcement_level`,
    /// `applied`, `search`; oldest first.
    pub async fn list_compliance_policies(
        &self,
        ctx: &RequestCtx,
        req: pb::ListCompliancePoliciesRequest,
    ) -> Result<pb::ListCompliancePoliciesResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters {
            policy_type: req.policy_type.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_lowercase),
            enforcement: opt_choice("enforcement_level", req.enforcement_level.as_deref())?,
            applied: req.applied,
            search: search_pattern(req.search.as_deref()),
        };
        let after = list.after::<(OffsetDateTime, Uuid)>(DOCUMENTS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((docs::created_at.asc(), docs::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(DocRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((docs::created_at, docs::id), key));
        }
        let rows: Vec<DocRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(DOCUMENTS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let mut results = Vec::new();
        for row in &page.results {
            results.push(self.doc_pb(&mut tx, org, row).await?);
        }
        tx.commit().await?;
        Ok(pb::ListCompliancePoliciesResponse::from_page(page.with_results(results)))
    }

    async fn doc_pb(&self, tx: &mut Tx, org: Uuid, row: &DocRow) -> Result<pb::CompliancePolicy> {
        let mut out = row.to_pb();
        out.pending_changes = match row.applied_version {
            None => false,
            Some(n) => version(tx, org, row.id, n).await?.is_none_or(|v| v.content_sha256 != row.content_sha256),
        };
        Ok(out)
    }

    /// `GET /api/compliance/policies/{id}/` (every role).
    pub async fn get_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::GetCompliancePolicyRequest,
    ) -> Result<pb::CompliancePolicy> {
        let id = parse_id("Policy", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        let out = self.doc_pb(&mut tx, ctx.organization_id, &row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/policies/` (admins): `{"content": "<YAML>"}`; a document with any
    /// error is refused (400 with every problem located). Stored, not yet applied.
    pub async fn create_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateCompliancePolicyRequest,
    ) -> Result<pb::CompliancePolicy> {
        let content = req.policy.unwrap_or_default().content;
        let (doc, _) = read(&content)?;
        effective_of(&doc)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let row: DocRow = diesel::insert_into(docs::table)
            .values((
                docs::id.eq(new_id()),
                docs::organization_id.eq(ctx.organization_id),
                content_columns(&doc, &content),
                docs::created_by.eq(ctx.actor.label()),
            ))
            .returning(DocRow::as_returning())
            .get_result(tx.conn())
            .await
            .map_err(|e| name_taken(e.into(), &doc.name))?;
        record_change(&mut tx, ctx, "create", "compliance_policy", row.id, Value::Null, row.audited()).await?;
        let out = self.doc_pb(&mut tx, ctx.organization_id, &row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `PUT /api/compliance/policies/{id}/` (admins): new content, in effect once applied. With
    /// a locked version in effect, content that would loosen it is refused (409).
    pub async fn update_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateCompliancePolicyRequest,
    ) -> Result<pb::CompliancePolicy> {
        let id = parse_id("Policy", &req.id)?;
        let content = req.policy.unwrap_or_default().content;
        let (doc, _) = read(&content)?;
        let next = effective_of(&doc)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        if let Some((_, eff)) = in_effect(&mut tx, org, &current).await? {
            let loosened = loosening(&eff, &next);
            if !loosened.is_empty() {
                return Err(refuse_loosening(&current, &loosened));
            }
        }
        let row: DocRow = diesel::update(docs::table.filter(docs::organization_id.eq(org)).filter(docs::id.eq(id)))
            .set((content_columns(&doc, &content), docs::updated_at.eq(timefmt::now())))
            .returning(DocRow::as_returning())
            .get_result(tx.conn())
            .await
            .map_err(|e| name_taken(e.into(), &doc.name))?;
        record_change(&mut tx, ctx, "update", "compliance_policy", id, current.audited(), row.audited()).await?;
        let out = self.doc_pb(&mut tx, org, &row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `DELETE /api/compliance/policies/{id}/` (admins): only a document never applied; an
    /// applied one is kept with its versions (apply another version, or roll back).
    pub async fn delete_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteCompliancePolicyRequest,
    ) -> Result<pb::DeleteCompliancePolicyResponse> {
        let id = parse_id("Policy", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        if current.applied_version.is_some() {
            return Err(Problem::state_conflict(
                "Policy has been applied",
                format!(
                    "Policy {:?} has been applied: it is kept with its versions, the record of what was in effect when",
                    current.name
                ),
            )
            .into());
        }
        diesel::delete(docs::table.filter(docs::organization_id.eq(org)).filter(docs::id.eq(id)))
            .execute(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "delete", "compliance_policy", id, current.audited(), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteCompliancePolicyResponse {})
    }

    /// `POST /api/compliance/policies/{id}/validate/` (every role): the stored document checked
    /// again — syntax and shape, and what applying needs (one policy per entity, a residency
    /// region this server stores).
    pub async fn validate_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::ValidateCompliancePolicyRequest,
    ) -> Result<pb::PolicyValidation> {
        let id = parse_id("Policy", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        tx.commit().await?;
        Ok(self.validate_content(&row.content))
    }

    /// Validates a document's text as applying would (the CLI's `--file` and `--policy-id`).
    pub fn validate_content(&self, content: &str) -> pb::PolicyValidation {
        let v = document::validate(content);
        let mut errors = issues_pb(&v.errors);
        if let Some(doc) = &v.document {
            match effective_of(doc) {
                Err(e) => errors.push(pb::PolicyIssue { message: problem_text(e), ..Default::default() }),
                Ok(eff) => {
                    if let Some(input) = eff.data_residency
                        && let Err(e) = self.residency.validate(input)
                    {
                        errors.push(pb::PolicyIssue {
                            path: Some("data_residency".into()),
                            message: problem_text(e),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        pb::PolicyValidation { valid: errors.is_empty(), errors, warnings: issues_pb(&v.warnings) }
    }

    /// `POST /api/compliance/policies/{id}/dry_run/` (admins): what applying would do, exactly —
    /// the apply itself, in a transaction rolled back — with the records each retention policy's
    /// run would delete, archive or skip now.
    pub async fn dry_run_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::DryRunCompliancePolicyRequest,
    ) -> Result<pb::PolicyApplied> {
        self.apply_compliance_policy(ctx, pb::ApplyCompliancePolicyRequest { id: req.id, dry_run: true }).await
    }

    /// `POST /api/compliance/policies/{id}/apply/` (admins): puts the stored document in effect
    /// as a new immutable version (`{"dry_run": true}`: the dry run).
    pub async fn apply_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::ApplyCompliancePolicyRequest,
    ) -> Result<pb::PolicyApplied> {
        let id = parse_id("Policy", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        let (doc, warnings) = read(&current.content)?;
        let next = effective_of(&doc)?;
        if let Some((_, eff)) = in_effect(&mut tx, org, &current).await? {
            let loosened = loosening(&eff, &next);
            if !loosened.is_empty() {
                return Err(refuse_loosening(&current, &loosened));
            }
        }
        let mut converged = self.converge(&mut tx, ctx, id, &next).await?;
        converged.impact.version = next_version(&mut tx, org, id).await?;
        converged.impact.warnings = issues_pb(&warnings);
        if req.dry_run {
            self.count_records(&mut tx, ctx, &mut converged).await?;
            // Nothing of it stays: the transaction is rolled back.
            drop(tx);
            let policy = {
                let mut tx = self.db.begin_as(ctx, Access::Read).await?;
                let out = self.doc_pb(&mut tx, org, &current).await?;
                tx.commit().await?;
                out
            };
            return Ok(pb::PolicyApplied { policy: Some(policy), version: None, impact: Some(converged.impact) });
        }
        let n = converged.impact.version;
        let version =
            self.record_version(&mut tx, ctx, &current, n, "apply", None, &current.content, &doc, &next).await?;
        self.finish(tx, ctx, current, version, converged.impact).await
    }

    /// `POST /api/compliance/policies/{id}/rollback/` (admins): the effective configuration of an
    /// earlier version (`to_version`, default the one before the version in effect) made again,
    /// exactly, and recorded as a new version; the document's content becomes that version's.
    pub async fn rollback_compliance_policy(
        &self,
        ctx: &RequestCtx,
        req: pb::RollbackCompliancePolicyRequest,
    ) -> Result<pb::PolicyApplied> {
        let id = parse_id("Policy", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        let Some((in_force, eff)) = in_effect(&mut tx, org, &current).await? else {
            return Err(Problem::state_conflict(
                "Policy has not been applied",
                format!("Policy {:?} has no version in effect to roll back", current.name),
            )
            .into());
        };
        let target_n = req.to_version.unwrap_or(in_force.version - 1);
        if target_n == in_force.version {
            return Err(Problem::invalid_field("to_version", format!("version {target_n} is the one in effect")).into());
        }
        let Some(target) = version(&mut tx, org, id, target_n).await? else {
            return Err(Problem::state_conflict(
                "No such version",
                format!("Policy {:?} has no version {target_n} to roll back to", current.name),
            )
            .into());
        };
        let restored = effective(&target)?;
        let loosened = loosening(&eff, &restored);
        if !loosened.is_empty() {
            return Err(refuse_loosening(&current, &loosened));
        }
        let converged = self.converge(&mut tx, ctx, id, &restored).await?;
        let n = next_version(&mut tx, org, id).await?;
        let (doc, _) = read(&target.content)?;
        let version = self
            .record_version(&mut tx, ctx, &current, n, "rollback", Some(target_n), &target.content, &doc, &restored)
            .await?;
        let mut impact = converged.impact;
        impact.version = n;
        self.finish(tx, ctx, current, version, impact).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_version(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        current: &DocRow,
        n: i32,
        action: &str,
        restored: Option<i32>,
        content: &str,
        doc: &PolicyDocument,
        eff: &Effective,
    ) -> Result<VersionRow> {
        let effective = serde_json::to_value(eff).map_err(Problem::internal)?;
        let row: VersionRow = diesel::insert_into(versions::table)
            .values((
                versions::organization_id.eq(ctx.organization_id),
                versions::policy_id.eq(current.id),
                versions::version.eq(n),
                versions::action.eq(action),
                versions::restored_version.eq(restored),
                versions::content.eq(content),
                versions::content_sha256.eq(sha256(content)),
                versions::document.eq(document::as_json(doc)),
                versions::effective.eq(&effective),
                versions::applied_by.eq(ctx.actor.label()),
            ))
            .returning(VersionRow::as_returning())
            .get_result(tx.conn())
            .await?;
        let now = timefmt::now();
        diesel::update(
            docs::table.filter(docs::organization_id.eq(ctx.organization_id)).filter(docs::id.eq(current.id)),
        )
        .set((
            content_columns(doc, content),
            docs::applied_version.eq(n),
            docs::applied_at.eq(now),
            docs::applied_by.eq(ctx.actor.label()),
            docs::updated_at.eq(now),
        ))
        .execute(tx.conn())
        .await?;
        record_change(
            tx,
            ctx,
            action,
            "compliance_policy",
            current.id,
            current.audited(),
            json!({ "version": n, "restored_version": restored, "content_sha256": row.content_sha256,
                    "effective": effective }),
        )
        .await?;
        Ok(row)
    }

    async fn finish(
        &self,
        mut tx: Tx,
        ctx: &RequestCtx,
        current: DocRow,
        version: VersionRow,
        impact: pb::PolicyImpact,
    ) -> Result<pb::PolicyApplied> {
        let row = find(&mut tx, ctx.organization_id, current.id, false).await?;
        let policy = self.doc_pb(&mut tx, ctx.organization_id, &row).await?;
        tx.commit().await?;
        Ok(pb::PolicyApplied { policy: Some(policy), version: Some(version.to_pb()), impact: Some(impact) })
    }

    /// `GET /api/compliance/policies/{id}/versions/` (every role): newest first.
    pub async fn list_policy_versions(
        &self,
        ctx: &RequestCtx,
        req: pb::ListPolicyVersionsRequest,
    ) -> Result<pb::ListPolicyVersionsResponse> {
        let id = parse_id("Policy", &req.id)?;
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let after = list.after::<i32>(VERSIONS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        find(&mut tx, org, id, false).await?;
        let base = move || {
            versions::table.filter(versions::organization_id.eq(org)).filter(versions::policy_id.eq(id)).into_boxed()
        };
        let mut q = base()
            .order(versions::version.desc())
            .offset(list.offset())
            .limit(list.fetch())
            .select(VersionRow::as_select());
        if let Some(n) = after {
            q = q.filter(versions::version.lt(n));
        }
        let rows: Vec<VersionRow> = list::one_shot(q).load(tx.conn()).await?;
        let page =
            list::page(&mut tx, &list, rows, |r| Some(cursor(VERSIONS, &r.version)), || base().select(list::row()))
                .await?;
        tx.commit().await?;
        let results = page.results.iter().map(VersionRow::to_pb).collect();
        Ok(pb::ListPolicyVersionsResponse::from_page(page.with_results(results)))
    }

    /// Checks a change made by hand to a retention policy against the documents in effect: one
    /// they manage (`managed_by`) is theirs to change, and its fields (`fields`, absent for a
    /// deletion) must keep their retention rules. Under hard enforcement a broken rule is refused
    /// (409 naming it); under soft the change goes ahead. Either way it is recorded as a
    /// violation.
    pub(crate) async fn guard_retention_change(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        operation: &str,
        target: Option<(Uuid, &str, Option<Uuid>)>,
        fields: Option<&Fields>,
    ) -> Result<()> {
        let org = ctx.organization_id;
        let applied: Vec<(Uuid, String, Value)> = docs::table
            .inner_join(
                versions::table
                    .on(versions::policy_id.eq(docs::id).and(versions::version.nullable().eq(docs::applied_version))),
            )
            .filter(docs::organization_id.eq(org))
            .select((docs::id, docs::name, versions::effective))
            .load(tx.conn())
            .await?;
        let mut broken: Vec<NewViolation> = Vec::new();
        for (doc_id, doc_name, eff) in applied {
            let eff: Effective = serde_json::from_value(eff).map_err(Problem::internal)?;
            let enforcement = if eff.enforcement == "hard" { Enforcement::Hard } else { Enforcement::Soft };
            let violation = |rule: String, message: String| NewViolation {
                policy: Some(doc_id),
                rule,
                enforcement,
                outcome: if enforcement == Enforcement::Hard { Outcome::Blocked } else { Outcome::Allowed },
                operation: operation.to_owned(),
                entity_type: Some("retention_policy".to_owned()),
                entity_id: target.map(|t| t.0),
                region: None,
                message,
                details: json!({ "policy_name": doc_name }),
            };
            if let Some((_, name, Some(manager))) = target
                && manager == doc_id
            {
                broken.push(violation(
                    "retention.policies".to_owned(),
                    format!(
                        "retention policy {name:?} is managed by the policy document {doc_name:?}: change the document and apply it"
                    ),
                ));
            }
            let Some(f) = fields.filter(|f| f.is_active) else { continue };
            let days = shortest_days(f.retention_period, f.retention_unit);
            let deletes = f.auto_delete || f.auto_archive;
            for rule in eff.rules.iter().filter(|r| r.entity_type == f.entity_type.as_str()) {
                let breaks = match rule.action.as_str() {
                    "retain" => deletes && days < rule.age_days,
                    _ => days > rule.age_days,
                };
                if breaks {
                    let what = if rule.action == "retain" { "kept at least" } else { "deleted after" };
                    broken.push(violation(
                        rule.id.clone(),
                        format!(
                            "rule {} ({}) of {doc_name:?}: {} records are {what} {} days; this policy keeps them {days} days{}",
                            rule.id,
                            rule.name,
                            rule.entity_type,
                            rule.age_days,
                            if deletes { " and then deletes them" } else { "" }
                        ),
                    ));
                }
            }
        }
        let mut refusal = None;
        for v in &broken {
            violations::record(&self.db, ctx, v).await?;
            if v.outcome == Outcome::Blocked && refusal.is_none() {
                refusal = Some(v.refusal());
            }
        }
        match refusal {
            Some(p) => Err(p.into()),
            None => Ok(()),
        }
    }
}

async fn next_version(tx: &mut Tx, org: Uuid, id: Uuid) -> Result<i32> {
    let max: Option<i32> = versions::table
        .filter(versions::organization_id.eq(org))
        .filter(versions::policy_id.eq(id))
        .select(diesel::dsl::max(versions::version))
        .first(tx.conn())
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

fn problem_text(e: impl Into<Problem>) -> String {
    let p: Problem = e.into();
    match &p.details {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn name_taken(e: custos_db::DbError, name: &str) -> crate::RetentionError {
    e.unique_as_conflict("Policy exists", format!("A policy document named {name:?} exists")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(yaml: &str) -> PolicyDocument {
        let v = document::validate(yaml);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        v.document.unwrap()
    }

    const BASE: &str = "name: Records
version: 1.0.0
type: gdpr
enforcement: {level: hard, scope: company}
locked: true
rules:
  - {id: r-1, name: Keep incidents, type: retention, condition: {entity_type: incident, age_days: 365}, action: retain, severity: high}
retention:
  policies:
    - {entity_type: incident, retention_days: 730, deletion_method: soft}
    - {entity_type: Lead, retention_days: 365, deletion_method: soft}
data_residency: {regions: [eu-west-1], enforce: true}
";

    #[test]
    fn a_document_makes_one_policy_per_known_entity_and_its_residency() {
        let eff = effective_of(&doc(BASE)).unwrap();
        assert_eq!(eff.retention_policies.len(), 1, "Lead waits for the DSR datasets");
        let p = &eff.retention_policies[0];
        assert_eq!((p.name.as_str(), p.policy_type.as_str()), ("Records: incident", "INCIDENT_DATA"));
        assert_eq!((p.auto_delete, p.locked), (Some(true), Some(true)));
        let r = eff.data_residency.as_ref().unwrap();
        assert_eq!((r.primary_region.as_str(), r.enforce_region), ("eu-west-1", Some(true)));
        assert_eq!(eff.rules.len(), 1);
        let soft = effective_of(&doc(&BASE.replace("level: hard", "level: soft"))).unwrap();
        assert_eq!(soft.data_residency.unwrap().enforce_region, Some(false), "soft enforcement records, never refuses");
    }

    #[test]
    fn a_locked_document_may_be_extended_but_never_loosened() {
        let base = effective_of(&doc(BASE)).unwrap();
        let longer = effective_of(&doc(&BASE.replace("retention_days: 730", "retention_days: 3650"))).unwrap();
        assert!(loosening(&base, &longer).is_empty(), "{:?}", loosening(&base, &longer));
        for (change, expected) in [
            (BASE.replace("retention_days: 730", "retention_days: 30"), "shorten the retention of incident records"),
            (
                BASE.replace(
                    "deletion_method: soft}\n    - {entity_type: Lead",
                    "deletion_method: hard}\n    - {entity_type: Lead",
                ),
                "delete incident records more destructively",
            ),
            (BASE.replace("locked: true", "locked: false"), "lift its lock"),
            (BASE.replace("level: hard", "level: soft"), "weaken its enforcement to soft"),
            (BASE.replace("regions: [eu-west-1]", "regions: [eu-west-1, us-east-1]"), "allow data in us-east-1"),
            (BASE.replace("enforce: true", "enforce: false"), "stop enforcing regions"),
            (
                BASE.replace("age_days: 365}, action: retain", "age_days: 30}, action: retain"),
                "drop or shorten rule r-1",
            ),
        ] {
            let next = effective_of(&doc(&change)).unwrap();
            let found = loosening(&base, &next);
            assert!(found.iter().any(|f| f.starts_with(expected)), "{expected}: {found:?}");
        }
        let unlocked = effective_of(&doc(&BASE.replace("locked: true", "locked: false"))).unwrap();
        let shorter = effective_of(&doc(&BASE.replace("retention_days: 730", "retention_days: 30"))).unwrap();
        assert!(loosening(&unlocked, &shorter).is_empty(), "an unlocked version binds nothing");
    }

    #[test]
    fn one_entity_twice_is_a_located_error_of_the_document() {
        let twice = BASE.replace(
            "    - {entity_type: Lead, retention_days: 365, deletion_method: soft}",
            "    - {entity_type: incident, retention_days: 365, deletion_method: soft}",
        );
        let v = document::validate(&twice);
        assert!(v.document.is_none());
        assert_eq!(v.errors[0].path.as_deref(), Some("$.retention.policies[1]"));
        assert!(v.errors[0].message.contains("a second retention for \"incident\""), "{:?}", v.errors);
    }
}
