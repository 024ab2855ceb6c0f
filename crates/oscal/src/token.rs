//! OSCAL's lexical types Custos needs to read and write: tokens (ids), UUIDs and timestamps.

/// Whether `s` is an OSCAL token (`token` datatype, the type of every `id`): OSCAL 1.1's
/// `^(\p{L}|_)(\p{L}|\p{N}|[.\-_])*$` — a letter or `_`, then letters, digits, `.`, `-`, `_`.
///
/// Letters and digits are Unicode's. Without a table of general categories (no regex crate),
/// a letter is a character of Unicode's `Alphabetic` property that is not numeric: exactly
/// `\p{L}` for ASCII and every script's letters, and more only for a few combining marks
/// (`Other_Alphabetic`), which no real identifier starts with.
pub fn is_token(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else { return false };
    (is_letter(first) || first == '_') && chars.all(is_token_char)
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic() && !c.is_numeric()
}

fn is_token_char(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || matches!(c, '.' | '-' | '_')
}

/// A character [`to_token`] keeps: ASCII letters and digits, `.`, `-`, `_`; and a non-ASCII
/// letter or digit only within the ranges of XML's name characters in the Basic Multilingual
/// Plane, which OSCAL 1.0's token pattern (still checked by compliance-trestle) allows, so that
/// what Custos writes is a token under both.
fn keeps(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    }
    is_token_char(c)
        && matches!(c,
            '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}'
            | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}'
            | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}'
            | '\u{FDF0}'..='\u{FFFD}')
}

/// A valid, readable OSCAL token for any identifier (a requirement's reference in its framework:
/// `A.5.1`, `Art. 32`, `164.308(a)(1)(ii)(A)`), for the `id`s Custos writes.
///
/// The scheme, chosen to keep the identifier recognisable:
/// 1. letters, digits, `.`, `-` and `_` are kept as they are, case included (`GV.OC-01`,
///    `CC6.1`, `A.5.1` are tokens already and come back unchanged);
/// 2. each run of other characters (spaces, parentheses, `§`, `/`, …) becomes one `_`, and a run
///    at the end is dropped: `Art. 32` → `Art._32`, `164.308(a)(1)(ii)(A)` → `164.308_a_1_ii_A`
///    (before step 3);
/// 3. a token must start with a letter or `_`: if the result starts with anything else (a digit,
///    `.` or `-`), `_` is put before it: `8.3.6` → `_8.3.6`, `164.308(a)(1)(ii)(A)` →
///    `_164.308_a_1_ii_A`; nothing left at all (an empty or all-punctuation input) gives `_`.
///
/// Non-ASCII letters and digits are kept where both OSCAL 1.1's pattern and the XML-name pattern
/// of OSCAL 1.0 (which compliance-trestle checks) allow them, and replaced otherwise. The result
/// is always [`is_token`], and `to_token(to_token(s)) == to_token(s)`.
///
/// Distinct identifiers of one framework keep distinct tokens in practice: only identifiers
/// differing in *which* punctuation separates the same parts (`A 1`, `A/1`, `A_1`), in trailing
/// punctuation (`164.308(a)` and `164.308(a`), or by a leading `_` before a digit (`1` and `_1`)
/// collide; a caller writing a whole framework should still check its ids are distinct.
pub fn to_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    let mut pending_run = false;
    for c in s.chars() {
        if keeps(c) {
            if pending_run {
                out.push('_');
                pending_run = false;
            }
            out.push(c);
        } else {
            pending_run = true;
        }
    }
    match out.chars().next() {
        None => "_".to_owned(),
        Some(first) if first == '_' || is_letter(first) => out,
        Some(_) => format!("_{out}"),
    }
}

