//! Policy documents (policy-as-code, seed 004's YAML): read and validated with every problem at
//! once — each with its line and column, the field's path and what was expected. Unknown fields
//! are errors; entity types Custos does not know (yet) are warnings, so that the seed's own
//! example (naming `Lead` and `Contact`, the datasets the DSR issue will register) validates.
//!
//! ```yaml
//! name: GDPR Compliance Policy
//! version: 1.0.0
//! type: gdpr
//! enforcement: {level: hard, scope: company}
//! rules:
//!   - {id: gdpr-001, name: Data Retention, type: retention,
//!      condition: {entity_type: Lead, age_days: 365}, action: delete, severity: high}
//! retention:
//!   policies:
//!     - {entity_type: Lead, retention_days: 365, deletion_method: soft}
//! data_residency: {regions: [us-east-1, eu-west-1], enforce: true}
//! ```

use std::collections::HashSet;

use custos_core::Issue;
use custos_yaml::{MarkedMappingNode, YamlNode as Node, located};
use serde::Serialize;
use serde_json::{Map, Value};

/// The platform's entities a document may govern today; others are warned about and ignored.
pub const KNOWN_ENTITIES: &[&str] = &["incident", "evidence", "vulnerability", "audit_log", "job"];
const TYPES: &[&str] = &["gdpr", "hipaa", "sox", "iso27001", "nist_csf", "soc2", "pci_dss", "ccpa", "custom"];
const LEVELS: &[&str] = &["soft", "hard"];
const SCOPES: &[&str] = &["company", "organization"];
const RULE_TYPES: &[&str] = &["retention", "residency", "access", "encryption", "custom"];
const ACTIONS: &[&str] = &["delete", "archive", "retain", "alert", "block", "encrypt"];
const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const METHODS: &[&str] = &["soft", "hard", "archive"];
const UNITS: &[&str] = &["DAYS", "WEEKS", "MONTHS", "YEARS"];

const TOP: &[&str] =
    &["name", "version", "type", "description", "enforcement", "rules", "retention", "data_residency", "locked"];
const ENFORCEMENT: &[&str] = &["level", "scope"];
const RULE: &[&str] = &["id", "name", "type", "description", "condition", "action", "severity"];
const CONDITION: &[&str] = &["entity_type", "age_days", "data_classification", "incident_category", "region"];
const RETENTION: &[&str] = &["policies"];
const RETENTION_ENTRY: &[&str] = &[
    "name",
    "entity_type",
    "retention_days",
    "retention_period",
    "retention_unit",
    "deletion_method",
    "legal_hold_override",
];
const RESIDENCY: &[&str] = &["regions", "enforce", "primary_region", "block_cross_region", "storage_prefix"];

