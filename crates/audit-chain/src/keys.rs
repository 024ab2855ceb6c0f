//! The Ed25519 key that signs checkpoints.
//!
//! Taken from `CUSTOS_SIGNING_KEY` (base64 of a 32-byte seed) or `CUSTOS_SIGNING_KEY_FILE` (a file
//! holding the same). With neither, a key is generated on first use and kept in
//! `CUSTOS_DATA_DIR/audit-signing.key` (mode 0600) with a loud warning — unless
//! `CUSTOS_ENV=production`, where a missing key is an error: a production log must be signed by a
//! key whose public half was published before it signed anything.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::SigningKey;

use crate::note::{NoteSigner, NoteVerifier};

pub const KEY_FILE_NAME: &str = "audit-signing.key";
pub const DEFAULT_ORIGIN: &str = "custos.local/audit";

#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// `CUSTOS_SIGNING_KEY`.
    pub key: Option<String>,
    /// `CUSTOS_SIGNING_KEY_FILE`.
    pub key_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    /// `CUSTOS_ENV=production`.
    pub production: bool,
    /// `CUSTOS_LOG_ORIGIN`: the key's name and the prefix of every organisation's log origin.
    pub origin: String,
    /// `CUSTOS_AUDIT_TRUSTED_KEYS`: further verifier keys (earlier keys after a rotation).
    pub trusted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("CUSTOS_ENV=production requires CUSTOS_SIGNING_KEY or CUSTOS_SIGNING_KEY_FILE (a base64 Ed25519 seed)")]
    MissingInProduction,
    #[error("{0}: not a base64-encoded 32-byte Ed25519 seed")]
    Malformed(String),
    #[error("signing key file {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("CUSTOS_AUDIT_TRUSTED_KEYS: {0}")]
    Trusted(String),
    #[error(
        "no audit signing key: CUSTOS_SIGNING_KEY and CUSTOS_SIGNING_KEY_FILE are unset and {0} does not exist; this command uses the server's key and never makes one, so run it with the server's environment (CUSTOS_DATA_DIR or the key's variables)"
    )]
    NotFound(PathBuf),
}

/// What [`load`] does when no key is configured and none was generated before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// Generate one and keep it (the server, outside production).
    Generate,
    /// Refuse: operator commands must sign with the server's key or not at all, never with a
    /// stray one that would make every later verification fail at its checkpoints.
    Refuse,
}

/// Where the key came from, for start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

fn parse_seed(what: &str, text: &str) -> Result<SigningKey, KeyError> {
    let bytes = B64.decode(text.trim()).map_err(|_| KeyError::Malformed(what.to_owned()))?;
    let seed: [u8; 32] = bytes.try_into().map_err(|_| KeyError::Malformed(what.to_owned()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn read_key_file(path: &Path) -> Result<SigningKey, KeyError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| KeyError::Io { path: path.display().to_string(), error })?;
    parse_seed(&path.display().to_string(), &text)
}

/// The signing key, and where it came from.
pub fn load(config: &KeyConfig, when_missing: WhenMissing) -> Result<(NoteSigner, KeySource), KeyError> {
    let (key, source) = if let Some(text) = &config.key {
        (parse_seed("CUSTOS_SIGNING_KEY", text)?, KeySource::Environment)
    } else if let Some(path) = &config.key_file {
        (read_key_file(path)?, KeySource::File(path.clone()))
    } else {
        let path = config.data_dir.join(KEY_FILE_NAME);
        if path.exists() {
            (read_key_file(&path)?, KeySource::Generated(path))
        } else if config.production {
            return Err(KeyError::MissingInProduction);
        } else if when_missing == WhenMissing::Refuse {
            return Err(KeyError::NotFound(path));
        } else {
            let seed: [u8; 32] = rand::random();
            write_private(&path, &B64.encode(seed))?;
            (SigningKey::from_bytes(&seed), KeySource::Generated(path))
        }
    };
    if config.production && matches!(source, KeySource::Generated(_)) {
        return Err(KeyError::MissingInProduction);
    }
    Ok((NoteSigner::new(config.origin.clone(), key), source))
}

/// Every key checkpoints may be signed with: the signing key's and the configured earlier ones.
pub fn trusted(config: &KeyConfig, signer: Option<&NoteSigner>) -> Result<Vec<NoteVerifier>, KeyError> {
    let mut out: Vec<NoteVerifier> = signer.map(|s| s.verifier()).into_iter().collect();
    for text in &config.trusted {
        out.push(NoteVerifier::parse(text).map_err(|e| KeyError::Trusted(e.to_string()))?);
    }
    Ok(out)
}

fn write_private(path: &Path, contents: &str) -> Result<(), KeyError> {
    let io = |error| KeyError::Io { path: path.display().to_string(), error };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.write_all(b"\n").map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> KeyConfig {
        KeyConfig {
            key: None,
            key_file: None,
            data_dir: dir.to_path_buf(),
            production: false,
            origin: DEFAULT_ORIGIN.into(),
            trusted: vec![],
        }
    }

    #[test]
    fn generates_once_with_private_permissions_and_refuses_in_production() {
        let dir = std::env::temp_dir().join(format!("custos-keys-{}", uuid::Uuid::now_v7()));
        assert!(matches!(load(&config(&dir), WhenMissing::Refuse), Err(KeyError::NotFound(_))));
        assert!(!dir.exists(), "refusing made nothing");
        let (first, source) = load(&config(&dir), WhenMissing::Generate).unwrap();
        assert!(matches!(source, KeySource::Generated(_)));
        let (again, _) = load(&config(&dir), WhenMissing::Generate).unwrap();
        let (found, _) = load(&config(&dir), WhenMissing::Refuse).unwrap();
        assert_eq!(first.verifier(), found.verifier(), "an operator command finds the generated key");
        assert_eq!(first.verifier(), again.verifier(), "the generated key is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let prod = KeyConfig { production: true, ..config(&dir) };
        assert!(matches!(load(&prod, WhenMissing::Generate), Err(KeyError::MissingInProduction)));
        let empty = std::env::temp_dir().join(format!("custos-keys-{}", uuid::Uuid::now_v7()));
        assert!(matches!(
            load(&KeyConfig { production: true, ..config(&empty) }, WhenMissing::Generate),
            Err(KeyError::MissingInProduction)
        ));
        let explicit = KeyConfig { key: Some(B64.encode([5u8; 32])), ..prod };
        assert_eq!(load(&explicit, WhenMissing::Refuse).unwrap().1, KeySource::Environment);
        assert!(load(&KeyConfig { key: Some("short".into()), ..config(&dir) }, WhenMissing::Generate).is_err());
        // CUSTOS_SIGNING_KEY_FILE: the key it holds, in production too; a missing file is an error,
        // never a reason to generate one.
        let file = dir.join("given.key");
        std::fs::write(&file, format!("{}\n", B64.encode([3u8; 32]))).unwrap();
        let from_file = KeyConfig { key_file: Some(file.clone()), production: true, ..config(&dir) };
        let (signer, source) = load(&from_file, WhenMissing::Refuse).unwrap();
        assert_eq!(source, KeySource::File(file));
        assert_eq!(
            signer.verifier(),
            NoteSigner::new(DEFAULT_ORIGIN.to_owned(), SigningKey::from_bytes(&[3u8; 32])).verifier()
        );
        let absent = KeyConfig { key_file: Some(dir.join("absent.key")), ..config(&dir) };
        assert!(matches!(load(&absent, WhenMissing::Generate), Err(KeyError::Io { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
