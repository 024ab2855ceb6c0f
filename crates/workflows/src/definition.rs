//! A workflow's definition as a state machine, checked when saved, and the rules an instance is
//! advanced by — pure (no database), unit-tested.
//!
//! * **Saved**: step names unique and plain, an initial step, transitions between known steps,
//!   at least one final step, every step reachable from the initial one, none a dead end (every
//!   non-final step leads on, and final steps lead nowhere), fields well typed, deadlines sane.
//! * **Advanced**: the move must be a transition of the definition (else 400 naming the allowed
//!   ones), the caller's role the step's, the step data exactly the step's fields (required ones
//!   present, each of its type and allowed values, nothing else).
//! * **Deadlines**: a step's deadline is `hours` after its anchor — the instance's start, the
//!   related incident's detection (GDPR Art. 33's 72 hours run from awareness, not from when
//!   someone opened a workflow), or the step's own entry.

use std::collections::{BTreeMap, HashSet, VecDeque};

use custos_core::{Problem, Role};
use custos_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{Duration, OffsetDateTime};

const FIELD_TYPES: &[&str] = &["string", "text", "integer", "number", "boolean", "date", "datetime", "choice"];
const ANCHORS: &[&str] = &["start", "incident_detected", "step_entered"];
const ROLES: &[&str] = &["editor", "admin", "auditor"];
const STEPS_MAX: usize = 100;
const FIELDS_MAX: usize = 50;
/// Ten years.
const HOURS_MAX: i32 = 87_600;

/// What is stored: the definition part of a workflow (its steps and transitions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Definition {
    pub initial_step: String,
    pub steps: Vec<pb::WorkflowStep>,
    pub transitions: Vec<pb::WorkflowTransition>,
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn bad(field: &str, why: impl std::fmt::Display) -> Problem {
    Problem::invalid_field(field, why)
}

impl Definition {
    pub fn step(&self, name: &str) -> Option<&pb::WorkflowStep> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// The steps an instance in `from` may move to, in definition order.
    pub fn next_steps(&self, from: &str) -> Vec<String> {
        self.transitions.iter().filter(|t| t.from == from).map(|t| t.to.clone()).collect()
    }

