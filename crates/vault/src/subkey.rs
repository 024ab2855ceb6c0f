//! Sub-keys of a data key, one per use and purpose (blind indexes, pseudonyms).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::DataKey;

/// HKDF-SHA256 (RFC 5869) with no salt (so HashLen zero bytes: the input is already a uniformly
/// random key), `info = label || purpose`: a key of its own for each use, so an index for one
/// purpose says nothing about another, and no sub-key reveals the data key.
pub(crate) fn derive(key: &DataKey, label: &[u8], purpose: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, key.expose_secret())
        .expand_multi_info(&[label, purpose], &mut out[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}
