//! Master keys: where they come from, their ids, and the key-encryption keys derived from them.
//!
//! A master key is at least 32 random bytes given as base64 in `CUSTOS_MASTER_KEY` or in the file
//! `CUSTOS_MASTER_KEY_FILE` names. It never encrypts anything itself: HKDF-SHA256 derives the
//! key-encryption key ([`Kek`]) that wraps data keys, so the master key's bytes are used for
//! exactly one derivation (and its fingerprint), whatever its length or origin.
//!
//! Rotation: put the new key in `CUSTOS_MASTER_KEY` and the old one in
//! `CUSTOS_MASTER_KEY_PREVIOUS` (comma-separated, or one per line in the file
//! `CUSTOS_MASTER_KEY_PREVIOUS_FILE` names); data keys wrapped under either still unwrap, new ones
//! are wrapped under the current key, and [`crate::rewrap`] moves old ones over. Each key is named
//! by its fingerprint ([`KekId`]), so no version label has to be kept in step by hand.
//!
//! Without a configured key, outside `CUSTOS_ENV=production`, a development key is generated
//! once into `<CUSTOS_DATA_DIR>/master.key` (mode 0600) and reused; [`KeySource::Generated`] tells
//! the caller to warn about it loudly. In production a missing key is an error: data encrypted
//! under a key that lives beside it protects nothing.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hkdf::Hkdf;
use rand::TryRngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{Kek, VaultError};

/// The shortest master key accepted, in bytes: 256 bits, the KEK's own strength.
pub const MIN_MASTER_KEY_LEN: usize = 32;
/// The development key's file name, in the data directory.
pub const MASTER_KEY_FILE_NAME: &str = "master.key";
/// The BLAKE3 `derive_key` context whose output's first 8 bytes are a master key's [`KekId`].
pub const KEK_ID_CONTEXT: &str = "custos master key id v1";
/// The HKDF-SHA256 salt of the KEK derivation.
pub const KEK_SALT: &[u8] = b"custos";
/// The HKDF-SHA256 info of the KEK derivation.
pub const KEK_INFO: &[u8] = b"custos kek v1";

/// The current master key, base64.
pub const ENV_KEY: &str = "CUSTOS_MASTER_KEY";
/// A file holding the current master key, base64.
pub const ENV_KEY_FILE: &str = "CUSTOS_MASTER_KEY_FILE";
/// Earlier master keys still able to unwrap, base64, comma-separated.
pub const ENV_PREVIOUS: &str = "CUSTOS_MASTER_KEY_PREVIOUS";
/// A file of earlier master keys, base64, one per line (blank lines and `#` comments ignored).
pub const ENV_PREVIOUS_FILE: &str = "CUSTOS_MASTER_KEY_PREVIOUS_FILE";
/// `production` makes a missing master key an error instead of generating one.
pub const ENV_ENVIRONMENT: &str = "CUSTOS_ENV";

/// Key files are a line of base64; anything larger is not one (and `/dev/urandom` named by
/// mistake must not be read forever).
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// Base64 as operators paste it: padded or not, so `openssl rand -base64 32` and url-safe
/// encoders both work.
const DECODE: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, DECODE);
const URL_SAFE_ANY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, DECODE);

/// The id of a key-encryption key: 8 bytes, shown as 16 lowercase hex characters.
///
/// For a master key, the first 8 bytes of BLAKE3 `derive_key("custos master key id v1", key)`: a
/// fingerprint, so the same key always has the same id and versions need no labels. It is one-way
/// and says nothing useful about the key (64 bits of a keyed-context hash of ≥ 256 secret bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId([u8; 8]);

impl KekId {
    /// The id with these bytes (as stored in a [`crate::WrappedKey`]).
    pub const fn from_bytes(bytes: [u8; 8]) -> KekId {
        KekId(bytes)
    }

    /// The id's bytes.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// The id of the master key with these bytes.
    fn of_master(key: &[u8]) -> KekId {
        let full = Zeroizing::new(blake3::derive_key(KEK_ID_CONTEXT, key));
        let mut id = [0u8; 8];
        id.copy_from_slice(&full[..8]);
        KekId(id)
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({self})")
    }
}

impl FromStr for KekId {
    type Err = VaultError;

