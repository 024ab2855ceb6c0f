//! Reading OSCAL documents with errors a person can act on.
//!
//! Reading goes in three steps, each stopping the read if it finds anything:
//! 1. the JSON itself — a syntax error is one [`Issue`] with its line and column;
//! 2. the model — the document must be the one asked for (a profile is not a catalog, and says
//!    so), and each field must have the right shape: the first misfit is one issue with its JSON
//!    path and, where serde gives them, line and column;
//! 3. OSCAL's own rules the types do not hold (required values, unique ids, tokens): every
//!    broken rule at once, each an issue with its path, so that one round of corrections is
//!    enough.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::assessment::{AssessmentResultsDocument, ObjectiveState, ObservationMethod, TargetType};
use crate::catalog::{Catalog, CatalogDocument, Control, Group, Parameter, Part};
use crate::common::Metadata;
use crate::token::is_token;

/// One thing wrong with a document: where (a JSON path such as
/// `$.catalog.groups[3].controls[2].id`, and the line and column when known) and what.
pub use custos_core::Issue;

/// The top-level keys of OSCAL's models, and what each is called in a message.
const MODELS: &[(&str, &str)] = &[
    ("catalog", "catalog"),
    ("profile", "profile"),
    ("component-definition", "component definition"),
    ("system-security-plan", "system security plan (SSP)"),
    ("assessment-plan", "assessment plan"),
    ("assessment-results", "assessment results"),
    ("plan-of-action-and-milestones", "plan of action and milestones (POA&M)"),
    ("mapping-collection", "mapping collection"),
];

/// Reads an OSCAL catalog (JSON), or says everything that is wrong with it.
///
/// Unknown fields are kept (see the crate's documentation), so a catalog of a later OSCAL 1.x
/// reads. A profile is refused ("this is an OSCAL profile, not a catalog; resolve it first"), as
/// is any other model. The rules checked beyond the shape: the catalog's `uuid` and the
/// metadata's `title`, `version` and `oscal-version` are present; every control and parameter
/// has an id; ids of controls, groups and parts are tokens and unique among them, parameters'
/// are tokens and unique among parameters (OSCAL's two indexes); every control and group has a
/// title, and every part a name that is a token.
pub fn parse_catalog(text: &str) -> Result<CatalogDocument, Vec<Issue>> {
    let doc: CatalogDocument = read(text, "catalog")?;
    let issues = check_catalog(&doc.catalog);
    if issues.is_empty() { Ok(doc) } else { Err(issues) }
}

/// Reads an OSCAL assessment-results document (JSON), or says everything that is wrong with it.
///
/// The rules checked beyond the shape: the document's `uuid`, the metadata's `title`, `version`
/// and `oscal-version`, `import-ap.href` and at least one result are present; each result has
/// its uuid, title, description, start and a control selection; each observation its uuid,
/// description, a method and `collected`; each finding its uuid, title, description and target
/// id; methods, target types and states are among OSCAL's values; the uuids of results,
/// observations and findings are unique; and a finding's related observations exist.
pub fn parse_assessment_results(text: &str) -> Result<AssessmentResultsDocument, Vec<Issue>> {
    let doc: AssessmentResultsDocument = read(text, "assessment-results")?;
    let issues = check_assessment_results(&doc);
    if issues.is_empty() { Ok(doc) } else { Err(issues) }
}

/// Steps 1 and 2: syntax, which model, shape.
fn read<T: DeserializeOwned>(text: &str, model: &str) -> Result<T, Vec<Issue>> {
    // A byte-order mark is no JSON, but editors write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| vec![json_issue("$".into(), &e)])?;
    which_model(&value, model).map_err(|message| vec![Issue::new(message).at("$")])?;
    drop(value);
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| vec![json_issue(json_path(e.path()), e.inner())])
}

/// An issue from a serde_json error: its message without serde_json's own "at line … column …".
fn json_issue(path: String, e: &serde_json::Error) -> Issue {
    let (line, column) = (e.line(), e.column());
    let full = e.to_string();
    let suffix = format!(" at line {line} column {column}");
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
    let known = line > 0;
    let issue = Issue::new(message).at(path);
    if known { issue.position(line, column) } else { issue }
}

