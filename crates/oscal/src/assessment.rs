//! The OSCAL assessment-results model: what an assessment found, control by control.
//!
//! Custos writes one when it exports an assessment: each result reviews a set of controls,
//! records observations (what was examined, tested or asked, with links to the evidence) and
//! findings (per control objective or statement: satisfied or not, and which observations say
//! so). The model names what that needs and what readers of such documents look at; the rest of
//! the model (risks, assessment logs, POA&M items, local definitions of activities) is kept as it
//! was read, in each object's `extra`.

use serde::{Deserialize, Serialize};

use crate::common::{BackMatter, Extra, Link, Metadata, Property};

/// A string enumeration that still reads (and writes back) a value outside its set, as `Other`:
/// reading stays lossless, and [`parse_assessment_results`](crate::parse_assessment_results)
/// reports such a value as an issue.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(from = "String", into = "String")]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
            /// A value outside OSCAL's set, kept as read.
            Other(String),
        }

        impl $name {
            /// The values OSCAL allows.
            pub const ALLOWED: &'static [&'static str] = &[$($text),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($text => Self::$variant,)+
                    _ => Self::Other(s),
                }
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                match v {
                    $name::Other(s) => s,
                    other => other.as_str().to_owned(),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum! {
    /// How an observation was made (`observation.methods[]`), SP 800-53A's assessment methods.
    ObservationMethod {
        Examine = "EXAMINE",
        Interview = "INTERVIEW",
        Test = "TEST",
        Unknown = "UNKNOWN",
    }
}

string_enum! {
    /// What a finding's target is (`finding.target.type`).
    TargetType {
        /// A control's statement (or one of its items), by the part's id (`ac-2_smt.a`).
        StatementId = "statement-id",
        /// A control objective, by its id (`ac-2_obj`, or a control id).
        ObjectiveId = "objective-id",
    }
}

string_enum! {
    /// Whether the target is met (`finding.target.status.state`).
    ObjectiveState {
        Satisfied = "satisfied",
        NotSatisfied = "not-satisfied",
    }
}

/// An assessment-results document: the top-level object `{"assessment-results": …}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResultsDocument {
    pub assessment_results: AssessmentResults,
    /// `$schema` and anything else beside `assessment-results`.
    #[serde(flatten)]
    pub extra: Extra,
}

impl AssessmentResultsDocument {
    pub fn new(assessment_results: AssessmentResults) -> Self {
        Self { assessment_results, extra: Extra::new() }
    }
}

/// The assessment results (`assessment-results`).
///
/// Required strings read as empty when absent (reported by
/// [`parse_assessment_results`](crate::parse_assessment_results)) and an empty one is not
/// written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResults {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default)]
    pub metadata: Metadata,
    /// The assessment plan these are results of.
    #[serde(default)]
    pub import_ap: ImportAp,
    /// Activities, objectives, components, users the results refer to; kept as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_definitions: Option<Extra>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<AssessmentResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_matter: Option<BackMatter>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl AssessmentResults {
    /// Results of the assessment plan at `import_ap_href` (required by OSCAL; a relative path,
    /// a URL, or `#uuid` of a back-matter resource).
    pub fn new(uuid: impl Into<String>, metadata: Metadata, import_ap_href: impl Into<String>) -> Self {
        Self { uuid: uuid.into(), metadata, import_ap: ImportAp::new(import_ap_href), ..Self::default() }
    }
}

/// The reference to the assessment plan (`import-ap`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImportAp {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub href: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImportAp {
    pub fn new(href: impl Into<String>) -> Self {
        Self { href: href.into(), ..Self::default() }
    }
}

/// One assessment's result (`results[]`): OSCAL's `result`, named so as not to shadow
/// [`Result`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResult {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// When the assessment started (RFC 3339 with a time zone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// The controls the assessment covered.
    #[serde(default)]
    pub reviewed_controls: ReviewedControls,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `local-definitions`, `attestations`, `assessment-log`, `risks` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl AssessmentResult {
    pub fn new(
        uuid: impl Into<String>,
        title: impl Into<String>,
        description: impl Into<String>,
        start_rfc3339: impl Into<String>,
    ) -> Self {
        Self {
            uuid: uuid.into(),
            title: title.into(),
            description: description.into(),
            start: start_rfc3339.into(),
            ..Self::default()
        }
    }
}

/// The controls a result covers (`reviewed-controls`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReviewedControls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// At least one, by OSCAL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control_selections: Vec<ControlSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `control-objective-selections` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ReviewedControls {
    /// One selection including these controls, by id.
    pub fn controls<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let selection = ControlSelection {
            include_controls: ids.into_iter().map(SelectControl::new).collect(),
            ..ControlSelection::default()
        };
        Self { control_selections: vec![selection], ..Self::default() }
    }

    /// One selection including every control of the plan (`"include-all": {}`).
    pub fn all() -> Self {
        let selection = ControlSelection { include_all: Some(Extra::new()), ..ControlSelection::default() };
        Self { control_selections: vec![selection], ..Self::default() }
    }
}