    /// 16 hex characters, either case.
    fn from_str(s: &str) -> Result<KekId, VaultError> {
        let bad = || VaultError::Malformed(format!("a key id is 16 hex characters, not {s:?}"));
        // Hex digits only: `from_str_radix` alone would also take a sign (`+f`).
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; 8];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(KekId(id))
    }
}

/// A master key: at least 32 secret bytes, boxed in a [`SecretSlice`] (wiped when dropped, never
/// shown by `Debug`), with its [`KekId`].
pub struct MasterKey {
    secret: SecretSlice<u8>,
    id: KekId,
}

impl MasterKey {
    /// A master key of these bytes (copied; wipe the original): at least [`MIN_MASTER_KEY_LEN`].
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, VaultError> {
        checked("the master key", bytes)
    }

    /// A master key from base64 (standard or url-safe, padded or not, surrounding whitespace
    /// ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, VaultError> {
        parse("the master key", text)
    }

    /// 32 fresh bytes from the operating system's random source (a master key outlives every
    /// process, so it is taken from the source itself rather than a user-space generator).
    pub fn generate() -> Result<MasterKey, VaultError> {
        let mut bytes = Zeroizing::new([0u8; MIN_MASTER_KEY_LEN]);
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes[..])
            .map_err(|e| VaultError::Io(format!("the operating system's random source failed: {e}")))?;
        checked("a generated master key", &bytes[..])
    }

    /// The key's fingerprint, which is also the id of its KEK.
    pub fn id(&self) -> KekId {
        self.id
    }

    /// The key-encryption key: HKDF-SHA256 (RFC 5869) with `ikm` = the master key,
    /// `salt = "custos"`, `info = "custos kek v1"`, 32 bytes; named by this key's id.
    pub fn kek(&self) -> Kek {
        let mut okm = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(KEK_SALT), self.secret.expose_secret())
            .expand(KEK_INFO, &mut okm[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Kek::new(self.id, &okm)
    }

    /// Base64 of the key, for the development key file only.
    fn to_base64_line(&self) -> Zeroizing<String> {
        let bytes = self.secret.expose_secret();
        // Sized up front: a String that grows leaves copies of the key behind in freed memory.
        let mut text = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4 + 1));
        STANDARD.encode_string(bytes, &mut text);
        text.push('\n');
        text
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).field("key", &"[REDACTED]").finish()
    }
}

fn checked(what: &str, bytes: &[u8]) -> Result<MasterKey, VaultError> {
    if bytes.len() < MIN_MASTER_KEY_LEN {
        return Err(VaultError::Config(format!(
            "{what} decodes to {} bytes; a master key needs at least {MIN_MASTER_KEY_LEN} random bytes \
             (make one with `openssl rand -base64 32`)",
            bytes.len()
        )));
    }
    Ok(MasterKey { secret: SecretSlice::from(Box::<[u8]>::from(bytes)), id: KekId::of_master(bytes) })
}

/// Decodes base64 into a buffer sized once (no copies left behind by growing) and wiped after.
/// The decoder's own error is never shown: it quotes the offending character, a piece of the key.
fn parse(what: &str, text: &str) -> Result<MasterKey, VaultError> {
    let text = text.trim();
    let mut buf = Zeroizing::new(vec![0u8; base64::decoded_len_estimate(text.len())]);
    let len = STANDARD_ANY
        .decode_slice(text, &mut buf[..])
        .or_else(|_| URL_SAFE_ANY.decode_slice(text, &mut buf[..]))
        .map_err(|_| VaultError::Config(format!("{what} is not base64 (standard or url-safe)")))?;
    checked(what, &buf[..len])
}

/// A file's bytes, read into a buffer sized from its length and wiped after use.
fn read_limited(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = File::open(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0).min(MAX_KEY_FILE_LEN);
    let mut buf = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(io::Error::other("larger than 64 KiB: not a key file"));
    }
    Ok(buf)
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(io::Error) -> VaultError {
    move |e| VaultError::Io(format!("{what} {}: {e}", path.display()))
}

fn text_of<'b>(what: &str, path: &Path, bytes: &'b [u8]) -> Result<&'b str, VaultError> {
    std::str::from_utf8(bytes).map_err(|_| VaultError::Config(format!("{what} {}: not UTF-8 text", path.display())))
}

fn parse_file(what: &str, path: &Path) -> Result<MasterKey, VaultError> {
    let bytes = read_limited(path).map_err(io_error(what, path))?;
    parse(&format!("{what} {}", path.display()), text_of(what, path, &bytes)?)
}

