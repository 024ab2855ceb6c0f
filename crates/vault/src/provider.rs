//! Who wraps data keys: a trait, so a cloud KMS can stand in for the local master keys.

use std::fmt;

use crate::{DataKey, Kek, KekId, MasterKeys, VaultError, WrapContext, WrappedKey};

/// Wraps and unwraps data keys under key-encryption keys, one of them current.
///
/// [`LocalKeyProvider`] does it with KEKs derived from the configured master keys; another
/// implementation may hold its KEKs in a KMS. Callers store only [`WrappedKey`]s and ask the
/// provider for the [`DataKey`] when they need it.
pub trait KeyProvider: Send + Sync {
    /// The KEK new keys are wrapped under.
    fn current(&self) -> KekId;

    /// Every KEK this provider can unwrap with, the current one first.
    fn versions(&self) -> Vec<KekId>;

    /// Wraps `key` under the current KEK, bound to `context`.
    fn wrap(&self, key: &DataKey, context: &WrapContext) -> Result<WrappedKey, VaultError>;

    /// Unwraps `wrapped` with the KEK it names, if this provider holds it
    /// ([`VaultError::UnknownKeyVersion`] otherwise), for `context` ([`VaultError::Decrypt`] for
    /// any other context or an altered key).
    fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext) -> Result<DataKey, VaultError>;

    /// A new data key and its wrapped form, to be stored under `context.data_key` (a KMS with a
    /// "generate data key" call of its own may answer it in one request).
    fn generate(&self, context: &WrapContext) -> Result<(DataKey, WrappedKey), VaultError> {
        let key = DataKey::generate();
        let wrapped = self.wrap(&key, context)?;
        Ok((key, wrapped))
    }
}

/// A [`KeyProvider`] over the configured master keys: the current one's KEK wraps, every
/// configured key's KEK unwraps what it wrapped.
///
/// The KEKs are derived once, when it is built; the master keys themselves need not be kept.
pub struct LocalKeyProvider {
    /// The current KEK first, then the previous ones (a handful: a linear search is fastest).
    keks: Vec<Kek>,
}

impl LocalKeyProvider {
    /// The provider of these master keys.
    pub fn new(keys: &MasterKeys) -> LocalKeyProvider {
        let keks = std::iter::once(keys.current()).chain(keys.previous()).map(|k| k.kek()).collect();
        LocalKeyProvider { keks }
    }
}

impl KeyProvider for LocalKeyProvider {
    fn current(&self) -> KekId {
        self.keks[0].id()
    }

    fn versions(&self) -> Vec<KekId> {
        self.keks.iter().map(Kek::id).collect()
    }

    fn wrap(&self, key: &DataKey, context: &WrapContext) -> Result<WrappedKey, VaultError> {
        Ok(self.keks[0].wrap(key, context))
    }

    fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext) -> Result<DataKey, VaultError> {
        let id = wrapped.kek();
        let kek = self.keks.iter().find(|k| k.id() == id).ok_or(VaultError::UnknownKeyVersion(id.to_string()))?;
        kek.unwrap(wrapped, context)
    }
}

impl fmt::Debug for LocalKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeyProvider")
            .field("current", &self.current())
            .field("versions", &self.versions())
            .finish()
    }
}

/// Moves a wrapped key onto the provider's current KEK (after a master-key rotation): unwraps it
/// with whichever KEK it names, wraps the same data key under the current one. The data key does
/// not change, so nothing it encrypted needs re-encrypting.
///
/// `Ok(None)` when `wrapped` is already under the current KEK: there is nothing to store (it is
/// not unwrapped then; reading it checks it). `Ok(Some(new))` is the form to store in its place.
pub fn rewrap<P: KeyProvider + ?Sized>(
    provider: &P,
    wrapped: &WrappedKey,
    context: &WrapContext,
) -> Result<Option<WrappedKey>, VaultError> {
    if wrapped.kek() == provider.current() {
        return Ok(None);
    }
    let key = provider.unwrap(wrapped, context)?;
    provider.wrap(&key, context).map(Some)
}

#[cfg(test)]
mod tests {
    use hkdf::Hkdf;
    use sha2::Sha256;
    use uuid::Uuid;

    use super::*;
    use crate::MasterKey;

    fn keys(current: u8, previous: &[u8]) -> MasterKeys {
        MasterKeys::new(
            MasterKey::from_bytes(&[current; 32]).unwrap(),
            previous.iter().map(|&b| MasterKey::from_bytes(&[b; 32]).unwrap()),
        )
    }

    fn id(b: u8) -> KekId {
        MasterKey::from_bytes(&[b; 32]).unwrap().id()
    }

    fn ctx() -> WrapContext {
        WrapContext { organization: Uuid::new_v4(), data_key: Uuid::new_v4() }
    }

    #[test]
    fn the_local_provider_wraps_under_the_current_key_and_unwraps_under_any() {
        let old = LocalKeyProvider::new(&keys(1, &[]));
        let rotated = LocalKeyProvider::new(&keys(2, &[1]));
        let retired = LocalKeyProvider::new(&keys(2, &[]));
        assert_eq!(rotated.current(), id(2));
        assert_eq!(rotated.versions(), vec![id(2), id(1)]);
        let context = ctx();
        let (key, wrapped) = old.generate(&context).unwrap();
        assert_eq!(wrapped.kek(), id(1));
        assert_eq!(rotated.unwrap(&wrapped, &context).unwrap().expose_secret(), key.expose_secret());
        assert_eq!(retired.unwrap(&wrapped, &context).unwrap_err(), VaultError::UnknownKeyVersion(id(1).to_string()));
        assert_eq!(rotated.wrap(&key, &context).unwrap().kek(), id(2));
        assert_eq!(rotated.unwrap(&wrapped, &ctx()).unwrap_err(), VaultError::Decrypt);
        let dynamic: &dyn KeyProvider = &rotated;
        assert_eq!(dynamic.current(), id(2));
    }

    #[test]
    fn rewrap_moves_keys_to_the_current_kek_and_says_when_there_was_nothing_to_do() {
        let old = LocalKeyProvider::new(&keys(1, &[]));
        let rotated = LocalKeyProvider::new(&keys(2, &[1]));
        let context = ctx();
        let (key, wrapped) = old.generate(&context).unwrap();
        let moved = rewrap(&rotated, &wrapped, &context).unwrap().expect("under an old KEK");
        assert_eq!(moved.kek(), id(2));
        assert_eq!(rotated.unwrap(&moved, &context).unwrap().expose_secret(), key.expose_secret());
        assert_eq!(rewrap(&rotated, &moved, &context).unwrap(), None, "already current");
        assert_eq!(rewrap(&rotated, &wrapped, &ctx()).unwrap_err(), VaultError::Decrypt);
        let unknown = LocalKeyProvider::new(&keys(3, &[]));
        assert!(matches!(rewrap(&unknown, &wrapped, &context), Err(VaultError::UnknownKeyVersion(_))));
    }

    #[test]
    fn debug_shows_ids_only() {
        let provider = LocalKeyProvider::new(&keys(5, &[6]));
        let shown = format!("{provider:?}");
        assert!(shown.contains(&id(5).to_string()) && shown.contains(&id(6).to_string()), "{shown}");
        for master in [[5u8; 32], [6u8; 32]] {
            let mut kek = [0u8; 32];
            Hkdf::<Sha256>::new(Some(b"custos"), &master).expand(b"custos kek v1", &mut kek).unwrap();
            crate::tests::assert_hides(&shown, &master);
            crate::tests::assert_hides(&shown, &kek);
        }
    }
}