/// `$.catalog.groups[3].controls[2].id`: keys as `.key`, or `['key']` when they hold more than
/// letters, digits, `-` and `_`.
fn json_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::from("$");
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    out.push('.');
                    out.push_str(key);
                } else {
                    out.push_str(&format!("['{}']", key.replace('\\', "\\\\").replace('\'', "\\'")));
                }
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// Whether `value` is a document of `model`; if not, what it is instead.
fn which_model(value: &Value, model: &str) -> Result<(), String> {
    let name = |key: &str| MODELS.iter().find(|(k, _)| *k == key).map_or(key, |(_, n)| *n).to_owned();
    let Value::Object(root) = value else {
        return Err(format!("not an OSCAL {}: expected a JSON object with a \"{model}\" member", name(model)));
    };
    if root.contains_key(model) {
        return Ok(());
    }
    if let Some((found, _)) = MODELS.iter().find(|(k, _)| root.contains_key(*k)) {
        return Err(match (*found, model) {
            ("profile", "catalog") => "this is an OSCAL profile, not a catalog; resolve it first (a profile selects \
                                       and tailors controls of the catalogs it imports: a profile resolver, such as \
                                       NIST's, turns it into a resolved-profile catalog)"
                .to_owned(),
            _ => format!("this is an OSCAL {} (\"{found}\"), not {}", name(found), article(&name(model))),
        });
    }
    let keys: Vec<String> = root.keys().take(5).map(|k| format!("\"{k}\"")).collect();
    let found = if keys.is_empty() { "an empty object".to_owned() } else { format!("members {}", keys.join(", ")) };
    Err(format!("not an OSCAL {}: expected a top-level \"{model}\" member, found {found}", name(model)))
}

fn article(noun: &str) -> String {
    if noun.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {noun}") } else { format!("a {noun}") }
}

/// Issues collected in document order.
#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue::new(message).at(path));
    }

    fn required(&mut self, value: &str, path: &str, what: &str) {
        if value.trim().is_empty() {
            self.push(path, format!("{what} is missing"));
        }
    }

    fn metadata(&mut self, metadata: &Metadata, path: &str) {
        self.required(&metadata.title, &format!("{path}.title"), "the document's title");
        self.required(&metadata.version, &format!("{path}.version"), "the document's version");
        self.required(&metadata.oscal_version, &format!("{path}.oscal-version"), "the OSCAL version");
    }
}

