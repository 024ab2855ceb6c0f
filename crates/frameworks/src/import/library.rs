//! The framework and mapping libraries of the largest open-source GRC tool (YAML): one library
//! file holds a `framework` whose `requirement_nodes` carry `urn`, `ref_id`, `name`,
//! `description`, `depth`, `parent_urn`, `assessable`, `annotation` and translations, or
//! `requirement_mapping_sets` relating two frameworks' nodes by URN.
//!
//! Read with `marked-yaml`, which keeps every node's line and column, so that each problem
//! (all of them at once) points to its place. URNs become external ids: mapping libraries
//! imported later resolve against them, and never by guessing.

use std::collections::{HashMap, HashSet};

use custos_yaml::{MarkedMappingNode, YamlNode as Node, located, to_json};
use serde_json::{Map, Value};

use super::{Document, Format, FrameworkRef, Issue, MappingPair, MappingSet};
use crate::catalog::{self, CatalogFramework, CatalogRequirement};
use crate::model::FrameworkType;

/// A library's `relationship` that says two requirements are unrelated: not a mapping.
const NOT_RELATED: &str = "not_related";
const TITLE_MAX: usize = 200;
/// Node fields Custos has columns for; the others are kept in the requirement's attributes.
const NODE_FIELDS: &[&str] = &["urn", "ref_id", "name", "description", "parent_urn"];

/// Reads a framework library or mapping library.
pub fn read(text: &str) -> Result<Document, Vec<Issue>> {
    let root = custos_yaml::parse(text).map_err(|e| vec![e])?;
    let mut r = Reader { issues: Vec::new(), warnings: Vec::new() };
    let document = r.document(&root);
    if r.issues.is_empty() { Ok(document) } else { Err(r.issues) }
}

struct Reader {
    issues: Vec<Issue>,
    warnings: Vec<String>,
}

impl Reader {
    fn issue(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        self.issues.push(located(Issue::new(message), path, node));
    }

