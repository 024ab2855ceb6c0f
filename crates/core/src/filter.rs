//! Parsing of filter parameters and body fields into typed values, with 400s that name the
//! parameter — an unknown enum value or a malformed date is an error, never an empty list.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::error::Problem;
use crate::timefmt::DATE_FORMAT;

/// A closed set of string values (an enumeration of the seed, e.g. `framework_type`).
pub trait Choice: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    fn parse_field(field: &str, raw: &str) -> Result<Self, Problem> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == raw)
            .ok_or_else(|| Problem::invalid_field(field, format!("{raw:?} is not one of: {}", Self::allowed())))
    }

    fn allowed() -> String {
        Self::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Declares a [`Choice`] enum whose variants are written as the seed's plain strings.
#[macro_export]
macro_rules! choice {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($variant),+ }

        impl $crate::filter::Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::filter::Choice::as_str(*self))
            }
        }
    };
}

pub fn parse_date(field: &str, raw: &str) -> Result<Date, Problem> {
    Date::parse(raw.trim(), DATE_FORMAT)
        .map_err(|_| Problem::invalid_field(field, format!("{raw:?} is not a date in YYYY-MM-DD form")))
}

pub fn parse_opt_date(field: &str, raw: Option<&str>) -> Result<Option<Date>, Problem> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_date(field, s).map(Some),
    }
}

/// An RFC 3339 timestamp (`2024-03-01T09:30:00Z`, any offset), normalised to UTC.
pub fn parse_timestamp(field: &str, raw: &str) -> Result<OffsetDateTime, Problem> {
    // In UTC it may fall outside the years 1-9999 that are held (`9999-12-31T23:30:00-01:00`).
    OffsetDateTime::parse(raw.trim(), &Rfc3339).ok().and_then(|t| t.checked_to_offset(UtcOffset::UTC)).ok_or_else(
        || Problem::invalid_field(field, format!("{raw:?} is not an RFC 3339 timestamp (e.g. 2024-03-01T09:30:00Z)")),
    )
}

pub fn parse_opt_timestamp(field: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, Problem> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => parse_timestamp(field, s).map(Some),
    }
}

/// Which end of a day a date-only time filter stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEdge {
    /// `…_after=2024-03-01`: from the start of that day (UTC).
    Start,
    /// `…_before=2024-03-01`: up to the end of that day (UTC), i.e. before the next day starts.
    End,
}

/// A time filter bound (`occurred_after`, `due_before`, …): an RFC 3339 timestamp, or an ISO date
/// standing for the start or the end of that day in UTC. Either way the bound is inclusive.
pub fn parse_opt_time_bound(field: &str, raw: Option<&str>, edge: DayEdge) -> Result<Option<OffsetDateTime>, Problem> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else { return Ok(None) };
    if let Ok(date) = Date::parse(raw, DATE_FORMAT) {
        // The last microsecond of the day, not the next midnight less one: 9999-12-31 has no next day.
        return Ok(Some(
            match edge {
                DayEdge::Start => date.midnight(),
                DayEdge::End => date.with_time(time::macros::time!(23:59:59.999_999)),
            }
            .assume_utc(),
        ));
    }
    // In UTC it may fall outside the years 1-9999 that are held (`9999-12-31T23:30:00-05:00`).
    OffsetDateTime::parse(raw, &Rfc3339).ok().and_then(|t| t.checked_to_offset(UtcOffset::UTC)).map(Some).ok_or_else(
        || Problem::invalid_field(field, format!("{raw:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 timestamp")),
    )
}

pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw.trim()).map_err(|_| Problem::invalid_field(field, format!("{raw:?} is not a valid UUID")))
}

/// A resource id taken from a path: a malformed one cannot name anything, so it is a 404.
pub fn parse_id(what: &str, raw: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw.trim()).map_err(|_| Problem::not_found(what, raw))
}

/// A required, non-blank text field, trimmed.
pub fn required_text(field: &str, raw: &str, max_len: usize) -> Result<String, Problem> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Problem::invalid_field(field, "This field is required and may not be blank"));
    }
    bounded_text(field, value, max_len)
}

pub fn bounded_text(field: &str, raw: &str, max_len: usize) -> Result<String, Problem> {
    if raw.chars().count() > max_len {
        return Err(Problem::invalid_field(field, format!("at most {max_len} characters")));
    }
    Ok(raw.to_owned())
}

/// Text of an optional parameter, trimmed; blank is absent.
pub fn opt_text(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|s| !s.is_empty())
}

/// An optional filter on who did something (a report's `prepared_by`): an actor label as
/// stored (`user:<id>`, `operator:<name>`, …), or a bare user id, which means that user's label;
/// blank is absent.
pub fn opt_actor(raw: Option<&str>) -> Option<String> {
    opt_text(raw).map(|raw| match Uuid::parse_str(raw) {
        Ok(user) => format!("user:{user}"),
        Err(_) => raw.to_owned(),
    })
}

