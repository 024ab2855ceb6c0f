//! The model against NIST's real documents (`shared/fixtures/oscal`, see its README) and against
//! what it writes itself.

use std::path::PathBuf;

use custos_oscal::*;
use serde_json::{Value, json};

const CATALOG: &str = "oscal/NIST_SP-800-53_rev5_LOW-baseline-resolved-profile_catalog.json";
const PROFILE: &str = "oscal/NIST_SP-800-53_rev5_LOW-baseline_profile.json";
const RESULTS: &str = "oscal/ifa_assessment-results-example.json";

/// A fixture's text, found as `custos_testkit::fixture` finds it (`CUSTOS_FIXTURES_DIR`, else
/// `shared/fixtures` beside an ancestor of this crate), without depending on the test harness.
fn fixture(relative: &str) -> String {
    let mut dirs: Vec<PathBuf> = std::env::var_os("CUSTOS_FIXTURES_DIR").map(PathBuf::from).into_iter().collect();
    dirs.extend(PathBuf::from(env!("CARGO_MANIFEST_DIR")).ancestors().map(|a| a.join("shared/fixtures")));
    let path = dirs
        .iter()
        .map(|d| d.join(relative))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("fixture {relative} not found in {dirs:?}"));
    std::fs::read_to_string(path).unwrap()
}

fn nist_catalog() -> CatalogDocument {
    parse_catalog(&fixture(CATALOG)).unwrap_or_else(|issues| panic!("{issues:#?}"))
}

#[test]
fn catalog_fixture_round_trips_losslessly() {
    let text = fixture(CATALOG);
    let original: Value = serde_json::from_str(&text).unwrap();
    let doc = parse_catalog(&text).unwrap();
    assert_eq!(serde_json::to_value(&doc).unwrap(), original);
    // Through the model's own text too, and in the document's own key order.
    let written = serde_json::to_string_pretty(&doc).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&written).unwrap(), original);
    assert_eq!(parse_catalog(&written).unwrap(), doc);
}

#[test]
fn catalog_fixture_reads_as_nist_publishes_it() {
    let doc = nist_catalog();
    let catalog = &doc.catalog;
    assert_eq!(catalog.uuid, "0470d39a-3e02-4bff-82cf-676d522c1554");
    assert_eq!(catalog.metadata.title, "NIST Special Publication 800-53 Revision 5.1.1 LOW IMPACT BASELINE");
    assert_eq!(catalog.metadata.version, "5.1.1+u4");
    assert_eq!(catalog.metadata.oscal_version, "1.1.2");
    assert_eq!(catalog.metadata.parties.len(), 1);
    assert_eq!(catalog.metadata.parties[0].kind, "organization");
    assert!(catalog.metadata.parties[0].extra.contains_key("addresses"));
    // 18 families: the LOW baseline selects nothing of PM and PT (the fixtures README says 20).
    assert_eq!(catalog.groups.len(), 18);
    assert_eq!(catalog.all_controls().len(), 149);
    assert_eq!(catalog.back_matter.as_ref().map(|b| b.resources.len()), Some(135));

    let ac = &catalog.groups[0];
    assert_eq!(
        (ac.id.as_deref(), ac.title.as_str(), ac.class.as_deref()),
        (Some("ac"), "Access Control", Some("family"))
    );
    assert_eq!(ac.label(), None);
    assert_eq!(ac.all_controls().first().map(|c| c.id.as_str()), Some("ac-1"));

    let ac1 = catalog.control("ac-1").unwrap();
    // NIST gives `AC-01` (zero-padded), `AC-1` and `AC-01` (sp800-53a): the unclassed one wins.
    assert_eq!(ac1.label(), Some("AC-1"));
    assert_eq!(ac1.sort_id(), Some("ac-01"));
    assert!(!ac1.is_withdrawn());
    assert_eq!(ac1.part("statement").and_then(|p| p.id.as_deref()), Some("ac-1_smt"));
    assert!(ac1.part("guidance").is_some());
    assert!(ac1.part("nothing").is_none());
    assert_eq!(ac1.params.len(), 9);

    // Enhancements come right after their control, with their own labels and sort ids.
    let ids: Vec<&str> = catalog.all_controls().iter().map(|c| c.id.as_str()).collect();
    let at = ids.iter().position(|i| *i == "ac-2").unwrap();
    assert_eq!(ids[at + 1], "ac-3");
    let ia2 = catalog.control("ia-2").unwrap();
    let enhancement = &ia2.controls[0];
    assert_eq!((enhancement.id.as_str(), enhancement.label()), ("ia-2.1", Some("IA-2(1)")));
    assert_eq!(enhancement.sort_id(), Some("ia-02.01"));
    assert!(catalog.all_controls().iter().all(|c| !c.is_withdrawn() && c.label().is_some() && c.sort_id().is_some()));
}