/// Where an id was first seen, by index (OSCAL keeps controls, groups and parts in one, and
/// parameters in another).
#[derive(Default)]
struct Ids(HashMap<String, (&'static str, String)>);

impl Ids {
    fn claim(&mut self, issues: &mut Issues, id: &str, kind: &'static str, path: &str) {
        if !is_token(id) {
            issues.push(
                format!("{path}.id"),
                format!(
                    "the {kind} id \"{id}\" is not an OSCAL token: it must start with a letter or \"_\" and hold \
                     only letters, digits, \".\", \"-\" and \"_\""
                ),
            );
        }
        match self.0.entry(id.to_owned()) {
            Entry::Occupied(first) => {
                let (first_kind, first_path) = first.get();
                issues.push(
                    format!("{path}.id"),
                    format!("duplicate id \"{id}\": the {first_kind} at {first_path} has it already"),
                );
            }
            Entry::Vacant(slot) => {
                slot.insert((kind, path.to_owned()));
            }
        }
    }
}

struct CatalogCheck {
    issues: Issues,
    ids: Ids,
    param_ids: Ids,
}

fn check_catalog(catalog: &Catalog) -> Vec<Issue> {
    let mut c = CatalogCheck { issues: Issues::default(), ids: Ids::default(), param_ids: Ids::default() };
    c.issues.required(&catalog.uuid, "$.catalog.uuid", "the catalog's uuid");
    c.issues.metadata(&catalog.metadata, "$.catalog.metadata");
    c.params(&catalog.params, "$.catalog");
    c.controls(&catalog.controls, "$.catalog");
    c.groups(&catalog.groups, "$.catalog");
    c.issues.0
}

impl CatalogCheck {
    fn params(&mut self, params: &[Parameter], parent: &str) {
        for (i, p) in params.iter().enumerate() {
            let path = format!("{parent}.params[{i}]");
            if p.id.is_empty() {
                self.issues.push(format!("{path}.id"), "the parameter has no id");
            } else {
                self.param_ids.claim(&mut self.issues, &p.id, "parameter", &path);
            }
        }
    }

    fn controls(&mut self, controls: &[Control], parent: &str) {
        for (i, control) in controls.iter().enumerate() {
            let path = format!("{parent}.controls[{i}]");
            if control.id.is_empty() {
                self.issues.push(format!("{path}.id"), "the control has no id");
            } else {
                self.ids.claim(&mut self.issues, &control.id, "control", &path);
            }
            if control.title.trim().is_empty() {
                let which = if control.id.is_empty() { String::new() } else { format!(" \"{}\"", control.id) };
                self.issues.push(format!("{path}.title"), format!("the control{which} has no title"));
            }
            self.params(&control.params, &path);
            self.parts(&control.parts, &path);
            self.controls(&control.controls, &path);
        }
    }

    fn groups(&mut self, groups: &[Group], parent: &str) {
        for (i, group) in groups.iter().enumerate() {
            let path = format!("{parent}.groups[{i}]");
            if let Some(id) = &group.id {
                self.ids.claim(&mut self.issues, id, "group", &path);
            }
            if group.title.trim().is_empty() {
                let which = group.id.as_ref().map(|id| format!(" \"{id}\"")).unwrap_or_default();
                self.issues.push(format!("{path}.title"), format!("the group{which} has no title"));
            }
            self.params(&group.params, &path);
            self.parts(&group.parts, &path);
            self.groups(&group.groups, &path);
            self.controls(&group.controls, &path);
        }
    }

    fn parts(&mut self, parts: &[Part], parent: &str) {
        for (i, part) in parts.iter().enumerate() {
            let path = format!("{parent}.parts[{i}]");
            if let Some(id) = &part.id {
                self.ids.claim(&mut self.issues, id, "part", &path);
            }
            if part.name.is_empty() {
                self.issues.push(format!("{path}.name"), "the part has no name");
            } else if !is_token(&part.name) {
                self.issues
                    .push(format!("{path}.name"), format!("the part name \"{}\" is not an OSCAL token", part.name));
            }
            self.parts(&part.parts, &path);
        }
    }
}

fn check_assessment_results(doc: &AssessmentResultsDocument) -> Vec<Issue> {
    let ar = &doc.assessment_results;
    let root = "$.assessment-results";
    let mut issues = Issues::default();
    issues.required(&ar.uuid, &format!("{root}.uuid"), "the document's uuid");
    issues.metadata(&ar.metadata, &format!("{root}.metadata"));
    issues.required(&ar.import_ap.href, &format!("{root}.import-ap.href"), "the assessment plan's reference");
    if ar.results.is_empty() {
        issues.push(format!("{root}.results"), "there is no result: assessment results hold at least one");
    }
    let mut uuids: HashMap<String, String> = HashMap::new();
    let mut unique = |issues: &mut Issues, uuid: &str, path: String| {
        if uuid.is_empty() {
            return;
        }
        match uuids.entry(uuid.to_owned()) {
            Entry::Occupied(first) => {
                issues.push(format!("{path}.uuid"), format!("duplicate uuid {uuid}: {} has it already", first.get()))
            }
            Entry::Vacant(slot) => {
                slot.insert(path);
            }
        }
    };
    let observed: Vec<&str> =
        ar.results.iter().flat_map(|r| &r.observations).map(|o| o.uuid.as_str()).filter(|u| !u.is_empty()).collect();
    for (i, result) in ar.results.iter().enumerate() {
        let path = format!("{root}.results[{i}]");
        issues.required(&result.uuid, &format!("{path}.uuid"), "the result's uuid");
        issues.required(&result.title, &format!("{path}.title"), "the result's title");
        issues.required(&result.description, &format!("{path}.description"), "the result's description");
        issues.required(&result.start, &format!("{path}.start"), "the result's start");
        if result.reviewed_controls.control_selections.is_empty() {
            issues.push(
                format!("{path}.reviewed-controls.control-selections"),
                "the result reviews no controls: it needs at least one control selection",
            );
        }
        unique(&mut issues, &result.uuid, path.clone());
        for (j, o) in result.observations.iter().enumerate() {
            let path = format!("{path}.observations[{j}]");
            issues.required(&o.uuid, &format!("{path}.uuid"), "the observation's uuid");
            issues.required(&o.description, &format!("{path}.description"), "the observation's description");
            issues.required(&o.collected, &format!("{path}.collected"), "when the observation was collected");
            if o.methods.is_empty() {
                issues.push(format!("{path}.methods"), "the observation has no method");
            }
            for (k, m) in o.methods.iter().enumerate() {
                if let ObservationMethod::Other(v) = m {
                    issues.push(format!("{path}.methods[{k}]"), not_allowed(v, ObservationMethod::ALLOWED));
                }
            }
            unique(&mut issues, &o.uuid, path);
        }
        for (j, f) in result.findings.iter().enumerate() {
            let path = format!("{path}.findings[{j}]");
            issues.required(&f.uuid, &format!("{path}.uuid"), "the finding's uuid");
            issues.required(&f.title, &format!("{path}.title"), "the finding's title");
            issues.required(&f.description, &format!("{path}.description"), "the finding's description");
            issues.required(&f.target.target_id, &format!("{path}.target.target-id"), "the finding's target id");
            if let TargetType::Other(v) = &f.target.kind {
                issues.push(format!("{path}.target.type"), not_allowed(v, TargetType::ALLOWED));
            }
            if let ObjectiveState::Other(v) = &f.target.status.state {
                issues.push(format!("{path}.target.status.state"), not_allowed(v, ObjectiveState::ALLOWED));
            }
            for (k, r) in f.related_observations.iter().enumerate() {
                if !observed.contains(&r.observation_uuid.as_str()) {
                    issues.push(
                        format!("{path}.related-observations[{k}].observation-uuid"),
                        format!("no observation has the uuid {}", r.observation_uuid),
                    );
                }
            }
            unique(&mut issues, &f.uuid, path);
        }
    }
    issues.0
}

fn not_allowed(value: &str, allowed: &[&str]) -> String {
    format!("\"{value}\" is not one of OSCAL's values: {}", allowed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog(groups: Value) -> String {
        json!({
            "catalog": {
                "uuid": "0470d39a-3e02-4bff-82cf-676d522c1554",
                "metadata": {"title": "T", "last-modified": "2024-01-01T00:00:00Z", "version": "1", "oscal-version": "1.1.2"},
                "groups": groups,
            }
        })
        .to_string()
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_catalog("{\n  \"catalog\": {\n    \"uuid\": ,\n  }\n}").unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path.as_deref(), Some("$"));
        assert_eq!((err[0].line, err[0].column), (Some(3), Some(13)));
        assert_eq!(err[0].message, "expected value");
        assert!(err[0].to_string().starts_with("$ (line 3, column 13): expected value"), "{}", err[0]);
        let err = parse_catalog("").unwrap_err();
        assert_eq!(err[0].message, "EOF while parsing a value");
    }

    #[test]
    fn other_models_are_named() {
        let err = parse_catalog(r#"{"profile": {"uuid": "x"}}"#).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.starts_with("this is an OSCAL profile, not a catalog; resolve it first"), "{err:?}");
        let err = parse_catalog(r#"{"system-security-plan": {}}"#).unwrap_err();
        assert_eq!(
            err[0].message,
            "this is an OSCAL system security plan (SSP) (\"system-security-plan\"), not a catalog"
        );
        let err = parse_catalog(r#"{"assessment-results": {}}"#).unwrap_err();
        assert!(err[0].message.contains("assessment results"), "{err:?}");
        let err = parse_assessment_results(r#"{"catalog": {}}"#).unwrap_err();
        assert_eq!(err[0].message, "this is an OSCAL catalog (\"catalog\"), not an assessment results");
        let err = parse_catalog(r#"{"controls": [], "title": "x"}"#).unwrap_err();
        assert_eq!(
            err[0].message,
            "not an OSCAL catalog: expected a top-level \"catalog\" member, found members \"controls\", \"title\""
        );
        let err = parse_catalog("[1]").unwrap_err();
        assert_eq!(err[0].message, "not an OSCAL catalog: expected a JSON object with a \"catalog\" member");
    }

    #[test]
    fn shape_errors_have_a_path_and_position() {
        let text = catalog(json!([
            {"id": "a", "title": "A", "controls": [{"id": "a-1", "title": "x"}, {"id": "a-2", "title": 7}]}
        ]));
        let err = parse_catalog(&text).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert_eq!(err[0].path.as_deref(), Some("$.catalog.groups[0].controls[1].title"));
        assert_eq!(err[0].message, "invalid type: integer `7`, expected a string");
        assert_eq!(err[0].line, Some(1));
        assert!(err[0].column.is_some_and(|c| c > 100), "{err:?}");

        let text = catalog(json!([{"id": "a", "title": "A", "props": [{"name": "label"}]}]));
        let err = parse_catalog(&text).unwrap_err();
        assert_eq!(err[0].path.as_deref(), Some("$.catalog.groups[0].props[0]"));
        assert_eq!(err[0].message, "missing field `value`");

        let text = r#"{"catalog": {"uuid": "u", "metadata": {"title": "T", "version": "1", "oscal-version": "1.1.2", "odd key": 1, "props": [{"name": "n", "value": 1}]}}}"#;
        let err = parse_catalog(text).unwrap_err();
        assert_eq!(err[0].path.as_deref(), Some("$.catalog.metadata.props[0].value"));
    }

    #[test]
    fn semantic_issues_are_reported_all_at_once() {
        let text = json!({
            "catalog": {
                "metadata": {"title": "", "last-modified": "2024-01-01T00:00:00Z"},
                "params": [{"id": "p1"}, {"id": "p1"}, {"label": "no id"}],
                "groups": [
                    {"id": "g", "title": "G", "controls": [
                        {"id": "c-1", "title": "One", "parts": [{"id": "c-1_smt", "name": "statement"}]},
                        {"id": "c 2", "title": ""},
                        {"id": "c-1", "title": "Again", "controls": [{"title": "no id"}]},
                    ]},
                    {"id": "g", "title": "G again", "parts": [{"id": "c-1_smt", "name": "bad name"}]},
                    {"controls": []},
                ]
            }
        })
        .to_string();
        let err = parse_catalog(&text).unwrap_err();
        let got: Vec<(&str, &str)> =
            err.iter().map(|i| (i.path.as_deref().unwrap_or(""), i.message.as_str())).collect();
        let want = [
            ("$.catalog.uuid", "the catalog's uuid is missing"),
            ("$.catalog.metadata.title", "the document's title is missing"),
            ("$.catalog.metadata.version", "the document's version is missing"),
            ("$.catalog.metadata.oscal-version", "the OSCAL version is missing"),
            ("$.catalog.params[1].id", "duplicate id \"p1\": the parameter at $.catalog.params[0] has it already"),
            ("$.catalog.params[2].id", "the parameter has no id"),
            (
                "$.catalog.groups[0].controls[1].id",
                "the control id \"c 2\" is not an OSCAL token: it must start with a letter or \"_\" and hold only \
                 letters, digits, \".\", \"-\" and \"_\"",
            ),
            ("$.catalog.groups[0].controls[1].title", "the control \"c 2\" has no title"),
            (
                "$.catalog.groups[0].controls[2].id",
                "duplicate id \"c-1\": the control at $.catalog.groups[0].controls[0] has it already",
            ),
            ("$.catalog.groups[0].controls[2].controls[0].id", "the control has no id"),
            ("$.catalog.groups[1].id", "duplicate id \"g\": the group at $.catalog.groups[0] has it already"),
            (
                "$.catalog.groups[1].parts[0].id",
                "duplicate id \"c-1_smt\": the part at $.catalog.groups[0].controls[0].parts[0] has it already",
            ),
            ("$.catalog.groups[1].parts[0].name", "the part name \"bad name\" is not an OSCAL token"),
            ("$.catalog.groups[2].title", "the group has no title"),
        ];
        assert_eq!(got, want);
        assert!(err.iter().all(|i| i.line.is_none() && i.column.is_none()));
    }

    #[test]
    fn assessment_results_rules() {
        let text = json!({
            "assessment-results": {
                "uuid": "ec0dad37-54e0-40fd-a925-6d0bdea94c0d",
                "metadata": {"title": "AR", "last-modified": "2024-01-01T00:00:00Z", "version": "1", "oscal-version": "1.1.2"},
                "import-ap": {},
                "results": [{
                    "uuid": "a1d20136-37e0-42aa-9834-4e9d8c36d798",
                    "title": "R", "description": "D", "start": "2024-01-01T00:00:00Z",
                    "reviewed-controls": {},
                    "observations": [
                        {"uuid": "o1", "description": "d", "methods": ["TEST", "LOOK"], "collected": "2024-01-01T00:00:00Z"},
                        {"uuid": "o1", "description": "d", "methods": [], "collected": ""}
                    ],
                    "findings": [{
                        "uuid": "f1", "title": "F", "description": "D",
                        "target": {"type": "control-id", "target-id": "ac-1", "status": {"state": "partial"}},
                        "related-observations": [{"observation-uuid": "o1"}, {"observation-uuid": "o9"}]
                    }]
                }]
            }
        })
        .to_string();
        let err = parse_assessment_results(&text).unwrap_err();
        let got: Vec<(&str, &str)> =
            err.iter().map(|i| (i.path.as_deref().unwrap_or(""), i.message.as_str())).collect();
        let r = "$.assessment-results.results[0]";
        let want = vec![
            ("$.assessment-results.import-ap.href".to_owned(), "the assessment plan's reference is missing".to_owned()),
            (
                format!("{r}.reviewed-controls.control-selections"),
                "the result reviews no controls: it needs at least one control selection".into(),
            ),
            (
                format!("{r}.observations[0].methods[1]"),
                "\"LOOK\" is not one of OSCAL's values: EXAMINE, INTERVIEW, TEST, UNKNOWN".into(),
            ),
            (format!("{r}.observations[1].collected"), "when the observation was collected is missing".into()),
            (format!("{r}.observations[1].methods"), "the observation has no method".into()),
            (format!("{r}.observations[1].uuid"), format!("duplicate uuid o1: {r}.observations[0] has it already")),
            (
                format!("{r}.findings[0].target.type"),
                "\"control-id\" is not one of OSCAL's values: statement-id, objective-id".into(),
            ),
            (
                format!("{r}.findings[0].target.status.state"),
                "\"partial\" is not one of OSCAL's values: satisfied, not-satisfied".into(),
            ),
            (
                format!("{r}.findings[0].related-observations[1].observation-uuid"),
                "no observation has the uuid o9".into(),
            ),
        ];
        let want: Vec<(&str, &str)> = want.iter().map(|(p, m)| (p.as_str(), m.as_str())).collect();
        assert_eq!(got, want);

        let err = parse_assessment_results(r#"{"assessment-results": {"uuid": "u"}}"#).unwrap_err();
        assert!(err.iter().any(|i| i.path.as_deref() == Some("$.assessment-results.results")), "{err:?}");
    }

    #[test]
    fn paths_reach_nested_fields_and_a_bom_is_skipped() {
        let text = r#"{"catalog": {"uuid": "u", "metadata": {"title": "T", "version": "1", "oscal-version": "1"}, "groups": [{"title": "G", "parts": [{"name": "n", "prose": ["x"]}]}]}}"#;
        let err = parse_catalog(text).unwrap_err();
        assert_eq!(err[0].path.as_deref(), Some("$.catalog.groups[0].parts[0].prose"));
        let bom = format!("\u{feff}{}", catalog(json!([])));
        assert!(parse_catalog(&bom).is_ok());
    }
}
