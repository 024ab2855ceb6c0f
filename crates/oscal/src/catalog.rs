//! The OSCAL catalog model: a catalog of controls, in groups, with their parts and parameters.
//!
//! A catalog is what a framework is in Custos: NIST SP 800-53 is one, and a profile (a baseline
//! such as 800-53 LOW) resolves into one. Controls nest: a control's `controls` are its
//! enhancements (AC-2(1) inside AC-2); groups nest too (families, chapters).

use serde::{Deserialize, Serialize};

use crate::common::{BackMatter, Extra, Link, Metadata, Property, label_of, prop_value};

/// A catalog document: the top-level object `{"catalog": …}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogDocument {
    pub catalog: Catalog,
    /// `$schema` and anything else beside `catalog`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl CatalogDocument {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog, extra: Extra::new() }
    }
}

impl From<Catalog> for CatalogDocument {
    fn from(catalog: Catalog) -> Self {
        Self::new(catalog)
    }
}

/// A catalog (`catalog`).
///
/// `uuid` is required by OSCAL: it reads as empty when absent (reported by
/// [`parse_catalog`](crate::parse_catalog)) and an empty one is not written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Catalog {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_matter: Option<BackMatter>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Catalog {
    pub fn new(uuid: impl Into<String>, metadata: Metadata) -> Self {
        Self { uuid: uuid.into(), metadata, ..Self::default() }
    }

    /// Every control of the catalog, depth first in document order: the catalog's own controls,
    /// then each group's (and its subgroups'); a control's enhancements right after it.
    pub fn all_controls(&self) -> Vec<&Control> {
        let mut out = Vec::new();
        push_controls(&self.controls, &mut out);
        for group in &self.groups {
            group.push_all_controls(&mut out);
        }
        out
    }

    /// The control (or enhancement) with this id, wherever it is.
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.all_controls().into_iter().find(|c| c.id == id)
    }
}

fn push_controls<'a>(controls: &'a [Control], out: &mut Vec<&'a Control>) {
    for control in controls {
        out.push(control);
        push_controls(&control.controls, out);
    }
}

/// A group of controls (`group`): a family (NIST's AC), a chapter, a theme. Its `id` is optional
/// in OSCAL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Group {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Group {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self { id: Some(id.into()), title: title.into(), ..Self::default() }
    }

    /// The group's `label` property (see [`Control::label`]).
    pub fn label(&self) -> Option<&str> {
        label_of(&self.props)
    }

    /// The group's `sort-id` property: the key to order it among its siblings.
    pub fn sort_id(&self) -> Option<&str> {
        prop_value(&self.props, "sort-id")
    }

    /// The group's first part named `name`.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// Every control in the group and its subgroups, depth first (see [`Catalog::all_controls`]).
    pub fn all_controls(&self) -> Vec<&Control> {
        let mut out = Vec::new();
        self.push_all_controls(&mut out);
        out
    }

    fn push_all_controls<'a>(&'a self, out: &mut Vec<&'a Control>) {
        push_controls(&self.controls, out);
        for group in &self.groups {
            group.push_all_controls(out);
        }
    }
}

/// A control (`control`); its `controls` are its enhancements.
///
/// `id` and `title` are required by OSCAL: they read as empty when absent (reported by
/// [`parse_catalog`](crate::parse_catalog)) and an empty one is not written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Control {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// The control's enhancements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Control {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self { id: id.into(), title: title.into(), ..Self::default() }
    }

    /// The control's human label (`AC-1`), its `label` property. NIST gives several (`AC-1`, and
    /// `AC-01` of class `zero-padded` and of class `sp800-53a`): the first without a `class`
    /// wins, else the first.
    pub fn label(&self) -> Option<&str> {
        label_of(&self.props)
    }

    /// The control's `sort-id` property (`ac-02.01`): ids do not sort (`ac-10` before `ac-2`),
    /// sort ids do.
    pub fn sort_id(&self) -> Option<&str> {
        prop_value(&self.props, "sort-id")
    }

    /// Whether the control is withdrawn: a `status` property of value `withdrawn`, in any
    /// namespace (NIST writes it without one). A withdrawn control has no statement; its links
    /// (`moved-to`, `incorporated-into`) say where it went.
    pub fn is_withdrawn(&self) -> bool {
        self.props.iter().any(|p| p.name == "status" && p.value == "withdrawn")
    }

    /// The control's first part named `name` (`statement`, `guidance`, `assessment-objective`).
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// A part of a control or group (`part`): its statement, guidance, an item of the statement
/// (`a.`, `1.`), an assessment objective. `prose` is Markdown and may hold parameter insertions
/// (`{{ insert: param, ac-1_prm_1 }}`): [`render_part_text`](crate::render_part_text) makes text
/// of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Part {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What the part is (`statement`, `item`, `guidance`, …): a token, required by OSCAL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Part {
    /// A part without prose (a `statement` whose items carry the text, say).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), ..Self::default() }
    }

    /// A part with an id and prose: `Part::prose("a-5.1_smt", "statement", "…")`.
    pub fn prose(id: impl Into<String>, name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { id: Some(id.into()), prose: Some(text.into()), ..Self::new(name) }
    }

    /// An `item` of a statement, with its `label` property (`a.`) and prose.
    pub fn item(id: impl Into<String>, label: impl Into<String>, text: impl Into<String>) -> Self {
        Self { props: vec![Property::new("label", label)], ..Self::prose(id, "item", text) }
    }

    /// The same part with these subparts.
    #[must_use]
    pub fn with_parts(mut self, parts: Vec<Part>) -> Self {
        self.parts = parts;
        self
    }

    /// The part's `label` property (`a.`), see [`Control::label`].
    pub fn label(&self) -> Option<&str> {
        label_of(&self.props)
    }

    /// The part's first subpart named `name`.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// A parameter (`param`): a value the organisation chooses ("organization-defined frequency"),
/// inserted in prose by id. It is an assignment (`label`), or a selection among `select.choice`;
/// `values`, once set, replace either.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Parameter {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ParameterConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guidelines: Vec<ParameterGuideline>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<ParameterSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Parameter {
    /// An assignment parameter: "[Assignment: `label`]".
    pub fn assignment(id: impl Into<String>, label: impl Into<String>) -> Self {
        Self { id: id.into(), label: Some(label.into()), ..Self::default() }
    }
}

/// A constraint on a parameter's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ParameterConstraint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `tests` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Guidance on choosing a parameter's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ParameterGuideline {
    pub prose: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A selection parameter's choices (`select`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ParameterSelection {
    /// `one` (the default when absent) or `one-or-more`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how_many: Option<String>,
    /// The choices; Markdown, which may hold insertions of other parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choice: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}