/// The development key at `path`: read if present, else generated and written.
fn load_or_generate(path: &Path) -> Result<MasterKey, VaultError> {
    let what = "the generated master key file";
    match read_limited(path) {
        Ok(bytes) => parse(&format!("{what} {}", path.display()), text_of(what, path, &bytes)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = MasterKey::generate()?;
            match write_new(path, &key.to_base64_line()) {
                Ok(()) => Ok(key),
                // Another process starting beside this one made it first: use that one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => parse_file(what, path),
                Err(e) => Err(io_error(what, path)(e)),
            }
        }
        Err(e) => Err(io_error(what, path)(e)),
    }
}

/// Writes a new key file, readable by its owner only. It is written under a temporary name and
/// hard-linked into place, so it appears whole or not at all (a second process never reads half
/// a key) and never replaces a file that appeared meanwhile (`AlreadyExists` then).
fn write_new(path: &Path, contents: &str) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{MASTER_KEY_FILE_NAME}.{:016x}.tmp", rand::random::<u64>()));
    let linked = write_private(&tmp, contents).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        // A file system without hard links: create the file itself, still never replacing one.
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => write_private(path, contents),
        other => other,
    }
}

fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Where the current master key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `CUSTOS_MASTER_KEY`.
    Environment,
    /// `CUSTOS_MASTER_KEY_FILE`, this file.
    File(PathBuf),
    /// A development key kept in this file in the data directory (generated now or earlier): the
    /// caller must warn loudly, since whoever reads the data directory reads the key too.
    Generated(PathBuf),
}

