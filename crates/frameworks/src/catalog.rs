//! The built-in framework catalogue and `custos seed`.
//!
//! A catalogue entry is a YAML data file (format `custos-catalog/v1`, documented in
//! `crates/frameworks/catalog/README.md`). The built-in files are compiled into the binary;
//! operators can add their own with `custos seed --catalog-dir DIR`. Seeding is idempotent: a
//! framework is keyed by its catalogue `key` and `version` (a newer version is a framework of its
//! own, beside the old one and its assessments), a requirement by its `requirement_id`, and only
//! what is missing is created — so re-running after a catalogue grows adds just the new
//! requirements.

use std::path::Path;

use custos_core::filter::{Choice, parse_date};
use custos_core::{Problem, RequestCtx};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::import::{Document, Format, FrameworkOutcome, MappingOutcome, MappingSet};
use crate::model::{FrameworkType, Priority, RequirementType};
use crate::service::{FrameworksError, FrameworksService};

pub const FORMAT: &str = "custos-catalog/v1";
/// The format of a mapping file (`crates/frameworks/catalog/README.md`, "Mappings").
pub const MAPPING_FORMAT: &str = "custos-mapping/v1";

/// The mapping files shipped with Custos: (file name, contents).
pub const BUILTIN_MAPPINGS: &[(&str, &str)] = &[
    ("nist-csf-2.0--iso27001-2022.yaml", include_str!("../catalog/mappings/nist-csf-2.0--iso27001-2022.yaml")),
    ("iso27001-2022--soc2.yaml", include_str!("../catalog/mappings/iso27001-2022--soc2.yaml")),
    ("iso27001-2022--pci-dss-4.0.yaml", include_str!("../catalog/mappings/iso27001-2022--pci-dss-4.0.yaml")),
    ("soc2--pci-dss-4.0.yaml", include_str!("../catalog/mappings/soc2--pci-dss-4.0.yaml")),
    ("gdpr--iso27001-2022.yaml", include_str!("../catalog/mappings/gdpr--iso27001-2022.yaml")),
];

/// A mapping set: requirements of one catalogue framework related to another's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMapping {
    pub format: String,
    pub key: String,
    pub name: String,
    /// The frameworks' catalogue keys.
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub origin: String,
    pub mappings: Vec<CatalogMappingPair>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMappingPair {
    pub source: String,
    pub target: String,
    pub relationship: String,
    #[serde(default)]
    pub rationale: String,
}

/// NIST OLIR's set relations, as mappings store them.
pub const RELATIONSHIPS: &[&str] = &["equal", "subset", "superset", "intersect"];

/// Parses and checks one mapping file; errors name the file and every problem of it.
pub fn parse_mapping(file_name: &str, text: &str) -> Result<CatalogMapping, Problem> {
    let bad = |details: Value| Problem::invalid(format!("Invalid mapping file {file_name}"), details);
    let set: CatalogMapping = serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string().into()))?;
    match mapping_problems(&set) {
        problems if problems.is_empty() => Ok(set),
        problems if problems.len() == 1 => Err(bad(problems[0].clone().into())),
        problems => Err(bad(problems.into())),
    }
}

/// Every problem of a mapping set (empty when it is sound).
pub fn mapping_problems(set: &CatalogMapping) -> Vec<String> {
    let mut problems = Vec::new();
    if set.format != MAPPING_FORMAT {
        problems.push(format!("format must be {MAPPING_FORMAT:?}, found {:?}", set.format));
    }
    let mut seen = std::collections::HashSet::new();
    for pair in &set.mappings {
        if !RELATIONSHIPS.contains(&pair.relationship.as_str()) {
            problems.push(format!(
                "{} → {}: relationship {:?} is not one of {}",
                pair.source,
                pair.target,
                pair.relationship,
                RELATIONSHIPS.join(", ")
            ));
        }
        if !seen.insert((pair.source.as_str(), pair.target.as_str())) {
            problems.push(format!("{} → {} appears twice", pair.source, pair.target));
        }
    }
    problems
}

/// The built-in mapping sets, parsed.
pub fn builtin_mappings() -> Result<Vec<CatalogMapping>, Problem> {
    BUILTIN_MAPPINGS.iter().map(|(name, text)| parse_mapping(name, text)).collect()
}

