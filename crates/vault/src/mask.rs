//! Masking for display, and pseudonyms for exports.
//!
//! A mask shows a person enough to recognise a value they already know (`u***r@example.com`)
//! and no more; every function takes any text — empty, malformed, any script — without
//! panicking, counts characters (never bytes, so no character is ever cut in half), and shows at
//! most what its rule says. Masks are for eyes: they are not unique and not a substitute for
//! encryption or access control.
//!
//! A pseudonym ([`Pseudonymizer`]) replaces a value by a stable token: the same value gives the
//! same token within one scope (an export can still be joined on it), different tokens in
//! different scopes, and without the key no one can tell which value a token stands for, even by
//! trying candidates.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{DataKey, subkey};

/// What every hidden part of an email is shown as: always three stars, whatever its length.
const HIDDEN: &str = "***";

/// `user@example.com` → `u***r@example.com` (the seed's rule).
///
/// The input is trimmed and split at its last `@` (a quoted local part may hold one, a domain
/// never does). A local part of three characters or more shows its first and last, with `***`
/// between; a shorter one (which those two would give away whole) is `***`. The domain is kept:
/// it is what tells a person which of their addresses this is. Without an `@`, the whole input
/// is masked as a local part; an empty input stays empty.
pub fn mask_email(email: &str) -> String {
    let email = email.trim();
    if email.is_empty() {
        return String::new();
    }
    let (local, domain) = match email.rsplit_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (email, None),
    };
    let mut out = String::with_capacity(email.len() + HIDDEN.len());
    let mut chars = local.chars();
    match (chars.next(), chars.next_back(), chars.next()) {
        // At least three characters: a first, a last and something between.
        (Some(first), Some(last), Some(_)) => {
            out.push(first);
            out.push_str(HIDDEN);
            out.push(last);
        }
        _ => out.push_str(HIDDEN),
    }
    if let Some(domain) = domain {
        out.push('@');
        out.push_str(domain);
    }
    out
}

/// `1234567890` → `****7890` (the seed's rule): the last four digits after `****`, whatever the
/// formatting (`+1 (555) 123-4567` → `****4567`). Only ASCII digits count; with fewer than five
/// (which the last four would give away nearly whole) the mask is `****` alone.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from("****");
    if digits.len() >= 5 {
        out.extend(&digits[digits.len() - 4..]);
    }
    out
}

/// `Jane Doe` → `J*** D**`: each word (split at whitespace, joined by one space) shows its
/// first character and then one `*` per further character, at most three, so long names do not
/// give their length away (`Alexandra` → `A***`). A one-character word is shown as itself: its
/// initial is all the rule shows of any word.
pub fn mask_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let mut chars = word.chars();
        out.extend(chars.next());
        out.extend(std::iter::repeat_n('*', chars.count().min(3)));
    }
    out
}

/// `4111 1111 1111 1111` → `411111******1111`: the digits only, the first six (the issuer) and
/// the last four shown, the rest `*` — the most PCI DSS allows to be displayed. With fewer than
/// 13 digits (no card number is shorter; ten shown would be most of it) every digit is `*`.
pub fn mask_card(number: &str) -> String {
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if n < 13 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    out.extend(&digits[..6]);
    out.extend(std::iter::repeat_n('*', n - 10));
    out.extend(&digits[n - 4..]);
    out
}

/// `DE89 3704 0044 0532 0130 00` → `DE89**************3000`: the ASCII letters and digits only,
/// upper-cased; the country code and check digits (first four) and the last four shown, the
/// rest `*`. With fewer than 15 (no IBAN is shorter) every character is `*`.
pub fn mask_iban(iban: &str) -> String {
    let chars: Vec<char> = iban.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect();
    let n = chars.len();
    if n < 15 {
        return "*".repeat(n);
    }
    let mut out = String::with_capacity(n);
    out.extend(&chars[..4]);
    out.extend(std::iter::repeat_n('*', n - 8));
    out.extend(&chars[n - 4..]);
    out
}

/// What every pseudonym starts with, so one is recognised as such wherever it ends up.
pub const PSEUDONYM_PREFIX: &str = "pseudo_";
/// The HKDF info prefix of a pseudonymizer's sub-key; the scope follows it.
pub const PSEUDONYM_SUBKEY_LABEL: &[u8] = b"custos pseudonym v1 ";

/// Stable pseudonyms for one scope (an export, a data subject request, a report).
#[derive(Clone)]
pub struct Pseudonymizer {
    key: Zeroizing<[u8; 32]>,
    scope: String,
}

impl Pseudonymizer {
    /// Pseudonyms for `scope` under `key` (the organisation's key for pseudonyms): the sub-key is
    /// HKDF-SHA256(`key`, no salt, info = `"custos pseudonym v1 " || scope`). The same key and
    /// scope give the same tokens again (a later export joins with an earlier one); use a fresh
    /// scope where tokens must not be linkable across exports.
    pub fn new(key: &DataKey, scope: &str) -> Pseudonymizer {
        Pseudonymizer { key: subkey::derive(key, PSEUDONYM_SUBKEY_LABEL, scope.as_bytes()), scope: scope.to_owned() }
    }

    /// `"pseudo_"` + 16 lowercase base32 characters (RFC 4648 alphabet, `a–z2–7`): the first 80
    /// bits of HMAC-SHA256(sub-key, value), the value's bytes as given (normalise first, with
    /// [`crate::Normalize::apply`], where differently written values must share a token). With 80
    /// bits, the chance that any two of a billion values share a token is about one in two million.
    pub fn token(&self, value: impl AsRef<[u8]>) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(value.as_ref());
        let full = mac.finalize().into_bytes();
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 16);
        out.push_str(PSEUDONYM_PREFIX);
        base32_80(&full[..10], &mut out);
        out
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer").field("scope", &self.scope).field("key", &"[REDACTED]").finish()
    }
}

