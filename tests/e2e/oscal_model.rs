//! `custos-oscal`, the OSCAL model the importer and exporter share, against a third-party
//! implementation: what the model writes passes compliance-trestle's models (through
//! `custos_testkit::validate_oscal`). No server. The model's own tests against NIST's documents
//! (round trips, refusals) are in `crates/oscal/tests/fixtures.rs`.

use custos_oscal::{
    AssessmentResult, AssessmentResults, AssessmentResultsDocument, Catalog, CatalogDocument, Control, Finding,
    FindingTarget, Group, Link, Metadata, ObjectiveState, Observation, ObservationMethod, ParamIndex, Parameter, Part,
    Property, RelevantEvidence, ReviewedControls, parse_assessment_results, parse_catalog, render_part_text, to_token,
};
use custos_testkit::{fixture, validate_oscal};
use serde_json::Value;

const CATALOG: &str = "oscal/NIST_SP-800-53_rev5_LOW-baseline-resolved-profile_catalog.json";

fn read(relative: &str) -> String {
    let path = fixture(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn nist_catalog_reads_and_writes_back_unchanged() {
    let text = read(CATALOG);
    let original: Value = serde_json::from_str(&text).unwrap();
    let doc = parse_catalog(&text).unwrap_or_else(|issues| panic!("{issues:#?}"));
    let written = serde_json::to_value(&doc).unwrap();
    assert_eq!(written, original);
    validate_oscal(&written).unwrap_or_else(|report| panic!("the model's NIST catalog refused:\n{report}"));

    let catalog = &doc.catalog;
    assert_eq!(catalog.all_controls().len(), 149);
    let ac1 = catalog.control("ac-1").unwrap();
    assert_eq!((ac1.label(), ac1.sort_id()), (Some("AC-1"), Some("ac-01")));
    let statement = render_part_text(ac1.part("statement").unwrap(), &ParamIndex::new(catalog));
    assert!(
        statement.starts_with(
            "a. Develop, document, and disseminate to [Assignment: organization-defined personnel or roles]:"
        ),
        "{statement}"
    );
}

/// A catalog and assessment results written with the model's builders, ids from `to_token`, as
/// the exporter writes them: compliance-trestle accepts both.
#[test]
fn documents_the_model_writes_are_valid_oscal() {
    let references = ["A.5.1", "Art. 32", "164.308(a)(1)(ii)(A)", "164.308(a)(1)(ii)(B)", "GV.OC-01", "8.3.6", "CC6.1"];
    let controls: Vec<Control> = references
        .iter()
        .enumerate()
        .map(|(i, reference)| {
            let id = to_token(reference);
            Control {
                params: vec![Parameter::assignment(format!("{id}_prm_1"), "organization-defined frequency")],
                props: vec![Property::new("label", *reference), Property::new("sort-id", format!("{i:04}"))],
                links: vec![Link::with_rel("https://example.com/framework", "reference")],
                parts: vec![
                    Part::new("statement").with_parts(vec![Part::item(
                        format!("{id}_smt.a"),
                        "a.",
                        format!("Review the policy {{{{ insert: param, {id}_prm_1 }}}}."),
                    )]),
                    Part::prose(format!("{id}_gdn"), "guidance", "Why it matters."),
                ],
                ..Control::new(id, format!("Requirement {reference}"))
            }
        })
        .collect();
    let mut catalog = Catalog::new(
        "0b0e3b8c-7a4f-4b67-9d0a-3f2e1c5b6a70",
        Metadata::new("Custos framework export", "2024.1", "2024-05-01T12:00:00Z"),
    );
    catalog.groups.push(Group { controls, ..Group::new("requirements", "Requirements") });
    let catalog = serde_json::to_value(CatalogDocument::new(catalog)).unwrap();
    parse_catalog(&catalog.to_string()).unwrap_or_else(|issues| panic!("{issues:#?}"));
    validate_oscal(&catalog).unwrap_or_else(|report| panic!("trestle refused the catalog:\n{report}\n{catalog:#}"));

    let observation = Observation {
        relevant_evidence: vec![RelevantEvidence::new("https://example.com/evidence/1", "Quarterly access review")],
        types: vec!["control-objective".into()],
        ..Observation::new(
            "8807eb6e-0c05-43bc-8438-799739615e34",
            "The access review was examined.",
            vec![ObservationMethod::Examine],
            "2024-05-01T10:00:00+02:00",
        )
    };
    let findings = references
        .iter()
        .zip([
            "45d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "55d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "65d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "75d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "85d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "95d8a6c2-1368-4bad-9ba0-7141f0a32889",
            "a5d8a6c2-1368-4bad-9ba0-7141f0a32889",
        ])
        .enumerate()
        .map(|(i, (reference, uuid))| {
            let state = if i % 2 == 0 { ObjectiveState::Satisfied } else { ObjectiveState::NotSatisfied };
            Finding::new(
                uuid,
                reference.to_string(),
                "Assessed from its evidence.",
                FindingTarget::objective(to_token(reference), state),
            )
            .with_observations(["8807eb6e-0c05-43bc-8438-799739615e34"])
        })
        .collect();
    let result = AssessmentResult {
        end: Some("2024-05-01T12:00:00.5Z".into()),
        reviewed_controls: ReviewedControls::controls(references.iter().map(|r| to_token(r))),
        observations: vec![observation],
        findings,
        ..AssessmentResult::new(
            "a1d20136-37e0-42aa-9834-4e9d8c36d798",
            "Assessment of May 2024",
            "Requirements assessed from their evidence.",
            "2024-05-01T09:00:00Z",
        )
    };
    let mut results = AssessmentResults::new(
        "ec0dad37-54e0-40fd-a925-6d0bdea94c0d",
        Metadata::new("Custos assessment export", "1", "2024-05-01T12:00:00Z"),
        "https://example.com/assessment-plan.json",
    );
    results.results.push(result);
    let results = serde_json::to_value(AssessmentResultsDocument::new(results)).unwrap();
    parse_assessment_results(&results.to_string()).unwrap_or_else(|issues| panic!("{issues:#?}"));
    validate_oscal(&results)
        .unwrap_or_else(|report| panic!("trestle refused the assessment results:\n{report}\n{results:#}"));
}
