//! Blind indexes: equality search over encrypted values.
//!
//! A sealed field cannot be searched (its nonce is random, so the same value seals differently
//! every time). Beside it goes a blind index — a keyed hash of the normalised value — and a
//! search computes the same hash of what was asked and looks it up. Without the key the index
//! says nothing; with it, only whether two values are equal.
//!
//! The key is the organisation's own index key, a data key of its own (wrapped like any other),
//! not a master key: rotating the master key rewraps that key and leaves every index as it is.
//! Each purpose (`"contact.email"`, `"subject.phone"`) gets its own sub-key, so equal values
//! under different purposes have unrelated indexes and one column's index cannot be joined with
//! another's.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::{DataKey, subkey};

/// An index's length in bytes: HMAC-SHA256 truncated to 128 bits, ample for equality (the
/// chance that any two of a billion values share an index is about 2⁻⁶⁹) at half the storage.
pub const BLIND_INDEX_LEN: usize = 16;
/// The HKDF info prefix of the sub-key; the purpose follows it.
pub const SUBKEY_LABEL: &[u8] = b"custos blind index v1 ";

/// How a value is put into one form before it is indexed, so that the ways people write the
/// same thing find each other. Every kind first applies Unicode NFKC, which makes compatibility
/// forms equal (full-width `ｊａｎｅ` is `jane`, a ligature `ﬁ` is `fi`, a composed `é` and
/// `e` + combining acute are one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Normalize {
    /// Trimmed and lowercased (`" Jane.Doe@Example.COM "` is `"jane.doe@example.com"`).
    Email,
    /// The ASCII digits only, with a leading `+` kept (`"+1 (555) 123-4567"` is `"+15551234567"`);
    /// a `+` anywhere else is dropped like other punctuation.
    Phone,
    /// Trimmed, lowercased, every run of whitespace one space (`"  Jane \t DOE "` is
    /// `"jane doe"`).
    Text,
}

impl Normalize {
    /// `value` in normal form.
    pub fn apply(self, value: &str) -> String {
        let nfkc: String = value.nfkc().collect();
        match self {
            Normalize::Email => nfkc.trim().to_lowercase(),
            Normalize::Phone => {
                let trimmed = nfkc.trim_start();
                let plus = trimmed.starts_with('+').then_some('+');
                plus.into_iter().chain(trimmed.chars().filter(char::is_ascii_digit)).collect()
            }
            Normalize::Text => {
                let mut out = String::with_capacity(nfkc.len());
                for word in nfkc.split_whitespace() {
                    if !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
                out.to_lowercase()
            }
        }
    }
}

/// Computes blind indexes for one purpose under one key.
#[derive(Clone)]
pub struct BlindIndex {
    key: Zeroizing<[u8; 32]>,
    purpose: String,
}

impl BlindIndex {
    /// The index for `purpose` under `key` (the organisation's index key): the sub-key is
    /// HKDF-SHA256(`key`, no salt, info = `"custos blind index v1 " || purpose`).
    pub fn new(key: &DataKey, purpose: &str) -> BlindIndex {
        BlindIndex { key: subkey::derive(key, SUBKEY_LABEL, purpose.as_bytes()), purpose: purpose.to_owned() }
    }

    /// The index of `value` normalised as `kind`: HMAC-SHA256(sub-key, normalised value, UTF-8),
    /// its first 16 bytes.
    pub fn index(&self, kind: Normalize, value: &str) -> [u8; BLIND_INDEX_LEN] {
        // The normal form is a copy of the plaintext: wiped like one.
        let normal = Zeroizing::new(kind.apply(value));
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).expect("HMAC takes any key length");
        mac.update(normal.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; BLIND_INDEX_LEN];
        out.copy_from_slice(&full[..BLIND_INDEX_LEN]);
        out
    }

    /// [`BlindIndex::index`] as 32 lowercase hex characters.
    pub fn index_hex(&self, kind: Normalize, value: &str) -> String {
        to_hex(&self.index(kind, value))
    }
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndex").field("purpose", &self.purpose).field("key", &"[REDACTED]").finish()
    }
}

