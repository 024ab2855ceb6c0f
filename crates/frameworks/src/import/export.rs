//! A framework written out: as a Custos catalogue file (lossless: attributes included), as an
//! OSCAL catalog, or its assessment state as OSCAL assessment-results. The two OSCAL documents
//! name each requirement by the same control id, so results point into the catalog.

use std::collections::{HashMap, HashSet};

use custos_core::ctx::Access;
use custos_core::filter::parse_id;
use custos_core::{Problem, RequestCtx, timefmt};
use custos_db::schema::{frameworks, requirement_evidence_items as items, requirements};
use custos_oscal::{
    AssessmentResult, AssessmentResults, AssessmentResultsDocument, Catalog, CatalogDocument, Control, Finding,
    FindingTarget, Group, Metadata, ObjectiveState, Observation, ObservationMethod, Part, Property, RelevantEvidence,
    ReviewedControls, is_token, to_token,
};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::oscal::{NS, prop};
use crate::catalog::{self, CatalogFramework, CatalogRequirement};
use crate::model::FrameworkRow;
use crate::service::{FrameworksError, FrameworksService, find_framework};

/// What a framework is written out as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Custos,
    OscalCatalog,
    OscalAssessmentResults,
}

impl ExportFormat {
    pub const ALLOWED: &str = "custos, oscal-catalog, oscal-assessment-results";

