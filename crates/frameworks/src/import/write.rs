//! Writing a framework document into an organisation: the one path that `custos seed`, the
//! import API and the import job share. Idempotent (a framework is its catalogue key and
//! version, a requirement its `requirement_id`, a mapping its pair of requirements: only what is
//! missing is created) and in bulk: requirements, mappings and their audit entries go in a few
//! statements, whatever their number, all in the caller's transaction.

use std::collections::{HashMap, HashSet};

use custos_audit_chain::{Change, record_change, record_many};
use custos_core::filter::parse_date;
use custos_core::{RequestCtx, new_id};
use custos_db::Tx;
use custos_db::schema::{frameworks, requirement_mappings, requirements};
use diesel::prelude::*;
use diesel::sql_types::{Array, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{FrameworkRef, MappingSet};
use crate::catalog::CatalogFramework;
use crate::service::FrameworksError;

/// Rows per INSERT: well under PostgreSQL's 65,535 bind parameters.
const CHUNK: usize = 2_000;
/// Requirements beyond which an import defers the search indexes' merging to vacuum.
const BIG_IMPORT: usize = 1_000;

/// What writing one framework did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameworkOutcome {
    pub key: String,
    pub version: String,
    pub framework_id: Uuid,
    pub framework_created: bool,
    pub requirements_created: usize,
    pub requirements_existing: usize,
    pub requirements_total: usize,
}

/// What writing one mapping set did: pairs created, already there, and those whose framework or
/// requirement is not in the organisation (named, never guessed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappingOutcome {
    pub key: String,
    pub created: usize,
    pub existing: usize,
    pub unresolved: Vec<String>,
}

/// A requirement to insert.
struct NewRequirement<'a> {
    id: Uuid,
    parent_id: Option<Uuid>,
    requirement_id: &'a str,
    title: &'a str,
    description: &'a str,
    section: &'a str,
    requirement_type: &'a str,
    priority: &'a str,
    external_id: Option<String>,
    attributes: Value,
}

#[derive(Insertable)]
#[diesel(table_name = requirement_mappings)]
struct NewMapping<'a> {
    id: Uuid,
    organization_id: Uuid,
    source_requirement_id: Uuid,
    target_requirement_id: Uuid,
    relationship: &'a str,
    rationale: &'a str,
    origin: &'a str,
}

