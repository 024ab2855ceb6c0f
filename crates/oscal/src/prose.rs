//! Readable plain text of a control's prose, with its parameters filled in.
//!
//! OSCAL prose says "Develop, document, and disseminate to {{ insert: param, ac-1_prm_1 }}:" and
//! keeps the parameter (its label, choices or set values) elsewhere, on the control, a parent
//! control, a group or the catalog. A requirement's text in Custos is what a reader of the
//! publication sees, in the publication's own convention: "[Assignment: organization-defined
//! personnel or roles]", "[Selection (one or more): a; b]", or the values once set.

use std::collections::HashMap;

use crate::catalog::{Catalog, Control, Group, Parameter, Part};

/// How deep insertions may nest (a selection's choice inserting another parameter, whose choice
/// inserts another…) before the rest is rendered by id: a guard against a parameter inserting
/// itself.
const MAX_NESTING: usize = 8;

/// Every parameter of a catalog by id, wherever it is defined (the catalog, its groups, controls
/// and their enhancements): prose may insert a parameter defined on an enclosing object.
/// Where an id is defined twice (an invalid catalog), the first definition wins.
#[derive(Debug, Clone, Default)]
pub struct ParamIndex<'a> {
    by_id: HashMap<&'a str, &'a Parameter>,
}

impl<'a> ParamIndex<'a> {
    /// The index of every parameter of `catalog`.
    pub fn new(catalog: &'a Catalog) -> Self {
        let mut index = Self::default();
        index.add(&catalog.params);
        index.add_controls(&catalog.controls);
        index.add_groups(&catalog.groups);
        index
    }

    /// An index of these parameters only.
    pub fn from_params(params: impl IntoIterator<Item = &'a Parameter>) -> Self {
        let mut index = Self::default();
        for p in params {
            index.by_id.entry(p.id.as_str()).or_insert(p);
        }
        index
    }

    fn add(&mut self, params: &'a [Parameter]) {
        for p in params {
            self.by_id.entry(p.id.as_str()).or_insert(p);
        }
    }

    fn add_controls(&mut self, controls: &'a [Control]) {
        for c in controls {
            self.add(&c.params);
            self.add_controls(&c.controls);
        }
    }

    fn add_groups(&mut self, groups: &'a [Group]) {
        for g in groups {
            self.add(&g.params);
            self.add_controls(&g.controls);
            self.add_groups(&g.groups);
        }
    }

