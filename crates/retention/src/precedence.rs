//! The precedence of retention, implemented once (the explain endpoint answers with it, and
//! retention runs act by it). The rules, in the order they apply — the four principles records
//! managers know from the enterprise suites (Microsoft Purview's "principles of retention"):
//!
//! 1. **A legal hold beats any deletion.** A held record is never deleted — unless the deleting
//!    policy has `legal_hold_override` and an admin started the run (which is audited).
//! 2. **Retention wins over deletion, and the longest retention wins.** Every policy covering a
//!    record retains it for its period; the record is kept until the latest of those ends (and
//!    an evidence item's own `retention_period`, an explicit retention of that one item).
//! 3. **An explicit scope beats an implicit one** in choosing the deletion: among the policies
//!    that would delete the record, those that name it by a narrower scope (categories,
//!    classifications, frameworks) are chosen over those covering every record of its type.
//! 4. **The shortest deletion period wins** among the deletions left.
//!
//! A record is eligible when the chosen deletion's date and the longest retention have both
//! passed; without any deleting policy it is kept indefinitely. Periods in months and years are
//! counted by the calendar (31 January + 1 month = 28 or 29 February).

use custos_core::hold::HoldRef;
use time::{Date, Duration, Month, OffsetDateTime};
use uuid::Uuid;

use crate::model::{DeletionMethod, RetentionUnit};

/// A policy covering a record, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Covering {
    pub policy: Uuid,
    pub name: String,
    pub period: i32,
    pub unit: RetentionUnit,
    /// `Some` if the policy deletes (auto_delete / auto_archive, or a run of it asked for).
    pub deletes: Option<DeletionMethod>,
    pub explicit: bool,
    pub legal_hold_override: bool,
}

/// The record, as the rules see it.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// When its retention starts (`None`: not yet, e.g. an open incident).
    pub starts_at: Option<OffsetDateTime>,
    /// What it starts from, in words ("resolved_at").
    pub starts_from: String,
    /// An explicit retention of this one record in days (an evidence item's `retention_period`).
    pub own_retention_days: Option<i32>,
    /// The holds covering it.
    pub holds: Vec<HoldRef>,
}

/// What the rules decide for one record at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Per covering policy: its retention's end and, if it deletes, from when.
    pub per_policy: Vec<PolicyOutcome>,
    /// The longest retention's end and whose it is (`None` for the record's own retention).
    pub retained_until: Option<(OffsetDateTime, Option<Uuid>)>,
    /// The deletion that applies (rules 3 and 4): the policy, how, and its own date.
    pub deletion: Option<(Uuid, DeletionMethod, OffsetDateTime)>,
    /// When the record is (or becomes) eligible: the later of the deletion's date and the
    /// longest retention's end.
    pub eligible_at: Option<OffsetDateTime>,
    /// The rules as they applied, in words.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub policy: Uuid,
    pub retain_until: Option<OffsetDateTime>,
    pub deletes_at: Option<OffsetDateTime>,
    pub longest_retention: bool,
    pub deletion_applies: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No active policy covers it.
    NoPolicy,
    /// Its retention has not started (an open incident, an unremediated vulnerability).
    NotStarted,
    /// Within its retention (or before its deletion date).
    Retained,
    /// Past its retention, but no policy covering it deletes.
    KeptIndefinitely,
    /// Eligible, but a legal hold keeps it (rule 1).
    Held,
    /// Eligible: the applying deletion may act on it now.
    Eligible,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::NoPolicy => "no_policy",
            Verdict::NotStarted => "not_started",
            Verdict::Retained => "retained",
            Verdict::KeptIndefinitely => "kept_indefinitely",
            Verdict::Held => "held",
            Verdict::Eligible => "eligible",
        }
    }
}

/// `start` plus a period, by the calendar for months and years (the day clamped to the month's
/// last). `None` past the calendar's end.
pub fn add_period(start: OffsetDateTime, period: i32, unit: RetentionUnit) -> Option<OffsetDateTime> {
    let n = i64::from(period);
    match unit {
        RetentionUnit::Days => start.checked_add(Duration::days(n)),
        RetentionUnit::Weeks => start.checked_add(Duration::weeks(n)),
        RetentionUnit::Months => add_months(start, n),
        RetentionUnit::Years => add_months(start, n.checked_mul(12)?),
    }
}