    pub fn parse(value: &str) -> Result<ExportFormat, Problem> {
        match value.trim() {
            "" | "custos" => Ok(ExportFormat::Custos),
            "oscal-catalog" => Ok(ExportFormat::OscalCatalog),
            "oscal-assessment-results" => Ok(ExportFormat::OscalAssessmentResults),
            other => Err(Problem::invalid_field("format", format!("{other:?} is not one of {}", Self::ALLOWED))),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = requirements)]
struct Exported {
    id: Uuid,
    parent_id: Option<Uuid>,
    requirement_id: String,
    title: String,
    description: String,
    section: String,
    requirement_type: String,
    priority: String,
    compliance_status: String,
    implementation_notes: String,
    last_assessment_date: Option<Date>,
    external_id: Option<String>,
    attributes: Value,
}

/// Evidence linked to a requirement, as the results cite it.
struct Cited {
    id: Uuid,
    title: String,
    sha256: Option<String>,
    collected_at: OffsetDateTime,
}

impl FrameworksService {
    /// `GET /api/compliance/frameworks/{id}/export/?format=…`: the framework as a document.
    pub async fn export_framework(
        &self,
        ctx: &RequestCtx,
        req: pb::ExportFrameworkRequest,
    ) -> Result<pb::ExportFrameworkResponse, FrameworksError> {
        let format = ExportFormat::parse(&req.format)?;
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.db().begin_as(ctx, Access::Read).await?;
        let framework = find_framework(&mut tx, ctx, id).await?;
        let (external_id, attributes): (Option<String>, Value) = frameworks::table
            .filter(frameworks::organization_id.eq(ctx.organization_id))
            .filter(frameworks::id.eq(id))
            .select((frameworks::external_id, frameworks::attributes))
            .first(tx.conn())
            .await?;
        let rows: Vec<Exported> = requirements::table
            .filter(requirements::organization_id.eq(ctx.organization_id))
            .filter(requirements::framework_id.eq(id))
            .order((requirements::created_at, requirements::id))
            .select(Exported::as_select())
            .load(tx.conn())
            .await?;
        let rows = in_hierarchy_order(rows);
        let mut cited: HashMap<Uuid, Vec<Cited>> = HashMap::new();
        if format == ExportFormat::OscalAssessmentResults {
            let links: Vec<(Uuid, Uuid, String, Option<String>, OffsetDateTime)> = items::table
                .filter(items::organization_id.eq(ctx.organization_id))
                .filter(items::requirement_id.eq_any(rows.iter().map(|r| r.id).collect::<Vec<_>>()))
                .order((items::collected_at, items::evidence_id))
                .select((
                    items::requirement_id,
                    items::evidence_id,
                    items::title,
                    items::file_hash,
                    items::collected_at,
                ))
                .load(tx.conn())
                .await?;
            for (requirement, id, title, sha256, collected_at) in links {
                cited.entry(requirement).or_default().push(Cited { id, title, sha256, collected_at });
            }
        }
        tx.commit().await?;
        let attributes = match attributes {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let stem = file_stem(framework.catalog_key.as_deref().unwrap_or(&framework.name), &framework.version);
        let (content, content_type, file_name) = match format {
            ExportFormat::Custos => {
                let document = custos_document(&framework, external_id, attributes, &rows);
                let text = serde_yaml_ng::to_string(&document).map_err(Problem::internal)?;
                (text, "application/yaml", format!("{stem}.yaml"))
            }
            ExportFormat::OscalCatalog => {
                let document = oscal_catalog(&framework, external_id.as_deref(), &attributes, &rows);
                (to_json(&document)?, "application/json", format!("{stem}.oscal-catalog.json"))
            }
            ExportFormat::OscalAssessmentResults => {
                let document = assessment_results(&framework, &rows, &cited);
                (to_json(&document)?, "application/json", format!("{stem}.oscal-assessment-results.json"))
            }
        };
        Ok(pb::ExportFrameworkResponse { content, content_type: content_type.to_owned(), file_name })
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<String, FrameworksError> {
    Ok(serde_json::to_string_pretty(value).map_err(Problem::internal)?)
}

/// A file name of letters, digits, '.', '-' and '_' only.
fn file_stem(name: &str, version: &str) -> String {
    let raw = if version.is_empty() { name.to_owned() } else { format!("{name}-{version}") };
    let stem: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '-' }).collect();
    stem.trim_matches('-').to_owned()
}

/// Parents before their children, siblings in the order they were created; a requirement whose
/// parent is gone is a root.
fn in_hierarchy_order(rows: Vec<Exported>) -> Vec<Exported> {
    let ids: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut children: HashMap<Option<Uuid>, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let parent = r.parent_id.filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(i);
    }
    let mut order = Vec::with_capacity(rows.len());
    let mut stack: Vec<usize> = children.get(&None).map(|c| c.iter().rev().copied().collect()).unwrap_or_default();
    while let Some(i) = stack.pop() {
        order.push(i);
        if let Some(c) = children.get(&Some(rows[i].id)) {
            stack.extend(c.iter().rev());
        }
    }
    let mut slots: Vec<Option<Exported>> = rows.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

fn custos_document(
    framework: &FrameworkRow,
    external_id: Option<String>,
    attributes: Map<String, Value>,
    rows: &[Exported],
) -> CatalogFramework {
    let by_id: HashMap<Uuid, &str> = rows.iter().map(|r| (r.id, r.requirement_id.as_str())).collect();
    CatalogFramework {
        format: catalog::FORMAT.to_owned(),
        key: framework.catalog_key.clone().unwrap_or_else(|| format!("framework-{}", framework.id)),
        name: framework.name.clone(),
        framework_type: framework.framework_type.to_string(),
        version: version_of(framework),
        description: framework.description.clone(),
        applicable_regions: framework.applicable_regions.clone(),
        industry_sectors: framework.industry_sectors.clone(),
        effective_date: framework.effective_date.map(timefmt::date),
        external_id,
        requirement_external_id_prefix: None,
        attributes,
        requirements: rows
            .iter()
            .map(|r| CatalogRequirement {
                requirement_id: r.requirement_id.clone(),
                title: r.title.clone(),
                section: r.section.clone(),
                description: r.description.clone(),
                requirement_type: r.requirement_type.clone(),
                priority: r.priority.clone(),
                parent: r.parent_id.and_then(|p| by_id.get(&p)).map(|p| (*p).to_owned()),
                external_id: r.external_id.clone(),
                attributes: match &r.attributes {
                    Value::Object(map) => map.clone(),
                    _ => Map::new(),
                },
            })
            .collect(),
    }
}

/// A framework's version, or "1" for one created without (catalogue files need one).
fn version_of(framework: &FrameworkRow) -> String {
    if framework.version.trim().is_empty() { "1".to_owned() } else { framework.version.clone() }
}

/// The OSCAL id of each requirement: its external id when that is an OSCAL token (it came from
/// OSCAL), else a token made of its `requirement_id`; distinct within the framework.
fn control_ids(rows: &[Exported]) -> HashMap<Uuid, String> {
    let mut taken = HashSet::with_capacity(rows.len());
    let mut ids = HashMap::with_capacity(rows.len());
    for r in rows {
        let base = match r.external_id.as_deref() {
            Some(e) if is_token(e) => e.to_owned(),
            _ => to_token(&r.requirement_id),
        };
        let mut id = base.clone();
        let mut n = 1;
        while !taken.insert(id.clone()) {
            n += 1;
            id = format!("{base}_{n}");
        }
        ids.insert(r.id, id);
    }
    ids
}

/// `attributes.oscal` of a requirement or framework, without Custos's bookkeeping keys.
fn oscal_of(attributes: &Value) -> Option<Map<String, Value>> {
    let mut map = attributes.get("oscal")?.as_object()?.clone();
    map.remove("kind");
    map.remove("withdrawn");
    Some(map)
}

fn is_group(r: &Exported) -> bool {
    r.attributes.pointer("/oscal/kind").and_then(Value::as_str) == Some("group")
}

/// `props` with Custos's own replaced by `ours` and the first plain `label` set to `label`.
fn with_props(mut props: Vec<Property>, label: Option<&str>, ours: &[(&str, &str)]) -> Vec<Property> {
    props.retain(|p| p.ns.as_deref() != Some(NS));
    if let Some(label) = label {
        match props.iter_mut().find(|p| p.name == "label" && p.class.is_none() && p.ns.is_none()) {
            Some(p) => p.value = label.to_owned(),
            None => props.insert(0, Property::new("label", label)),
        }
    }
    for (name, value) in ours {
        if !value.is_empty() {
            props.push(Property::with_ns(*name, *value, NS));
        }
    }
    props
}

fn now_rfc3339() -> String {
    timefmt::timestamp(timefmt::now())
}

fn oscal_catalog(
    framework: &FrameworkRow,
    external_id: Option<&str>,
    attributes: &Map<String, Value>,
    rows: &[Exported],
) -> CatalogDocument {
    let kept = attributes.get("oscal").and_then(Value::as_object);
    let mut metadata: Metadata =
        kept.and_then(|k| k.get("metadata")).and_then(|m| serde_json::from_value(m.clone()).ok()).unwrap_or_default();
    metadata.title = framework.name.clone();
    metadata.version = version_of(framework);
    metadata.last_modified = now_rfc3339();
    metadata.oscal_version = custos_oscal::OSCAL_VERSION.to_owned();
    if !framework.description.is_empty() {
        metadata.remarks = Some(framework.description.clone());
    }
    let framework_type = framework.framework_type.to_string();
    let key = framework.catalog_key.clone().unwrap_or_else(|| format!("framework-{}", framework.id));
    metadata.props = with_props(
        std::mem::take(&mut metadata.props),
        None,
        &[
            (prop::CATALOG_KEY, &key),
            (prop::FRAMEWORK_TYPE, &framework_type),
            (prop::EXTERNAL_ID, external_id.unwrap_or("")),
        ],
    );
    let mut catalog = Catalog::new(Uuid::new_v4().to_string(), metadata);
    if let Some(k) = kept {
        if let Some(params) = k.get("params").and_then(|p| serde_json::from_value(p.clone()).ok()) {
            catalog.params = params;
        }
        if let Some(back) = k.get("back-matter").and_then(|b| serde_json::from_value(b.clone()).ok()) {
            catalog.back_matter = Some(back);
        }
    }
    let ids = control_ids(rows);
    let mut children: HashMap<Option<Uuid>, Vec<&Exported>> = HashMap::new();
    let present: HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    for r in rows {
        children.entry(r.parent_id.filter(|p| present.contains(p))).or_default().push(r);
    }
    let builder = Builder { ids: &ids, children: &children };
    for r in children.get(&None).into_iter().flatten() {
        if is_group(r) {
            catalog.groups.push(builder.group(r));
        } else {
            catalog.controls.push(builder.control(r));
        }
    }
    CatalogDocument::new(catalog)
}

struct Builder<'a> {
    ids: &'a HashMap<Uuid, String>,
    children: &'a HashMap<Option<Uuid>, Vec<&'a Exported>>,
}

impl Builder<'_> {
    fn kids(&self, r: &Exported) -> impl Iterator<Item = &&Exported> {
        self.children.get(&Some(r.id)).into_iter().flatten()
    }