/// The catalogue files shipped with Custos: (file name, contents).
pub const BUILTIN: &[(&str, &str)] = &[
    ("gdpr.yaml", include_str!("../catalog/gdpr.yaml")),
    ("iso27001-2022.yaml", include_str!("../catalog/iso27001-2022.yaml")),
    ("nist-csf-2.0.yaml", include_str!("../catalog/nist-csf-2.0.yaml")),
    ("hipaa.yaml", include_str!("../catalog/hipaa.yaml")),
    ("sox.yaml", include_str!("../catalog/sox.yaml")),
    ("soc2.yaml", include_str!("../catalog/soc2.yaml")),
    ("pci-dss-4.0.yaml", include_str!("../catalog/pci-dss-4.0.yaml")),
    ("iso20000-1-2018.yaml", include_str!("../catalog/iso20000-1-2018.yaml")),
];

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFramework {
    pub format: String,
    pub key: String,
    pub name: String,
    pub framework_type: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applicable_regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub industry_sectors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
    /// The framework's identifier in the document it came from (a framework library's URN), by
    /// which mapping files name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Gives each requirement without an `external_id` of its own one: this prefix followed by
    /// its `requirement_id` in lower case (how framework libraries build their URNs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirement_external_id_prefix: Option<String>,
    /// What the source document says beyond these fields (OSCAL metadata, a library's
    /// provider and translations), kept for export.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    pub requirements: Vec<CatalogRequirement>,
}

impl CatalogFramework {
    /// A requirement's external id: its own, or the one the framework's prefix gives it.
    pub fn external_id_of(&self, r: &CatalogRequirement) -> Option<String> {
        r.external_id.clone().or_else(|| {
            self.requirement_external_id_prefix.as_ref().map(|p| format!("{p}{}", r.requirement_id.to_lowercase()))
        })
    }

    /// Every problem of the entry, each naming where it is (empty when the entry is sound).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.format != FORMAT {
            problems.push(format!("format must be {FORMAT:?}, found {:?}", self.format));
        }
        for (field, value) in [("key", &self.key), ("name", &self.name), ("version", &self.version)] {
            if value.trim().is_empty() {
                problems.push(format!("the framework needs a {field}"));
            }
        }
        // The limits the API holds a framework and its requirements to, so that what is
        // imported can be edited afterwards.
        for (field, value, max) in [
            ("key", &self.key, 200),
            ("name", &self.name, 200),
            ("version", &self.version, 50),
            ("description", &self.description, 20_000),
        ] {
            if let Some(p) = too_long_or_nul(value, max) {
                problems.push(format!("the framework's {field} {p}"));
            }
        }
        if let Err(p) = FrameworkType::parse_field("framework_type", &self.framework_type) {
            problems.push(p.details.as_str().unwrap_or_default().to_owned());
        }
        if let Some(d) = &self.effective_date
            && let Err(p) = parse_date("effective_date", d)
        {
            problems.push(p.details.as_str().unwrap_or_default().to_owned());
        }
        let mut seen = std::collections::HashSet::new();
        let mut external = std::collections::HashSet::new();
        for r in &self.requirements {
            let mut at = |what: String| problems.push(format!("requirement {}: {what}", r.requirement_id));
            if let Err(p) = RequirementType::parse_field("requirement_type", &r.requirement_type) {
                at(p.details.as_str().unwrap_or_default().to_owned());
            }
            if let Err(p) = Priority::parse_field("priority", &r.priority) {
                at(p.details.as_str().unwrap_or_default().to_owned());
            }
            if r.requirement_id.trim().is_empty() || r.title.trim().is_empty() {
                at("every requirement needs a requirement_id and a title".into());
            }
            for (field, value, max) in [
                ("requirement_id", &r.requirement_id, 100),
                ("title", &r.title, 500),
                ("section", &r.section, 200),
                ("description", &r.description, 20_000),
            ] {
                if let Some(p) = too_long_or_nul(value, max) {
                    at(format!("{field} {p}"));
                }
            }
            // The parent is looked for before the requirement itself counts as seen: a
            // requirement naming itself as parent is refused, not silently stored without one.
            if let Some(parent) = &r.parent
                && !seen.contains(parent.as_str())
            {
                at(format!("parent {parent} must be listed before it"));
            }
            if !seen.insert(r.requirement_id.as_str()) {
                at("requirement_id appears twice".into());
            }
            if let Some(id) = self.external_id_of(r)
                && !external.insert(id.clone())
            {
                at(format!("external_id {id} appears twice"));
            }
        }
        problems
    }
}

