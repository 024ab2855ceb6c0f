//! The vault: the platform's encryption, for every domain that keeps something secret (secrets,
//! exports, DSR records). Its core is pure functions and types — no database, no async — and
//! around it [`store`] keeps data keys in the database (wrapped, audited) and [`rotation`]
//! re-wraps them when the master key changes (a job).
//!
//! Envelope encryption in three tiers:
//!
//! * a **master key** (`CUSTOS_MASTER_KEY`, [`MasterKeys::from_env`]) never encrypts data itself;
//!   HKDF turns it into a **key-encryption key** ([`Kek`]) named by a fingerprint ([`KekId`]);
//! * a **data key** ([`DataKey`], 32 random bytes) per organisation and purpose encrypts the data;
//!   it is stored only wrapped under a KEK ([`WrappedKey`], through a [`KeyProvider`]), so
//!   rotating the master key rewraps 84-byte keys ([`rewrap`]) and never re-encrypts data;
//! * **fields** are sealed with a data key, bound to their organisation, record and field
//!   ([`encrypt_field`], [`decrypt_field`]): a ciphertext moved to another row, column or tenant
//!   does not decrypt.
//!
//! Beside them: [`BlindIndex`] (equality search over encrypted values), masking for display
//! ([`mask`]) and [`Pseudonymizer`] (stable tokens for exports). The byte formats are specified in
//! `FORMAT.md` beside this crate's manifest, for auditors; every primitive is RustCrypto's or
//! BLAKE3's, none is written here.
//!
//! Randomness for data keys and nonces comes from `rand`'s thread-local CSPRNG (ChaCha, seeded and
//! periodically reseeded from the OS): no system call per encryption. That generator is not
//! reseeded in a forked child: a process that forks after encrypting must call
//! `rand::rngs::ThreadRng::reseed` in the child (Custos does not fork). Master keys, generated
//! once, come from the OS directly.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blind;
mod envelope;
mod error;
mod field;
pub mod grpc;
pub mod keys;
pub mod mask;
mod provider;
pub mod rotation;
pub mod secret_rotation;
pub mod secrets;
pub mod store;
mod subkey;

pub use blind::{BlindIndex, Normalize};
pub use envelope::{DATA_KEY_LEN, DataKey, Kek, WRAPPED_KEY_LEN, WrapContext, WrappedKey};
pub use error::VaultError;
pub use field::{FIELD_HEADER_LEN, FIELD_OVERHEAD, FieldContext, decrypt_field, encrypt_field, sealed_data_key_id};
pub use keys::{KekId, KeySource, MasterKey, MasterKeys};
pub use mask::Pseudonymizer;
pub use provider::{KeyProvider, LocalKeyProvider, rewrap};

/// The algorithm byte of both formats: XChaCha20-Poly1305 (256-bit key, 192-bit random nonce,
/// 128-bit tag). The only one so far; another would get its own value.
pub const ALG_XCHACHA20_POLY1305: u8 = 1;

/// A slice of exactly `N` bytes as the fixed-size array type RustCrypto's APIs take (its
/// `from_slice` is deprecated). Callers slice at constant offsets, so a wrong length is a bug.
fn array<'a, const N: usize, A>(bytes: &'a [u8]) -> &'a A
where
    &'a A: From<&'a [u8; N]>,
{
    <&[u8; N]>::try_from(bytes).expect("a slice at fixed offsets").into()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    /// Fails if `shown` contains any 6-byte run of `secret` in hex (either case) or as Rust prints
    /// a byte array, or any 8 characters of its base64 (any alphabet, padded or not).
    pub(crate) fn assert_hides(shown: &str, secret: &[u8]) {
        let mut forms = Vec::new();
        for window in secret.windows(6) {
            let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
            forms.push(hex.to_uppercase());
            forms.push(hex);
            forms.push(format!("{window:?}").trim_matches(['[', ']']).to_owned());
        }
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            let text = engine.encode(secret);
            forms.extend(text.as_bytes().windows(8).map(|w| String::from_utf8(w.to_vec()).unwrap()));
        }
        for form in forms {
            assert!(!shown.contains(&form), "{shown:?} shows {form:?} of a secret");
        }
    }
}
