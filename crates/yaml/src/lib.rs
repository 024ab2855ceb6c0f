//! YAML with positions, for documents people write (framework libraries, policies): read with
//! `marked-yaml`, which keeps every node's line and column, so that a reader can report every
//! problem at once as a located [`Issue`].
//!
//! - [`parse`]: the document, or its one load error located;
//! - [`located`]: an issue placed at a node (a mapping at its first key);
//! - [`scalar_value`] / [`to_json`]: nodes as JSON, typed as YAML's core schema types plain
//!   scalars (quoted ones stay strings).

use custos_core::Issue;
use marked_yaml::Node;
use marked_yaml::types::MarkedScalarNode;
use serde_json::{Map, Number, Value};

pub use marked_yaml::Node as YamlNode;
pub use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode as ScalarNode, MarkedSequenceNode};

/// The document's root node (a mapping, as every document here is), or its load error as one
/// located issue.
pub fn parse(text: &str) -> Result<Node, Issue> {
    marked_yaml::parse_yaml(0, text).map_err(|e| load_issue(&e))
}

fn load_issue(e: &marked_yaml::LoadError) -> Issue {
    use marked_yaml::LoadError::*;
    let marker = match e {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        _ => None,
    };
    // The loader's message starts with the position, which the issue carries on its own.
    let message = e.to_string();
    let message = match marker {
        Some(m) => message.strip_prefix(&format!("{m}: ")).unwrap_or(&message).to_owned(),
        None => message,
    };
    let issue = Issue::new(message);
    match marker {
        Some(m) => issue.position(m.line(), m.column()),
        None => issue,
    }
}

/// `issue` placed at `path` and where `node` starts (a mapping at its first key).
pub fn located(issue: Issue, path: &str, node: &Node) -> Issue {
    let issue = issue.at(path);
    let start = match node.as_mapping().and_then(|m| m.keys().next()) {
        Some(key) => key.span().start(),
        None => node.span().start(),
    };
    match start {
        Some(m) => issue.position(m.line(), m.column()),
        None => issue,
    }
}

/// A scalar as JSON, typed as YAML's core schema types a plain scalar (quoted ones are strings).
pub fn scalar_value(s: &MarkedScalarNode) -> Value {
    if s.may_coerce() {
        match s.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
            _ => {}
        }
        if let Some(b) = s.as_bool() {
            return Value::Bool(b);
        }
        if let Some(i) = s.as_i64() {
            return Value::from(i);
        }
        if let Some(n) = s.as_f64().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(s.as_str().to_owned())
}

/// A node as JSON.
pub fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => scalar_value(s),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.as_str().to_owned(), to_json(v))).collect::<Map<_, _>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_error_is_one_issue_with_its_position() {
        let issue = parse("name: x\n  bad: [\n").unwrap_err();
        assert!(issue.line.is_some() && issue.column.is_some(), "{issue:?}");
        assert!(!issue.message.starts_with(char::is_numeric), "{issue:?}");
    }

    #[test]
    fn nodes_are_located_and_typed() {
        let root = parse("a:\n  b: 1\n  c: 'yes'\n  d: true\n  e: ~\n").unwrap();
        let a = root.as_mapping().unwrap().get_node("a").unwrap();
        let issue = located(Issue::new("wrong"), "$.a", a);
        assert_eq!((issue.line, issue.column), (Some(2), Some(3)));
        assert_eq!(to_json(a), serde_json::json!({"b": 1, "c": "yes", "d": true, "e": null}));
    }
}
