//! An export's entry line read in the one layout `custos audit export` writes it — serde_json's
//! compact output of [`crate::export::Line::Entry`]:
//!
//! ```text
//! {"entry":{"seq":7,"fields":"…","salts":"…","leaf_hash":"…","chain_hash":"…"}}
//! ```
//!
//! `verify-file` spends most of its time reading such lines, and serde_json reads the fields
//! string twice (once to find its end and check it, once more to unescape it). This reads it once,
//! checking and unescaping together, eight bytes at a time. Anything else — another key order,
//! whitespace, a `\u` escape, a number serde_json would refuse — is declined (`None`), and the
//! caller reads the line through serde_json instead: what is accepted here is what serde_json
//! accepts, read the same way, so the verifier's verdicts never depend on which reader read a line.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use custos_core::hex::decode_array;

use crate::encoding::Hash;

/// The parts of an entry line; `fields` and `salts` are decoded onto the caller's buffer.
pub(crate) struct WrittenEntry {
    pub seq: u64,
    pub fields: Range<usize>,
    pub salts: Range<usize>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// `line` (without its end) read as an entry line in export's layout, its fields and salts
/// decoded onto `buffer`; `None`, with `buffer` as it was, for any line not exactly in that
/// layout or whose salts or hashes do not decode (serde_json's reading then says what is wrong).
pub(crate) fn read(line: &[u8], buffer: &mut Vec<u8>) -> Option<WrittenEntry> {
    let start = buffer.len();
    let entry = read_parts(line, buffer);
    if entry.is_none() {
        buffer.truncate(start);
    }
    entry
}

fn read_parts(line: &[u8], buffer: &mut Vec<u8>) -> Option<WrittenEntry> {
    let rest = line.strip_prefix(br#"{"entry":{"seq":"#)?;
    let (seq, rest) = read_u64(rest)?;
    let rest = rest.strip_prefix(br#","fields":""#)?;
    let start = buffer.len();
    let rest = unescape_until_quote(rest, buffer)?;
    let fields = start..buffer.len();
    let rest = rest.strip_prefix(br#","salts":""#)?;
    // Base64 and hex have no escapes, control characters or non-ASCII bytes: text that decodes
    // is a plain JSON string.
    let end = memchr::memchr(b'"', rest)?;
    let start = buffer.len();
    B64.decode_vec(&rest[..end], buffer).ok()?;
    let salts = start..buffer.len();
    let rest = rest[end + 1..].strip_prefix(br#","leaf_hash":""#)?;
    let (leaf_hash, rest) = hex_string(rest)?;
    let rest = rest.strip_prefix(br#","chain_hash":""#)?;
    let (chain_hash, rest) = hex_string(rest)?;
    (rest == b"}}").then_some(WrittenEntry { seq, fields, salts, leaf_hash, chain_hash })
}

/// A JSON number that serde_json reads as this `u64`: no sign, fraction, exponent or leading zero.
fn read_u64(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || (digits > 1 && text[0] == b'0') {
        return None;
    }
    let value = text[..digits].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
    Some((value, &text[digits..]))
}

/// A hash as 64 hex digits and its closing quote; what follows the quote.
fn hex_string(text: &[u8]) -> Option<(Hash, &[u8])> {
    let (digits, rest) = text.split_at_checked(64)?;
    Some((decode_array(digits)?, rest.strip_prefix(b"\"")?))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of each byte) the bytes of `chunk` that end a run of plain string text: `"`,
/// `\` and control characters. Borrows can flag bytes after a flagged one spuriously, never before
/// it, so the lowest flag is always right — and only the lowest is ever used.
fn special_bytes(chunk: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero(chunk ^ (ONES * u64::from(b'"')));
    let backslash = zero(chunk ^ (ONES * u64::from(b'\\')));
    let control = chunk.wrapping_sub(ONES * 0x20) & !chunk;
    (quote | backslash | control) & HIGHS
}

fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The string whose text starts `bytes` unescaped onto `out`, up to its closing quote; what
/// follows the quote. `None` for a control character, a malformed escape, a `\u` escape (rare:
/// exports write one only for a control character inside a value) or text that is not UTF-8,
/// all left to serde_json.
pub(crate) fn unescape_until_quote<'a>(bytes: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
    let start = out.len();
    let (mut at, mut run) = (0, 0);
    // Whether any byte seen is not ASCII: only then is there UTF-8 to check.
    let mut high = 0;
    loop {
        while let Some(chunk) = bytes.get(at..at + 8) {
            let chunk = u64::from_le_bytes(chunk.try_into().ok()?);
            high |= chunk;
            let flags = special_bytes(chunk);
            if flags != 0 {
                at += flags.trailing_zeros() as usize / 8;
                break;
            }
            at += 8;
        }
        while at < bytes.len() && !is_special(bytes[at]) {
            high |= u64::from(bytes[at]);
            at += 1;
        }
        out.extend_from_slice(&bytes[run..at.min(bytes.len())]);
        let special = *bytes.get(at)?;
        // Escapes come first: an entry's fields hold dozens (every field line's tab and newline,
        // every quote), the closing quote one.
        if special == b'\\' {
            match UNESCAPED[usize::from(*bytes.get(at + 1)?)] {
                0 => return None,
                byte => out.push(byte),
            }
            at += 2;
            run = at;
        } else if special == b'"' {
            // Escapes produce ASCII only, so the text is UTF-8 if its unescaped form is.
            let utf8 = high & HIGHS == 0 || std::str::from_utf8(&out[start..]).is_ok();
            return utf8.then(|| &bytes[at + 1..]);
        } else {
            return None;
        }
    }
}

/// What each escape `\x` stands for, by `x`; 0 where `\x` is not one this reader takes (`\u`
/// included). A table, not a `match`: a jump per escape mispredicted often enough to show.
const UNESCAPED: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'/' as usize] = b'/';
    table[b'b' as usize] = 0x08;
    table[b'f' as usize] = 0x0c;
    table[b'n' as usize] = b'\n';
    table[b'r' as usize] = b'\r';
    table[b't' as usize] = b'\t';
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: &str, fields: &str) -> String {
        format!(
            r#"{{"entry":{{"seq":{seq},"fields":{fields},"salts":"A0Bv","leaf_hash":"{}","chain_hash":"{}"}}}}"#,
            "ab".repeat(32),
            "cd".repeat(32)
        )
    }

    /// Every string serde_json writes (escapes at every offset within an 8-byte chunk, and
    /// non-ASCII text) reads back as serde_json reads it.
    #[test]
    fn reads_what_serde_json_writes_as_serde_json_reads_it() {
        let mut texts: Vec<String> = vec![
            String::new(),
            "action\t\"create\"\nafter.name\t\"a \\\"quoted\\\" word\"\n".into(),
            "every escape: \" \\ / \u{8} \u{c} \n \r \t".into(),
            "non-ASCII é 漢字 😀 and \u{7f}".into(),
        ];
        for at in 0..20 {
            texts.push(format!("{}\"{}\\", "x".repeat(at), "y".repeat(at % 9)));
        }
        for text in texts {
            for written in
                [serde_json::to_string(&text).unwrap(), serde_json::to_string(&text).unwrap().replace('/', "\\/")]
            {
                let mut buffer = b"kept".to_vec();
                let entry = read(line("42", &written).as_bytes(), &mut buffer).expect(&written);
                assert_eq!(entry.seq, 42);
                assert_eq!(&buffer[entry.fields.clone()], text.as_bytes(), "{written}");
                assert_eq!(&buffer[..4], b"kept");
                assert_eq!(&buffer[entry.salts], &[0x03, 0x40, 0x6f]);
                assert_eq!((entry.leaf_hash, entry.chain_hash), ([0xab; 32], [0xcd; 32]));
            }
        }
    }

    /// Whatever is not in export's exact layout, or is not plainly valid, is declined (and left
    /// to serde_json), with the buffer as it was.
    #[test]
    fn declines_anything_else() {
        let good = line("7", r#""a\tb""#);
        let declined = [
            line("07", r#""a""#),
            line("-7", r#""a""#),
            line("7.0", r#""a""#),
            line("18446744073709551616", r#""a""#),
            line("7", r#""\u0001""#),
            line("7", r#""bad \q""#),
            line("7", "\"raw \u{1} control\""),
            line("7", r#""unterminated"#),
            line("7", "42"),
            good.replace(r#""salts":"A0Bv""#, r#""salts":"A0\/Bv""#),
            good.replace(r#"{"entry":{"seq""#, r#"{"entry": {"seq""#),
            good.replace("}}", "} }"),
            good.clone() + " ",
            good.replace(r#""salts""#, r#""salt""#),
            good.replace("A0Bv", "A0B!"),
            good.replacen("ab", "zz", 1),
            good.replacen("ab", "a", 1),
            good.replacen("cd", "cdcd", 1),
        ];
        for text in declined {
            let mut buffer = b"kept".to_vec();
            assert!(read(text.as_bytes(), &mut buffer).is_none(), "{text}");
            assert_eq!(buffer, b"kept", "{text}");
        }
        let mut not_utf8 = good.clone().into_bytes();
        let at = good.find("a\\tb").unwrap();
        not_utf8[at] = 0xff;
        assert!(read(&not_utf8, &mut Vec::new()).is_none());
        assert_eq!(read(line("18446744073709551615", r#""a""#).as_bytes(), &mut Vec::new()).unwrap().seq, u64::MAX);
    }
}
