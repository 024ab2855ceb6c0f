//! Custos's own model of NIST OSCAL, the Open Security Controls Assessment Language, in its JSON
//! form: the catalog model (controls, as a framework publishes them) and the assessment-results
//! model (what an assessment found), as serde types.
//!
//! OSCAL is NIST's machine-readable format for security and privacy controls and everything
//! around them: catalogs of controls (SP 800-53, ISO 27001's Annex A, …), profiles selecting and
//! tailoring them (baselines), system security plans, assessment plans and results. Custos
//! imports catalogs as frameworks and exports assessments as assessment results, so that its
//! data goes to and comes from other tools without a converter of its own for each.
//!
//! # Reading: lossless and tolerant
//!
//! Real documents are the specification (NIST's own catalogs, other tools' exports), so reading
//! accepts what OSCAL 1.x allows, not only what Custos writes:
//! * every object keeps the fields this model does not name in its `extra` map (flattened), so a
//!   document read and written again is the same JSON value — fields of later OSCAL versions and
//!   parts of the model Custos does not use survive a round trip;
//! * a value outside one of OSCAL's enumerations reads as `Other(…)` rather than failing;
//! * required strings read as empty when absent, so that [`parse_catalog`] and
//!   [`parse_assessment_results`] report every missing one at once, as [`Issue`]s with JSON paths.
//!
//! Empty lists and absent values are not written: OSCAL forbids empty arrays, empty strings and
//! `null`, so nothing valid is lost (an invalid `"props": []` or `"remarks": null` is dropped).
//!
//! # Writing
//!
//! Custos writes OSCAL [`OSCAL_VERSION`]. The builders (`Metadata::new`, `Property::new`,
//! `Part::prose`, `Control::new`, `Finding::new`, …) keep writing a document short; ids must be
//! OSCAL tokens ([`to_token`] makes one of any identifier), uuids version 4 ([`is_uuid`]) and
//! timestamps RFC 3339 with a time zone ([`is_date_time_with_timezone`]).
//!
//! # Text
//!
//! [`render_part_text`] makes readable plain text of a control's statement or guidance, with
//! parameters filled in as NIST prints them ("[Assignment: …]", "[Selection (one or more): …]").

mod assessment;
mod catalog;
mod common;
mod parse;
mod prose;
mod token;

pub use assessment::{
    AssessmentResult, AssessmentResults, AssessmentResultsDocument, ControlSelection, Finding, FindingTarget, ImportAp,
    ObjectiveState, ObjectiveStatus, Observation, ObservationMethod, RelatedObservation, RelevantEvidence,
    ReviewedControls, SelectControl, SubjectReference, TargetType,
};
pub use catalog::{
    Catalog, CatalogDocument, Control, Group, Parameter, ParameterConstraint, ParameterGuideline, ParameterSelection,
    Part,
};
pub use common::{
    BackMatter, Citation, Extra, Link, Metadata, Party, Property, Resource, ResourceLink, ResponsibleParty, Role,
};
pub use parse::{Issue, parse_assessment_results, parse_catalog};
pub use prose::{ParamIndex, render_insertions, render_part_text};
pub use token::{is_date_time_with_timezone, is_token, is_uuid, to_token};

/// The OSCAL version Custos writes (`metadata.oscal-version`): 1.1.2, the version NIST's SP
/// 800-53 rev 5.1.1 content is published in. Reading accepts any 1.x document.
pub const OSCAL_VERSION: &str = "1.1.2";