    /// Checks the definition as saved; normalises defaults (role `editor`).
    pub fn validate(mut self) -> Result<Definition, Problem> {
        if self.steps.is_empty() {
            return Err(bad("steps", "a workflow has at least one step"));
        }
        if self.steps.len() > STEPS_MAX {
            return Err(bad("steps", format!("at most {STEPS_MAX}")));
        }
        let mut names = HashSet::new();
        for (i, step) in self.steps.iter_mut().enumerate() {
            if !plain_name(&step.name) {
                return Err(bad(
                    "steps",
                    format!("step {i}: name {:?} is not lowercase letters, digits and '_'", step.name),
                ));
            }
            if !names.insert(step.name.clone()) {
                return Err(bad("steps", format!("step {:?} is defined twice", step.name)));
            }
            if step.title.trim().is_empty() {
                step.title = step.name.replace('_', " ");
            }
            if step.role.is_empty() {
                step.role = "editor".into();
            }
            if !ROLES.contains(&step.role.as_str()) {
                return Err(bad(
                    "steps",
                    format!("step {:?}: role {:?} is not one of {}", step.name, step.role, ROLES.join(", ")),
                ));
            }
            if step.fields.len() > FIELDS_MAX {
                return Err(bad("steps", format!("step {:?}: at most {FIELDS_MAX} fields", step.name)));
            }
            let mut fields = HashSet::new();
            for f in &step.fields {
                let at = format!("step {:?}, field {:?}", step.name, f.name);
                if !plain_name(&f.name) || !fields.insert(f.name.clone()) {
                    return Err(bad(
                        "steps",
                        format!("{at}: a field name is lowercase letters, digits and '_', once per step"),
                    ));
                }
                if !FIELD_TYPES.contains(&f.r#type.as_str()) {
                    return Err(bad(
                        "steps",
                        format!("{at}: type {:?} is not one of {}", f.r#type, FIELD_TYPES.join(", ")),
                    ));
                }
                if (f.r#type == "choice") == f.allowed_values.is_empty() {
                    return Err(bad(
                        "steps",
                        format!("{at}: allowed_values are given for a choice, and only for a choice"),
                    ));
                }
            }
            if let Some(d) = &step.deadline {
                if !ANCHORS.contains(&d.from.as_str()) {
                    return Err(bad(
                        "steps",
                        format!(
                            "step {:?}: deadline from {:?} is not one of {}",
                            step.name,
                            d.from,
                            ANCHORS.join(", ")
                        ),
                    ));
                }
                if !(1..=HOURS_MAX).contains(&d.hours) {
                    return Err(bad(
                        "steps",
                        format!("step {:?}: deadline hours between 1 and {HOURS_MAX}", step.name),
                    ));
                }
            }
        }
        if self.initial_step.is_empty() {
            self.initial_step = self.steps[0].name.clone();
        }
        if !names.contains(&self.initial_step) {
            return Err(bad("initial_step", format!("{:?} is not one of the steps", self.initial_step)));
        }
        let mut seen = HashSet::new();
        for t in &self.transitions {
            for end in [&t.from, &t.to] {
                if !names.contains(end) {
                    return Err(bad("transitions", format!("{} → {}: {end:?} is not one of the steps", t.from, t.to)));
                }
            }
            if t.from == t.to {
                return Err(bad("transitions", format!("{} → {}: a step does not lead to itself", t.from, t.to)));
            }
            if !seen.insert((t.from.clone(), t.to.clone())) {
                return Err(bad("transitions", format!("{} → {} is given twice", t.from, t.to)));
            }
        }
        let finals: Vec<&str> = self.steps.iter().filter(|s| s.is_final).map(|s| s.name.as_str()).collect();
        if finals.is_empty() {
            return Err(bad("steps", "no step is final (is_final): an instance could never complete"));
        }
        if self.step(&self.initial_step).is_some_and(|s| s.is_final) {
            return Err(bad("initial_step", "the initial step cannot be final"));
        }
        for s in &self.steps {
            let leads = self.transitions.iter().any(|t| t.from == s.name);
            if s.is_final && leads {
                return Err(bad("transitions", format!("{:?} is final: nothing leads out of it", s.name)));
            }
            if !s.is_final && !leads {
                return Err(bad(
                    "transitions",
                    format!("{:?} is a dead end: it is not final and leads nowhere", s.name),
                ));
            }
        }
        let reachable = self.reachable();
        let unreachable: Vec<&str> =
            self.steps.iter().map(|s| s.name.as_str()).filter(|n| !reachable.contains(*n)).collect();
        if !unreachable.is_empty() {
            return Err(bad(
                "transitions",
                format!("unreachable from {:?}: {}", self.initial_step, unreachable.join(", ")),
            ));
        }
        Ok(self)
    }

    fn reachable(&self) -> HashSet<String> {
        let mut seen = HashSet::from([self.initial_step.clone()]);
        let mut queue = VecDeque::from([self.initial_step.clone()]);
        while let Some(at) = queue.pop_front() {
            for next in self.next_steps(&at) {
                if seen.insert(next.clone()) {
                    queue.push_back(next);
                }
            }
        }
        seen
    }

    /// Checks a move from `from` to `to` by `role` with `data`; the data as stored (typed JSON).
    pub fn check_move(
        &self,
        from: &str,
        to: &str,
        role: Role,
        data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, Problem> {
        let allowed = self.next_steps(from);
        if !allowed.iter().any(|s| s == to) {
            return Err(bad(
                "next_step",
                format!(
                    "{to:?} does not follow {from:?}; allowed: {}",
                    if allowed.is_empty() {
                        "none (the instance is at its end)".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        let step = self.step(to).ok_or_else(|| bad("next_step", format!("{to:?} is not a step")))?;
        let may = match step.role.as_str() {
            "admin" => role == Role::Admin,
            "auditor" => matches!(role, Role::Auditor | Role::Admin),
            _ => matches!(role, Role::Editor | Role::Admin),
        };
        if !may {
            return Err(Problem::new(
                custos_core::ErrorKind::PermissionDenied,
                "You do not have permission to perform this action",
                format!("step {to:?} is for the {} role; the {role} role cannot move an instance into it", step.role),
            ));
        }
        check_data(step, data)
    }

    /// The deadlines known when an instance starts (anchored to its start or to the incident's
    /// detection), by step.
    pub fn initial_deadlines(
        &self,
        start: OffsetDateTime,
        detected: Option<OffsetDateTime>,
    ) -> BTreeMap<String, OffsetDateTime> {
        let mut out = BTreeMap::new();
        for s in &self.steps {
            let Some(d) = &s.deadline else { continue };
            let anchor = match d.from.as_str() {
                "start" => start,
                "incident_detected" => detected.unwrap_or(start),
                _ => continue,
            };
            out.insert(s.name.clone(), anchor + Duration::hours(i64::from(d.hours)));
        }
        out
    }

    /// The deadline of `step` entered at `at`, when it is anchored to its entry.
    pub fn entry_deadline(&self, step: &str, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let d = self.step(step)?.deadline.as_ref()?;
        (d.from == "step_entered").then(|| at + Duration::hours(i64::from(d.hours)))
    }
}

fn check_data(step: &pb::WorkflowStep, data: &Map<String, Value>) -> Result<Map<String, Value>, Problem> {
    let field = |name: &str| format!("step_data.{name}");
    for key in data.keys() {
        if !step.fields.iter().any(|f| &f.name == key) {
            let known: Vec<&str> = step.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(bad(
                &field(key),
                format!(
                    "step {:?} takes no such data; it takes: {}",
                    step.name,
                    if known.is_empty() { "nothing".to_owned() } else { known.join(", ") }
                ),
            ));
        }
    }
    let mut out = Map::new();
    for f in &step.fields {
        let Some(v) = data.get(&f.name).filter(|v| !v.is_null()) else {
            if f.required {
                return Err(bad(&field(&f.name), format!("required to enter step {:?} ({})", step.name, f.r#type)));
            }
            continue;
        };
        let ok = match f.r#type.as_str() {
            "string" => v.as_str().is_some_and(|s| !s.trim().is_empty() && s.len() <= 1000),
            "text" => v.as_str().is_some_and(|s| s.len() <= 20_000),
            "integer" => v.as_i64().is_some(),
            "number" => v.as_f64().is_some(),
            "boolean" => v.is_boolean(),
            "date" => v.as_str().is_some_and(|s| custos_core::filter::parse_date("x", s).is_ok()),
            "datetime" => v.as_str().is_some_and(|s| custos_core::filter::parse_timestamp("x", s).is_ok()),
            "choice" => v.as_str().is_some_and(|s| f.allowed_values.iter().any(|a| a == s)),
            _ => false,
        };
        if !ok {
            let expected = match f.r#type.as_str() {
                "choice" => format!("one of {}", f.allowed_values.join(", ")),
                "date" => "a date (YYYY-MM-DD)".to_owned(),
                "datetime" => "an RFC 3339 timestamp".to_owned(),
                "string" => "non-empty text of at most 1000 characters".to_owned(),
                "text" => "text of at most 20000 characters".to_owned(),
                other => format!("a{} {other}", if other.starts_with(['a', 'e', 'i', 'o', 'u']) { "n" } else { "" }),
            };
            return Err(bad(&field(&f.name), format!("{v} is not {expected}")));
        }
        out.insert(f.name.clone(), v.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, is_final: bool) -> pb::WorkflowStep {
        pb::WorkflowStep { name: name.into(), is_final, ..Default::default() }
    }

    fn t(from: &str, to: &str) -> pb::WorkflowTransition {
        pb::WorkflowTransition { from: from.into(), to: to.into() }
    }

    fn simple() -> Definition {
        let mut assess = step("assess", false);
        assess.fields = vec![
            pb::WorkflowField {
                name: "risk_level".into(),
                r#type: "choice".into(),
                required: true,
                allowed_values: vec!["LOW".into(), "HIGH".into()],
                ..Default::default()
            },
            pb::WorkflowField {
                name: "affected_records".into(),
                r#type: "integer".into(),
                required: true,
                ..Default::default()
            },
        ];
        let mut notify = step("notify", false);
        notify.deadline = Some(pb::StepDeadline { from: "incident_detected".into(), hours: 72 });
        notify.role = "admin".into();
        Definition {
            initial_step: "detect".into(),
            steps: vec![step("detect", false), assess, notify, step("closed", true)],
            transitions: vec![
                t("detect", "assess"),
                t("assess", "notify"),
                t("assess", "closed"),
                t("notify", "closed"),
            ],
        }
    }

    #[test]
    fn a_sound_definition_is_accepted_and_every_flaw_named() {
        assert!(simple().validate().is_ok());
        let flaws: Vec<(Definition, &str)> = vec![
            (Definition { steps: vec![], ..simple() }, "at least one step"),
            (Definition { initial_step: "nope".into(), ..simple() }, "not one of the steps"),
            (
                {
                    let mut d = simple();
                    d.transitions.push(t("assess", "ghost"));
                    d
                },
                "\"ghost\" is not one of the steps",
            ),
            (
                {
                    let mut d = simple();
                    d.steps[3].is_final = false;
                    d
                },
                "no step is final",
            ),
            (
                {
                    let mut d = simple();
                    d.transitions.retain(|x| x.from != "notify");
                    d
                },
                "dead end",
            ),
            (
                {
                    let mut d = simple();
                    d.steps.push(step("orphan", true));
                    d
                },
                "unreachable from \"detect\": orphan",
            ),
            (
                {
                    let mut d = simple();
                    d.transitions.push(t("closed", "detect"));
                    d
                },
                "final: nothing leads out",
            ),
            (
                {
                    let mut d = simple();
                    d.steps[1].fields[0].allowed_values.clear();
                    d
                },
                "allowed_values",
            ),
            (
                {
                    let mut d = simple();
                    d.steps[2].deadline = Some(pb::StepDeadline { from: "noon".into(), hours: 1 });
                    d
                },
                "deadline from",
            ),
            (
                {
                    let mut d = simple();
                    d.steps.push(step("detect", true));
                    d
                },
                "defined twice",
            ),
        ];
        for (d, expected) in flaws {
            let p = d.validate().unwrap_err();
            assert!(p.details.as_str().unwrap().contains(expected), "{expected}: {p:?}");
        }
    }

    #[test]
    fn moves_follow_transitions_roles_and_typed_data() {
        let d = simple().validate().unwrap();
        let data = |v: Value| v.as_object().unwrap().clone();
        let ok = d.check_move(
            "detect",
            "assess",
            Role::Editor,
            &data(serde_json::json!({"risk_level": "HIGH", "affected_records": 1000})),
        );
        assert_eq!(ok.unwrap()["affected_records"], 1000);
        let err = |r: Result<Map<String, Value>, Problem>| {
            let p = r.unwrap_err();
            format!("{} {}", p.error, p.details)
        };
        assert!(err(d.check_move("detect", "closed", Role::Admin, &Map::new())).contains("allowed: assess"));
        assert!(
            err(d.check_move("detect", "assess", Role::Editor, &data(serde_json::json!({"risk_level": "HIGH"}))))
                .contains("step_data.affected_records")
        );
        assert!(
            err(d.check_move(
                "detect",
                "assess",
                Role::Editor,
                &data(serde_json::json!({"risk_level": "MAYBE", "affected_records": 1}))
            ))
            .contains("one of LOW, HIGH")
        );
        assert!(
            err(d.check_move(
                "detect",
                "assess",
                Role::Editor,
                &data(serde_json::json!({"risk_level": "LOW", "affected_records": "many"}))
            ))
            .contains("an integer")
        );
        assert!(
            err(d.check_move(
                "detect",
                "assess",
                Role::Editor,
                &data(serde_json::json!({"risk_level": "LOW", "affected_records": 1, "colour": "red"}))
            ))
            .contains("takes no such data")
        );
        assert!(err(d.check_move("assess", "notify", Role::Editor, &Map::new())).contains("for the admin role"));
        assert!(d.check_move("assess", "notify", Role::Admin, &Map::new()).is_ok());
        assert!(
            d.check_move(
                "detect",
                "assess",
                Role::Viewer,
                &data(serde_json::json!({"risk_level": "LOW", "affected_records": 1}))
            )
            .is_err()
        );
    }

    #[test]
    fn deadlines_run_from_detection_not_from_the_workflow() {
        let d = simple().validate().unwrap();
        let detected = time::macros::datetime!(2026-03-02 09:00 UTC);
        let started = time::macros::datetime!(2026-03-04 15:00 UTC);
        let due = d.initial_deadlines(started, Some(detected));
        assert_eq!(due["notify"], time::macros::datetime!(2026-03-05 09:00 UTC), "72 hours after detection");
        assert_eq!(d.initial_deadlines(started, None)["notify"], time::macros::datetime!(2026-03-07 15:00 UTC));
    }
}