/// A selection of controls (`control-selections[]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlSelection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// Present (an empty object) to select all controls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_all: Option<Extra>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_controls: Vec<SelectControl>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_controls: Vec<SelectControl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A control by id, optionally narrowed to some of its statements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SelectControl {
    pub control_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statement_ids: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl SelectControl {
    pub fn new(control_id: impl Into<String>) -> Self {
        Self { control_id: control_id.into(), ..Self::default() }
    }
}

/// What was seen (`observations[]`): how (methods), of what (subjects), when, and the evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Observation {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// At least one, by OSCAL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<ObservationMethod>,
    /// `ssp-statement-issue`, `control-objective`, `mitigation`, `finding`, `historic`, or
    /// another token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<SubjectReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relevant_evidence: Vec<RelevantEvidence>,
    /// When the observation was made (RFC 3339 with a time zone).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collected: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `origins` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Observation {
    pub fn new(
        uuid: impl Into<String>,
        description: impl Into<String>,
        methods: Vec<ObservationMethod>,
        collected_rfc3339: impl Into<String>,
    ) -> Self {
        Self {
            uuid: uuid.into(),
            description: description.into(),
            methods,
            collected: collected_rfc3339.into(),
            ..Self::default()
        }
    }
}

/// What an observation is about (`subjects[]`): a component, inventory item, party, user…
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SubjectReference {
    pub subject_uuid: String,
    /// `component`, `inventory-item`, `location`, `party`, `user`, or another token.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl SubjectReference {
    pub fn new(subject_uuid: impl Into<String>, kind: impl Into<String>) -> Self {
        Self { subject_uuid: subject_uuid.into(), kind: kind.into(), ..Self::default() }
    }
}

/// A piece of evidence behind an observation (`relevant-evidence[]`): where it is and what it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelevantEvidence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RelevantEvidence {
    pub fn new(href: impl Into<String>, description: impl Into<String>) -> Self {
        Self { href: Some(href.into()), description: description.into(), ..Self::default() }
    }
}

/// A conclusion about one target (`findings[]`), with the observations it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    pub target: FindingTarget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation_statement_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_observations: Vec<RelatedObservation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `origins`, `related-risks` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Finding {
    pub fn new(
        uuid: impl Into<String>,
        title: impl Into<String>,
        description: impl Into<String>,
        target: FindingTarget,
    ) -> Self {
        Self {
            uuid: uuid.into(),
            title: title.into(),
            description: description.into(),
            props: Vec::new(),
            links: Vec::new(),
            target,
            implementation_statement_uuid: None,
            related_observations: Vec::new(),
            remarks: None,
            extra: Extra::new(),
        }
    }

    /// The same finding resting on these observations, by uuid.
    #[must_use]
    pub fn with_observations<I, S>(mut self, uuids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.related_observations.extend(uuids.into_iter().map(RelatedObservation::new));
        self
    }
}

/// What a finding is about and its verdict (`finding.target`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FindingTarget {
    #[serde(rename = "type")]
    pub kind: TargetType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    pub status: ObjectiveStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    /// `implementation-status` and anything else.
    #[serde(flatten)]
    pub extra: Extra,
}

impl FindingTarget {
    pub fn new(kind: TargetType, target_id: impl Into<String>, state: ObjectiveState) -> Self {
        Self {
            kind,
            target_id: target_id.into(),
            title: None,
            description: None,
            props: Vec::new(),
            links: Vec::new(),
            status: ObjectiveStatus::new(state),
            remarks: None,
            extra: Extra::new(),
        }
    }

    /// A control objective (`objective-id`) and its state.
    pub fn objective(target_id: impl Into<String>, state: ObjectiveState) -> Self {
        Self::new(TargetType::ObjectiveId, target_id, state)
    }

    /// A control statement (`statement-id`) and its state.
    pub fn statement(target_id: impl Into<String>, state: ObjectiveState) -> Self {
        Self::new(TargetType::StatementId, target_id, state)
    }

    /// The same target with a reason for its state (`pass`, `fail`, `other` in OSCAL's
    /// vocabulary, or another token).
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.status.reason = Some(reason.into());
        self
    }
}

/// The verdict on a target (`status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectiveStatus {
    pub state: ObjectiveState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ObjectiveStatus {
    pub fn new(state: ObjectiveState) -> Self {
        Self { state, reason: None, remarks: None, extra: Extra::new() }
    }
}

/// An observation a finding rests on, by uuid.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelatedObservation {
    pub observation_uuid: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl RelatedObservation {
    pub fn new(observation_uuid: impl Into<String>) -> Self {
        Self { observation_uuid: observation_uuid.into(), extra: Extra::new() }
    }
}
