//! The wire formats of dates and times: ISO dates, RFC 3339 timestamps in UTC with a `Z`.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

pub const DATE_FORMAT: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");
const TIMESTAMP_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn today() -> Date {
    now().date()
}

/// The start of the last `days` days: `days` before now, or the year 1 when that lies earlier
/// (so "the last N days" with an absurd N means all of it, not an overflow; the year 1 is also
/// one PostgreSQL's timestamps hold).
pub fn days_ago(days: u32) -> OffsetDateTime {
    days_before(now(), days)
}

fn days_before(t: OffsetDateTime, days: u32) -> OffsetDateTime {
    let earliest = time::macros::datetime!(0001-01-01 00:00:00 UTC);
    t.checked_sub(time::Duration::days(i64::from(days))).filter(|at| *at > earliest).unwrap_or(earliest)
}

pub fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC).format(TIMESTAMP_FORMAT).unwrap_or_else(|_| t.to_string())
}

pub fn date(d: Date) -> String {
    d.format(DATE_FORMAT).unwrap_or_else(|_| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(timestamp(datetime!(2024-01-01 01:00:00 +01:00)), "2024-01-01T00:00:00.000000Z");
        assert_eq!(date(time::macros::date!(2018 - 05 - 25)), "2018-05-25");
    }

    #[test]
    fn days_ago_stops_at_the_year_one() {
        let t = datetime!(2026-12-06 12:00:00 UTC);
        assert_eq!(days_before(t, 0), t);
        assert_eq!(days_before(t, 2555), datetime!(2019-12-08 12:00:00 UTC));
        assert_eq!(days_before(t, 800_000), datetime!(0001-01-01 00:00:00 UTC));
        assert_eq!(days_before(t, u32::MAX), datetime!(0001-01-01 00:00:00 UTC));
        assert!(days_ago(u32::MAX) < now());
    }
}
