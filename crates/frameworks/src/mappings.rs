//! Cross-framework mappings ("test once, comply many"): how one requirement relates to
//! requirements of other frameworks, read in both directions.

use std::collections::HashMap;

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{parse_id, parse_uuid};
use custos_core::page::Page;
use custos_core::{Problem, RequestCtx, timefmt};
use custos_db::Tx;
use custos_db::schema::{frameworks, requirement_evidence, requirement_mappings, requirements};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::service::{FrameworksError, FrameworksService};

custos_core::page_responses! {
    pb::ListRequirementMappingsResponse { pb::RequirementMapping };
}

/// At most this many mappings are listed for one requirement (the built-in sets give a
/// requirement a few dozen at most).
const MAPPINGS_MAX: i64 = 1_000;

/// What "covered" means, written once (the summary's `include_mapped` and `apply_mapping`):
/// requirement `r` joined to every COMPLIANT requirement `x` that is equal to it or a superset
/// of it, through mapping `m` in either direction — an `equal` or `subset` mapping from `r` to
/// `x`, or an `equal` or `superset` mapping from `x` to `r`. `intersect` covers nothing.
const COVERED_BY: &str = "
    JOIN requirement_mappings m ON m.organization_id = r.organization_id
     AND (m.source_requirement_id = r.id OR m.target_requirement_id = r.id)
    JOIN requirements x ON x.organization_id = r.organization_id AND x.compliance_status = 'COMPLIANT'
     AND ((m.source_requirement_id = r.id AND x.id = m.target_requirement_id AND m.relationship IN ('equal', 'subset'))
       OR (m.target_requirement_id = r.id AND x.id = m.source_requirement_id AND m.relationship IN ('equal', 'superset')))";