/// Why a text cannot be stored as is: longer than `max` characters, or holding a NUL character
/// (which PostgreSQL text cannot).
fn too_long_or_nul(value: &str, max: usize) -> Option<String> {
    if value.contains('\0') {
        return Some("holds a NUL character".to_owned());
    }
    let n = value.chars().count();
    (n > max).then(|| format!("is {n} characters long, more than {max}"))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRequirement {
    pub requirement_id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub section: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub requirement_type: String,
    pub priority: String,
    /// `requirement_id` of the parent requirement in the same file, for hierarchical catalogues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The requirement's identifier in the document it came from: a library URN, an OSCAL id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// What the source says beyond these fields (OSCAL parts and params, library annotations).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// Parses and checks one catalogue file; errors name the file and every problem of it (for
/// YAML errors, the line and column).
pub fn parse(file_name: &str, text: &str) -> Result<CatalogFramework, Problem> {
    let bad = |details: Value| Problem::invalid(format!("Invalid catalogue file {file_name}"), details);
    let catalog: CatalogFramework = serde_yaml_ng::from_str(text).map_err(|e| bad(e.to_string().into()))?;
    match catalog.problems() {
        problems if problems.is_empty() => Ok(catalog),
        problems if problems.len() == 1 => Err(bad(problems[0].clone().into())),
        problems => Err(bad(problems.into())),
    }
}

/// The built-in catalogue, parsed.
pub fn builtin() -> Result<Vec<CatalogFramework>, Problem> {
    BUILTIN.iter().map(|(name, text)| parse(name, text)).collect()
}

/// The `*.yaml`/`*.yml` files of `dir` in file-name order, as (path, text), with whether each
/// is a mapping file (its `format` says so).
fn read_dir_files(dir: &Path) -> Result<Vec<(String, String, bool)>, Problem> {
    let read_err =
        |e: std::io::Error| Problem::invalid("Cannot read catalogue directory", format!("{}: {e}", dir.display()));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(read_err)?;
            let mapping = is_mapping_file(&text);
            Ok((p.display().to_string(), text, mapping))
        })
        .collect()
}

/// Whether a Custos YAML file is a mapping file (its `format` says so) rather than a catalogue.
pub fn is_mapping_file(text: &str) -> bool {
    text.lines().any(|l| l.trim() == format!("format: {MAPPING_FORMAT}"))
}

/// Every framework file (`*.yaml`/`*.yml`, not a mapping file) of `dir`, parsed, in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<CatalogFramework>, Problem> {
    read_dir_files(dir)?.into_iter().filter(|(_, _, m)| !m).map(|(name, text, _)| parse(&name, &text)).collect()
}

/// Every mapping file of `dir`, parsed, in file-name order.
pub fn load_mappings_dir(dir: &Path) -> Result<Vec<CatalogMapping>, Problem> {
    read_dir_files(dir)?.into_iter().filter(|(_, _, m)| *m).map(|(name, text, _)| parse_mapping(&name, &text)).collect()
}

impl FrameworksService {
    /// Loads catalogue entries into the caller's organisation, creating only what is missing.
    pub async fn seed(
        &self,
        ctx: &RequestCtx,
        catalogs: &[CatalogFramework],
    ) -> Result<Vec<FrameworkOutcome>, FrameworksError> {
        let document =
            Document { format: Format::Custos, frameworks: catalogs.to_vec(), mapping_sets: vec![], warnings: vec![] };
        Ok(self.import_document(ctx, &document, false).await?.frameworks)
    }

