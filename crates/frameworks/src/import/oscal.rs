//! OSCAL catalogs in and out of Custos frameworks (the model is `custos-oscal`'s).
//!
//! Import: groups and controls become requirements in their hierarchy (group → control →
//! enhancement, through `parent`); a control's `label` property (`AC-2(1)`) is its
//! `requirement_id`, its OSCAL id (`ac-2.1`) its external id; the statement, with parameters
//! rendered as "[Assignment: …]" / "[Selection: …]", is its description; everything else
//! OSCAL says of it (parts, params, props, links, class) is kept in its attributes so that an
//! export gives it back. Withdrawn controls are marked or skipped, as asked.
//!
//! What Custos adds to an exported catalog (catalogue key, framework type, requirement type and
//! priority) travels as properties in the Custos namespace [`NS`], so a re-import restores it.

use custos_oscal::{Control, Group, ParamIndex, Part, Property, render_part_text};
use serde_json::{Map, Value, json};

use super::{Document, Format, Issue, ReadOptions, Withdrawn};
use crate::catalog::{self, CatalogFramework, CatalogRequirement};
use crate::model::FrameworkType;

/// The namespace of Custos's own OSCAL properties.
pub const NS: &str = "https://custos.dev/ns/oscal";

/// Property names in [`NS`].
pub mod prop {
    pub const CATALOG_KEY: &str = "catalog-key";
    pub const FRAMEWORK_TYPE: &str = "framework-type";
    pub const EXTERNAL_ID: &str = "external-id";
    pub const REQUIREMENT_TYPE: &str = "requirement-type";
    pub const PRIORITY: &str = "priority";
    pub const SECTION: &str = "section";
    pub const COMPLIANCE_STATUS: &str = "compliance-status";
}

const DEFAULT_TYPE: &str = "ADMINISTRATIVE";
const DEFAULT_PRIORITY: &str = "MEDIUM";

/// The value of the Custos property `name` among `props`.
pub fn custos_prop<'a>(props: &'a [Property], name: &str) -> Option<&'a str> {
    props.iter().find(|p| p.name == name && p.ns.as_deref() == Some(NS)).map(|p| p.value.as_str())
}

/// Reads an OSCAL catalog.
pub fn read(text: &str, options: &ReadOptions) -> Result<Document, Vec<Issue>> {
    let document = custos_oscal::parse_catalog(text)?;
    let catalog = document.catalog;
    let metadata = &catalog.metadata;
    let key = options
        .catalog_key
        .clone()
        .or_else(|| custos_prop(&metadata.props, prop::CATALOG_KEY).map(str::to_owned))
        .unwrap_or_else(|| format!("oscal:{}", slug(&metadata.title)));
    let framework_type = custos_prop(&metadata.props, prop::FRAMEWORK_TYPE)
        .map(str::to_owned)
        .unwrap_or_else(|| FrameworkType::closest(&[&metadata.title]).to_string());
    let params = ParamIndex::new(&catalog);
    let mut reader = Reader {
        params: &params,
        withdrawn: options.withdrawn,
        nist: framework_type == "NIST_SP_800_53",
        out: Vec::new(),
        skipped: 0,
    };
    for group in &catalog.groups {
        reader.group(group, None, None);
    }
    for control in &catalog.controls {
        reader.control(control, None, None, None);
    }
    let mut warnings = Vec::new();
    if reader.skipped > 0 {
        warnings.push(format!("{} withdrawn controls left out", reader.skipped));
    }
    let requirements = reader.out;
    // The catalog as a whole, less what became requirements: for a faithful export.
    let mut kept = Map::new();
    kept.insert("metadata".into(), serde_json::to_value(metadata).unwrap_or(Value::Null));
    if !catalog.params.is_empty() {
        kept.insert("params".into(), serde_json::to_value(&catalog.params).unwrap_or(Value::Null));
    }
    if let Some(back_matter) = &catalog.back_matter {
        kept.insert("back-matter".into(), serde_json::to_value(back_matter).unwrap_or(Value::Null));
    }
    kept.insert("source-uuid".into(), Value::String(catalog.uuid.clone()));
    let mut attributes = Map::new();
    attributes.insert("oscal".into(), Value::Object(kept));
    let framework = CatalogFramework {
        format: catalog::FORMAT.to_owned(),
        key,
        name: metadata.title.clone(),
        framework_type,
        version: metadata.version.clone(),
        description: metadata.remarks.clone().unwrap_or_default(),
        applicable_regions: vec![],
        industry_sectors: vec![],
        effective_date: None,
        external_id: custos_prop(&metadata.props, prop::EXTERNAL_ID).map(str::to_owned),
        requirement_external_id_prefix: None,
        attributes,
        requirements,
    };
    Ok(Document { format: Format::Oscal, frameworks: vec![framework], mapping_sets: vec![], warnings })
}

