//! The records retention judges, as the precedence rules see them: when each one's retention
//! starts (an incident's resolution, an evidence item's collection, a vulnerability's
//! remediation or closing, a job's end), what scopes it, and what holds it — read once, here, for
//! both the explanation of one record and the batches of a run, so the two always agree.
//!
//! The tables are read through `db::schema` (as the hold check reads incidents and evidence),
//! never through another domain's crate.

use std::collections::HashMap;

use custos_db::Tx;
use custos_db::schema::{evidence, evidence_requirements, incidents, jobs, requirements, vulnerabilities};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{EntityType, PolicyRow};
use crate::precedence::Record;
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

/// The records `ids` of `entity` that the organisation has, in id order, each with its record
/// and scope; `lock` locks them first (a run's batch: what is acted on is what is committed
/// now). Audit entries are not records of this kind (the audit chain keeps its own retention):
/// none.
pub(crate) async fn read(
    service: &RetentionService,
    tx: &mut Tx,
    org: Uuid,
    entity: EntityType,
    ids: &[Uuid],
    lock: bool,
) -> Result<Vec<(Uuid, Record, Scope)>> {
    Ok(match entity {
        EntityType::Incident => {
            let q = incidents::table
                .filter(incidents::organization_id.eq(org))
                .filter(incidents::id.eq_any(ids))
                .order(incidents::id.asc())
                .select((
                    incidents::id,
                    incidents::status,
                    incidents::resolved_at,
                    incidents::category,
                    incidents::data_classification,
                ));
            type Row = (Uuid, String, Option<OffsetDateTime>, String, String);
            let found: Vec<Row> = if lock { q.for_update().load(tx.conn()).await? } else { q.load(tx.conn()).await? };
            let mut holds = service.holds.holds_on_incidents(tx.conn(), org, ids).await?;
            found
                .into_iter()
                .map(|(id, status, resolved_at, category, classification)| {
                    let closed = matches!(status.as_str(), "RESOLVED" | "CLOSED");
                    let record = Record {
                        starts_at: if closed { resolved_at } else { None },
                        starts_from: "resolved_at".into(),
                        own_retention_days: None,
                        holds: holds.remove(&id).unwrap_or_default(),
                    };
                    (
                        id,
                        record,
                        Scope { category: Some(category), classification: Some(classification), frameworks: vec![] },
                    )
                })
                .collect()
        }
        EntityType::Evidence => {
            let q = evidence::table
                .filter(evidence::organization_id.eq(org))
                .filter(evidence::id.eq_any(ids))
                .order(evidence::id.asc())
                .select((evidence::id, evidence::collected_at, evidence::retention_period, evidence::incident_id));
            type Row = (Uuid, OffsetDateTime, Option<i32>, Option<Uuid>);
            let found: Vec<Row> = if lock { q.for_update().load(tx.conn()).await? } else { q.load(tx.conn()).await? };
            let incident_ids: Vec<Uuid> = found.iter().filter_map(|r| r.3).collect();
            let of_incident: HashMap<Uuid, (String, String)> = incidents::table
                .filter(incidents::organization_id.eq(org))
                .filter(incidents::id.eq_any(&incident_ids))
                .select((incidents::id, (incidents::category, incidents::data_classification)))
                .load::<(Uuid, (String, String))>(tx.conn())
                .await?
                .into_iter()
                .collect();
            let mut frameworks: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
            let links: Vec<(Uuid, Uuid)> = evidence_requirements::table
                .inner_join(requirements::table)
                .filter(evidence_requirements::organization_id.eq(org))
                .filter(evidence_requirements::evidence_id.eq_any(ids))
                .select((evidence_requirements::evidence_id, requirements::framework_id))
                .distinct()
                .load(tx.conn())
                .await?;
            for (e, f) in links {
                frameworks.entry(e).or_default().push(f);
            }
            let mut holds = service.holds.holds_on_evidence(tx.conn(), org, ids).await?;
            found
                .into_iter()
                .map(|(id, collected_at, own, incident)| {
                    let (category, classification) = incident.and_then(|i| of_incident.get(&i).cloned()).unzip();
                    let record = Record {
                        starts_at: Some(collected_at),
                        starts_from: "collected_at".into(),
                        own_retention_days: own,
                        holds: holds.remove(&id).unwrap_or_default(),
                    };
                    (
                        id,
                        record,
                        Scope { category, classification, frameworks: frameworks.remove(&id).unwrap_or_default() },
                    )
                })
                .collect()
        }
        EntityType::Vulnerability => {
            let q = vulnerabilities::table
                .filter(vulnerabilities::organization_id.eq(org))
                .filter(vulnerabilities::id.eq_any(ids))
                .order(vulnerabilities::id.asc())
                .select((
                    vulnerabilities::id,
                    vulnerabilities::status,
                    vulnerabilities::remediated_at,
                    vulnerabilities::updated_at,
                ));
            type Row = (Uuid, String, Option<OffsetDateTime>, OffsetDateTime);
            let found: Vec<Row> = if lock { q.for_update().load(tx.conn()).await? } else { q.load(tx.conn()).await? };
            found
                .into_iter()
                .map(|(id, status, remediated_at, updated_at)| {
                    let open = matches!(status.as_str(), "OPEN" | "IN_PROGRESS");
                    let record = Record {
                        starts_at: if open { None } else { Some(remediated_at.unwrap_or(updated_at)) },
                        starts_from: "remediated_at (or its closing)".into(),
                        ..Record::default()
                    };
                    (id, record, Scope::default())
                })
                .collect()
        }
        EntityType::Job => {
            let q = jobs::table
                .filter(jobs::organization_id.eq(org))
                .filter(jobs::id.eq_any(ids))
                .order(jobs::id.asc())
                .select((jobs::id, jobs::finished_at));
            type Row = (Uuid, Option<OffsetDateTime>);
            let found: Vec<Row> = if lock { q.for_update().load(tx.conn()).await? } else { q.load(tx.conn()).await? };
            found
                .into_iter()
                .map(|(id, finished_at)| {
                    let record =
                        Record { starts_at: finished_at, starts_from: "finished_at".into(), ..Record::default() };
                    (id, record, Scope::default())
                })
                .collect()
        }
        EntityType::AuditLog => Vec::new(),
    })
}
