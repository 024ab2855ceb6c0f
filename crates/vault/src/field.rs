//! Field encryption: one value of one record, sealed with a data key and bound to where it lives.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{ALG_XCHACHA20_POLY1305, DataKey, VaultError, array};

const MAGIC: &[u8; 2] = b"CV";
const VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"custos-field/v1";
const KEY_ID_AT: usize = 4;
const NONCE_AT: usize = KEY_ID_AT + 16;
const TAG_LEN: usize = 16;

/// The header's length in bytes (format v1): `"CV"`, version, algorithm, data key id (16), nonce
/// (24).
pub const FIELD_HEADER_LEN: usize = NONCE_AT + 24;
/// How much longer a sealed field is than its plaintext: the header and the 16-byte tag.
pub const FIELD_OVERHEAD: usize = FIELD_HEADER_LEN + TAG_LEN;

/// Where a sealed value lives, all of it authenticated: a ciphertext decrypts only in the same
/// organisation, under the same data key, in the same record and field — so one copied onto
/// another row, column or tenant (by a bug, or by someone with write access to the database) is
/// refused rather than shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldContext<'a> {
    /// The organisation owning the record.
    pub organization: Uuid,
    /// The id of the data key sealing it (also written in the ciphertext's header).
    pub data_key: Uuid,
    /// The record, by kind and id: `"secret:<uuid>"`.
    pub record: &'a str,
    /// The field of the record: `"value"`.
    pub field: &'a str,
}

/// AADs up to this length are built on the stack (every realistic record and field name).
const STACK_AAD: usize = 256;

impl FieldContext<'_> {
    /// Calls `f` with the AAD: `"custos-field/v1" || organization (16) || data key id (16) ||
    /// u32-BE length || record || u32-BE length || field`. The lengths make the encoding
    /// injective: ("ab", "c") and ("a", "bc") differ.
    fn with_aad<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let len = AAD_LABEL.len() + 32 + 4 + self.record.len() + 4 + self.field.len();
        if len <= STACK_AAD {
            let mut buf = [0u8; STACK_AAD];
            self.write_aad(&mut buf[..len]);
            f(&buf[..len])
        } else {
            let mut buf = vec![0u8; len];
            self.write_aad(&mut buf);
            f(&buf)
        }
    }

    fn write_aad(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(AAD_LABEL);
        put(self.organization.as_bytes());
        put(self.data_key.as_bytes());
        for part in [self.record, self.field] {
            let len = u32::try_from(part.len()).expect("record and field names are shorter than 4 GiB");
            put(&len.to_be_bytes());
            put(part.as_bytes());
        }
    }
}

fn cipher(key: &DataKey) -> XChaCha20Poly1305 {
    // Setting up the cipher only copies the key (wiped again when the cipher drops).
    XChaCha20Poly1305::new(<&Key>::from(key.expose_secret()))
}

/// Seals `plaintext` with `key` for `ctx`, format v1 (`FORMAT.md`):
///
/// `"CV"` | version `1` | algorithm `1` (XChaCha20-Poly1305) | data key id (16) | nonce (24) |
/// ciphertext | tag (16) — [`FIELD_OVERHEAD`] bytes more than the plaintext.
///
/// The nonce is random (192 bits, from the thread-local CSPRNG: no system call). One allocation,
/// the output; the AAD is built on the stack.
///
/// # Panics
///
/// If `ctx.record` or `ctx.field` is 4 GiB or longer, or the plaintext longer than
/// XChaCha20-Poly1305 allows (256 GiB).
pub fn encrypt_field(key: &DataKey, ctx: &FieldContext<'_>, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIELD_OVERHEAD + plaintext.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(ALG_XCHACHA20_POLY1305);
    out.extend_from_slice(ctx.data_key.as_bytes());
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = ctx
        .with_aad(|aad| cipher(key).encrypt_in_place_detached(array(&nonce), aad, &mut out[FIELD_HEADER_LEN..]))
        .expect("the plaintext is within XChaCha20-Poly1305's limits");
    out.extend_from_slice(&tag);
    out
}

/// Opens a value sealed by [`encrypt_field`], for exactly the context it was sealed for.
///
/// A sealed value that is not format v1 at all (too short, no `"CV"`, another version or
/// algorithm) is [`VaultError::Malformed`]; everything else that fails — a different organisation,
/// record, field or data key, a wrong key, any altered byte — is [`VaultError::Decrypt`], one
/// message for all. The plaintext comes back in a buffer wiped when dropped.
pub fn decrypt_field(key: &DataKey, ctx: &FieldContext<'_>, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let data_key = sealed_data_key_id(sealed)?;
    if data_key != ctx.data_key {
        return Err(VaultError::Decrypt);
    }
    let (ciphertext, tag) = sealed[FIELD_HEADER_LEN..].split_at(sealed.len() - FIELD_OVERHEAD);
    let mut out = Zeroizing::new(ciphertext.to_vec());
    ctx.with_aad(|aad| {
        cipher(key).decrypt_in_place_detached(array(&sealed[NONCE_AT..FIELD_HEADER_LEN]), aad, &mut out[..], array(tag))
    })
    .map_err(|_| VaultError::Decrypt)?;
    Ok(out)
}