    /// The object OSCAL had, or an empty one, with the requirement's id and title.
    fn base<T: serde::de::DeserializeOwned + Default>(&self, r: &Exported, title: &str) -> T {
        let mut map = oscal_of(&r.attributes).unwrap_or_default();
        map.insert("id".into(), Value::String(self.ids[&r.id].clone()));
        map.insert("title".into(), Value::String(title.to_owned()));
        serde_json::from_value(Value::Object(map)).unwrap_or_default()
    }

    fn group(&self, r: &Exported) -> Group {
        let mut group: Group = self.base(r, &r.title);
        group.props = with_props(
            std::mem::take(&mut group.props),
            None,
            &[(prop::REQUIREMENT_TYPE, &r.requirement_type), (prop::PRIORITY, &r.priority)],
        );
        // OSCAL keeps a group's own text in an `overview` part.
        if group.parts.is_empty() && !r.description.is_empty() {
            group.parts.push(Part::prose(format!("{}_ovw", self.ids[&r.id]), "overview", r.description.clone()));
        }
        for kid in self.kids(r) {
            if is_group(kid) {
                group.groups.push(self.group(kid));
            } else {
                group.controls.push(self.control(kid));
            }
        }
        group
    }

    fn control(&self, r: &Exported) -> Control {
        let withdrawn = r.attributes.pointer("/oscal/withdrawn").and_then(Value::as_bool) == Some(true);
        let title = match r.title.strip_suffix(" (withdrawn)") {
            Some(t) if withdrawn => t,
            _ => &r.title,
        };
        let mut control: Control = self.base(r, title);
        control.props = with_props(
            std::mem::take(&mut control.props),
            Some(&r.requirement_id),
            &[
                (prop::REQUIREMENT_TYPE, &r.requirement_type),
                (prop::PRIORITY, &r.priority),
                (prop::SECTION, &r.section),
                (prop::EXTERNAL_ID, r.external_id.as_deref().filter(|e| !is_token(e)).unwrap_or("")),
            ],
        );
        if control.parts.is_empty() && !r.description.is_empty() {
            control.parts.push(Part::prose(format!("{}_smt", self.ids[&r.id]), "statement", r.description.clone()));
        }
        // Groups cannot sit in a control: whatever is below a control is a control.
        control.controls = self.kids(r).map(|kid| self.control(kid)).collect();
        control
    }
}