    /// The mapping at `node`, or an issue.
    fn mapping<'a>(&mut self, path: &str, node: &'a Node) -> Option<&'a MarkedMappingNode> {
        let mapping = node.as_mapping();
        if mapping.is_none() {
            self.issue(path, node, "must be a mapping");
        }
        mapping
    }

    /// A string field: `None` when absent; an issue when present and not a scalar.
    fn text(&mut self, path: &str, map: &MarkedMappingNode, key: &str) -> Option<String> {
        let node = map.get_node(key)?;
        match node.as_scalar() {
            Some(s) if s.as_str().trim().is_empty() => None,
            Some(s) => Some(s.as_str().to_owned()),
            None => {
                self.issue(&format!("{path}.{key}"), node, "must be a text");
                None
            }
        }
    }

    /// A required string field.
    fn required(&mut self, path: &str, node: &Node, map: &MarkedMappingNode, key: &str) -> Option<String> {
        let value = self.text(path, map, key);
        if value.is_none() && map.get_node(key).is_none_or(|n| n.as_scalar().is_some()) {
            self.issue(path, node, format!("{key} is required"));
        }
        value
    }

    fn document(&mut self, root: &Node) -> Document {
        let mut document =
            Document { format: Format::Library, frameworks: vec![], mapping_sets: vec![], warnings: vec![] };
        let Some(top) = self.mapping("$", root) else { return document };
        let library_urn = self.required("$", root, top, "urn");
        let Some(objects_node) = top.get_node("objects") else {
            self.issue("$", root, "objects is required: a library holds a framework or requirement_mapping_sets");
            return document;
        };
        let Some(objects) = self.mapping("$.objects", objects_node) else { return document };
        // The library's own description, for the framework's attributes.
        let header: Map<String, Value> = top
            .iter()
            .filter(|(k, _)| k.as_str() != "objects")
            .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
            .collect();
        let mut understood = false;
        if let Some(node) = objects.get_node("framework") {
            understood = true;
            if let Some(f) = self.framework(node, top, &header) {
                document.frameworks.push(f);
            }
        }
        for key in ["requirement_mapping_sets", "requirement_mapping_set"] {
            let Some(node) = objects.get_node(key) else { continue };
            understood = true;
            let path = format!("$.objects.{key}");
            // The singular form holds one set; the plural a list of them.
            let sets: Vec<(String, &Node)> = match (key, node.as_sequence()) {
                ("requirement_mapping_sets", Some(seq)) => {
                    seq.iter().enumerate().map(|(i, n)| (format!("{path}[{i}]"), n)).collect()
                }
                ("requirement_mapping_sets", None) => {
                    self.issue(&path, node, "must be a list of mapping sets");
                    vec![]
                }
                _ => vec![(path, node)],
            };
            for (path, node) in sets {
                if let Some(set) = self.mapping_set(&path, node) {
                    document.mapping_sets.push(set);
                }
            }
        }
        let others: Vec<&str> = objects
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !["framework", "requirement_mapping_sets", "requirement_mapping_set"].contains(k))
            .collect();
        if !understood {
            self.issue(
                "$.objects",
                objects_node,
                format!(
                    "the library holds no framework and no requirement_mapping_sets (it holds: {})",
                    if others.is_empty() { "nothing".to_owned() } else { others.join(", ") }
                ),
            );
        } else if !others.is_empty() {
            self.warnings.push(format!(
                "{}: not imported (not frameworks or mappings): {}",
                library_urn.unwrap_or_default(),
                others.join(", ")
            ));
        }
        document.warnings = std::mem::take(&mut self.warnings);
        document
    }

    fn framework(
        &mut self,
        node: &Node,
        top: &MarkedMappingNode,
        header: &Map<String, Value>,
    ) -> Option<CatalogFramework> {
        let path = "$.objects.framework";
        let map = self.mapping(path, node)?;
        let urn = self.required(path, node, map, "urn");
        let ref_id = self.text(path, map, "ref_id");
        let name = self.text(path, map, "name").or_else(|| self.text("$", top, "name"));
        let description = self.text(path, map, "description").or_else(|| self.text("$", top, "description"));
        let version = top.get_node("version").map(to_json).map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        });
        let Some(nodes_node) = map.get_node("requirement_nodes") else {
            self.issue(path, node, "requirement_nodes is required");
            return None;
        };
        let nodes_path = format!("{path}.requirement_nodes");
        let Some(nodes) = nodes_node.as_sequence() else {
            self.issue(&nodes_path, nodes_node, "must be a list of requirement nodes");
            return None;
        };
        let requirements = self.requirements(&nodes_path, nodes);
        let mut attributes = Map::new();
        let mut library = header.clone();
        library.insert(
            "framework".into(),
            Value::Object(
                map.iter()
                    .filter(|(k, _)| !["urn", "name", "description", "requirement_nodes"].contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                    .collect(),
            ),
        );
        attributes.insert("library".into(), Value::Object(library));
        let urn = urn?;
        let framework_type =
            FrameworkType::closest(&[urn.as_str(), ref_id.as_deref().unwrap_or(""), name.as_deref().unwrap_or("")]);
        Some(CatalogFramework {
            format: catalog::FORMAT.to_owned(),
            key: urn.clone(),
            name: name.unwrap_or_else(|| urn.clone()),
            framework_type: framework_type.to_string(),
            version: version.unwrap_or_else(|| "1".to_owned()),
            description: description.unwrap_or_default(),
            applicable_regions: vec![],
            industry_sectors: vec![],
            effective_date: None,
            external_id: Some(urn),
            requirement_external_id_prefix: None,
            attributes,
            requirements,
        })
    }

    fn requirements(&mut self, path: &str, nodes: &[Node]) -> Vec<CatalogRequirement> {
        let mut out: Vec<CatalogRequirement> = Vec::with_capacity(nodes.len());
        // URN → (requirement_id, section) of the nodes read so far.
        let mut seen: HashMap<String, (String, String)> = HashMap::with_capacity(nodes.len());
        let mut ids: HashSet<String> = HashSet::with_capacity(nodes.len());
        let all_urns: HashSet<&str> =
            nodes.iter().filter_map(|n| n.as_mapping()?.get_scalar("urn")).map(|s| s.as_str()).collect();
        for (i, node) in nodes.iter().enumerate() {
            let at = format!("{path}[{i}]");
            let Some(map) = self.mapping(&at, node) else { continue };
            let urn = self.required(&at, node, map, "urn");
            let ref_id = self.text(&at, map, "ref_id");
            let name = self.text(&at, map, "name");
            let description = self.text(&at, map, "description");
            let parent_urn = self.text(&at, map, "parent_urn");
            let Some(urn) = urn else { continue };
            if seen.contains_key(&urn) {
                self.issue(
                    &format!("{at}.urn"),
                    map.get_node("urn").unwrap_or(node),
                    format!("urn {urn} appears twice"),
                );
                continue;
            }
            let parent = match &parent_urn {
                None => None,
                Some(p) => match seen.get(p) {
                    Some(parent) => Some(parent.clone()),
                    None => {
                        let why = if all_urns.contains(p.as_str()) {
                            "must come after the node it names"
                        } else {
                            "names no node of this framework"
                        };
                        self.issue(
                            &format!("{at}.parent_urn"),
                            map.get_node("parent_urn").unwrap_or(node),
                            format!("parent_urn {p} {why}"),
                        );
                        continue;
                    }
                },
            };
            let tail = urn.rsplit(':').next().unwrap_or(&urn).to_owned();
            let mut requirement_id = ref_id.clone().unwrap_or_else(|| tail.clone());
            if ids.contains(&requirement_id) {
                // Libraries repeat a ref_id under different parents; the URN tells them apart.
                let unique = format!("{requirement_id} ({tail})");
                self.warnings.push(format!("{urn}: ref_id {requirement_id} appears twice; imported as {unique}"));
                requirement_id = unique;
            }
            ids.insert(requirement_id.clone());
            let title = match (&name, &description) {
                (Some(n), _) => truncate(n),
                (None, Some(d)) => truncate(d.lines().next().unwrap_or(d)),
                (None, None) => requirement_id.clone(),
            };
            let section = match &parent {
                Some((_, section)) => section.clone(),
                None => name.clone().unwrap_or_else(|| requirement_id.clone()),
            };
            let extra: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| !NODE_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect();
            let mut attributes = Map::new();
            if !extra.is_empty() {
                attributes.insert("library".into(), Value::Object(extra));
            }
            seen.insert(urn.clone(), (requirement_id.clone(), section.clone()));
            out.push(CatalogRequirement {
                requirement_id,
                title,
                section: truncate(&section),
                description: description.unwrap_or_default(),
                // A library says nothing of either.
                requirement_type: "ADMINISTRATIVE".to_owned(),
                priority: "MEDIUM".to_owned(),
                parent: parent.map(|(id, _)| id),
                external_id: Some(urn),
                attributes,
            });
        }
        out
    }

    fn mapping_set(&mut self, path: &str, node: &Node) -> Option<MappingSet> {
        let map = self.mapping(path, node)?;
        let urn = self.required(path, node, map, "urn");
        let name = self.text(path, map, "name");
        let source = self.required(path, node, map, "source_framework_urn");
        let target = self.required(path, node, map, "target_framework_urn");
        let pairs_path = format!("{path}.requirement_mappings");
        let pairs_node = map.get_node("requirement_mappings");
        let nodes = match pairs_node.map(|n| (n, n.as_sequence())) {
            Some((_, Some(seq))) => &seq[..],
            Some((n, None)) => {
                self.issue(&pairs_path, n, "must be a list of mappings");
                &[]
            }
            None => {
                self.issue(path, node, "requirement_mappings is required");
                &[]
            }
        };
        let mut pairs = Vec::with_capacity(nodes.len());
        let mut unrelated = 0;
        let mut repeated = 0;
        let mut seen = HashSet::with_capacity(nodes.len());
        for (i, pair) in nodes.iter().enumerate() {
            let at = format!("{pairs_path}[{i}]");
            let Some(m) = self.mapping(&at, pair) else { continue };
            let s = self.required(&at, pair, m, "source_requirement_urn");
            let t = self.required(&at, pair, m, "target_requirement_urn");
            let relationship = self.required(&at, pair, m, "relationship");
            let rationale = self.text(&at, m, "rationale").or_else(|| self.text(&at, m, "annotation"));
            let (Some(s), Some(t), Some(relationship)) = (s, t, relationship) else { continue };
            if relationship == NOT_RELATED {
                unrelated += 1;
                continue;
            }
            if !catalog::RELATIONSHIPS.contains(&relationship.as_str()) {
                self.issue(
                    &format!("{at}.relationship"),
                    m.get_node("relationship").unwrap_or(pair),
                    format!(
                        "relationship {relationship:?} is not one of {}, {NOT_RELATED}",
                        catalog::RELATIONSHIPS.join(", ")
                    ),
                );
                continue;
            }
            if !seen.insert((s.clone(), t.clone())) {
                // Published libraries repeat pairs (NIST's CSF → ISO mapping does): one is kept.
                repeated += 1;
                continue;
            }
            pairs.push(MappingPair { source: s, target: t, relationship, rationale: rationale.unwrap_or_default() });
        }
        let key = urn?;
        if repeated > 0 {
            self.warnings.push(format!("{key}: {repeated} pairs listed more than once: kept once"));
        }
        if unrelated > 0 {
            self.warnings.push(format!("{key}: {unrelated} pairs marked {NOT_RELATED} are not mappings: left out"));
        }
        Some(MappingSet {
            name: name.unwrap_or_else(|| key.clone()),
            key,
            source: FrameworkRef::ExternalId(source?),
            target: FrameworkRef::ExternalId(target?),
            pairs,
        })
    }
}