/// Which data key a sealed value needs, read from its header (the value is not authenticated
/// here: a wrong id only makes decryption fail). [`VaultError::Malformed`] if it is not a sealed
/// value of a known format.
pub fn sealed_data_key_id(sealed: &[u8]) -> Result<Uuid, VaultError> {
    if sealed.len() < FIELD_OVERHEAD {
        return Err(VaultError::Malformed(format!(
            "a sealed field is at least {FIELD_OVERHEAD} bytes, not {}",
            sealed.len()
        )));
    }
    if &sealed[..2] != MAGIC {
        return Err(VaultError::Malformed("not a sealed field (no \"CV\" magic)".into()));
    }
    if sealed[2] != VERSION {
        return Err(VaultError::Malformed(format!("sealed field format version {} is not supported", sealed[2])));
    }
    if sealed[3] != ALG_XCHACHA20_POLY1305 {
        return Err(VaultError::Malformed(format!("sealed field algorithm {} is not supported", sealed[3])));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&sealed[KEY_ID_AT..NONCE_AT]);
    Ok(Uuid::from_bytes(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(record: &'a str, field: &'a str) -> FieldContext<'a> {
        FieldContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4(), record, field }
    }

    #[test]
    fn fields_round_trip_in_the_documented_layout() {
        let key = DataKey::generate();
        let context = ctx("secret:0197c3a4-1f2e-7d3c-9b1a-5e6f7a8b9c0d", "value");
        for plaintext in [&b""[..], b"x", b"sk_live_123", &[0u8; 5000]] {
            let sealed = encrypt_field(&key, &context, plaintext);
            assert_eq!(sealed.len(), plaintext.len() + FIELD_OVERHEAD);
            assert_eq!(&sealed[..4], b"CV\x01\x01");
            assert_eq!(&sealed[4..20], context.data_key.as_bytes());
            assert_eq!(sealed_data_key_id(&sealed).unwrap(), context.data_key);
            assert_eq!(&decrypt_field(&key, &context, &sealed).unwrap()[..], plaintext);
            assert_ne!(encrypt_field(&key, &context, plaintext), sealed, "a fresh nonce every time");
        }
        let sealed = encrypt_field(&key, &context, b"sk_live_123");
        assert!(!sealed.windows(11).any(|w| w == b"sk_live_123"));
    }

    #[test]
    fn long_names_take_the_heap_path() {
        let key = DataKey::generate();
        let record = "r".repeat(300);
        let context = ctx(&record, "f");
        let sealed = encrypt_field(&key, &context, b"v");
        assert_eq!(&decrypt_field(&key, &context, &sealed).unwrap()[..], b"v");
        let shorter = "r".repeat(299);
        assert_eq!(
            decrypt_field(&key, &FieldContext { record: &shorter, ..context }, &sealed),
            Err(VaultError::Decrypt)
        );
    }

    #[test]
    fn another_context_or_key_is_refused_with_one_error() {
        let key = DataKey::generate();
        let context = ctx("ab", "c");
        let sealed = encrypt_field(&key, &context, b"value");
        for wrong in [
            FieldContext { organization: Uuid::new_v4(), ..context },
            FieldContext { data_key: Uuid::new_v4(), ..context },
            FieldContext { record: "a", field: "bc", ..context },
            FieldContext { record: "abc", field: "", ..context },
            FieldContext { record: "ab", field: "C", ..context },
            FieldContext { record: "", field: "abc", ..context },
        ] {
            assert_eq!(decrypt_field(&key, &wrong, &sealed), Err(VaultError::Decrypt), "{wrong:?}");
        }
        assert_eq!(decrypt_field(&DataKey::generate(), &context, &sealed), Err(VaultError::Decrypt));
        // A header naming another data key, even with the context following it.
        let mut moved = sealed.clone();
        let other = Uuid::new_v4();
        moved[4..20].copy_from_slice(other.as_bytes());
        assert_eq!(decrypt_field(&key, &FieldContext { data_key: other, ..context }, &moved), Err(VaultError::Decrypt));
    }

    #[test]
    fn what_is_no_sealed_field_is_malformed() {
        let key = DataKey::generate();
        let context = ctx("r", "f");
        let sealed = encrypt_field(&key, &context, b"");
        let malformed = |bytes: &[u8], says: &str| {
            for result in [decrypt_field(&key, &context, bytes).map(|_| ()), sealed_data_key_id(bytes).map(|_| ())] {
                match result {
                    Err(VaultError::Malformed(m)) => assert!(m.contains(says), "{m}"),
                    other => panic!("{other:?}"),
                }
            }
        };
        malformed(&sealed[..59], "at least 60 bytes, not 59");
        malformed(b"", "not 0");
        let mut bad = sealed.clone();
        bad[1] = b'W';
        malformed(&bad, "magic");
        let mut bad = sealed.clone();
        bad[2] = 2;
        malformed(&bad, "version 2");
        let mut bad = sealed;
        bad[3] = 9;
        malformed(&bad, "algorithm 9");
    }
}