/// An index as 32 lowercase hex characters (for text columns and logs).
pub fn to_hex(index: &[u8; BLIND_INDEX_LEN]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * BLIND_INDEX_LEN);
    for b in index {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use hkdf::Hkdf;

    use super::*;

    #[test]
    fn normal_forms() {
        let cases = [
            (Normalize::Email, " Jane.Doe@Example.COM \n", "jane.doe@example.com"),
            (Normalize::Email, "ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "jane@example.com"),
            (Normalize::Email, "ÉLODIE@exemple.fr", "élodie@exemple.fr"),
            (Normalize::Email, "", ""),
            (Normalize::Phone, "+1 (555) 123-4567", "+15551234567"),
            (Normalize::Phone, "  +44 20 7946 0958", "+442079460958"),
            (Normalize::Phone, "555.123.4567", "5551234567"),
            (Normalize::Phone, "1 +2", "12"),
            (Normalize::Phone, "＋３３ １２", "+3312"),
            (Normalize::Phone, "call me", ""),
            (Normalize::Text, "  Jane \t\n DOE  ", "jane doe"),
            (Normalize::Text, "Crème\u{3000}Brûlée", "crème brûlée"),
            (Normalize::Text, "", ""),
        ];
        for (kind, input, normal) in cases {
            assert_eq!(kind.apply(input), normal, "{kind:?} {input:?}");
        }
        // Composed and decomposed accents are one form.
        assert_eq!(Normalize::Text.apply("Cre\u{300}me"), Normalize::Text.apply("Crème"));
    }

    #[test]
    fn the_same_value_written_differently_has_one_index() {
        let key = DataKey::generate();
        let emails = BlindIndex::new(&key, "contact.email");
        let a = emails.index(Normalize::Email, "Jane.Doe@Example.com");
        assert_eq!(a, emails.index(Normalize::Email, "  jane.doe@example.COM "));
        assert_ne!(a, emails.index(Normalize::Email, "jane.doe@example.org"));
        let phones = BlindIndex::new(&key, "contact.phone");
        assert_eq!(
            phones.index(Normalize::Phone, "+1 (555) 123-4567"),
            phones.index(Normalize::Phone, "+1 555 123 4567")
        );
        assert_ne!(phones.index(Normalize::Phone, "+15551234567"), phones.index(Normalize::Phone, "15551234567"));
        let names = BlindIndex::new(&key, "subject.name");
        assert_eq!(names.index(Normalize::Text, "Jane  DOE"), names.index(Normalize::Text, " jane doe"));
        let hex = names.index_hex(Normalize::Text, "jane doe");
        assert_eq!(hex, to_hex(&names.index(Normalize::Text, "Jane Doe")));
        assert_eq!(hex.len(), 32);
        assert!(hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    }

    #[test]
    fn another_purpose_or_key_gives_another_index() {
        let key = DataKey::generate();
        let value = "jane@example.com";
        let index = BlindIndex::new(&key, "contact.email").index(Normalize::Email, value);
        assert_ne!(index, BlindIndex::new(&key, "user.email").index(Normalize::Email, value));
        assert_ne!(index, BlindIndex::new(&DataKey::generate(), "contact.email").index(Normalize::Email, value));
        assert_eq!(index, BlindIndex::new(&key, "contact.email").index(Normalize::Email, value), "deterministic");
    }

    #[test]
    fn indexes_follow_the_documented_construction() {
        let key = DataKey::from_bytes(&[0x11; 32]);
        let mut sub = [0u8; 32];
        Hkdf::<Sha256>::new(None, &[0x11; 32]).expand(b"custos blind index v1 contact.email", &mut sub).unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&sub).unwrap();
        mac.update(b"jane@example.com");
        let expected = mac.finalize().into_bytes();
        let index = BlindIndex::new(&key, "contact.email").index(Normalize::Email, " JANE@example.com");
        assert_eq!(index[..], expected[..16]);
    }

    #[test]
    fn debug_shows_the_purpose_only() {
        let key = DataKey::generate();
        let index = BlindIndex::new(&key, "contact.email");
        let shown = format!("{index:?}");
        assert!(shown.contains("contact.email"));
        crate::tests::assert_hides(&shown, key.expose_secret());
        crate::tests::assert_hides(&shown, &index.key[..]);
    }
}