/// An optional value of a closed set (a filter, an optional field); blank is absent.
pub fn opt_choice<C: Choice>(field: &str, raw: Option<&str>) -> Result<Option<C>, Problem> {
    opt_text(raw).map(|raw| C::parse_field(field, raw)).transpose()
}

/// A required value of a closed set: blank is a 400 listing the values.
pub fn choice<C: Choice>(field: &str, raw: &str) -> Result<C, Problem> {
    match opt_text(Some(raw)) {
        None => Err(Problem::invalid_field(field, format!("This field is required: one of {}", C::allowed()))),
        Some(raw) => C::parse_field(field, raw),
    }
}

/// An optional id (a filter, an optional reference); blank is absent, malformed a 400.
pub fn opt_uuid(field: &str, raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    opt_text(raw).map(|raw| parse_uuid(field, raw)).transpose()
}

/// The `ILIKE` pattern of a `search` parameter, if one is given (see [`contains_pattern`]).
pub fn search_pattern(raw: Option<&str>) -> Option<String> {
    opt_text(raw).map(contains_pattern)
}

/// A `LIKE`/`ILIKE` pattern matching `needle` anywhere, with the wildcards in it escaped.
pub fn contains_pattern(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    out.push('%');
    for ch in needle.trim().chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::choice! { enum Colour { Red = "RED", Green = "GREEN" } }

    #[test]
    fn choices_parse_exactly_and_list_allowed_values() {
        assert_eq!(Colour::parse_field("c", "RED").unwrap(), Colour::Red);
        let err = Colour::parse_field("colour", "red").unwrap_err();
        assert_eq!(err.error, "Invalid value for 'colour'");
        assert!(err.details.as_str().unwrap().contains("RED, GREEN"));
    }

    #[test]
    fn optional_and_required_values() {
        assert_eq!(opt_choice::<Colour>("c", Some(" GREEN ")).unwrap(), Some(Colour::Green));
        assert_eq!(opt_choice::<Colour>("c", Some("  ")).unwrap(), None);
        assert_eq!(opt_choice::<Colour>("c", None).unwrap(), None);
        assert_eq!(opt_choice::<Colour>("colour", Some("BLUE")).unwrap_err().error, "Invalid value for 'colour'");
        let required = choice::<Colour>("colour", " ").unwrap_err();
        assert!(required.details.as_str().unwrap().starts_with("This field is required: one of RED"));
        assert_eq!(choice::<Colour>("colour", "RED").unwrap(), Colour::Red);
        assert_eq!(opt_uuid("u", Some("")).unwrap(), None);
        assert!(opt_uuid("u", Some("nope")).is_err());
        assert_eq!(search_pattern(Some(" a_b ")).as_deref(), Some("%a\\_b%"));
        assert_eq!(search_pattern(Some(" ")), None);
    }

    #[test]
    fn dates_and_patterns() {
        assert!(parse_date("d", "2024-02-30").is_err());
        assert_eq!(parse_date("d", "2024-02-29").unwrap().to_string(), "2024-02-29");
        assert_eq!(contains_pattern(" 50%_a\\ "), "%50\\%\\_a\\\\%");
    }

    #[test]
    fn timestamps_and_time_bounds() {
        let t = parse_timestamp("t", "2024-03-01T10:30:00+01:00").unwrap();
        assert_eq!(crate::timefmt::timestamp(t), "2024-03-01T09:30:00.000000Z");
        assert!(parse_timestamp("t", "2024-03-01").is_err());
        // Valid RFC 3339, but in UTC beyond the year 9999: refused, not a panic.
        assert!(parse_timestamp("t", "9999-12-31T23:30:00-01:00").is_err());
        assert!(parse_timestamp("t", "9999-12-31T23:30:00+01:00").is_ok());
        let start = parse_opt_time_bound("a", Some("2024-03-01"), DayEdge::Start).unwrap().unwrap();
        assert_eq!(crate::timefmt::timestamp(start), "2024-03-01T00:00:00.000000Z");
        let end = parse_opt_time_bound("b", Some("2024-03-01"), DayEdge::End).unwrap().unwrap();
        assert_eq!(crate::timefmt::timestamp(end), "2024-03-01T23:59:59.999999Z");
        let err = parse_opt_time_bound("occurred_after", Some("yesterday"), DayEdge::Start).unwrap_err();
        assert_eq!(err.error, "Invalid value for 'occurred_after'");
        assert_eq!(parse_opt_time_bound("a", Some(" "), DayEdge::Start).unwrap(), None);
        // The last day held, and an offset that would carry a time past it: a bound, or a 400.
        let last = parse_opt_time_bound("b", Some("9999-12-31"), DayEdge::End).unwrap().unwrap();
        assert_eq!(crate::timefmt::timestamp(last), "9999-12-31T23:59:59.999999Z");
        assert!(parse_opt_time_bound("b", Some("9999-12-31T23:30:00-05:00"), DayEdge::End).is_err());
    }
}