/// A policy document as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDocument {
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub policy_type: String,
    pub description: Option<String>,
    pub enforcement_level: String,
    pub enforcement_scope: String,
    pub locked: bool,
    pub rules: Vec<Rule>,
    pub retention: Vec<RetentionEntry>,
    pub data_residency: Option<Residency>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rule_type: String,
    pub condition: Map<String, Value>,
    pub action: String,
    pub severity: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionEntry {
    pub entity_type: String,
    pub retention_period: i64,
    pub retention_unit: String,
    pub deletion_method: String,
    pub legal_hold_override: bool,
    /// Whether Custos governs this entity today (else the entry waits for it).
    pub known: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Residency {
    pub regions: Vec<String>,
    pub enforce: bool,
    pub primary_region: Option<String>,
    pub block_cross_region: bool,
    pub storage_prefix: Option<String>,
}

/// What validating a document found: the document when it has no error, every error and every
/// warning, each located.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Validation {
    pub document: Option<PolicyDocument>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

/// Reads and validates `text`; never panics, whatever it is given.
pub fn validate(text: &str) -> Validation {
    let root = match custos_yaml::parse(text) {
        Ok(root) => root,
        Err(issue) => return Validation { errors: vec![issue], ..Validation::default() },
    };
    let mut r = Reader::default();
    let document = r.document(&root);
    Validation { document: if r.errors.is_empty() { document } else { None }, errors: r.errors, warnings: r.warnings }
}

#[derive(Default)]
struct Reader {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

fn one_of(values: &[&str]) -> String {
    format!("one of {}", values.join(", "))
}

impl Reader {
    fn error(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        self.errors.push(located(Issue::new(message), path, node));
    }

    fn mapping<'a>(&mut self, path: &str, node: &'a Node, allowed: &[&str]) -> Option<&'a MarkedMappingNode> {
        let Some(map) = node.as_mapping() else {
            self.error(path, node, "expected a mapping");
            return None;
        };
        for (key, value) in map.iter() {
            if !allowed.contains(&key.as_str()) {
                let issue = Issue::new(format!("unknown field {:?}: expected {}", key.as_str(), one_of(allowed)));
                let issue = issue.at(format!("{path}.{}", key.as_str()));
                let issue = match key.span().start().or(value.span().start()) {
                    Some(m) => issue.position(m.line(), m.column()),
                    None => issue,
                };
                self.errors.push(issue);
            }
        }
        Some(map)
    }

    /// A text field; `required` says whether its absence is an error.
    fn text(&mut self, path: &str, node: &Node, map: &MarkedMappingNode, key: &str, required: bool) -> Option<String> {
        let field = format!("{path}.{key}");
        match map.get_node(key) {
            None => {
                if required {
                    self.error(path, node, format!("{key} is required"));
                }
                None
            }
            Some(value) => match value.as_scalar().map(|s| s.as_str().trim()) {
                Some("") => {
                    self.error(&field, value, "expected a non-empty text");
                    None
                }
                Some(s) => Some(s.to_owned()),
                None => {
                    self.error(&field, value, "expected a text");
                    None
                }
            },
        }
    }

    /// A text field whose value must be one of `values` (compared case-insensitively, answered
    /// as listed).
    fn choice(
        &mut self,
        path: &str,
        node: &Node,
        map: &MarkedMappingNode,
        key: &str,
        values: &[&str],
        required: bool,
    ) -> Option<String> {
        let raw = self.text(path, node, map, key, required)?;
        match values.iter().find(|v| v.eq_ignore_ascii_case(&raw)) {
            Some(v) => Some((*v).to_owned()),
            None => {
                let value = map.get_node(key).unwrap_or(node);
                self.error(
                    &format!("{path}.{key}"),
                    value,
                    format!("{raw:?} is not allowed: expected {}", one_of(values)),
                );
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, map: &MarkedMappingNode, key: &str) -> Option<bool> {
        let value = map.get_node(key)?;
        match value.as_scalar().and_then(|s| s.as_bool()) {
            Some(b) => Some(b),
            None => {
                self.error(&format!("{path}.{key}"), value, "expected true or false");
                None
            }
        }
    }

    fn integer(
        &mut self,
        path: &str,
        map: &MarkedMappingNode,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let value = map.get_node(key)?;
        match value.as_scalar().and_then(|s| s.as_i64()) {
            Some(n) if range.contains(&n) => Some(n),
            _ => {
                self.error(
                    &format!("{path}.{key}"),
                    value,
                    format!("expected a whole number from {} to {}", range.start(), range.end()),
                );
                None
            }
        }
    }

    fn sequence<'a>(&mut self, path: &str, node: &'a Node) -> &'a [Node] {
        match node.as_sequence() {
            Some(seq) => seq.as_slice(),
            None => {
                self.error(path, node, "expected a list");
                &[]
            }
        }
    }

    fn document(&mut self, root: &Node) -> Option<PolicyDocument> {
        let top = self.mapping("$", root, TOP)?;
        let name = self.text("$", root, top, "name", true);
        let version = self.text("$", root, top, "version", true);
        let policy_type = self.choice("$", root, top, "type", TYPES, true);
        let description = self.text("$", root, top, "description", false);
        let locked = self.boolean("$", top, "locked").unwrap_or(false);
        let (mut level, mut scope) = (None, None);
        match top.get_node("enforcement") {
            None => self.error("$", root, "enforcement is required (level: soft or hard; scope: company)"),
            Some(node) => {
                if let Some(map) = self.mapping("$.enforcement", node, ENFORCEMENT) {
                    level = self.choice("$.enforcement", node, map, "level", LEVELS, true);
                    scope = self.choice("$.enforcement", node, map, "scope", SCOPES, false).or(Some("company".into()));
                }
            }
        }
        let mut rules = Vec::new();
        if let Some(node) = top.get_node("rules") {
            let mut ids = HashSet::new();
            for (i, rule) in self.sequence("$.rules", node).iter().enumerate() {
                let path = format!("$.rules[{i}]");
                // Ids are unique whether or not the rest of the rule reads.
                if let Some(id) = rule.as_mapping().and_then(|m| m.get_scalar("id")) {
                    let id = id.as_str().trim().to_owned();
                    if !id.is_empty() && !ids.insert(id.clone()) {
                        self.error(&format!("{path}.id"), rule, format!("the rule id {id:?} is used twice"));
                    }
                }
                if let Some(r) = self.rule(&path, rule) {
                    rules.push(r);
                }
            }
        }
        let mut retention = Vec::new();
        if let Some(node) = top.get_node("retention")
            && let Some(map) = self.mapping("$.retention", node, RETENTION)
        {
            match map.get_node("policies") {
                None => self.error("$.retention", node, "policies is required"),
                Some(list) => {
                    let mut seen = HashSet::new();
                    for (i, entry) in self.sequence("$.retention.policies", list).iter().enumerate() {
                        let path = format!("$.retention.policies[{i}]");
                        if let Some(e) = self.retention_entry(&path, entry) {
                            if !seen.insert(e.entity_type.to_ascii_lowercase()) {
                                self.error(&path, entry, format!("a second retention for {:?}", e.entity_type));
                            }
                            retention.push(e);
                        }
                    }
                }
            }
        }
        let data_residency = match top.get_node("data_residency") {
            Some(node) => self.residency("$.data_residency", node),
            None => None,
        };
        Some(PolicyDocument {
            name: name?,
            version: version?,
            policy_type: policy_type?,
            description,
            enforcement_level: level?,
            enforcement_scope: scope?,
            locked,
            rules,
            retention,
            data_residency,
        })
    }

    fn entity(&mut self, path: &str, node: &Node, map: &MarkedMappingNode, required: bool) -> Option<(String, bool)> {
        let raw = self.text(path, node, map, "entity_type", required)?;
        let known = KNOWN_ENTITIES.iter().any(|k| k.eq_ignore_ascii_case(&raw));
        if !known {
            let value = map.get_node("entity_type").unwrap_or(node);
            self.warnings.push(located(
                Issue::new(format!(
                    "entity type {raw:?} is not known (yet): Custos governs {}; this part waits until it is registered",
                    KNOWN_ENTITIES.join(", ")
                )),
                &format!("{path}.entity_type"),
                value,
            ));
        }
        Some((if known { raw.to_ascii_lowercase() } else { raw }, known))
    }

    fn rule(&mut self, path: &str, node: &Node) -> Option<Rule> {
        let map = self.mapping(path, node, RULE)?;
        let id = self.text(path, node, map, "id", true);
        let name = self.text(path, node, map, "name", true);
        let rule_type = self.choice(path, node, map, "type", RULE_TYPES, true);
        let action = self.choice(path, node, map, "action", ACTIONS, true);
        let severity = self.choice(path, node, map, "severity", SEVERITIES, false).or(Some("medium".into()));
        self.text(path, node, map, "description", false);
        let mut condition = Map::new();
        if let Some(cond) = map.get_node("condition") {
            let cpath = format!("{path}.condition");
            if let Some(cmap) = self.mapping(&cpath, cond, CONDITION) {
                if let Some((entity, _)) = self.entity(&cpath, cond, cmap, false) {
                    condition.insert("entity_type".into(), Value::String(entity));
                }
                if let Some(days) = self.integer(&cpath, cmap, "age_days", 0..=36_500) {
                    condition.insert("age_days".into(), Value::from(days));
                }
                for key in ["data_classification", "incident_category", "region"] {
                    if let Some(v) = self.text(&cpath, cond, cmap, key, false) {
                        condition.insert(key.into(), Value::String(v));
                    }
                }
            }
        }
        Some(Rule { id: id?, name: name?, rule_type: rule_type?, condition, action: action?, severity: severity? })
    }

    fn retention_entry(&mut self, path: &str, node: &Node) -> Option<RetentionEntry> {
        let map = self.mapping(path, node, RETENTION_ENTRY)?;
        let (entity_type, known) = self.entity(path, node, map, true)?;
        self.text(path, node, map, "name", false);
        let days = self.integer(path, map, "retention_days", 1..=36_500);
        let period = self.integer(path, map, "retention_period", 1..=36_500);
        let unit = self.choice(path, node, map, "retention_unit", UNITS, false);
        let (retention_period, retention_unit) = match (days, period) {
            (Some(d), None) => (d, "DAYS".to_owned()),
            (None, Some(p)) => (p, unit.unwrap_or_else(|| "DAYS".into())),
            (Some(_), Some(_)) => {
                self.error(path, node, "give retention_days, or retention_period with retention_unit, not both");
                return None;
            }
            (None, None) => {
                if !map.contains_key("retention_days") && !map.contains_key("retention_period") {
                    self.error(path, node, "retention_days (or retention_period with retention_unit) is required");
                }
                return None;
            }
        };
        let deletion_method =
            self.choice(path, node, map, "deletion_method", METHODS, false).unwrap_or_else(|| "soft".into());
        let legal_hold_override = self.boolean(path, map, "legal_hold_override").unwrap_or(false);
        Some(RetentionEntry {
            entity_type,
            retention_period,
            retention_unit,
            deletion_method,
            legal_hold_override,
            known,
        })
    }

    fn residency(&mut self, path: &str, node: &Node) -> Option<Residency> {
        let map = self.mapping(path, node, RESIDENCY)?;
        let mut regions = Vec::new();
        match map.get_node("regions") {
            None => self.error(path, node, "regions is required: the regions data may be kept in"),
            Some(list) => {
                let items = self.sequence(&format!("{path}.regions"), list);
                if items.is_empty() && list.as_sequence().is_some() {
                    self.error(&format!("{path}.regions"), list, "expected at least one region");
                }
                for (i, item) in items.iter().enumerate() {
                    let ok = item.as_scalar().map(|s| s.as_str().trim().to_owned()).filter(|s| {
                        !s.is_empty()
                            && s.len() <= 64
                            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                    match ok {
                        Some(r) => regions.push(r),
                        None => self.error(
                            &format!("{path}.regions[{i}]"),
                            item,
                            "expected a region name (letters, digits, dashes, e.g. eu-west-1)",
                        ),
                    }
                }
            }
        }
        let enforce = self.boolean(path, map, "enforce").unwrap_or(false);
        let block_cross_region = self.boolean(path, map, "block_cross_region").unwrap_or(false);
        let primary_region = self.text(path, node, map, "primary_region", false);
        let storage_prefix = self.text(path, node, map, "storage_prefix", false);
        if let Some(p) = &primary_region
            && !regions.is_empty()
            && !regions.contains(p)
        {
            let at = map.get_node("primary_region").unwrap_or(node);
            self.error(&format!("{path}.primary_region"), at, format!("{p:?} is not one of the regions listed"));
        }
        Some(Residency { regions, enforce, primary_region, block_cross_region, storage_prefix })
    }
}

/// The document as JSON, for storing beside its text.
pub fn as_json(doc: &PolicyDocument) -> Value {
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 004's example, exactly as it stands.
    const SEED: &str = include_str!("../testdata/seed-004-policy.yaml");

    #[test]
    fn the_seeds_example_validates_with_warnings_for_entities_not_known_yet() {
        let v = validate(SEED);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        let doc = v.document.expect("a document");
        assert_eq!(
            (doc.name.as_str(), doc.version.as_str(), doc.policy_type.as_str()),
            ("GDPR Compliance Policy", "1.0.0", "gdpr")
        );
        assert_eq!((doc.enforcement_level.as_str(), doc.enforcement_scope.as_str()), ("hard", "company"));
        assert_eq!(doc.rules[0].condition["age_days"], 365);
        assert_eq!(doc.retention.len(), 2);
        assert_eq!(doc.data_residency.as_ref().unwrap().regions, ["us-east-1", "eu-west-1"]);
        // Lead in the rule and in retention, Contact in retention.
        assert_eq!(v.warnings.len(), 3, "{:?}", v.warnings);
        let w = &v.warnings[0];
        assert_eq!((w.path.as_deref(), w.line), (Some("$.rules[0].condition.entity_type"), Some(14)));
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_place_and_what_was_expected() {
        let text = "name: x
version: 1
type: gdprr
colour: blue
enforcement:
  level: medium
rules:
  - id: r1
    name: one
    type: retention
    action: shred
  - id: r1
    name: two
    type: retention
    action: delete
    condition: {age_days: -3}
retention:
  policies:
    - entity_type: incident
      retention_days: 30
      retention_period: 2
    - entity_type: incident
      retention_days: 10
      deletion_method: burn
data_residency:
  regions: []
";
        let v = validate(text);
        assert!(v.document.is_none());
        let got: Vec<(String, Option<usize>)> =
            v.errors.iter().map(|i| (i.path.clone().unwrap_or_default(), i.line)).collect();
        for (path, line) in [
            ("$.type", 3),
            ("$.colour", 4),
            ("$.enforcement.level", 6),
            ("$.rules[0].action", 11),
            ("$.rules[1].condition.age_days", 16),
            ("$.rules[1].id", 12),
            ("$.retention.policies[0]", 19),
            ("$.retention.policies[1].deletion_method", 24),
            ("$.data_residency.regions", 26),
        ] {
            assert!(got.contains(&(path.to_owned(), Some(line))), "{path} at line {line}: {got:?}");
        }
        let typ = v.errors.iter().find(|i| i.path.as_deref() == Some("$.type")).unwrap();
        assert!(typ.message.contains("expected one of gdpr, hipaa"), "{}", typ.message);
        let colour = v.errors.iter().find(|i| i.path.as_deref() == Some("$.colour")).unwrap();
        assert!(colour.message.contains("unknown field"), "{}", colour.message);
    }

    #[test]
    fn what_is_not_yaml_or_not_a_mapping_is_one_located_error() {
        let v = validate("name: [unclosed\n");
        assert_eq!(v.errors.len(), 1);
        assert!(v.errors[0].line.is_some());
        let v = validate("- a\n- b\n");
        assert_eq!(v.errors.len(), 1, "{:?}", v.errors);
        let v = validate("");
        assert!(!v.errors.is_empty());
    }

    mod never_panics {
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn on_any_text(text in "\\PC{0,400}") {
                let _ = super::super::validate(&text);
            }

            #[test]
            fn on_the_seed_with_any_line_changed(line in 0usize..33, replacement in "[ -~]{0,40}") {
                let mut lines: Vec<String> = super::SEED.lines().map(str::to_owned).collect();
                let i = line % lines.len();
                lines[i] = replacement;
                let _ = super::super::validate(&lines.join("\n"));
            }
        }
    }
}
