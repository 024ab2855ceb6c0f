//! Cross-framework mappings ("test once, comply many"): how one requirement relates to
//! requirements of other frameworks, read in both directions.

use custos_core::ctx::Access;
use custos_core::filter::parse_id;
use custos_core::page::Page;
use custos_core::{Problem, RequestCtx, timefmt};
use custos_db::schema::{frameworks, requirement_mappings, requirements};
use custos_proto::v1 as pb;
use diesel::prelude::*;
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

/// The relation seen from the other side: the target of a `subset` mapping is its source's superset.
fn reversed(relationship: &str) -> &str {
    match relationship {
        "subset" => "superset",
        "superset" => "subset",
        other => other,
    }
}

type Row = (Uuid, Uuid, Uuid, String, String, String, OffsetDateTime);

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
        let described: Vec<(Uuid, String, String, String, Uuid, String, String)> = requirements::table
            .inner_join(frameworks::table)
            .filter(requirements::organization_id.eq(org))
            .filter(frameworks::organization_id.eq(org))
            .filter(requirements::id.eq_any(&others))
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
        tx.commit().await?;
        let by_id: std::collections::HashMap<Uuid, _> = described.into_iter().map(|d| (d.0, d)).collect();
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
                    requirement: Some(pb::MappedRequirement {
                        id: other.0.to_string(),
                        requirement_id: other.1.clone(),
                        title: other.2.clone(),
                        compliance_status: other.3.clone(),
                        framework_id: other.4.to_string(),
                        framework_name: other.5.clone(),
                        framework_type: other.6.clone(),
                    }),
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
        // One page of every mapping: bounded by `MAPPINGS_MAX`, not by a page size.
        let page = Page {
            count: results.len() as i64,
            count_is_estimate: false,
            next_page: None,
            previous_page: None,
            next_cursor: None,
            results,
        };
        Ok(pb::ListRequirementMappingsResponse::from_page(page))
    }
}