/// 10 bytes as 16 lowercase RFC 4648 base32 characters (80 bits, five per character: no padding).
fn base32_80(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bits = 0u128;
    for &b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    for i in (0..16).rev() {
        out.push(ALPHABET[((bits >> (5 * i)) & 31) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use hkdf::Hkdf;

    use super::*;

    #[test]
    fn emails() {
        for (input, masked) in [
            ("user@example.com", "u***r@example.com"),
            ("jane.doe@example.co.uk", "j***e@example.co.uk"),
            ("abc@x.io", "a***c@x.io"),
            ("ab@x.io", "***@x.io"),
            ("a@x.io", "***@x.io"),
            ("@x.io", "***@x.io"),
            ("user@", "u***r@"),
            ("  user@example.com ", "u***r@example.com"),
            ("\"a@b\"@example.com", "\"***\"@example.com"),
            ("username", "u***e"),
            ("ab", "***"),
            ("", ""),
            ("   ", ""),
            ("élodie@exemple.fr", "é***e@exemple.fr"),
            ("用户名@例子.中国", "用***名@例子.中国"),
            ("😀x😀@e.com", "😀***😀@e.com"),
        ] {
            assert_eq!(mask_email(input), masked, "{input:?}");
        }
    }

    #[test]
    fn phones() {
        for (input, masked) in [
            ("1234567890", "****7890"),
            ("+1 (555) 123-4567", "****4567"),
            ("12345", "****2345"),
            ("1234", "****"),
            ("1", "****"),
            ("", "****"),
            ("no digits", "****"),
            ("٠١٢٣٤٥٦٧٨٩", "****"),
        ] {
            assert_eq!(mask_phone(input), masked, "{input:?}");
        }
    }

    #[test]
    fn names() {
        for (input, masked) in [
            ("Jane Doe", "J*** D**"),
            ("Alexandra", "A***"),
            ("  Jo   van der  Berg ", "J* v** d** B***"),
            ("J. R. R. Tolkien", "J* R* R* T***"),
            ("X", "X"),
            ("", ""),
            ("Zoë Ångström", "Z** Å***"),
            ("José", "J***"),
            ("李小龍", "李**"),
        ] {
            assert_eq!(mask_name(input), masked, "{input:?}");
        }
    }

    #[test]
    fn cards() {
        for (input, masked) in [
            ("4111 1111 1111 1111", "411111******1111"),
            ("4111-1111-1111-1111", "411111******1111"),
            ("378282246310005", "378282*****0005"),
            ("4222222222222", "422222***2222"),
            ("411111111111", "************"),
            ("1234", "****"),
            ("", ""),
            ("card", ""),
        ] {
            assert_eq!(mask_card(input), masked, "{input:?}");
        }
    }

    #[test]
    fn ibans() {
        for (input, masked) in [
            ("DE89 3704 0044 0532 0130 00", "DE89**************3000"),
            ("de89370400440532013000", "DE89**************3000"),
            ("NO93 8601 1117 947", "NO93*******7947"),
            ("GB82 WEST 1234 5698 7654 32", "GB82**************5432"),
            ("DE89 3704", "********"),
            ("", ""),
            ("ÄÖÜ", ""),
        ] {
            assert_eq!(mask_iban(input), masked, "{input:?}");
        }
    }

    #[test]
    fn pseudonyms_are_stable_within_a_scope_only() {
        let key = DataKey::generate();
        let export = Pseudonymizer::new(&key, "export:2025-06");
        let token = export.token("jane@example.com");
        assert_eq!(token.len(), "pseudo_".len() + 16);
        assert!(token.starts_with("pseudo_"));
        assert!(token["pseudo_".len()..].chars().all(|c| matches!(c, 'a'..='z' | '2'..='7')), "{token}");
        assert_eq!(export.token("jane@example.com"), token);
        assert_eq!(export.token(b"jane@example.com"), token, "bytes and text alike");
        assert_ne!(export.token("jane@example.org"), token);
        assert_ne!(export.token(""), token);
        assert_ne!(Pseudonymizer::new(&key, "export:2025-07").token("jane@example.com"), token);
        assert_ne!(Pseudonymizer::new(&DataKey::generate(), "export:2025-06").token("jane@example.com"), token);
    }

    #[test]
    fn pseudonyms_follow_the_documented_construction() {
        let key = DataKey::from_bytes(&[0x22; 32]);
        let mut sub = [0u8; 32];
        Hkdf::<Sha256>::new(None, &[0x22; 32]).expand(b"custos pseudonym v1 dsr", &mut sub).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&sub).unwrap();
        mac.update(b"value");
        let full = mac.finalize().into_bytes();
        // RFC 4648 base32 of the first 10 bytes, by the book: 5 bits at a time, most significant first.
        let bits: String = full[..10].iter().map(|b| format!("{b:08b}")).collect();
        let expected: String = bits
            .as_bytes()
            .chunks(5)
            .map(|c| {
                b"abcdefghijklmnopqrstuvwxyz234567"[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()]
                    as char
            })
            .collect();
        assert_eq!(Pseudonymizer::new(&key, "dsr").token("value"), format!("pseudo_{expected}"));
        let shown = format!("{:?}", Pseudonymizer::new(&key, "dsr"));
        assert!(shown.contains("dsr"));
        crate::tests::assert_hides(&shown, &[0x22; 32]);
        crate::tests::assert_hides(&shown, &sub);
    }
}
