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
}
