//! Signed checkpoints in the C2SP formats (`tlog-checkpoint` inside a `signed-note`), so that
//! standard transparency-log tooling can read and verify them:
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root hash>\n[extension lines]\n
//! \n
//! — <key name> <base64(key id[4] ‖ Ed25519 signature[64])>\n
//! ```
//!
//! The key id is the first four bytes of `SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key)`; the
//! verifier key is written `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encoding::Hash;

const ED25519: u8 = 0x01;

/// A checkpoint's signed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Extension lines (without newlines), e.g. `time 2026-11-23T09:00:00Z`.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root));
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let mut lines =
            body.strip_suffix('\n').ok_or(NoteError::Malformed("body must end with a newline"))?.split('\n');
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Malformed("missing origin"))?.to_owned();
        let size = lines.next().and_then(|s| s.parse().ok()).ok_or(NoteError::Malformed("bad tree size"))?;
        let root_bytes = lines.next().and_then(|r| B64.decode(r).ok()).ok_or(NoteError::Malformed("bad root hash"))?;
        let root: Hash = root_bytes.try_into().map_err(|_| NoteError::Malformed("root hash must be 32 bytes"))?;
        Ok(Checkpoint { origin, size, root, extensions: lines.map(str::to_owned).collect() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no signature by key {0}")]
    NoSignature(String),
    #[error("bad signature by key {0}")]
    BadSignature(String),
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
}

pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A named Ed25519 key that signs checkpoints.
#[derive(Clone)]
pub struct NoteSigner {
    pub name: String,
    key: SigningKey,
}

impl NoteSigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Self {
        NoteSigner { name: name.into(), key }
    }

    /// A key for `context` derived from the signing key: what authenticates state this process
    /// keeps in the database (only the key's holder can make or check it).
    pub fn derive_key(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, self.key.as_bytes())
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// The complete signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n— {} {}\n", self.name, B64.encode(blob))
    }
}

/// A public key that checks checkpoint signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    pub name: String,
    pub key: VerifyingKey,
}

impl NoteVerifier {
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn to_note_key(&self) -> String {
        let mut raw = vec![ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        let id = self.key_id();
        format!("{}+{:02x}{:02x}{:02x}{:02x}+{}", self.name, id[0], id[1], id[2], id[3], B64.encode(raw))
    }

    pub fn parse(text: &str) -> Result<NoteVerifier, NoteError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected <name>+<key id>+<key>"));
        };
        let raw = B64.decode(key).map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ED25519 {
            return Err(NoteError::BadKey("only Ed25519 keys are supported"));
        }
        let bytes: [u8; 32] = raw[1..].try_into().map_err(|_| NoteError::BadKey("bad key length"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::BadKey("not an Ed25519 public key"))?;
        let verifier = NoteVerifier { name: name.to_owned(), key };
        let expected: String = verifier.key_id().iter().map(|b| format!("{b:02x}")).collect();
        if expected != id.to_ascii_lowercase() {
            return Err(NoteError::BadKey("key id does not match the key"));
        }
        Ok(verifier)
    }

    /// Checks the note carries a valid signature by this key, and returns its checkpoint.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let (body, sigs) = note.split_once("\n\n").ok_or(NoteError::Malformed("missing signature block"))?;
        let body = format!("{body}\n");
        let id = self.key_id();
        let mut found = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("— ") else { continue };
            let Some((name, blob)) = rest.split_once(' ') else { continue };
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(blob) else { continue };
            if blob.len() != 68 || blob[..4] != id {
                continue;
            }
            found = true;
            let sig = Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            if self.key.verify(body.as_bytes(), &sig).is_ok() {
                return Checkpoint::parse_body(&body);
            }
        }
        Err(if found { NoteError::BadSignature(self.name.clone()) } else { NoteError::NoSignature(self.name.clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_opens_c2sp_notes() {
        let signer = NoteSigner::new("custos.test/audit", SigningKey::from_bytes(&[9u8; 32]));
        let cp = Checkpoint {
            origin: "custos.test/audit/org".into(),
            size: 42,
            root: [3u8; 32],
            extensions: vec!["time 2026-01-01T00:00:00Z".into()],
        };
        let note = signer.sign(&cp);
        assert!(note.starts_with("custos.test/audit/org\n42\n"));
        assert!(note.contains("\n\n— custos.test/audit "));
        let verifier = NoteVerifier::parse(&signer.verifier().to_note_key()).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), cp);
        // Any edit of the body breaks the signature; another key finds none of its own.
        let forged = note.replace("\n42\n", "\n43\n");
        assert_eq!(verifier.open(&forged), Err(NoteError::BadSignature("custos.test/audit".into())));
        let other = NoteSigner::new("custos.test/audit", SigningKey::from_bytes(&[8u8; 32])).verifier();
        assert!(matches!(other.open(&note), Err(NoteError::NoSignature(_))));
        assert!(NoteVerifier::parse("name+00000000+AAAA").is_err());
    }
}