/// How many of the framework's requirements are not COMPLIANT themselves but covered by a
/// COMPLIANT requirement of any framework ([`COVERED_BY`]).
pub(crate) async fn covered_through_mappings(tx: &mut Tx, org: Uuid, framework: Uuid) -> Result<i64, FrameworksError> {
    #[derive(QueryableByName)]
    struct Covered {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let covered: Covered = diesel::sql_query(format!(
        "SELECT count(DISTINCT r.id) AS n FROM requirements r {COVERED_BY}
          WHERE r.organization_id = $1 AND r.framework_id = $2 AND r.compliance_status <> 'COMPLIANT'"
    ))
    .bind::<SqlUuid, _>(org)
    .bind::<SqlUuid, _>(framework)
    .get_result(tx.conn())
    .await?;
    Ok(covered.n)
}

/// The relation seen from the other side: the target of a `subset` mapping is its source's superset.
fn reversed(relationship: &str) -> &str {
    match relationship {
        "subset" => "superset",
        "superset" => "subset",
        other => other,
    }
}

type Row = (Uuid, Uuid, Uuid, String, String, String, OffsetDateTime);

/// A requirement as the other side of a mapping shows it: (id, requirement_id, title, status,
/// framework id, framework name, framework type), and its counting evidence.
type Described = ((Uuid, String, String, String, Uuid, String, String), i64);

/// The requirements `ids` of the organisation, with their frameworks and how much evidence
/// supports each (the `requirement_evidence` view), by id.
async fn describe(tx: &mut Tx, org: Uuid, ids: &[Uuid]) -> Result<HashMap<Uuid, Described>, FrameworksError> {
    let rows: Vec<(Uuid, String, String, String, Uuid, String, String)> = requirements::table
        .inner_join(frameworks::table)
        .filter(requirements::organization_id.eq(org))
        .filter(frameworks::organization_id.eq(org))
        .filter(requirements::id.eq_any(ids))
        .select((
            requirements::id,
            requirements::requirement_id,
            requirements::title,
            requirements::compliance_status,
            frameworks::id,
            frameworks::name,
            frameworks::framework_type,
        ))
        .load(tx.conn())
        .await?;
    let evidence: HashMap<Uuid, i64> = requirement_evidence::table
        .filter(requirement_evidence::organization_id.eq(org))
        .filter(requirement_evidence::requirement_id.eq_any(ids))
        .select((requirement_evidence::requirement_id, requirement_evidence::current_count))
        .load(tx.conn())
        .await?
        .into_iter()
        .collect();
    Ok(rows.into_iter().map(|d| (d.0, (d.clone(), evidence.get(&d.0).copied().unwrap_or(0)))).collect())
}

fn mapped_pb((d, evidence_count): &Described) -> pb::MappedRequirement {
    pb::MappedRequirement {
        evidence_count: *evidence_count,
        id: d.0.to_string(),
        requirement_id: d.1.clone(),
        title: d.2.clone(),
        compliance_status: d.3.clone(),
        framework_id: d.4.to_string(),
        framework_name: d.5.clone(),
        framework_type: d.6.clone(),
    }
}

impl FrameworksService {
    /// The requirement's mappings, both directions, each with the other requirement's
    /// framework and status; ordered by that framework's name and the requirement's id.
    pub async fn list_requirement_mappings(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRequirementMappingsRequest,
    ) -> Result<pb::ListRequirementMappingsResponse, FrameworksError> {
        let id = parse_id("Requirement", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Read).await?;
        let exists: bool = diesel::select(diesel::dsl::exists(
            requirements::table.filter(requirements::organization_id.eq(org)).filter(requirements::id.eq(id)),
        ))
        .get_result(tx.conn())
        .await?;
        if !exists {
            return Err(Problem::not_found("Requirement", id).into());
        }
        let rows: Vec<Row> = requirement_mappings::table
            .filter(requirement_mappings::organization_id.eq(org))
            .filter(
                requirement_mappings::source_requirement_id
                    .eq(id)
                    .or(requirement_mappings::target_requirement_id.eq(id)),
            )
            .limit(MAPPINGS_MAX)
            .select((
                requirement_mappings::id,
                requirement_mappings::source_requirement_id,
                requirement_mappings::target_requirement_id,
                requirement_mappings::relationship,
                requirement_mappings::rationale,
                requirement_mappings::origin,
                requirement_mappings::created_at,
            ))
            .load(tx.conn())
            .await?;
        let others: Vec<Uuid> = rows.iter().map(|r| if r.1 == id { r.2 } else { r.1 }).collect();
        let by_id = describe(&mut tx, org, &others).await?;
        tx.commit().await?;
        let mut results: Vec<pb::RequirementMapping> = rows
            .into_iter()
            .filter_map(|(mapping, source, target, relationship, rationale, origin, created_at)| {
                let outgoing = source == id;
                let other = by_id.get(if outgoing { &target } else { &source })?;
                Some(pb::RequirementMapping {
                    id: mapping.to_string(),
                    direction: if outgoing { "outgoing" } else { "incoming" }.into(),
                    relationship: if outgoing { relationship.clone() } else { reversed(&relationship).to_owned() },
                    rationale,
                    origin,
                    requirement: Some(mapped_pb(other)),
                    created_at: timefmt::timestamp(created_at),
                })
            })
            .collect();
        results.sort_by(|a, b| {
            let key = |m: &pb::RequirementMapping| {
                m.requirement.as_ref().map(|r| (r.framework_name.clone(), r.requirement_id.clone())).unwrap_or_default()
            };
            key(a).cmp(&key(b))
        });
        // Every mapping: bounded by `MAPPINGS_MAX`, not by a page size.
        Ok(pb::ListRequirementMappingsResponse::from_page(Page::whole(results)))
    }

    /// What the source framework's compliant results carry over to this framework through
    /// mappings: every requirement here not yet COMPLIANT that a COMPLIANT source requirement
    /// covers (equal to it or a superset of it) is proposed COMPLIANT; with `apply`, set so (by
    /// an editor or admin), each change audited with the mapping and the source requirement,
    /// and marked derived (`status_derived_from`) until the requirement is assessed itself.
    pub async fn apply_mapping(
        &self,
        ctx: &RequestCtx,
        req: pb::ApplyMappingRequest,
    ) -> Result<pb::ApplyMappingResponse, FrameworksError> {
        #[derive(QueryableByName)]
        struct Proposal {
            #[diesel(sql_type = SqlUuid)]
            requirement: Uuid,
            #[diesel(sql_type = SqlUuid)]
            source: Uuid,
            #[diesel(sql_type = SqlUuid)]
            mapping: Uuid,
            #[diesel(sql_type = Text)]
            relationship: String,
            /// Whether the source requirement is the mapping's source (else its target).
            #[diesel(sql_type = diesel::sql_types::Bool)]
            from_source: bool,
        }
        let id = parse_id("Framework", &req.id)?;
        let source_framework = parse_uuid("source_framework", &req.source_framework)?;
        if source_framework == id {
            return Err(
                Problem::invalid_field("source_framework", "A framework cannot carry results over to itself").into()
            );
        }
        let org = ctx.organization_id;
        let access = if req.apply { Access::Write } else { Access::Read };
        let mut tx = self.db().begin_as(ctx, access).await?;
        let found: Vec<Uuid> = frameworks::table
            .filter(frameworks::organization_id.eq(org))
            .filter(frameworks::id.eq_any([id, source_framework]))
            .select(frameworks::id)
            .load(tx.conn())
            .await?;
        if !found.contains(&id) {
            return Err(Problem::not_found("Framework", id).into());
        }
        if !found.contains(&source_framework) {
            return Err(Problem::invalid_field("source_framework", format!("No framework {source_framework}")).into());
        }
        if req.apply {
            // Locked first (DISTINCT ON takes no row locks): the requirements that may change,
            // and the compliant source requirements that justify it, so that the statuses
            // proposed are the statuses set.
            requirements::table
                .filter(requirements::organization_id.eq(org))
                .filter(requirements::framework_id.eq(id))
                .filter(requirements::compliance_status.ne("COMPLIANT"))
                .order(requirements::id)
                .select(requirements::id)
                .for_update()
                .load::<Uuid>(tx.conn())
                .await?;
            requirements::table
                .filter(requirements::organization_id.eq(org))
                .filter(requirements::framework_id.eq(source_framework))
                .filter(requirements::compliance_status.eq("COMPLIANT"))
                .order(requirements::id)
                .select(requirements::id)
                .for_share()
                .load::<Uuid>(tx.conn())
                .await?;
        }
        // One covering source requirement per requirement (the first by its identifier).
        let proposals: Vec<Proposal> = diesel::sql_query(format!(
            "SELECT DISTINCT ON (r.id) r.id AS requirement, x.id AS source, m.id AS mapping,
                    m.relationship, m.source_requirement_id = x.id AS from_source
               FROM requirements r {COVERED_BY}
              WHERE r.organization_id = $1 AND r.framework_id = $2 AND r.compliance_status <> 'COMPLIANT'
                AND x.framework_id = $3
              ORDER BY r.id, x.requirement_id"
        ))
        .bind::<SqlUuid, _>(org)
        .bind::<SqlUuid, _>(id)
        .bind::<SqlUuid, _>(source_framework)
        .load(tx.conn())
        .await?;
        let ids: Vec<Uuid> = proposals.iter().flat_map(|p| [p.requirement, p.source]).collect();
        let described = describe(&mut tx, org, &ids).await?;
        let mut results: Vec<pb::MappingProposal> = proposals
            .iter()
            .filter_map(|p| {
                Some(pb::MappingProposal {
                    requirement: Some(mapped_pb(described.get(&p.requirement)?)),
                    proposed_status: "COMPLIANT".into(),
                    because: Some(mapped_pb(described.get(&p.source)?)),
                    mapping_id: p.mapping.to_string(),
                    // Seen from the source requirement.
                    relationship: if p.from_source {
                        p.relationship.clone()
                    } else {
                        reversed(&p.relationship).to_owned()
                    },
                })
            })
            .collect();
        results.sort_by(|a, b| {
            let key = |m: &pb::MappingProposal| m.requirement.as_ref().map(|r| r.requirement_id.clone());
            key(a).cmp(&key(b))
        });
        let mut changed = 0;
        if req.apply {
            for p in &proposals {
                let before = self.requirement_pb(&mut tx, ctx, p.requirement).await?;
                diesel::update(
                    requirements::table
                        .filter(requirements::organization_id.eq(org))
                        .filter(requirements::id.eq(p.requirement)),
                )
                .set((
                    requirements::compliance_status.eq("COMPLIANT"),
                    requirements::status_derived_from.eq(Some(p.source)),
                    requirements::last_assessment_date.eq(timefmt::today()),
                    requirements::updated_at.eq(timefmt::now()),
                ))
                .execute(tx.conn())
                .await?;
                let after = self.requirement_pb(&mut tx, ctx, p.requirement).await?;
                let mut after = snapshot(&after);
                if let serde_json::Value::Object(m) = &mut after {
                    m.insert("derived_through_mapping".into(), p.mapping.to_string().into());
                }
                record_change(&mut tx, ctx, "update_status", "requirement", p.requirement, snapshot(&before), after)
                    .await?;
                changed += 1;
            }
        }
        tx.commit().await?;
        Ok(pb::ApplyMappingResponse { applied: req.apply, changed, proposals: results })
    }
}