#[test]
fn control_helpers_read_properties() {
    let withdrawn = Control {
        props: vec![
            Property::new("label", "X-01").with_class("zero-padded"),
            Property::with_ns("status", "withdrawn", "http://example.com/ns"),
        ],
        ..Control::new("x-1", "Gone")
    };
    assert!(withdrawn.is_withdrawn());
    assert_eq!(withdrawn.label(), Some("X-01"), "only classed labels: the first");
    assert_eq!(withdrawn.sort_id(), None);
    assert!(!Control::new("y", "Y").is_withdrawn());
    let group = Group {
        props: vec![Property::new("label", "A.5"), Property::new("sort-id", "a.05")],
        ..Group::new("a.5", "A")
    };
    assert_eq!((group.label(), group.sort_id()), (Some("A.5"), Some("a.05")));
}

#[test]
fn profile_fixture_is_refused_as_a_profile() {
    let issues = parse_catalog(&fixture(PROFILE)).unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].path.as_deref(), Some("$"));
    assert!(
        issues[0].message.starts_with("this is an OSCAL profile, not a catalog; resolve it first"),
        "{}",
        issues[0].message
    );
}

#[test]
fn assessment_results_fixture_round_trips_losslessly() {
    let text = fixture(RESULTS);
    let original: Value = serde_json::from_str(&text).unwrap();
    let doc = parse_assessment_results(&text).unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(serde_json::to_value(&doc).unwrap(), original);

    let ar = &doc.assessment_results;
    assert_eq!(ar.import_ap.href, "./ap.oscal.xml");
    assert!(ar.local_definitions.as_ref().is_some_and(|l| l.contains_key("activities")));
    let result = &ar.results[0];
    assert_eq!(result.reviewed_controls.control_selections[0].include_controls[0].control_id, "ac-6.1");
    assert!(result.extra.contains_key("risks") && result.extra.contains_key("local-definitions"));
    assert_eq!(result.observations.len(), 2);
    assert_eq!(result.observations[0].methods, vec![ObservationMethod::Test]);
    assert_eq!(result.observations[0].subjects[0].kind, "component");
    let finding = &result.findings[0];
    assert_eq!(finding.target.kind, TargetType::ObjectiveId);
    assert_eq!(finding.target.target_id, "ac-6.1_obj");
    assert_eq!(finding.target.status.state, ObjectiveState::NotSatisfied);
    assert_eq!(finding.related_observations[0].observation_uuid, result.observations[0].uuid);
    assert!(finding.extra.contains_key("related-risks"));

    assert!(parse_catalog(&text).unwrap_err()[0].message.contains("assessment results"));
}