/// Writes `catalog` (already checked: [`CatalogFramework::problems`] is empty).
pub(crate) async fn write_framework(
    tx: &mut Tx,
    ctx: &RequestCtx,
    catalog: &CatalogFramework,
) -> Result<FrameworkOutcome, FrameworksError> {
    let org = ctx.organization_id;
    let effective_date = catalog.effective_date.as_deref().map(|d| parse_date("effective_date", d)).transpose()?;
    let attributes = Value::Object(catalog.attributes.clone());
    let inserted: Option<Uuid> = diesel::insert_into(frameworks::table)
        .values((
            frameworks::id.eq(new_id()),
            frameworks::organization_id.eq(org),
            frameworks::name.eq(&catalog.name),
            frameworks::framework_type.eq(&catalog.framework_type),
            frameworks::version.eq(&catalog.version),
            frameworks::description.eq(&catalog.description),
            frameworks::applicable_regions.eq(&catalog.applicable_regions),
            frameworks::industry_sectors.eq(&catalog.industry_sectors),
            frameworks::effective_date.eq(effective_date),
            frameworks::catalog_key.eq(&catalog.key),
            frameworks::external_id.eq(&catalog.external_id),
            frameworks::attributes.eq(&attributes),
        ))
        .on_conflict((frameworks::organization_id, frameworks::catalog_key, frameworks::version))
        .do_nothing()
        .returning(frameworks::id)
        .get_result(tx.conn())
        .await
        .optional()?;
    let framework_created = inserted.is_some();
    let framework_id = match inserted {
        Some(id) => {
            let after = json!({
                "id": id, "name": catalog.name, "framework_type": catalog.framework_type,
                "version": catalog.version, "catalog_key": catalog.key, "external_id": catalog.external_id,
            });
            record_change(tx, ctx, "create", "framework", id, Value::Null, after).await?;
            id
        }
        None => {
            frameworks::table
                .filter(frameworks::organization_id.eq(org))
                .filter(frameworks::catalog_key.eq(&catalog.key))
                .filter(frameworks::version.eq(&catalog.version))
                .select(frameworks::id)
                .first(tx.conn())
                .await?
        }
    };

    let existing: Vec<(String, Uuid)> = requirements::table
        .filter(requirements::organization_id.eq(org))
        .filter(requirements::framework_id.eq(framework_id))
        .select((requirements::requirement_id, requirements::id))
        .load(tx.conn())
        .await?;
    let mut ids: HashMap<&str, Uuid> = HashMap::with_capacity(catalog.requirements.len());
    let known: HashMap<String, Uuid> = existing.into_iter().collect();
    let mut rows = Vec::new();
    let mut changes = Vec::new();
    for r in &catalog.requirements {
        if let Some(id) = known.get(&r.requirement_id) {
            ids.insert(&r.requirement_id, *id);
            continue;
        }
        let id = new_id();
        let parent_id = r.parent.as_deref().and_then(|p| ids.get(p).copied());
        let external_id = catalog.external_id_of(r);
        changes.push(Change {
            action: "create",
            resource_type: "requirement",
            resource_id: id.to_string(),
            before: Value::Null,
            after: json!({
                "id": id, "framework": framework_id, "parent": parent_id, "requirement_id": r.requirement_id,
                "title": r.title, "requirement_type": r.requirement_type, "priority": r.priority,
                "compliance_status": "NOT_ASSESSED", "external_id": external_id,
            }),
        });
        rows.push(NewRequirement {
            id,
            parent_id,
            requirement_id: &r.requirement_id,
            title: &r.title,
            description: &r.description,
            section: &r.section,
            requirement_type: &r.requirement_type,
            priority: &r.priority,
            external_id,
            attributes: Value::Object(r.attributes.clone()),
        });
        ids.insert(&r.requirement_id, id);
    }
    let created = rows.len();
    if created > BIG_IMPORT {
        // The trigram indexes (search) take new entries into their pending list instead of
        // merging each at once: the insert costs a third less; the list is merged by (auto)vacuum.
        diesel::sql_query("SET LOCAL gin_pending_list_limit = '64MB'").execute(tx.conn()).await?;
    }
    // Parents precede their children in the document, so in the chunks: each chunk's foreign
    // keys name rows of earlier chunks or of its own statement (checked at its end). One array
    // per column (`unnest`): a few binds per statement instead of twelve per row.
    for chunk in rows.chunks(CHUNK) {
        diesel::sql_query(
            "INSERT INTO requirements (id, organization_id, framework_id, parent_id, requirement_id, title, \
             description, section, requirement_type, priority, external_id, attributes) \
             SELECT r.id, $1, $2, r.parent_id, r.requirement_id, r.title, r.description, r.section, \
                    r.requirement_type, r.priority, r.external_id, r.attributes \
               FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], \
                           $10::text[], $11::text[], $12::jsonb[]) WITH ORDINALITY \
                    AS r(id, parent_id, requirement_id, title, description, section, requirement_type, priority, \
                         external_id, attributes, n) \
              ORDER BY r.n",
        )
        .bind::<SqlUuid, _>(org)
        .bind::<SqlUuid, _>(framework_id)
        .bind::<Array<SqlUuid>, _>(chunk.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(chunk.iter().map(|r| r.parent_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.requirement_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.title).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.description).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.section).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.requirement_type).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(chunk.iter().map(|r| r.priority).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(chunk.iter().map(|r| r.external_id.as_deref()).collect::<Vec<_>>())
        .bind::<Array<Jsonb>, _>(chunk.iter().map(|r| &r.attributes).collect::<Vec<_>>())
        .execute(tx.conn())
        .await?;
    }
    record_many(tx, ctx, changes).await?;
    Ok(FrameworkOutcome {
        key: catalog.key.clone(),
        version: catalog.version.clone(),
        framework_id,
        framework_created,
        requirements_created: created,
        requirements_existing: catalog.requirements.len() - created,
        requirements_total: catalog.requirements.len(),
    })
}

