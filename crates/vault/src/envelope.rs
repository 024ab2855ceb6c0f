//! Data keys and their wrapped form: the envelope.
//!
//! A data key encrypts data; it is stored only wrapped (encrypted and authenticated) under a
//! key-encryption key, bound to its organisation and its own id, so a wrapped key copied onto
//! another organisation's or another key's row does not unwrap.

use std::fmt;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand::RngCore;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{ALG_XCHACHA20_POLY1305, KekId, VaultError, array};

/// A data key's length in bytes.
pub const DATA_KEY_LEN: usize = 32;
/// A wrapped key's length in bytes (format v1): 4 header + 8 KEK id + 24 nonce + 32 key + 16 tag.
pub const WRAPPED_KEY_LEN: usize = 84;

const MAGIC: &[u8; 2] = b"CW";
const VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"custos-data-key/v1";
const KEK_AT: usize = 4;
const NONCE_AT: usize = KEK_AT + 8;
const KEY_AT: usize = NONCE_AT + 24;
const TAG_AT: usize = KEY_AT + DATA_KEY_LEN;

/// A data key: 32 random bytes, wiped when dropped, never shown by `Debug`.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// A fresh key from `rand`'s thread-local CSPRNG (ChaCha12, seeded from the OS and reseeded
    /// periodically): as unpredictable as the OS's source, without a system call per key.
    pub fn generate() -> DataKey {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        rand::rng().fill_bytes(&mut key[..]);
        DataKey(key)
    }

    /// A data key of these bytes (copied: wipe the original). For [`crate::KeyProvider`]s that
    /// unwrap keys themselves, and for known-answer tests.
    pub fn from_bytes(bytes: &[u8; DATA_KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(*bytes))
    }

    /// The key's bytes. Named so that every use stands out in review: only key providers and
    /// this crate's own primitives need them.
    pub fn expose_secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// What a wrapped key is bound to (its additional authenticated data): the organisation owning
/// it and the data key's own id. Unwrapping with any other context fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WrapContext {
    /// The organisation the data key belongs to.
    pub organization: Uuid,
    /// The data key's own id (its row's primary key).
    pub data_key: Uuid,
}

impl WrapContext {
    /// `"custos-data-key/v1" || organization (16) || data key id (16)`.
    fn aad(&self) -> [u8; AAD_LABEL.len() + 32] {
        let mut aad = [0u8; AAD_LABEL.len() + 32];
        aad[..AAD_LABEL.len()].copy_from_slice(AAD_LABEL);
        aad[AAD_LABEL.len()..AAD_LABEL.len() + 16].copy_from_slice(self.organization.as_bytes());
        aad[AAD_LABEL.len() + 16..].copy_from_slice(self.data_key.as_bytes());
        aad
    }
}

/// A data key wrapped under a key-encryption key, format v1 (`FORMAT.md`):
///
/// `"CW"` | version `1` | algorithm `1` (XChaCha20-Poly1305) | KEK id (8) | nonce (24) |
/// ciphertext of the 32-byte key (32) | tag (16) — 84 bytes, AAD as in [`WrapContext`].
///
/// Not secret (it is ciphertext), but `Debug` shows only the KEK id: nothing else in it means
/// anything to a reader.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedKey([u8; WRAPPED_KEY_LEN]);

impl WrappedKey {
    /// Reads the stored form, strictly: anything but 84 bytes of format v1 with the one known
    /// algorithm is [`VaultError::Malformed`], naming what is wrong.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedKey, VaultError> {
        let bytes: [u8; WRAPPED_KEY_LEN] = bytes.try_into().map_err(|_| {
            VaultError::Malformed(format!("a wrapped key is {WRAPPED_KEY_LEN} bytes, not {}", bytes.len()))
        })?;
        if &bytes[..2] != MAGIC {
            return Err(VaultError::Malformed("not a wrapped key (no \"CW\" magic)".into()));
        }
        if bytes[2] != VERSION {
            return Err(VaultError::Malformed(format!("wrapped key format version {} is not supported", bytes[2])));
        }
        if bytes[3] != ALG_XCHACHA20_POLY1305 {
            return Err(VaultError::Malformed(format!("wrapped key algorithm {} is not supported", bytes[3])));
        }
        Ok(WrappedKey(bytes))
    }

    /// The stored form (84 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }

    /// The stored form, borrowed.
    pub fn as_bytes(&self) -> &[u8; WRAPPED_KEY_LEN] {
        &self.0
    }

    /// The id of the KEK this key is wrapped under: which master key unwraps it.
    pub fn kek(&self) -> KekId {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.0[KEK_AT..NONCE_AT]);
        KekId::from_bytes(id)
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey").field("kek", &self.kek()).finish_non_exhaustive()
    }
}

/// A key-encryption key: 32 bytes and its id. Built from a master key ([`crate::MasterKey::kek`])
/// or, by a [`crate::KeyProvider`] keeping its KEKs elsewhere (a KMS that releases a KEK at
/// start), from those bytes, so every provider writes the same [`WrappedKey`] format.
///
/// It holds the key only inside the cipher, which wipes it when dropped.
#[derive(Clone)]
pub struct Kek {
    id: KekId,
    cipher: XChaCha20Poly1305,
}

impl Kek {
    /// A KEK of these bytes (copied: wipe the original), named `id`.
    pub fn new(id: KekId, key: &[u8; 32]) -> Kek {
        Kek { id, cipher: XChaCha20Poly1305::new(<&Key>::from(key)) }
    }

    /// The KEK's id.
    pub fn id(&self) -> KekId {
        self.id
    }