    pub fn get(&self, id: &str) -> Option<&'a Parameter> {
        self.by_id.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The plain text of a part (a control's `statement` or `guidance`, or any other) and its
/// subparts, parameters filled in by [`render_insertions`].
///
/// The part's own prose comes first; then each subpart on its own line, prefixed by its `label`
/// property (`a.`, `1.`, `(a)`; else its title, if any) and indented two spaces per level below
/// the first, its further paragraphs aligned under its text:
///
/// ```text
/// a. Develop, document, and disseminate to [Assignment: organization-defined personnel or roles]:
///   1. [Selection (one or more): organization-level; mission/business process-level; system-level] access control policy that:
///     (a) Addresses purpose, scope, …
/// ```
pub fn render_part_text(part: &Part, params: &ParamIndex) -> String {
    let mut lines = Vec::new();
    if let Some(prose) = &part.prose {
        let text = render_insertions(prose, params);
        lines.extend(text.trim().lines().map(|l| l.trim_end().to_owned()));
    }
    for sub in &part.parts {
        render_item(sub, 0, params, &mut lines);
    }
    lines.join("\n").trim_end().to_owned()
}

fn render_item(part: &Part, depth: usize, params: &ParamIndex, out: &mut Vec<String>) {
    let indent = "  ".repeat(depth);
    let prefix = part.label().or(part.title.as_deref()).unwrap_or_default().trim();
    let text = part.prose.as_deref().map(|p| render_insertions(p, params)).unwrap_or_default();
    let mut text_lines = text.trim().lines();
    let first = text_lines.next().unwrap_or_default().trim_end();
    let head = match (prefix.is_empty(), first.is_empty()) {
        (true, true) => None,
        (true, false) => Some(first.to_owned()),
        (false, true) => Some(prefix.to_owned()),
        (false, false) => Some(format!("{prefix} {first}")),
    };
    if let Some(head) = head {
        out.push(format!("{indent}{head}"));
        let hang = if prefix.is_empty() { String::new() } else { " ".repeat(prefix.chars().count() + 1) };
        for line in text_lines {
            let line = line.trim_end();
            out.push(if line.is_empty() { String::new() } else { format!("{indent}{hang}{line}") });
        }
    }
    for sub in &part.parts {
        render_item(sub, depth + 1, params, out);
    }
}

/// `text` with every parameter insertion (`{{ insert: param, id }}`) replaced, as NIST renders
/// SP 800-53:
/// * a parameter with `values` → the values, joined by ", ";
/// * a selection → `[Selection: a; b]`, or `[Selection (one or more): a; b]` when its `how-many`
///   is `one-or-more`, each choice rendered the same way (choices may insert parameters);
/// * otherwise → `[Assignment: label]`, or `[Assignment: id]` for a parameter without a label or
///   not in `params`.
///
/// An insertion of another type (`{{ insert: foo, x }}`) becomes `[foo: x]`; text between `{{`
/// and `}}` that is no insertion is left as it is.
pub fn render_insertions(text: &str, params: &ParamIndex) -> String {
    render_nested(text, params, 0)
}

fn render_nested(text: &str, params: &ParamIndex, depth: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        out.push_str(&rest[..open]);
        match insertion(&after[..close]) {
            Some(("param", id)) => out.push_str(&render_param(id, params, depth)),
            Some((kind, id)) => out.push_str(&format!("[{kind}: {id}]")),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// The type and id of an insertion's inside (` insert: param, ac-1_prm_1 `).
fn insertion(inner: &str) -> Option<(&str, &str)> {
    let body = inner.trim().strip_prefix("insert")?.trim_start().strip_prefix(':')?;
    let (kind, id) = body.split_once(',')?;
    let (kind, id) = (kind.trim(), id.trim());
    (!kind.is_empty() && !id.is_empty() && !id.contains(char::is_whitespace)).then_some((kind, id))
}

fn render_param(id: &str, params: &ParamIndex, depth: usize) -> String {
    let Some(param) = params.get(id).filter(|_| depth < MAX_NESTING) else {
        return format!("[Assignment: {id}]");
    };
    let nested = |t: &str| render_nested(t, params, depth + 1).trim().to_owned();
    if !param.values.is_empty() {
        return param.values.iter().map(|v| nested(v)).collect::<Vec<_>>().join(", ");
    }
    if let Some(select) = &param.select {
        let choices = select.choice.iter().map(|c| nested(c)).collect::<Vec<_>>().join("; ");
        let how = if select.how_many.as_deref() == Some("one-or-more") { " (one or more)" } else { "" };
        return format!("[Selection{how}: {choices}]");
    }
    match param.label.as_deref().map(nested) {
        Some(label) if !label.is_empty() => format!("[Assignment: {label}]"),
        _ => format!("[Assignment: {id}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ParameterSelection;
    use crate::common::Property;

    fn params() -> Vec<Parameter> {
        vec![
            Parameter::assignment("p1", "organization-defined personnel or roles"),
            Parameter {
                id: "p2".into(),
                select: Some(ParameterSelection {
                    how_many: Some("one-or-more".into()),
                    choice: vec!["organization-level".into(), " lock for {{ insert: param, p3 }} ".into()],
                    ..ParameterSelection::default()
                }),
                ..Parameter::default()
            },
            Parameter::assignment("p3", "time period"),
            Parameter {
                id: "p4".into(),
                select: Some(ParameterSelection { choice: vec!["a".into(), "b".into()], ..Default::default() }),
                ..Parameter::default()
            },
            Parameter { values: vec!["annually".into()], ..Parameter::assignment("p5", "frequency") },
            Parameter {
                id: "loop".into(),
                select: Some(ParameterSelection {
                    choice: vec!["{{ insert: param, loop }}".into()],
                    ..Default::default()
                }),
                ..Parameter::default()
            },
            Parameter { id: "bare".into(), ..Parameter::default() },
        ]
    }

    #[test]
    fn insertions_follow_nist_convention() {
        let ps = params();
        let index = ParamIndex::from_params(&ps);
        let r = |t: &str| render_insertions(t, &index);
        assert_eq!(r("to {{ insert: param, p1 }}:"), "to [Assignment: organization-defined personnel or roles]:");
        assert_eq!(
            r("{{insert: param,p2}} policy"),
            "[Selection (one or more): organization-level; lock for [Assignment: time period]] policy"
        );
        assert_eq!(r("{{ insert: param, p4 }}"), "[Selection: a; b]");
        assert_eq!(r("review {{ insert: param, p5 }}"), "review annually");
        assert_eq!(r("{{ insert: param, nowhere }}"), "[Assignment: nowhere]");
        assert_eq!(r("{{ insert: param, bare }}"), "[Assignment: bare]");
        assert_eq!(r("{{ insert: other, x }}"), "[other: x]");
        assert_eq!(r("keep {{ this }} and {{ unclosed"), "keep {{ this }} and {{ unclosed");
        assert_eq!(r("ünïcödé {{ insert: param, p3 }}é"), "ünïcödé [Assignment: time period]é");
        let looped = r("{{ insert: param, loop }}");
        assert!(looped.contains("[Assignment: loop]") && !looped.contains("{{"), "{looped}");
    }

    #[test]
    fn parts_render_with_labels_and_indentation() {
        let ps = params();
        let index = ParamIndex::from_params(&ps);
        let statement = Part::new("statement").with_parts(vec![
            Part::item("s.a", "a.", "Develop for {{ insert: param, p1 }}:").with_parts(vec![
                Part::item("s.a.1", "1.", " first;\n\nsecond paragraph")
                    .with_parts(vec![Part::item("s.a.1.a", "(a)", "deep")]),
            ]),
            Part::item("s.b", "b.", "Review {{ insert: param, p5 }}."),
            Part { props: vec![Property::new("label", "c.")], ..Part::new("item") },
        ]);
        assert_eq!(
            render_part_text(&statement, &index),
            "a. Develop for [Assignment: organization-defined personnel or roles]:\n  1. first;\n\n     second paragraph\n    (a) deep\nb. Review annually.\nc."
        );
        let guidance = Part::prose("g", "guidance", "  Some guidance.\n\nMore.  \n");
        assert_eq!(render_part_text(&guidance, &index), "Some guidance.\n\nMore.");
    }
}