fn assessment_results(
    framework: &FrameworkRow,
    rows: &[Exported],
    cited: &HashMap<Uuid, Vec<Cited>>,
) -> AssessmentResultsDocument {
    let now = now_rfc3339();
    let ids = control_ids(rows);
    let metadata = Metadata::new(format!("Assessment results: {}", framework.name), version_of(framework), now.clone());
    // Custos keeps no assessment plan document: the framework's catalog export is what was assessed.
    let mut ar = AssessmentResults::new(
        Uuid::new_v4().to_string(),
        metadata,
        format!("/api/compliance/frameworks/{}/export/?format=oscal-catalog", framework.id),
    );
    let controls: Vec<&Exported> = rows.iter().filter(|r| !is_group(r)).collect();
    let start = controls
        .iter()
        .filter_map(|r| r.last_assessment_date)
        .min()
        .map(|d| timefmt::timestamp(d.midnight().assume_utc()))
        .unwrap_or_else(|| timefmt::timestamp(framework.created_at));
    let mut result = AssessmentResult::new(
        Uuid::new_v4().to_string(),
        format!("Compliance status of {}", framework.name),
        "The compliance status Custos records for each requirement, with the evidence linked to it.",
        start,
    );
    result.end = Some(now.clone());
    result.reviewed_controls = ReviewedControls::controls(controls.iter().map(|r| ids[&r.id].clone()));
    for r in &controls {
        let state = match r.compliance_status.as_str() {
            "COMPLIANT" => ObjectiveState::Satisfied,
            "PARTIALLY_COMPLIANT" | "NON_COMPLIANT" => ObjectiveState::NotSatisfied,
            // Not assessed: reviewed, no finding.
            _ => continue,
        };
        let collected = r
            .last_assessment_date
            .map(|d| timefmt::timestamp(d.midnight().assume_utc()))
            .unwrap_or_else(|| now.clone());
        let mut observation = Observation::new(
            Uuid::new_v4().to_string(),
            if r.implementation_notes.is_empty() {
                format!("{} is recorded as {}", r.requirement_id, r.compliance_status)
            } else {
                r.implementation_notes.clone()
            },
            vec![ObservationMethod::Examine],
            collected,
        );
        for e in cited.get(&r.id).into_iter().flatten() {
            let mut evidence = RelevantEvidence::new(format!("/api/compliance/evidence/{}/", e.id), e.title.clone());
            if let Some(sha) = &e.sha256 {
                evidence.props.push(Property::with_ns("sha256", sha.clone(), NS));
            }
            evidence.props.push(Property::with_ns("collected-at", timefmt::timestamp(e.collected_at), NS));
            observation.relevant_evidence.push(evidence);
        }
        // OSCAL's reasons are tokens: pass, fail, other.
        let reason = if state == ObjectiveState::Satisfied { "pass" } else { "fail" };
        let target = FindingTarget::objective(ids[&r.id].clone(), state).with_reason(reason);
        let mut finding = Finding::new(
            Uuid::new_v4().to_string(),
            format!("{} {}", r.requirement_id, r.title),
            format!("{} is {}", r.requirement_id, r.compliance_status.to_lowercase().replace('_', " ")),
            target,
        )
        .with_observations([observation.uuid.clone()]);
        finding.props.push(Property::with_ns(prop::COMPLIANCE_STATUS, r.compliance_status.clone(), NS));
        result.observations.push(observation);
        result.findings.push(finding);
    }
    ar.results.push(result);
    AssessmentResultsDocument::new(ar)
}