#[test]
fn statements_render_as_nist_prints_them() {
    let doc = nist_catalog();
    let index = ParamIndex::new(&doc.catalog);
    assert_eq!(index.len(), 445);
    let statement = |id: &str| render_part_text(doc.catalog.control(id).unwrap().part("statement").unwrap(), &index);

    let ac1 = statement("ac-1");
    assert!(
        ac1.starts_with(
            "a. Develop, document, and disseminate to [Assignment: organization-defined personnel or roles]:\n  1. \
             [Selection (one or more): organization-level; mission/business process-level; system-level] access \
             control policy that:\n    (a) Addresses purpose, scope, roles,"
        ),
        "{ac1}"
    );
    assert!(ac1.contains("\nb. Designate an [Assignment: official] to manage the development"), "{ac1}");
    assert!(ac1.contains("\n  1. Policy [Assignment: frequency] and following [Assignment: events] ; and\n"), "{ac1}");

    let ac2 = statement("ac-2");
    let items: Vec<&str> =
        ac2.lines().filter(|l| !l.starts_with(' ')).map(|l| l.split_once(' ').map_or(l, |(label, _)| label)).collect();
    assert_eq!(items, ["a.", "b.", "c.", "d.", "e.", "f.", "g.", "h.", "i.", "j.", "k.", "l."]);
    assert!(ac2.contains("\nh. Notify account managers and [Assignment: personnel or roles] within:\n  1. [Assignment: time period] when accounts are no longer required;"), "{ac2}");

    // A selection whose choices insert further parameters.
    let ac7 = statement("ac-7");
    assert!(ac7.contains("[Selection (one or more): lock the account or node for [Assignment: time period]; lock the account or node until released by an administrator;"), "{ac7}");
    // A selection of one (no `how-many`).
    assert!(
        statement("ra-3")
            .contains("[Selection: security and privacy plans; risk assessment report; [Assignment: document]]")
    );

    // Every part of every control renders without a raw insertion left.
    let mut rendered = 0;
    for control in doc.catalog.all_controls() {
        for part in &control.parts {
            let text = render_part_text(part, &index);
            assert!(!text.contains("{{") && !text.contains("}}"), "{} {}: {text}", control.id, part.name);
            rendered += 1;
        }
        let statement = control.part("statement").map(|p| render_part_text(p, &index)).unwrap_or_default();
        assert!(!statement.is_empty(), "{}", control.id);
    }
    assert!(rendered > 149 * 2);
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let original = json!({
        "$schema": "https://example.com/oscal_catalog_schema.json",
        "catalog": {
            "uuid": "9bf9d9e4-3a43-4f48-9a4e-8a1a4d0b4e11",
            "metadata": {"title": "T", "last-modified": "2024-01-01T00:00:00Z", "version": "1", "oscal-version": "1.2.0",
                         "revisions": [{"version": "0"}], "future": {"x": [1, 2.5, true, null]}},
            "params": [{"id": "p", "depends-on": "q", "select": {"how-many": "one", "choice": ["a"], "new": 1}}],
            "groups": [{"title": "G", "x-group": "kept", "parts": [{"name": "overview", "prose": "o", "x-part": [1]}],
                        "controls": [{"id": "c", "title": "C", "x-control": {"deep": {"er": "kept"}},
                                      "props": [{"name": "n", "value": "v", "group": "g", "x-prop": 0}],
                                      "links": [{"href": "#r", "x-link": "l"}],
                                      "controls": [{"id": "c.1", "title": "C1", "x-enh": []}]}]}],
            "back-matter": {"resources": [{"uuid": "5d0b4e11-9bf9-4a43-8f48-9a4e8a1a4d0b", "base64": {"value": "AA=="},
                                            "rlinks": [{"href": "h", "hashes": [{"algorithm": "SHA-256", "value": "00"}]}]}],
                            "x-bm": 1}
        }
    });
    let doc = parse_catalog(&original.to_string()).unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(serde_json::to_value(&doc).unwrap(), original);
    assert_eq!(doc.catalog.groups[0].controls[0].extra["x-control"]["deep"]["er"], "kept");
}

