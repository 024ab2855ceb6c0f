//! The one error type of the vault.
//!
//! No message ever carries key material or plaintext: a message names *which* input was wrong
//! (an environment variable, a file, a format field) and how, never what it held.

/// Everything that can go wrong in the vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// Authenticated decryption failed. Deliberately one message for every cause (a wrong key, a
    /// different organisation, record, field or data key, an altered byte): telling them apart
    /// would help whoever is probing, and never the operator, who needs the same next step.
    #[error("decryption failed: wrong key or context, or the data was altered")]
    Decrypt,
    /// The bytes are not in a format this version reads (length, magic, version, algorithm).
    #[error("malformed vault data: {0}")]
    Malformed(String),
    /// A wrapped key names a key-encryption key (by its id, 16 hex characters) the provider does
    /// not hold: a master key was retired before every data key under it was rewrapped, or the
    /// configuration lost one.
    #[error(
        "unknown master key version {0}: no configured master key has this id (list the old key in \
         CUSTOS_MASTER_KEY_PREVIOUS until every data key is rewrapped)"
    )]
    UnknownKeyVersion(String),
    /// The master-key configuration is wrong or missing.
    #[error("master key configuration: {0}")]
    Config(String),
    /// Reading or writing a key file, or the random source, failed.
    #[error("{0}")]
    Io(String),
}
