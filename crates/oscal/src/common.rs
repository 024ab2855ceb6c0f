//! What every OSCAL model shares: document metadata, properties, links and back matter.
//!
//! Every struct keeps the fields it does not name in `extra` (flattened), so a document read and
//! written again is the same JSON value; empty lists and absent values are left out when writing
//! (OSCAL forbids empty arrays and empty strings, so leaving them out loses nothing valid).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::OSCAL_VERSION;

/// Fields of an OSCAL object that this model does not name, kept as they were read.
pub type Extra = Map<String, Value>;

/// A document's metadata (`metadata`): its title, version, OSCAL version and the people and
/// organisations it names.
///
/// `title`, `last-modified`, `version` and `oscal-version` are required by OSCAL; they read as
/// empty when absent (so that every missing one is reported at once, see
/// [`parse_catalog`](crate::parse_catalog)) and an empty one is not written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// When the document was published (RFC 3339 with a time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// When the document was last changed (RFC 3339 with a time zone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_modified: String,
    /// The document's own version (not the OSCAL version).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// The OSCAL version the document conforms to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub oscal_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<Party>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responsible_parties: Vec<ResponsibleParty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `revisions`, `document-ids`, `locations`, `actions` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Metadata {
    /// Metadata as Custos writes it: the given title, document version and last-modified time
    /// (RFC 3339 with a time zone, e.g. `2024-05-01T12:00:00Z`), and [`OSCAL_VERSION`].
    pub fn new(title: impl Into<String>, version: impl Into<String>, last_modified_rfc3339: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            last_modified: last_modified_rfc3339.into(),
            version: version.into(),
            oscal_version: OSCAL_VERSION.to_owned(),
            ..Self::default()
        }
    }
}

/// A name/value pair (`prop`): OSCAL's way of attaching anything (labels, sort ids, status) to
/// an object. `ns` says whose vocabulary the name is from (none: OSCAL's own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Property {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<String>,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `group` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Property {
    /// A property in OSCAL's own vocabulary (no `ns`).
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), value: value.into(), ..Self::default() }
    }

    /// A property in the vocabulary `ns` (a URI, as NIST's `http://csrc.nist.gov/ns/rmf`): names
    /// outside OSCAL's own must have one.
    pub fn with_ns(name: impl Into<String>, value: impl Into<String>, ns: impl Into<String>) -> Self {
        Self { ns: Some(ns.into()), ..Self::new(name, value) }
    }

    /// The same property with a `class` (which distinguishes properties of the same name, as
    /// NIST's `label` of class `zero-padded`).
    #[must_use]
    pub fn with_class(mut self, class: impl Into<String>) -> Self {
        self.class = Some(class.into());
        self
    }
}

/// A reference (`link`) to a resource: a URL, or `#uuid` of a back-matter resource, or `#id` of
/// something in the document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Link {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_fragment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Link {
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into(), ..Self::default() }
    }

    /// A link with a relation (`reference`, `related`, `source-profile`, …).
    pub fn with_rel(href: impl Into<String>, rel: impl Into<String>) -> Self {
        Self { rel: Some(rel.into()), ..Self::new(href) }
    }
}

/// A role (`metadata.roles[]`) that parties may have in the document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Role {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Role {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Self { id: id.into(), title: title.into(), ..Self::default() }
    }
}

/// A person or organisation (`metadata.parties[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Party {
    pub uuid: String,
    /// `person` or `organization`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `addresses`, `telephone-numbers`, `member-of-organizations` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Party {
    /// An organisation with a name.
    pub fn organization(uuid: impl Into<String>, name: impl Into<String>) -> Self {
        Self { uuid: uuid.into(), kind: "organization".into(), name: Some(name.into()), ..Self::default() }
    }
}

/// Which parties have a role (`metadata.responsible-parties[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResponsibleParty {
    pub role_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub party_uuids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The resources a document refers to (`back-matter`): citations, attachments, links.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackMatter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One back-matter resource, referred to as `#uuid` by links.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resource {
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citation: Option<Citation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rlinks: Vec<ResourceLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `document-ids`, `base64` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Resource {
    pub fn new(uuid: impl Into<String>) -> Self {
        Self { uuid: uuid.into(), ..Self::default() }
    }
}

/// A resource's bibliographic citation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Citation {
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Where a resource can be fetched (`rlinks[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResourceLink {
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `hashes` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ResourceLink {
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into(), ..Self::default() }
    }
}

/// The value of the `label` property: when there are several (NIST gives `AC-1`, and `AC-01` of
/// class `zero-padded` and `sp800-53a`), the first without a class, else the first.
pub(crate) fn label_of(props: &[Property]) -> Option<&str> {
    let mut labels = props.iter().filter(|p| p.name == "label");
    let first = labels.clone().next()?;
    Some(labels.find(|p| p.class.is_none()).unwrap_or(first).value.as_str())
}

/// The value of the first property named `name`.
pub(crate) fn prop_value<'a>(props: &'a [Property], name: &str) -> Option<&'a str> {
    props.iter().find(|p| p.name == name).map(|p| p.value.as_str())
}