    /// Wraps `key` for `context`, with a fresh random nonce (192 bits: random nonces never repeat
    /// in practice, so no counter has to survive restarts or be shared between replicas).
    pub fn wrap(&self, key: &DataKey, context: &WrapContext) -> WrappedKey {
        let mut out = [0u8; WRAPPED_KEY_LEN];
        out[..2].copy_from_slice(MAGIC);
        out[2] = VERSION;
        out[3] = ALG_XCHACHA20_POLY1305;
        out[KEK_AT..NONCE_AT].copy_from_slice(&self.id.to_bytes());
        rand::rng().fill_bytes(&mut out[NONCE_AT..KEY_AT]);
        out[KEY_AT..TAG_AT].copy_from_slice(key.expose_secret());
        let (head, body) = out.split_at_mut(KEY_AT);
        let tag = self
            .cipher
            .encrypt_in_place_detached(array(&head[NONCE_AT..]), &context.aad(), &mut body[..DATA_KEY_LEN])
            .expect("32 bytes are within XChaCha20-Poly1305's limits");
        body[DATA_KEY_LEN..].copy_from_slice(&tag);
        WrappedKey(out)
    }

    /// Unwraps a key wrapped under this KEK for `context`. A key wrapped under another KEK is
    /// [`VaultError::UnknownKeyVersion`]; any other context, or any altered byte,
    /// [`VaultError::Decrypt`].
    pub fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext) -> Result<DataKey, VaultError> {
        if wrapped.kek() != self.id {
            return Err(VaultError::UnknownKeyVersion(wrapped.kek().to_string()));
        }
        let bytes = &wrapped.0;
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        key.copy_from_slice(&bytes[KEY_AT..TAG_AT]);
        self.cipher
            .decrypt_in_place_detached(
                array(&bytes[NONCE_AT..KEY_AT]),
                &context.aad(),
                &mut key[..],
                array(&bytes[TAG_AT..]),
            )
            .map_err(|_| VaultError::Decrypt)?;
        Ok(DataKey(key))
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek").field("id", &self.id).field("key", &"[REDACTED]").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    fn ctx() -> WrapContext {
        WrapContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4() }
    }

    #[test]
    fn data_keys_are_random_and_never_shown() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), &[0u8; 32]);
        assert_eq!(format!("{a:?}"), "DataKey([REDACTED])");
        crate::tests::assert_hides(&format!("{a:#?}"), a.expose_secret());
        assert_eq!(DataKey::from_bytes(a.expose_secret()).expose_secret(), a.expose_secret());
    }

    #[test]
    fn wrapped_keys_have_the_documented_layout_and_round_trip() {
        let kek = MasterKey::from_bytes(&[1u8; 32]).unwrap().kek();
        let (key, context) = (DataKey::generate(), ctx());
        let wrapped = kek.wrap(&key, &context);
        let bytes = wrapped.to_bytes();
        assert_eq!(bytes.len(), WRAPPED_KEY_LEN);
        assert_eq!(&bytes[..4], b"CW\x01\x01");
        assert_eq!(bytes[4..12], kek.id().to_bytes());
        assert_eq!(wrapped.kek(), kek.id());
        assert!(!bytes.windows(8).any(|w| key.expose_secret().windows(8).any(|k| k == w)), "the key is encrypted");
        let again = WrappedKey::from_bytes(&bytes).unwrap();
        assert_eq!(again, wrapped);
        assert_eq!(kek.unwrap(&again, &context).unwrap().expose_secret(), key.expose_secret());
        assert_ne!(kek.wrap(&key, &context), wrapped, "a fresh nonce every time");
        assert!(format!("{wrapped:?}").contains(&kek.id().to_string()));
    }

    #[test]
    fn wrapped_keys_are_bound_to_their_context_and_kek() {
        let kek = MasterKey::from_bytes(&[1u8; 32]).unwrap().kek();
        let other = MasterKey::from_bytes(&[2u8; 32]).unwrap().kek();
        let (key, context) = (DataKey::generate(), ctx());
        let wrapped = kek.wrap(&key, &context);
        for wrong in [
            WrapContext { organization: Uuid::new_v4(), ..context },
            WrapContext { data_key: Uuid::new_v4(), ..context },
            WrapContext { organization: context.data_key, data_key: context.organization },
        ] {
            assert_eq!(kek.unwrap(&wrapped, &wrong).unwrap_err(), VaultError::Decrypt);
        }
        assert_eq!(other.unwrap(&wrapped, &context).unwrap_err(), VaultError::UnknownKeyVersion(kek.id().to_string()));
        // A KEK with another key under the same id: the tag fails.
        let impostor = Kek::new(kek.id(), &[3u8; 32]);
        assert_eq!(impostor.unwrap(&wrapped, &context).unwrap_err(), VaultError::Decrypt);
    }

    #[test]
    fn wrapped_keys_are_read_strictly() {
        let kek = MasterKey::from_bytes(&[1u8; 32]).unwrap().kek();
        let good = kek.wrap(&DataKey::generate(), &ctx()).to_bytes();
        let malformed = |bytes: &[u8], says: &str| match WrappedKey::from_bytes(bytes) {
            Err(VaultError::Malformed(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{other:?}"),
        };
        malformed(&good[..83], "84 bytes, not 83");
        malformed(&[good.as_slice(), &[0]].concat(), "not 85");
        malformed(&[], "not 0");
        let mut bad = good.clone();
        bad[0] = b'X';
        malformed(&bad, "magic");
        let mut bad = good.clone();
        bad[2] = 2;
        malformed(&bad, "version 2");
        let mut bad = good;
        bad[3] = 0;
        malformed(&bad, "algorithm 0");
    }
}