/// At most [`TITLE_MAX`] characters, cut at a word with an ellipsis.
fn truncate(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= TITLE_MAX {
        return text.to_owned();
    }
    let cut: String = text.chars().take(TITLE_MAX - 1).collect();
    let cut = cut.rsplit_once(' ').map_or(cut.as_str(), |(head, _)| head);
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "urn: urn:x:library:t\nversion: 2\nobjects:\n  framework:\n    urn: urn:x:framework:t\n    name: T\n    requirement_nodes:\n";

    #[test]
    fn a_small_library_reads_with_hierarchy_and_attributes() {
        let text = format!(
            "{HEAD}    - urn: urn:x:node:t:a\n      ref_id: A\n      name: Alpha\n      assessable: false\n      depth: 1\n    - urn: urn:x:node:t:a.1\n      ref_id: A.1\n      parent_urn: urn:x:node:t:a\n      description: First line\n        continues\n      assessable: true\n"
        );
        let doc = read(&text).unwrap();
        let f = &doc.frameworks[0];
        assert_eq!(
            (f.key.as_str(), f.version.as_str(), f.framework_type.as_str()),
            ("urn:x:framework:t", "2", "CUSTOM")
        );
        assert_eq!(f.requirements[1].parent.as_deref(), Some("A"));
        assert_eq!(f.requirements[1].title, "First line continues");
        assert_eq!(f.requirements[1].section, "Alpha");
        assert_eq!(f.requirements[0].attributes["library"]["assessable"], Value::Bool(false));
        assert_eq!(f.requirements[0].attributes["library"]["depth"], Value::from(1));
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_column() {
        let text = format!(
            "{HEAD}    - urn: urn:x:node:t:a\n      ref_id: A\n    - ref_id: B\n    - urn: urn:x:node:t:c\n      parent_urn: urn:x:node:t:zz\n    - urn: urn:x:node:t:a\n"
        );
        let issues = read(&text).unwrap_err();
        assert_eq!(issues.len(), 3, "{issues:?}");
        assert!(issues[0].message.contains("urn is required") && issues[0].line == Some(10), "{issues:?}");
        assert!(issues[1].message.contains("names no node") && issues[1].line == Some(12), "{issues:?}");
        assert_eq!(issues[1].column, Some(19));
        assert!(issues[2].message.contains("appears twice") && issues[2].line == Some(13), "{issues:?}");
    }

    #[test]
    fn broken_yaml_is_one_located_issue() {
        let issues = read("urn: x\nobjects: [\n").unwrap_err();
        assert_eq!(issues.len(), 1);
        assert!(issues[0].line.is_some(), "{issues:?}");
    }

    #[test]
    fn mapping_sets_keep_relations_and_leave_out_unrelated_pairs() {
        let text = "urn: urn:x:library:m\nobjects:\n  requirement_mapping_sets:\n  - urn: urn:x:set\n    source_framework_urn: urn:x:framework:a\n    target_framework_urn: urn:x:framework:b\n    requirement_mappings:\n    - source_requirement_urn: a1\n      target_requirement_urn: b1\n      relationship: subset\n    - source_requirement_urn: a2\n      target_requirement_urn: b2\n      relationship: not_related\n    - source_requirement_urn: a3\n      target_requirement_urn: b3\n      relationship: sameish\n";
        let issues = read(text).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!((issues[0].line, issues[0].message.contains("sameish")), (Some(16), true));
        let fixed = text.replace("sameish", "equal");
        let doc = read(&fixed).unwrap();
        assert_eq!(doc.mapping_sets[0].pairs.len(), 2);
        assert!(doc.warnings[0].contains("1 pairs marked not_related"));
    }
}