/// The requirements of the framework `reference` names, by the identifier the set's pairs use:
/// `requirement_id` for a catalogue key, `external_id` for an external id. Of several versions,
/// the one loaded last. `None` when the organisation has no such framework.
async fn resolve_framework(
    tx: &mut Tx,
    org: Uuid,
    reference: &FrameworkRef,
) -> Result<Option<HashMap<String, Uuid>>, FrameworksError> {
    let newest = frameworks::table
        .filter(frameworks::organization_id.eq(org))
        .order((frameworks::created_at.desc(), frameworks::id.desc()))
        .select(frameworks::id);
    let framework: Option<Uuid> = match reference {
        FrameworkRef::CatalogKey(key) => newest.filter(frameworks::catalog_key.eq(key)).first(tx.conn()).await,
        FrameworkRef::ExternalId(id) => newest.filter(frameworks::external_id.eq(id)).first(tx.conn()).await,
    }
    .optional()?;
    let Some(framework) = framework else { return Ok(None) };
    let rows = requirements::table
        .filter(requirements::organization_id.eq(org))
        .filter(requirements::framework_id.eq(framework));
    let pairs: Vec<(Option<String>, Uuid)> = match reference {
        FrameworkRef::CatalogKey(_) => {
            rows.select((requirements::requirement_id.nullable(), requirements::id)).load(tx.conn()).await?
        }
        FrameworkRef::ExternalId(_) => {
            rows.select((requirements::external_id, requirements::id)).load(tx.conn()).await?
        }
    };
    Ok(Some(pairs.into_iter().filter_map(|(key, id)| Some((key?, id))).collect()))
}

/// Writes the pairs of `set` whose requirements the organisation has; each created pair is
/// audited, the others are counted or named.
pub(crate) async fn write_mapping_set(
    tx: &mut Tx,
    ctx: &RequestCtx,
    set: &MappingSet,
) -> Result<MappingOutcome, FrameworksError> {
    let org = ctx.organization_id;
    let mut outcome = MappingOutcome { key: set.key.clone(), created: 0, existing: 0, unresolved: Vec::new() };
    let source = resolve_framework(tx, org, &set.source).await?;
    let target = resolve_framework(tx, org, &set.target).await?;
    let (Some(source), Some(target)) = (source.as_ref(), target.as_ref()) else {
        for (missing, reference) in [(source.is_none(), &set.source), (target.is_none(), &set.target)] {
            if missing {
                outcome.unresolved.push(format!("framework {reference} is not loaded"));
            }
        }
        return Ok(outcome);
    };
    let mut resolved = Vec::with_capacity(set.pairs.len());
    for pair in &set.pairs {
        match (source.get(&pair.source), target.get(&pair.target)) {
            (Some(s), Some(t)) => resolved.push((*s, *t, pair)),
            _ => outcome.unresolved.push(format!("{} {} → {} {}", set.source, pair.source, set.target, pair.target)),
        }
    }
    let sources: HashSet<Uuid> = resolved.iter().map(|(s, _, _)| *s).collect();
    let present: HashSet<(Uuid, Uuid)> = requirement_mappings::table
        .filter(requirement_mappings::organization_id.eq(org))
        .filter(requirement_mappings::source_requirement_id.eq_any(sources))
        .select((requirement_mappings::source_requirement_id, requirement_mappings::target_requirement_id))
        .load::<(Uuid, Uuid)>(tx.conn())
        .await?
        .into_iter()
        .collect();
    let mut seen = HashSet::new();
    let mut rows = Vec::new();
    for (s, t, pair) in resolved {
        if present.contains(&(s, t)) || !seen.insert((s, t)) {
            outcome.existing += 1;
            continue;
        }
        rows.push(NewMapping {
            id: new_id(),
            organization_id: org,
            source_requirement_id: s,
            target_requirement_id: t,
            relationship: &pair.relationship,
            rationale: &pair.rationale,
            origin: &set.key,
        });
    }
    let mut changes = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(CHUNK) {
        // A concurrent writer may have added a pair meanwhile: it counts as existing.
        let created: Vec<Uuid> = diesel::insert_into(requirement_mappings::table)
            .values(chunk)
            .on_conflict_do_nothing()
            .returning(requirement_mappings::id)
            .get_results(tx.conn())
            .await?;
        let created: HashSet<Uuid> = created.into_iter().collect();
        for row in chunk {
            if !created.contains(&row.id) {
                outcome.existing += 1;
                continue;
            }
            changes.push(Change {
                action: "create",
                resource_type: "requirement_mapping",
                resource_id: row.id.to_string(),
                before: Value::Null,
                after: json!({
                    "id": row.id, "source_requirement": row.source_requirement_id,
                    "target_requirement": row.target_requirement_id, "relationship": row.relationship,
                    "rationale": row.rationale, "origin": row.origin,
                }),
            });
            outcome.created += 1;
        }
    }
    record_many(tx, ctx, changes).await?;
    Ok(outcome)
}