/// The current master key, which wraps every new data key, and the previous ones, which still
/// unwrap what they wrapped until it is rewrapped.
pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// The current key and the previous ones; a previous key equal to the current one or to an
    /// earlier previous one (same id) is dropped, so listing a key twice is harmless.
    pub fn new(current: MasterKey, previous: impl IntoIterator<Item = MasterKey>) -> MasterKeys {
        let mut kept: Vec<MasterKey> = Vec::new();
        for key in previous {
            if key.id != current.id && kept.iter().all(|k| k.id != key.id) {
                kept.push(key);
            }
        }
        MasterKeys { current, previous: kept }
    }

    /// The key new data keys are wrapped under.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The earlier keys, still able to unwrap.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// Every key's id, the current one first.
    pub fn ids(&self) -> Vec<KekId> {
        std::iter::once(&self.current).chain(&self.previous).map(MasterKey::id).collect()
    }

    /// The master keys as configured through `lookup` (the process environment in production:
    /// `|name| std::env::var(name).ok()`; a map in tests).
    ///
    /// * `CUSTOS_MASTER_KEY` (base64, standard or url-safe, ≥ 32 bytes decoded) or
    ///   `CUSTOS_MASTER_KEY_FILE` (a file holding the same); both set is an error.
    /// * `CUSTOS_MASTER_KEY_PREVIOUS` (comma-separated) or `CUSTOS_MASTER_KEY_PREVIOUS_FILE` (one
    ///   per line, blank lines and `#` comments ignored): earlier keys; both set is an error.
    /// * Neither current key: with `CUSTOS_ENV=production` an error; otherwise the development key
    ///   `<data_dir>/master.key`, generated (32 bytes from the OS, directories created, mode 0600)
    ///   if absent, else reused — [`KeySource::Generated`].
    ///
    /// A variable set to an empty or blank value counts as unset (as in the rest of the
    /// configuration). Errors name the variable or file and what is wrong (for a short key, how
    /// many bytes it has), never the key.
    pub fn from_env(
        lookup: impl Fn(&str) -> Option<String>,
        data_dir: &Path,
    ) -> Result<(MasterKeys, KeySource), VaultError> {
        // Every value read is wiped when dropped: the current and previous keys are in them.
        let var = |name: &str| lookup(name).map(Zeroizing::new).filter(|v| !v.trim().is_empty());
        let production = var(ENV_ENVIRONMENT).is_some_and(|e| e.trim().eq_ignore_ascii_case("production"));
        let (current, source) = match (var(ENV_KEY), var(ENV_KEY_FILE)) {
            (Some(_), Some(_)) => {
                return Err(VaultError::Config(format!("set {ENV_KEY} or {ENV_KEY_FILE}, not both")));
            }
            (Some(text), None) => (parse(ENV_KEY, &text)?, KeySource::Environment),
            (None, Some(path)) => {
                let path = PathBuf::from(path.trim());
                (parse_file(ENV_KEY_FILE, &path)?, KeySource::File(path))
            }
            (None, None) if production => {
                return Err(VaultError::Config(format!(
                    "{ENV_ENVIRONMENT}=production requires a master key: set {ENV_KEY} or {ENV_KEY_FILE} \
                     (base64 of at least {MIN_MASTER_KEY_LEN} random bytes, e.g. `openssl rand -base64 32`)"
                )));
            }
            (None, None) => {
                let path = data_dir.join(MASTER_KEY_FILE_NAME);
                (load_or_generate(&path)?, KeySource::Generated(path))
            }
        };
        let mut previous = Vec::new();
        match (var(ENV_PREVIOUS), var(ENV_PREVIOUS_FILE)) {
            (Some(_), Some(_)) => {
                return Err(VaultError::Config(format!("set {ENV_PREVIOUS} or {ENV_PREVIOUS_FILE}, not both")));
            }
            (Some(list), None) => {
                for (i, item) in list.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
                    previous.push(parse(&format!("{ENV_PREVIOUS} (key {})", i + 1), item)?);
                }
            }
            (None, Some(path)) => {
                let path = PathBuf::from(path.trim());
                let bytes = read_limited(&path).map_err(io_error(ENV_PREVIOUS_FILE, &path))?;
                for (n, line) in text_of(ENV_PREVIOUS_FILE, &path, &bytes)?.lines().enumerate() {
                    let line = line.trim();
                    if !line.is_empty() && !line.starts_with('#') {
                        let what = format!("{ENV_PREVIOUS_FILE} {} (line {})", path.display(), n + 1);
                        previous.push(parse(&what, line)?);
                    }
                }
            }
            (None, None) => {}
        }
        Ok((MasterKeys::new(current, previous), source))
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<KekId> = self.previous.iter().map(MasterKey::id).collect();
        f.debug_struct("MasterKeys").field("current", &self.current.id).field("previous", &previous).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("custos-vault-{}", uuid::Uuid::new_v4()))
    }

    fn load(vars: &[(&str, &str)], dir: &Path) -> Result<(MasterKeys, KeySource), VaultError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        MasterKeys::from_env(|name| vars.get(name).cloned(), dir)
    }

    fn id_of(bytes: &[u8]) -> KekId {
        MasterKey::from_bytes(bytes).unwrap().id()
    }

    #[test]
    fn kek_id_is_the_blake3_fingerprint_in_hex() {
        let key = [7u8; 32];
        let id = id_of(&key);
        assert_eq!(id.to_bytes(), blake3::derive_key("custos master key id v1", &key)[..8]);
        let hex = id.to_string();
        assert_eq!(hex.len(), 16);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(hex.parse::<KekId>().unwrap(), id);
        assert_eq!(hex.to_uppercase().parse::<KekId>().unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("KekId({hex})"));
        for bad in ["", "abc", "0123456789abcdeg", "0123456789abcdef0", "é123456789abcde", "+f+f+f+f+f+f+f+f"] {
            assert!(matches!(bad.parse::<KekId>(), Err(VaultError::Malformed(_))), "{bad:?}");
        }
        assert_ne!(id_of(&[8u8; 32]), id, "another key, another id");
        assert_ne!(id_of(&[7u8; 33]), id, "the whole key is fingerprinted");
    }

    #[test]
    fn keks_follow_the_documented_hkdf() {
        let master = [9u8; 40];
        let mut expected = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"custos"), &master).expand(b"custos kek v1", &mut expected).unwrap();
        let id = id_of(&master);
        let independent = Kek::new(id, &expected);
        let ours = MasterKey::from_bytes(&master).unwrap().kek();
        assert_eq!(ours.id(), id);
        let ctx = crate::WrapContext { organization: uuid::Uuid::new_v4(), data_key: uuid::Uuid::new_v4() };
        let key = crate::DataKey::generate();
        let unwrapped = ours.unwrap(&independent.wrap(&key, &ctx), &ctx).unwrap();
        assert_eq!(unwrapped.expose_secret(), key.expose_secret());
    }

    #[test]
    fn master_keys_come_from_the_environment_in_any_base64() {
        let dir = temp_dir();
        let bytes: Vec<u8> = (0u8..48).collect();
        for text in [
            STANDARD.encode(&bytes),
            STANDARD_NO_PAD.encode(&bytes[..32]),
            URL_SAFE.encode([0xfb; 32]),
            URL_SAFE_NO_PAD.encode([0xff; 33]),
            format!("  {}\n", STANDARD.encode(&bytes)),
        ] {
            let (keys, source) = load(&[("CUSTOS_MASTER_KEY", &text)], &dir).unwrap();
            assert_eq!(source, KeySource::Environment);
            assert!(keys.previous().is_empty());
            assert_eq!(keys.ids().len(), 1);
        }
        let (keys, _) = load(&[("CUSTOS_MASTER_KEY", &STANDARD.encode(&bytes))], &dir).unwrap();
        assert_eq!(keys.current().id(), id_of(&bytes));
        assert!(!dir.exists(), "a configured key generates nothing");
    }

    #[test]
    fn bad_keys_are_refused_saying_why_and_never_showing_them() {
        let dir = temp_dir();
        let short = STANDARD.encode([0x41u8; 16]);
        let err = load(&[("CUSTOS_MASTER_KEY", &short)], &dir).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("CUSTOS_MASTER_KEY decodes to 16 bytes"), "{message}");
        assert!(message.contains("at least 32"), "{message}");
        assert!(!message.contains(&short), "{message}");

        let garbage = "this is not base64 at all, secret!";
        let message = load(&[("CUSTOS_MASTER_KEY", garbage)], &dir).unwrap_err().to_string();
        assert!(message.contains("not base64"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        // Mixed alphabets are neither encoding.
        let mixed = format!("{}-+", STANDARD_NO_PAD.encode([1u8; 33]));
        assert!(load(&[("CUSTOS_MASTER_KEY", &mixed)], &dir).is_err());

        let good = STANDARD.encode([1u8; 32]);
        let message = load(&[("CUSTOS_MASTER_KEY", &good), ("CUSTOS_MASTER_KEY_FILE", "/nowhere")], &dir)
            .unwrap_err()
            .to_string();
        assert!(message.contains("not both"), "{message}");
        let message =
            load(&[("CUSTOS_MASTER_KEY", &good), ("CUSTOS_MASTER_KEY_PREVIOUS", &format!("{good},{short}"))], &dir)
                .unwrap_err()
                .to_string();
        assert!(message.contains("CUSTOS_MASTER_KEY_PREVIOUS (key 2) decodes to 16 bytes"), "{message}");
        assert!(!message.contains(&good) && !message.contains(&short), "{message}");
        assert!(matches!(MasterKey::from_bytes(&[0; 31]), Err(VaultError::Config(_))));
        assert!(!dir.exists());
    }

    #[test]
    fn key_files_and_previous_keys() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let current = [1u8; 32];
        let (old1, old2) = ([2u8; 32], [3u8; 64]);
        let file = dir.join("current.key");
        std::fs::write(&file, format!("{}\n", STANDARD.encode(current))).unwrap();
        let previous_file = dir.join("previous.keys");
        std::fs::write(
            &previous_file,
            format!(
                "# retired 2025-01\n{}\n\n  {}  \n{}\n",
                STANDARD.encode(old1),
                URL_SAFE_NO_PAD.encode(old2),
                STANDARD.encode(current)
            ),
        )
        .unwrap();
        let file_str = file.to_str().unwrap();
        let previous_str = previous_file.to_str().unwrap();
        let (keys, source) = load(
            &[
                ("CUSTOS_MASTER_KEY_FILE", file_str),
                ("CUSTOS_MASTER_KEY_PREVIOUS_FILE", previous_str),
                ("CUSTOS_ENV", "production"),
            ],
            &dir,
        )
        .unwrap();
        assert_eq!(source, KeySource::File(file.clone()));
        // The current key listed again among the previous ones is dropped.
        assert_eq!(keys.ids(), vec![id_of(&current), id_of(&old1), id_of(&old2)]);

        let list = format!(" {} ,{},, {} ,", STANDARD.encode(old2), STANDARD.encode(old1), STANDARD.encode(old2));
        let (keys, source) =
            load(&[("CUSTOS_MASTER_KEY", &STANDARD.encode(current)), ("CUSTOS_MASTER_KEY_PREVIOUS", &list)], &dir)
                .unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_eq!(keys.ids(), vec![id_of(&current), id_of(&old2), id_of(&old1)]);

        let both = load(
            &[
                ("CUSTOS_MASTER_KEY_FILE", file_str),
                ("CUSTOS_MASTER_KEY_PREVIOUS", &list),
                ("CUSTOS_MASTER_KEY_PREVIOUS_FILE", previous_str),
            ],
            &dir,
        );
        assert!(both.unwrap_err().to_string().contains("not both"));

        let missing = dir.join("absent.key");
        let err = load(&[("CUSTOS_MASTER_KEY_FILE", missing.to_str().unwrap())], &dir).unwrap_err();
        assert!(matches!(&err, VaultError::Io(m) if m.contains("CUSTOS_MASTER_KEY_FILE") && m.contains("absent.key")));
        assert!(!dir.join(MASTER_KEY_FILE_NAME).exists(), "a missing key file is never a reason to generate one");

        std::fs::write(&file, STANDARD.encode([5u8; 20])).unwrap();
        let message = load(&[("CUSTOS_MASTER_KEY_FILE", file_str)], &dir).unwrap_err().to_string();
        assert!(message.contains("current.key decodes to 20 bytes"), "{message}");
        std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load(&[("CUSTOS_MASTER_KEY_FILE", file_str)], &dir).unwrap_err().to_string().contains("UTF-8"));
        std::fs::write(&previous_file, format!("{}\nnot-a-key\n", STANDARD.encode(old1))).unwrap();
        let message = load(
            &[("CUSTOS_MASTER_KEY", &STANDARD.encode(current)), ("CUSTOS_MASTER_KEY_PREVIOUS_FILE", previous_str)],
            &dir,
        )
        .unwrap_err()
        .to_string();
        assert!(message.contains("(line 2)") && message.contains("not base64"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_development_key_is_generated_once_privately_and_never_in_production() {
        let dir = temp_dir().join("nested/data");
        let production = [("CUSTOS_ENV", " Production ")];
        let message = load(&production, &dir).unwrap_err().to_string();
        assert!(message.contains("set CUSTOS_MASTER_KEY or CUSTOS_MASTER_KEY_FILE"), "{message}");
        assert!(!dir.exists(), "production generates nothing");

        // Blank values count as unset.
        let blank = [("CUSTOS_MASTER_KEY", "  "), ("CUSTOS_MASTER_KEY_FILE", ""), ("CUSTOS_ENV", "development")];
        let (first, source) = load(&blank, &dir).unwrap();
        let path = dir.join("master.key");
        assert_eq!(source, KeySource::Generated(path.clone()));
        let text = std::fs::read_to_string(&path).unwrap();
        let stored = STANDARD.decode(text.trim()).unwrap();
        assert_eq!(stored.len(), 32);
        assert_eq!(id_of(&stored), first.current().id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("master.key")], "no temporary file is left behind");

        let (again, source) = load(&[], &dir).unwrap();
        assert_eq!(source, KeySource::Generated(path.clone()));
        assert_eq!(again.current().id(), first.current().id(), "reused, not replaced");
        // With previous keys beside it.
        let old = STANDARD.encode([4u8; 32]);
        let (keys, _) = load(&[("CUSTOS_MASTER_KEY_PREVIOUS", &old)], &dir).unwrap();
        assert_eq!(keys.ids(), vec![first.current().id(), id_of(&[4u8; 32])]);
        // A generated key is no production key, even once it exists.
        assert!(load(&production, &dir).is_err());
        let _ = std::fs::remove_dir_all(dir.parent().unwrap().parent().unwrap());
    }

    #[test]
    fn debug_never_shows_a_master_key() {
        let bytes: Vec<u8> = (100u8..140).collect();
        let key = MasterKey::from_bytes(&bytes).unwrap();
        let keys = MasterKeys::new(MasterKey::from_bytes(&bytes).unwrap(), [MasterKey::generate().unwrap()]);
        for shown in [format!("{key:?}"), format!("{keys:?}"), format!("{:?}", key.kek()), format!("{key:#?}")] {
            crate::tests::assert_hides(&shown, &bytes);
            assert!(shown.contains(&key.id().to_string()), "{shown}");
        }
    }
}