fn add_months(start: OffsetDateTime, months: i64) -> Option<OffsetDateTime> {
    let zero_based = i64::from(start.year()) * 12 + i64::from(u8::from(start.month())) - 1 + months;
    let year = i32::try_from(zero_based.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(zero_based.rem_euclid(12) + 1).ok()?).ok()?;
    let last = time::util::days_in_month(month, year);
    let date = Date::from_calendar_date(year, month, start.day().min(last)).ok()?;
    Some(start.replace_date(date))
}

/// Applies the rules to `record` covered by `covering` (active policies only) at `now`.
/// `override_holds`: the run is an admin's, so a deleting policy with `legal_hold_override`
/// may delete a held record.
pub fn decide(record: &Record, covering: &[Covering], now: OffsetDateTime, override_holds: bool) -> Decision {
    let mut reasons = Vec::new();
    let mut decision = Decision {
        verdict: Verdict::NoPolicy,
        per_policy: Vec::new(),
        retained_until: None,
        deletion: None,
        eligible_at: None,
        reasons: Vec::new(),
    };
    if covering.is_empty() && record.own_retention_days.is_none() {
        reasons.push("no active retention policy covers it".to_owned());
        decision.reasons = reasons;
        return decision;
    }
    let Some(start) = record.starts_at else {
        decision.verdict = Verdict::NotStarted;
        decision.per_policy = covering
            .iter()
            .map(|c| PolicyOutcome {
                policy: c.policy,
                retain_until: None,
                deletes_at: None,
                longest_retention: false,
                deletion_applies: false,
            })
            .collect();
        reasons.push(format!("its retention has not started: it has no {} yet", record.starts_from));
        decision.reasons = reasons;
        return decision;
    };
    let far = OffsetDateTime::new_utc(Date::MAX, time::Time::MIDNIGHT);
    let ends: Vec<OffsetDateTime> =
        covering.iter().map(|c| add_period(start, c.period, c.unit).unwrap_or(far)).collect();

    // Rule 2: the longest retention.
    let mut longest: Option<(OffsetDateTime, Option<Uuid>)> = None;
    for (c, end) in covering.iter().zip(&ends) {
        if longest.is_none_or(|(t, _)| *end > t) {
            longest = Some((*end, Some(c.policy)));
        }
    }
    if let Some(days) = record.own_retention_days {
        let end = add_period(start, days, RetentionUnit::Days).unwrap_or(far);
        if longest.is_none_or(|(t, _)| end > t) {
            longest = Some((end, None));
        }
    }
    if let Some((until, by)) = longest {
        let whose = match by.and_then(|id| covering.iter().find(|c| c.policy == id)) {
            Some(c) => format!("policy {:?}", c.name),
            None => "the record's own retention_period".to_owned(),
        };
        reasons.push(format!(
            "retention wins over deletion and the longest retention wins: kept until {} ({whose})",
            custos_core::timefmt::timestamp(until)
        ));
    }

    // Rules 3 and 4: the deletion that applies.
    let deleting: Vec<(&Covering, OffsetDateTime)> =
        covering.iter().zip(&ends).filter(|(c, _)| c.deletes.is_some()).map(|(c, e)| (c, *e)).collect();
    let any_explicit = deleting.iter().any(|(c, _)| c.explicit);
    let candidates: Vec<&(&Covering, OffsetDateTime)> =
        deleting.iter().filter(|(c, _)| c.explicit || !any_explicit).collect();
    if any_explicit && candidates.len() < deleting.len() {
        reasons.push("an explicit scope beats an implicit one: only the explicitly scoped deletions count".to_owned());
    }
    let chosen = candidates.iter().min_by_key(|(c, end)| (*end, c.policy)).map(|(c, end)| (*c, *end));
    if let Some((c, at)) = chosen {
        if candidates.len() > 1 {
            reasons.push(format!("the shortest deletion period wins: policy {:?}", c.name));
        }
        decision.deletion = c.deletes.map(|m| (c.policy, m, at));
    }
    decision.per_policy = covering
        .iter()
        .zip(&ends)
        .map(|(c, end)| PolicyOutcome {
            policy: c.policy,
            retain_until: Some(*end),
            deletes_at: c.deletes.map(|_| *end),
            longest_retention: longest.is_some_and(|(_, by)| by == Some(c.policy)),
            deletion_applies: chosen.is_some_and(|(x, _)| x.policy == c.policy),
        })
        .collect();
    decision.retained_until = longest;

    let Some((deleter, method, deletes_at)) = decision.deletion else {
        decision.verdict =
            if longest.is_some_and(|(t, _)| t > now) { Verdict::Retained } else { Verdict::KeptIndefinitely };
        reasons.push("no policy covering it deletes: it is kept indefinitely once its retention ends".to_owned());
        decision.reasons = reasons;
        return decision;
    };
    let eligible_at = longest.map_or(deletes_at, |(t, _)| t.max(deletes_at));
    decision.eligible_at = Some(eligible_at);
    if eligible_at > now {
        decision.verdict = Verdict::Retained;
        reasons.push(format!(
            "{} ({method}) from {}",
            "eligible for deletion",
            custos_core::timefmt::timestamp(eligible_at)
        ));
        decision.reasons = reasons;
        return decision;
    }
    // Rule 1: holds.
    if !record.holds.is_empty() {
        let names: Vec<String> = record.holds.iter().map(ToString::to_string).collect();
        let overriding = override_holds && covering.iter().any(|c| c.policy == deleter && c.legal_hold_override);
        if overriding {
            reasons.push(format!(
                "held by {}, but the deleting policy overrides legal holds and an admin started the run",
                names.join(", ")
            ));
        } else {
            decision.verdict = Verdict::Held;
            reasons.push(format!("a legal hold beats any deletion: held by {}", names.join(", ")));
            decision.reasons = reasons;
            return decision;
        }
    }
    decision.verdict = Verdict::Eligible;
    reasons.push(format!("eligible for deletion ({method}) since {}", custos_core::timefmt::timestamp(eligible_at)));
    decision.reasons = reasons;
    decision
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const START: OffsetDateTime = datetime!(2020-01-31 10:00 UTC);

    fn policy(n: u128, period: i32, unit: RetentionUnit, deletes: Option<DeletionMethod>, explicit: bool) -> Covering {
        Covering {
            policy: Uuid::from_u128(n),
            name: format!("p{n}"),
            period,
            unit,
            deletes,
            explicit,
            legal_hold_override: false,
        }
    }

    fn record() -> Record {
        Record { starts_at: Some(START), starts_from: "resolved_at".into(), ..Record::default() }
    }

    const YEARS: RetentionUnit = RetentionUnit::Years;
    const SOFT: Option<DeletionMethod> = Some(DeletionMethod::Soft);
    const HARD: Option<DeletionMethod> = Some(DeletionMethod::Hard);

    #[test]
    fn months_and_years_are_calendar_arithmetic() {
        assert_eq!(add_period(START, 1, RetentionUnit::Months), Some(datetime!(2020-02-29 10:00 UTC)));
        assert_eq!(add_period(START, 13, RetentionUnit::Months), Some(datetime!(2021-02-28 10:00 UTC)));
        assert_eq!(add_period(datetime!(2020-02-29 0:00 UTC), 1, YEARS), Some(datetime!(2021-02-28 0:00 UTC)));
        assert_eq!(add_period(START, 2, RetentionUnit::Weeks), Some(datetime!(2020-02-14 10:00 UTC)));
        assert_eq!(add_period(START, 30, RetentionUnit::Days), Some(datetime!(2020-03-01 10:00 UTC)));
        assert_eq!(add_period(START, 30_000, YEARS), None);
    }

    #[test]
    fn without_a_policy_nothing_happens() {
        let d = decide(&record(), &[], datetime!(2030-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::NoPolicy);
    }

    #[test]
    fn an_open_record_has_not_started_its_retention() {
        let r = Record { starts_at: None, starts_from: "resolved_at".into(), ..Record::default() };
        let d = decide(&r, &[policy(1, 1, YEARS, SOFT, false)], datetime!(2030-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::NotStarted);
        assert!(d.reasons[0].contains("no resolved_at yet"), "{:?}", d.reasons);
    }

    #[test]
    fn rule_2_the_longest_retention_wins_over_an_earlier_deletion() {
        // Delete after 2 years, but another policy retains for 7: eligible after 7.
        let covering = [policy(1, 2, YEARS, SOFT, false), policy(2, 7, YEARS, None, false)];
        let d = decide(&record(), &covering, datetime!(2023-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::Retained);
        assert_eq!(d.retained_until, Some((datetime!(2027-01-31 10:00 UTC), Some(Uuid::from_u128(2)))));
        assert_eq!(d.eligible_at, Some(datetime!(2027-01-31 10:00 UTC)));
        assert_eq!(d.deletion.map(|x| x.0), Some(Uuid::from_u128(1)));
        assert!(d.per_policy[1].longest_retention && d.per_policy[0].deletion_applies);
        let later = decide(&record(), &covering, datetime!(2027-02-01 0:00 UTC), false);
        assert_eq!(later.verdict, Verdict::Eligible);
    }

    #[test]
    fn the_records_own_retention_counts_as_the_longest_when_it_is() {
        let r = Record { own_retention_days: Some(3650), ..record() };
        let d = decide(&r, &[policy(1, 1, YEARS, HARD, false)], datetime!(2025-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::Retained);
        assert_eq!(d.retained_until.map(|x| x.1), Some(None));
        assert!(d.reasons[0].contains("own retention_period"), "{:?}", d.reasons);
    }

    #[test]
    fn rule_3_an_explicit_scope_beats_an_implicit_one_in_choosing_the_deletion() {
        // Implicit: hard-delete after 1 year; explicit (e.g. DATA_BREACH): archive after 3.
        let covering = [policy(1, 1, YEARS, HARD, false), policy(2, 3, YEARS, Some(DeletionMethod::Archive), true)];
        let d = decide(&record(), &covering, datetime!(2024-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::Eligible);
        assert_eq!(d.deletion.map(|x| (x.0, x.1)), Some((Uuid::from_u128(2), DeletionMethod::Archive)));
        assert!(d.reasons.iter().any(|r| r.contains("explicit scope beats")), "{:?}", d.reasons);
    }

    #[test]
    fn rule_4_the_shortest_deletion_period_wins_among_equals() {
        let covering = [policy(1, 5, YEARS, HARD, true), policy(2, 3, YEARS, SOFT, true)];
        let d = decide(&record(), &covering, datetime!(2030-01-01 0:00 UTC), false);
        assert_eq!(d.deletion.map(|x| x.0), Some(Uuid::from_u128(2)));
        // The longest retention still holds it until year 5 (rule 2 before rule 4).
        assert_eq!(d.eligible_at, Some(datetime!(2025-01-31 10:00 UTC)));
        assert!(d.reasons.iter().any(|r| r.contains("shortest deletion period wins")), "{:?}", d.reasons);
    }

    #[test]
    fn rule_1_a_hold_beats_any_deletion_unless_an_admin_overrides_with_a_policy_that_allows_it() {
        let hold =
            HoldRef { id: Uuid::from_u128(9), case_name: "Smith v. Acme".to_owned(), case_number: String::new() };
        let r = Record { holds: vec![hold], ..record() };
        let mut p = policy(1, 1, YEARS, HARD, false);
        let now = datetime!(2030-01-01 0:00 UTC);
        assert_eq!(decide(&r, std::slice::from_ref(&p), now, true).verdict, Verdict::Held, "no override on the policy");
        p.legal_hold_override = true;
        let held = decide(&r, std::slice::from_ref(&p), now, false);
        assert_eq!(held.verdict, Verdict::Held, "not an admin's run");
        assert!(held.reasons.last().unwrap().contains("Smith v. Acme"), "{:?}", held.reasons);
        assert_eq!(decide(&r, &[p], now, true).verdict, Verdict::Eligible);
    }

    #[test]
    fn retain_only_policies_keep_indefinitely_after_their_period() {
        let d = decide(&record(), &[policy(1, 1, YEARS, None, false)], datetime!(2030-01-01 0:00 UTC), false);
        assert_eq!(d.verdict, Verdict::KeptIndefinitely);
        assert_eq!(d.eligible_at, None);
    }
}