/// A small catalog and assessment results as the exporter would write them: they read back, and
/// are left in the test's temporary directory for outside validators (compliance-trestle).
#[test]
fn written_documents_read_back() {
    let frameworks_ids = ["A.5.1", "Art. 32", "164.308(a)(1)(ii)(A)", "164.308(a)(1)(ii)(B)", "8.3.6"];
    let controls: Vec<Control> = frameworks_ids
        .iter()
        .enumerate()
        .map(|(i, reference)| {
            let id = to_token(reference);
            Control {
                params: vec![Parameter::assignment(format!("{id}_prm_1"), "organization-defined frequency")],
                props: vec![
                    Property::new("label", *reference),
                    Property::new("sort-id", format!("{i:03}")),
                    Property::with_ns("custos-requirement-id", reference.to_string(), "https://example.com/ns/custos"),
                ],
                parts: vec![
                    Part::new("statement").with_parts(vec![Part::item(
                        format!("{id}_smt.a"),
                        "a.",
                        format!("Review {{{{ insert: param, {id}_prm_1 }}}}."),
                    )]),
                    Part::prose(format!("{id}_gdn"), "guidance", "Why it matters."),
                ],
                links: vec![Link::with_rel("#5d0b4e11-9bf9-4a43-8f48-9a4e8a1a4d0b", "reference")],
                ..Control::new(id, format!("Requirement {reference}"))
            }
        })
        .collect();
    let mut metadata = Metadata::new("Custos export", "2024.1", "2024-05-01T12:00:00Z");
    metadata.parties.push(Party::organization("3a675986-b4ff-4030-b178-e953c2e55d64", "Example Org"));
    let mut catalog = Catalog::new("0b0e3b8c-7a4f-4b67-9d0a-3f2e1c5b6a70", metadata);
    catalog.groups.push(Group { controls, ..Group::new("custos", "Requirements") });
    let mut resource = Resource::new("5d0b4e11-9bf9-4a43-8f48-9a4e8a1a4d0b");
    resource.title = Some("Source".into());
    resource.rlinks.push(ResourceLink::new("https://example.com/framework.pdf"));
    catalog.back_matter = Some(BackMatter { resources: vec![resource], ..BackMatter::default() });
    let catalog_doc = CatalogDocument::new(catalog);

    let text = serde_json::to_string_pretty(&catalog_doc).unwrap();
    let read = parse_catalog(&text).unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(read, catalog_doc);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["catalog"]["metadata"]["oscal-version"], OSCAL_VERSION);
    let index = ParamIndex::new(&read.catalog);
    let first = &read.catalog.groups[0].controls[0];
    assert_eq!(
        render_part_text(first.part("statement").unwrap(), &index),
        "a. Review [Assignment: organization-defined frequency]."
    );
    assert!(read.catalog.all_controls().iter().all(|c| is_token(&c.id)));

    let observation = Observation {
        title: Some("Access review export".into()),
        types: vec!["control-objective".into()],
        relevant_evidence: vec![RelevantEvidence::new(
            "#5d0b4e11-9bf9-4a43-8f48-9a4e8a1a4d0b",
            "Quarterly access review",
        )],
        subjects: vec![SubjectReference::new("3a675986-b4ff-4030-b178-e953c2e55d64", "party")],
        ..Observation::new(
            "8807eb6e-0c05-43bc-8438-799739615e34",
            "The access review was examined.",
            vec![ObservationMethod::Examine, ObservationMethod::Test],
            "2024-05-01T10:00:00+02:00",
        )
    };
    let finding = Finding::new(
        "45d8a6c2-1368-4bad-9ba0-7141f0a32889",
        "A.5.1 satisfied",
        "Policies are defined and approved.",
        FindingTarget::objective(to_token("A.5.1"), ObjectiveState::Satisfied).with_reason("pass"),
    )
    .with_observations(["8807eb6e-0c05-43bc-8438-799739615e34"]);
    let result = AssessmentResult {
        end: Some("2024-05-01T12:00:00Z".into()),
        reviewed_controls: ReviewedControls::controls(frameworks_ids.iter().map(|r| to_token(r))),
        observations: vec![observation],
        findings: vec![finding],
        ..AssessmentResult::new(
            "a1d20136-37e0-42aa-9834-4e9d8c36d798",
            "Assessment of 2024-05",
            "Requirements assessed from their evidence.",
            "2024-05-01T09:00:00Z",
        )
    };
    let mut results = AssessmentResults::new(
        "ec0dad37-54e0-40fd-a925-6d0bdea94c0d",
        Metadata::new("Custos assessment", "1", "2024-05-01T12:00:00Z"),
        "#5d0b4e11-9bf9-4a43-8f48-9a4e8a1a4d0b",
    );
    results.results.push(result);
    results.back_matter = catalog_doc.catalog.back_matter.clone();
    let results_doc = AssessmentResultsDocument::new(results);
    let ar_text = serde_json::to_string_pretty(&results_doc).unwrap();
    let read = parse_assessment_results(&ar_text).unwrap_or_else(|issues| panic!("{issues:#?}"));
    assert_eq!(read, results_doc);
    let v: Value = serde_json::from_str(&ar_text).unwrap();
    let target = &v["assessment-results"]["results"][0]["findings"][0]["target"];
    assert_eq!(
        target,
        &json!({"type": "objective-id", "target-id": "A.5.1", "status": {"state": "satisfied", "reason": "pass"}})
    );
    assert_eq!(v["assessment-results"]["results"][0]["observations"][0]["methods"], json!(["EXAMINE", "TEST"]));
    assert_eq!(
        v["assessment-results"]["results"][0]["reviewed-controls"]["control-selections"][0]["include-controls"][2],
        json!({"control-id": "_164.308_a_1_ii_A"})
    );
    assert_eq!(
        serde_json::to_value(ReviewedControls::all()).unwrap(),
        json!({"control-selections": [{"include-all": {}}]})
    );

    // Every uuid and timestamp written is of OSCAL's form.
    let mut strings = Vec::new();
    collect(&serde_json::to_value(&catalog_doc).unwrap(), "", &mut strings);
    collect(&v, "", &mut strings);
    for (key, s) in &strings {
        if key == "uuid" || key.ends_with("-uuid") || key == "party-uuids" {
            assert!(is_uuid(s), "{key}: {s}");
        }
        if ["last-modified", "published", "start", "end", "collected", "expires"].contains(&key.as_str()) {
            assert!(is_date_time_with_timezone(s), "{key}: {s}");
        }
    }

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("custos-oscal");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("catalog.json"), text).unwrap();
    std::fs::write(dir.join("assessment-results.json"), ar_text).unwrap();
}