/// Lower-case words joined by '-'.
fn slug(text: &str) -> String {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect();
    words.join("-")
}

struct Reader<'a> {
    params: &'a ParamIndex<'a>,
    withdrawn: Withdrawn,
    /// SP 800-53's families imply a requirement type.
    nist: bool,
    out: Vec<CatalogRequirement>,
    skipped: usize,
}

/// An OSCAL object's fields that are not requirement fields, as attributes.
fn oscal_attributes(kind: &str, value: Value, drop: &[&str]) -> Map<String, Value> {
    let mut kept = match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    for key in drop {
        kept.remove(*key);
    }
    kept.insert("kind".into(), Value::String(kind.to_owned()));
    let mut attributes = Map::new();
    attributes.insert("oscal".into(), Value::Object(kept));
    attributes
}

/// The type SP 800-53's control families imply (its technical, physical and personnel families).
fn nist_family_type(family: &str) -> &'static str {
    match family {
        "ac" | "au" | "ia" | "sc" | "si" => "TECHNICAL",
        "pe" => "PHYSICAL",
        "at" | "ps" => "PEOPLE",
        _ => DEFAULT_TYPE,
    }
}

impl Reader<'_> {
    fn text_of(&self, parts: &[Part], name: &str) -> String {
        parts.iter().find(|p| p.name == name).map(|p| render_part_text(p, self.params)).unwrap_or_default()
    }

    fn group(&mut self, group: &Group, parent: Option<&str>, section: Option<&str>) {
        let id = group.label().map(str::to_owned).or_else(|| group.id.clone()).unwrap_or_else(|| group.title.clone());
        let section = section.unwrap_or(&group.title).to_owned();
        let value = serde_json::to_value(group).unwrap_or(Value::Null);
        self.out.push(CatalogRequirement {
            requirement_id: id.clone(),
            title: group.title.clone(),
            section: section.clone(),
            description: self.text_of(&group.parts, "overview"),
            requirement_type: custos_prop(&group.props, prop::REQUIREMENT_TYPE).unwrap_or(DEFAULT_TYPE).to_owned(),
            priority: custos_prop(&group.props, prop::PRIORITY).unwrap_or(DEFAULT_PRIORITY).to_owned(),
            parent: parent.map(str::to_owned),
            external_id: group.id.clone(),
            attributes: oscal_attributes("group", value, &["id", "title", "groups", "controls"]),
        });
        let family = group.id.as_deref().unwrap_or("");
        for g in &group.groups {
            self.group(g, Some(&id), Some(&section));
        }
        for c in &group.controls {
            self.control(c, Some(&id), Some(&section), Some(family));
        }
    }

    fn control(&mut self, control: &Control, parent: Option<&str>, section: Option<&str>, family: Option<&str>) {
        let withdrawn = control.is_withdrawn();
        if withdrawn && self.withdrawn == Withdrawn::Skip {
            self.skipped += 1 + count_enhancements(control);
            return;
        }
        let id = control.label().unwrap_or(&control.id).to_owned();
        let mut title = control.title.clone();
        if withdrawn && !title.ends_with("(withdrawn)") {
            title.push_str(" (withdrawn)");
        }
        let implied = match (self.nist, family) {
            (true, Some(f)) => nist_family_type(f),
            _ => DEFAULT_TYPE,
        };
        let value = serde_json::to_value(control).unwrap_or(Value::Null);
        let mut attributes = oscal_attributes("control", value, &["id", "title", "controls"]);
        if withdrawn && let Some(Value::Object(o)) = attributes.get_mut("oscal") {
            o.insert("withdrawn".into(), json!(true));
        }
        self.out.push(CatalogRequirement {
            requirement_id: id.clone(),
            title,
            section: custos_prop(&control.props, prop::SECTION).or(section).unwrap_or_default().to_owned(),
            description: self.text_of(&control.parts, "statement"),
            requirement_type: custos_prop(&control.props, prop::REQUIREMENT_TYPE).unwrap_or(implied).to_owned(),
            priority: custos_prop(&control.props, prop::PRIORITY).unwrap_or(DEFAULT_PRIORITY).to_owned(),
            parent: parent.map(str::to_owned),
            external_id: Some(control.id.clone()),
            attributes,
        });
        for enhancement in &control.controls {
            self.control(enhancement, Some(&id), section, family);
        }
    }
}

fn count_enhancements(control: &Control) -> usize {
    control.controls.iter().map(|c| 1 + count_enhancements(c)).sum()
}
