//! The OSCAL validator the export tests rely on is a real one: compliance-trestle's models (a
//! third-party implementation of the OSCAL schemas, through `tests/tools/oscal_validate.py`)
//! accept NIST's own documents and refuse unknown fields, malformed ids and malformed uuids.
//!
//! `cargo xtask test` installs compliance-trestle with pip when missing and names the validator
//! in `CUSTOS_OSCAL_VALIDATOR`; without it these tests fail, they do not pass unchecked.

use custos_testkit::{fixture, validate_oscal};
use serde_json::{Value, json};

fn read(relative: &str) -> Value {
    let path = fixture(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn nist_catalog() -> Value {
    read("oscal/NIST_SP-800-53_rev5_LOW-baseline-resolved-profile_catalog.json")
}

/// The first control of the first group (AC-1).
fn first_control(catalog: &mut Value) -> &mut Value {
    &mut catalog["catalog"]["groups"][0]["controls"][0]
}

fn refused(document: &Value) -> String {
    match validate_oscal(document) {
        Ok(()) => panic!("the validator accepted an invalid document"),
        Err(report) => report,
    }
}

#[test]
fn nist_sp_800_53_low_baseline_catalog_is_valid() {
    let catalog = nist_catalog();
    assert_eq!(catalog["catalog"]["metadata"]["oscal-version"], "1.1.2");
    validate_oscal(&catalog).unwrap_or_else(|report| panic!("NIST's catalog refused:\n{report}"));
}

#[test]
fn nist_assessment_results_example_is_valid() {
    let results = read("oscal/ifa_assessment-results-example.json");
    assert!(results["assessment-results"]["results"].as_array().is_some_and(|r| !r.is_empty()));
    validate_oscal(&results).unwrap_or_else(|report| panic!("NIST's assessment results refused:\n{report}"));
}

#[test]
fn an_unknown_field_in_a_control_is_refused() {
    let mut catalog = nist_catalog();
    first_control(&mut catalog)["custos-risk-score"] = json!(7);
    let report = refused(&catalog);
    assert!(report.contains("$.catalog.groups[0].controls[0].custos-risk-score"), "{report}");
    assert!(report.contains("unknown field"), "{report}");
}

#[test]
fn a_control_id_that_is_not_a_token_is_refused() {
    let mut catalog = nist_catalog();
    first_control(&mut catalog)["id"] = json!("1 bad id");
    let report = refused(&catalog);
    assert!(report.contains("$.catalog.groups[0].controls[0].id"), "{report}");
    assert!(report.contains("not a valid token/id") && report.contains("'1 bad id'"), "{report}");
}

#[test]
fn a_malformed_uuid_is_refused() {
    let mut catalog = nist_catalog();
    catalog["catalog"]["uuid"] = json!("not-a-uuid");
    let report = refused(&catalog);
    assert!(report.contains("$.catalog.uuid"), "{report}");
    assert!(report.contains("not a valid uuid") && report.contains("'not-a-uuid'"), "{report}");
}

#[test]
fn a_document_of_no_oscal_model_is_refused() {
    let report = refused(&json!({ "custos-export": { "controls": [] } }));
    assert!(report.contains("expected exactly one OSCAL top-level key"), "{report}");
}