/// Whether `s` is a UUID as OSCAL 1.1 requires (`uuid` datatype): version 4 (random) or 5, RFC
/// 4122 variant, `8-4-4-4-12` hexadecimal digits of either case.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4' || c == b'5',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b' | b'A' | b'B'),
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `s` is a timestamp as OSCAL 1.1 requires (`date-time-with-timezone`): RFC 3339 with
/// seconds and an explicit zone, `YYYY-MM-DDThh:mm:ss[.fraction](Z|±hh:mm)`, a real calendar
/// date of the years 1900–2999, and an offset of at most 14 hours in whole, half or three-quarter
/// hours (OSCAL's pattern lists the offsets in use; this accepts those and a few more).
pub fn is_date_time_with_timezone(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0, |n, &d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19))
    else {
        return false;
    };
    if !(at(4, b'-') && at(7, b'-') && at(10, b'T') && at(13, b':') && at(16, b':')) {
        return false;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if !(1900..=2999).contains(&year) || day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let (Some(h), Some(m)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else { return false };
            at(i + 3, b':') && i + 6 == b.len() && h <= 14 && matches!(m, 0 | 30 | 45) && (h < 14 || m == 0)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_oscal_pattern() {
        for ok in ["ac-1", "ac-1_smt.a", "_8", "A.5.1", "GV.OC-01", "Überblick", "控制-1", "x"] {
            assert!(is_token(ok), "{ok}");
        }
        for bad in ["", "1a", ".a", "-a", "a b", "a(1)", "a/b", "a:b", "Ⅻ", "a§"] {
            assert!(!is_token(bad), "{bad}");
        }
    }

    #[test]
    fn to_token_keeps_tokens_and_mends_the_rest() {
        let cases = [
            ("A.5.1", "A.5.1"),
            ("GV.OC-01", "GV.OC-01"),
            ("CC6.1", "CC6.1"),
            ("8.3.6", "_8.3.6"),
            ("Art. 5", "Art._5"),
            ("Art. 32", "Art._32"),
            ("164.308(a)(1)(ii)(A)", "_164.308_a_1_ii_A"),
            ("164.308(a)(1)(ii)(B)", "_164.308_a_1_ii_B"),
            ("§ 12", "_12"),
            ("(a)", "_a"),
            ("-x", "_-x"),
            ("", "_"),
            ("()", "_"),
            ("Maßnahme 3", "Maßnahme_3"),
            ("a\u{1D400}b", "a_b"),
        ];
        for (input, want) in cases {
            let got = to_token(input);
            assert_eq!(got, want, "{input}");
            assert!(is_token(&got), "{input} → {got}");
            assert_eq!(to_token(&got), got, "idempotent on {input}");
        }
    }

    #[test]
    fn to_token_keeps_one_frameworks_ids_apart() {
        let ids = [
            "164.308(a)(1)(ii)(A)",
            "164.308(a)(1)(ii)(B)",
            "164.308(a)(1)(ii)",
            "164.308(a)(1)",
            "164.308(a)(10)",
            "GV.OC-01",
            "GV.OC-02",
            "GV.OC",
            "8.3.6",
            "8.3.6.1",
            "8.3",
            "CC6.1",
            "CC6.10",
            "CC6",
            "Art. 5",
            "Art. 5(1)",
            "Art. 5(1)(a)",
            "Art. 50",
            "A.5.1",
            "A.5.10",
        ];
        let mut tokens: Vec<String> = ids.iter().map(|i| to_token(i)).collect();
        assert!(tokens.iter().all(|t| is_token(t)));
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), ids.len(), "{tokens:?}");
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("0470d39a-3e02-4bff-82cf-676d522c1554"));
        assert!(is_uuid("0470D39A-3E02-5BFF-A2CF-676D522C1554"));
        assert!(!is_uuid("0470d39a-3e02-1bff-82cf-676d522c1554"), "version 1");
        assert!(!is_uuid("0470d39a-3e02-4bff-c2cf-676d522c1554"), "variant");
        assert!(!is_uuid("0470d39a3e024bff82cf676d522c1554"));
        assert!(!is_uuid("0470d39a-3e02-4bff-82cf-676d522c155g"));
        assert!(!is_uuid(""));
    }

    #[test]
    fn timestamps() {
        for ok in [
            "2024-02-13T17:43:40.74643Z",
            "2023-06-02T08:31:20-04:00",
            "2024-02-29T00:00:00+05:30",
            "2000-02-29T23:59:59.1+14:00",
            "2024-01-01T00:00:00+05:45",
        ] {
            assert!(is_date_time_with_timezone(ok), "{ok}");
        }
        for bad in [
            "2024-02-13T17:43:40",
            "2024-02-13",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00Z",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+1:00",
            "2024-01-01T00:00:00+15:00",
            "2024-01-01T00:00:00+14:30",
            "2024-01-01T00:00:00Zx",
            "2024-01-01 00:00:00Z",
            "",
        ] {
            assert!(!is_date_time_with_timezone(bad), "{bad}");
        }
    }
}