    /// Loads mapping sets into the caller's organisation between the catalogue frameworks it
    /// has, creating only the pairs that are missing; each created pair is audited.
    pub async fn seed_mappings(
        &self,
        ctx: &RequestCtx,
        sets: &[CatalogMapping],
    ) -> Result<Vec<MappingOutcome>, FrameworksError> {
        let document = Document {
            format: Format::Custos,
            frameworks: vec![],
            mapping_sets: sets.iter().map(MappingSet::from).collect(),
            warnings: vec![],
        };
        Ok(self.import_document(ctx, &document, false).await?.mapping_sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_is_complete() {
        let all = builtin().expect("built-in catalogue parses");
        let gdpr = all.iter().find(|c| c.key == "gdpr").unwrap();
        let ids: Vec<_> = gdpr.requirements.iter().map(|r| r.requirement_id.as_str()).collect();
        let expected: Vec<String> = (5..=49).map(|n| format!("Art. {n}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(gdpr.requirements[27].title, "Security of processing");

        let iso = all.iter().find(|c| c.key == "iso27001-2022").unwrap();
        // Clauses 4–10 (the management system), then the 93 Annex A controls.
        let clauses: Vec<_> = iso
            .requirements
            .iter()
            .take_while(|r| !r.requirement_id.starts_with("A."))
            .map(|r| r.requirement_id.as_str())
            .collect();
        assert_eq!(clauses[0], "4");
        assert_eq!(clauses[clauses.len() - 1], "10.2");
        for clause in ["4.3", "6.1.2", "6.1.3", "6.3", "7.5.3", "9.2.2", "9.3.3", "10.1"] {
            assert!(clauses.contains(&clause), "{clause}");
        }
        let mut expected = Vec::new();
        for (theme, n) in [(5, 37), (6, 8), (7, 14), (8, 34)] {
            expected.extend((1..=n).map(|i| format!("A.{theme}.{i}")));
        }
        let ids: Vec<_> = iso.requirements.iter().skip(clauses.len()).map(|r| r.requirement_id.clone()).collect();
        assert_eq!(ids, expected);
        assert_eq!(ids.len(), 93);
        let by_id = |id: &str| iso.requirements.iter().find(|r| r.requirement_id == id).unwrap().title.clone();
        assert_eq!(by_id("A.5.7"), "Threat intelligence");
        assert_eq!(by_id("A.8.34"), "Protection of information systems during audit testing");
        assert_eq!(by_id("6.1.3"), "Information security risk treatment");

        // NIST CSF 2.0: 6 functions, 22 categories, 106 subcategories, each under its parent.
        let csf = all.iter().find(|c| c.key == "nist-csf-2.0").unwrap();
        let level = |r: &CatalogRequirement| match (r.requirement_id.contains('.'), r.requirement_id.contains('-')) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        };
        let per_level = [0, 1, 2].map(|l| csf.requirements.iter().filter(|r| level(r) == l).count());
        assert_eq!(per_level, [6, 22, 106]);
        for r in &csf.requirements {
            let expected_parent = match level(r) {
                0 => None,
                1 => r.requirement_id.split('.').next().map(str::to_owned),
                _ => r.requirement_id.split('-').next().map(str::to_owned),
            };
            assert_eq!(r.parent, expected_parent, "{}", r.requirement_id);
        }

        // HIPAA: every implementation specification says whether it is required or addressable.
        let hipaa = all.iter().find(|c| c.key == "hipaa").unwrap();
        let marked = |suffix: &str| hipaa.requirements.iter().filter(|r| r.title.ends_with(suffix)).count();
        assert!(
            marked(" (Required)") >= 20 && marked(" (Addressable)") == 22,
            "{} {}",
            marked(" (Required)"),
            marked(" (Addressable)")
        );
        assert!(hipaa.requirements.iter().any(|r| r.requirement_id == "164.308(a)(1)(ii)(A)"));
        assert!(hipaa.requirements.iter().any(|r| r.requirement_id == "164.404"));

        // SOC 2: CC1–CC9, A1, C1, PI1 and P1–P8, each criterion under its series.
        let soc2 = all.iter().find(|c| c.key == "soc2-tsc-2017").unwrap();
        let series: Vec<_> =
            soc2.requirements.iter().filter(|r| r.parent.is_none()).map(|r| r.requirement_id.as_str()).collect();
        let mut expected: Vec<String> = (1..=9).map(|n| format!("CC{n}")).collect();
        expected.extend(["A1", "C1", "PI1"].map(String::from));
        expected.extend((1..=8).map(|n| format!("P{n}")));
        assert_eq!(series, expected);
        for id in ["CC6.1", "CC6.8", "CC7.5", "CC8.1", "CC9.2", "A1.3", "C1.2", "PI1.5", "P6.7", "P8.1"] {
            assert!(soc2.requirements.iter().any(|r| r.requirement_id == id), "{id}");
        }

        // PCI DSS 4.0: the 12 principal requirements, their numbered sub-requirements below them.
        let pci = all.iter().find(|c| c.key == "pci-dss-4.0").unwrap();
        let principal: Vec<_> =
            pci.requirements.iter().filter(|r| r.parent.is_none()).map(|r| r.requirement_id.clone()).collect();
        assert_eq!(principal, (1..=12).map(|n| n.to_string()).collect::<Vec<_>>());
        for r in pci.requirements.iter().filter(|r| r.parent.is_some()) {
            let parent = r.requirement_id.rsplit_once('.').map(|(p, _)| p.to_owned());
            assert_eq!(r.parent, parent, "{}", r.requirement_id);
        }
        assert!(pci.requirements.iter().any(|r| r.requirement_id == "8.3.6"));

        // ISO/IEC 20000-1:2018: clauses 4–10.
        let itsm = all.iter().find(|c| c.key == "iso20000-1-2018").unwrap();
        let clauses: Vec<_> =
            itsm.requirements.iter().filter(|r| r.parent.is_none()).map(|r| r.requirement_id.clone()).collect();
        assert_eq!(clauses, (4..=10).map(|n| n.to_string()).collect::<Vec<_>>());
        assert!(itsm.requirements.iter().any(|r| r.requirement_id == "8.6.1"));

        let sox = all.iter().find(|c| c.key == "sox").unwrap();
        for id in ["302", "404(a)", "404(b)", "ITGC-APD", "ITGC-PC", "ITGC-PD", "ITGC-CO"] {
            assert!(sox.requirements.iter().any(|r| r.requirement_id == id), "{id}");
        }
    }

    #[test]
    fn builtin_mappings_parse_and_name_built_in_frameworks() {
        let frameworks = builtin().unwrap();
        let sets = builtin_mappings().expect("built-in mappings parse");
        assert_eq!(sets.len(), BUILTIN_MAPPINGS.len());
        for set in &sets {
            for key in [&set.source, &set.target] {
                let fw = frameworks.iter().find(|f| &f.key == key).unwrap_or_else(|| panic!("{}: {key}", set.key));
                let side = if key == &set.source {
                    |p: &CatalogMappingPair| p.source.clone()
                } else {
                    |p: &CatalogMappingPair| p.target.clone()
                };
                for pair in &set.mappings {
                    let id = side(pair);
                    assert!(fw.requirements.iter().any(|r| r.requirement_id == id), "{}: {key} {id}", set.key);
                }
            }
        }
        assert_eq!(sets.iter().find(|s| s.key == "nist-csf-2.0--iso27001-2022").unwrap().mappings.len(), 341);
    }

    #[test]
    fn bad_mapping_files_are_refused_with_their_name_and_the_reason() {
        let head = "format: custos-mapping/v1\nkey: k\nname: n\nsource: a\ntarget: b\nmappings:\n";
        let err = parse_mapping("m.yaml", &format!("{head}  - {{ source: X, target: Y, relationship: same }}\n"))
            .unwrap_err();
        assert!(err.error.contains("m.yaml") && err.details.to_string().contains("relationship"), "{err:?}");
        let twice = format!(
            "{head}  - {{ source: X, target: Y, relationship: equal }}\n  - {{ source: X, target: Y, relationship: subset }}\n"
        );
        assert!(parse_mapping("m.yaml", &twice).unwrap_err().details.to_string().contains("twice"));
        let wrong = "format: custos-catalog/v1\nkey: k\nname: n\nsource: a\ntarget: b\nmappings: []\n";
        assert!(parse_mapping("m.yaml", wrong).unwrap_err().details.to_string().contains("custos-mapping/v1"));
        let unknown = format!("{head}  - {{ source: X, target: Y, relationship: equal, weight: 1 }}\n");
        assert!(parse_mapping("m.yaml", &unknown).unwrap_err().details.to_string().contains("weight"));
    }

    #[test]
    fn bad_files_are_rejected_with_their_name() {
        let err = parse("x.yaml", "format: custos-catalog/v1\nkey: k\n").unwrap_err();
        assert!(err.error.contains("x.yaml"));
        let wrong_type =
            "format: custos-catalog/v1\nkey: k\nname: n\nframework_type: NOPE\nversion: '1'\nrequirements: []\n";
        assert!(parse("y.yaml", wrong_type).unwrap_err().details.to_string().contains("NOPE"));
        let own_parent = "format: custos-catalog/v1\nkey: k\nname: n\nframework_type: CUSTOM\nversion: '1'\nrequirements:\n  - { requirement_id: R1, title: t, requirement_type: LEGAL, priority: LOW, parent: R1 }\n";
        assert!(parse("z.yaml", own_parent).unwrap_err().details.to_string().contains("parent R1"));
    }
}