fn collect(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((key.to_owned(), s.clone())),
        Value::Array(items) => items.iter().for_each(|i| collect(i, key, out)),
        Value::Object(map) => map.iter().for_each(|(k, i)| collect(i, k, out)),
        _ => {}
    }
}

/// Broken documents are issues, never panics: truncations, flipped bytes and deep nesting.
#[test]
fn damaged_input_never_panics() {
    let text = fixture(CATALOG);
    let bytes = text.as_bytes();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..24 {
        let mut damaged = bytes.to_vec();
        for _ in 0..3 {
            let at = (next() % damaged.len() as u64) as usize;
            damaged[at] = b"{}[]\",:0aZ -\\"[(next() % 13) as usize];
        }
        let damaged = String::from_utf8_lossy(&damaged);
        if let Ok(doc) = parse_catalog(&damaged) {
            let index = ParamIndex::new(&doc.catalog);
            for control in doc.catalog.all_controls() {
                control.parts.iter().for_each(|p| drop(render_part_text(p, &index)));
            }
        }
        let cut = (next() % bytes.len() as u64) as usize;
        let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        assert!(parse_catalog(&text[..cut]).is_err());
        let _ = parse_assessment_results(&damaged);
    }
    let deep = format!("{{\"catalog\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_catalog(&deep).is_err());
    let deep_parts = format!(
        "{{\"catalog\": {{\"uuid\": \"u\", \"metadata\": {{}}, \"groups\": [{{\"title\": \"g\", \"parts\": [{}]}}]}}}}",
        "{\"name\": \"p\", \"parts\": [".repeat(60) + &"]}".repeat(60)
    );
    let _ = parse_catalog(&deep_parts);
    for junk in ["", "null", "1", "\"catalog\"", "{}", "{\"catalog\": null}", "{\"catalog\": []}", "\u{feff}"] {
        assert!(parse_catalog(junk).is_err(), "{junk}");
        assert!(parse_assessment_results(junk).is_err(), "{junk}");
    }
}
