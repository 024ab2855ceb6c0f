//! One blob store (`object_store`: a local directory or S3-compatible storage): files stored
//! content-addressed and never overwritten.
//!
//! An upload streams into a staging object under `uploads/` while SHA-256 and BLAKE3 are
//! computed over the same bytes; memory stays at one multipart chunk or two whatever the file
//! size. The finished object is then renamed, only if absent, to
//! `[<storage prefix>/]<organisation>/blake3/<hh>/<blake3 hex>`: identical content shares one
//! object, and an existing object is never replaced. Objects are per organisation, so
//! deduplication reveals nothing across tenants; the storage prefix is the organisation's data
//! residency setting (`storage_prefix`).
//!
//! `CUSTOS_BLOB_STORE` names the store: `file:///dir`, or `s3://bucket/prefix` with the usual `AWS_*`
//! variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP` for other S3-compatible stores).

use std::fmt::Display;
use std::sync::Arc;

use bytes::Bytes;
use custos_core::{ErrorKind, Problem, hex};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Multipart chunk size: S3's minimum part size, and the most an upload buffers per part.
const CHUNK: usize = 5 * 1024 * 1024;
/// Parts in flight at once.
const IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the file exceeds the {limit}-byte upload limit")]
    TooLarge { limit: u64 },
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob store read: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store configuration: {0}")]
    Config(String),
}

impl From<BlobError> for Problem {
    fn from(err: BlobError) -> Self {
        match err {
            BlobError::TooLarge { limit } => Problem::new(
                ErrorKind::PayloadTooLarge,
                "File too large",
                format!("Uploads are limited to {limit} bytes (CUSTOS_MAX_UPLOAD_BYTES)"),
            ),
            BlobError::Interrupted(why) => Problem::invalid("Upload interrupted", why),
            other => Problem::internal(other),
        }
    }
}

/// Size and digests of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub size: u64,
    /// Hex.
    pub sha256: String,
    /// Hex.
    pub blake3: String,
}

/// An ingested file: where it is and what it hashes to.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub key: String,
    pub digests: Digests,
}

#[derive(Default)]
struct Hashing {
    sha256: Sha256,
    blake3: blake3::Hasher,
    size: u64,
}

impl Hashing {
    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.blake3.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn finish(self) -> Digests {
        Digests {
            size: self.size,
            sha256: hex::encode(&self.sha256.finalize()),
            blake3: self.blake3.finalize().to_hex().to_string(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    location: String,
    /// The directory of a `file://` store: its unfinished multipart files (`name#n`) are not
    /// listed by `object_store`, so the staging sweep looks at the directory itself.
    local_dir: Option<std::path::PathBuf>,
}

/// S3's limit on one CopyObject (and one UploadPartCopy) request.
const S3_COPY_MAX: u64 = 5 * 1024 * 1024 * 1024;

/// Staging objects older than this belong to uploads that died (a crash, a dropped connection).
pub const STAGING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

impl BlobStore {
    /// `file:///absolute/dir` (created if missing) or `memory://` (tests, benchmarks).
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        let store: Arc<dyn ObjectStore> = if let Some(dir) = url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(BlobError::Config(format!(
                    "{url}: a file:// URL needs an absolute path (file:///srv/blobs)"
                )));
            }
            std::fs::create_dir_all(dir).map_err(|e| BlobError::Config(format!("cannot create {dir}: {e}")))?;
            // Evidence must survive a crash once accepted: fsync files and directories.
            Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_fsync(true))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::Config(format!("{url}: name the bucket (s3://bucket/prefix)")));
            }
            // Credentials, region and endpoint come from the usual AWS_* variables
            // (AWS_ENDPOINT and AWS_ALLOW_HTTP for other S3-compatible stores).
            let s3 = AmazonS3Builder::from_env().with_bucket_name(bucket).build()?;
            let prefix = prefix.trim_matches('/');
            if prefix.is_empty() { Arc::new(s3) } else { Arc::new(PrefixStore::new(s3, prefix)) }
        } else if url == "memory://" {
            Arc::new(InMemory::new())
        } else {
            return Err(BlobError::Config(format!(
                "unsupported blob store URL {url:?}: use file:///absolute/path or s3://bucket/prefix"
            )));
        };
        let local_dir = url.strip_prefix("file://").map(std::path::PathBuf::from);
        Ok(BlobStore { store, location: url.to_owned(), local_dir })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The largest object this store can take: an upload is staged, then copied to its content
    /// address server-side, and S3 copies at most 5 GiB in one request.
    pub fn max_object_bytes(&self) -> u64 {
        if self.location.starts_with("s3://") { S3_COPY_MAX } else { u64::MAX }
    }

    /// The content objects (not staging) last written more than `min_age` ago, with the
    /// organisation each belongs to (the segment before `blake3` in its key).
    pub async fn content_older_than(&self, min_age: std::time::Duration) -> Result<Vec<(Uuid, String)>, BlobError> {
        let cutoff = std::time::SystemTime::now() - min_age;
        let mut found = Vec::new();
        let mut listing = self.store.list(None);
        while let Some(meta) = listing.try_next().await? {
            let key = meta.location.to_string();
            let org = owner_of(&key);
            if let Some(org) = org
                && std::time::SystemTime::from(meta.last_modified) < cutoff
            {
                found.push((org, key));
            }
        }
        Ok(found)
    }

    /// Removes what uploads that never finished left under `uploads/` (older than `max_age`);
    /// returns how many objects or files went. Live uploads are younger, so this is safe to run
    /// at any time on any number of replicas. (On S3, unfinished multipart parts are the
    /// bucket's lifecycle rule's job: AbortIncompleteMultipartUpload.)
    pub async fn sweep_staging(&self, max_age: std::time::Duration) -> Result<usize, BlobError> {
        let cutoff = std::time::SystemTime::now() - max_age;
        let mut removed = 0;
        let staged: Vec<_> = self.store.list(Some(&Path::from("uploads"))).try_collect().await?;
        for meta in staged {
            if std::time::SystemTime::from(meta.last_modified) < cutoff {
                self.delete(meta.location.as_ref()).await?;
                removed += 1;
            }
        }
        if let Some(dir) = &self.local_dir {
            let dir = dir.join("uploads");
            removed += tokio::task::spawn_blocking(move || {
                let mut removed = 0;
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
                    if old && std::fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
                removed
            })
            .await
            .unwrap_or(0);
        }
        Ok(removed)
    }

    /// Streams `body` into the store, refusing it once it passes `limit` bytes.
    /// `prefix` is the organisation's storage prefix, if it has one ([`check_prefix`]).
    pub async fn ingest<S, E>(
        &self,
        organization_id: Uuid,
        prefix: Option<&str>,
        body: S,
        limit: u64,
    ) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: Display,
    {
        let staging = Path::from(format!("uploads/{}", Uuid::now_v7()));
        let upload = self.store.put_multipart(&staging).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut hashing = Hashing::default();
        let mut body = std::pin::pin!(body);
        let failure = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(BlobError::Interrupted(e.to_string())),
                Some(Ok(chunk)) => chunk,
            };
            if hashing.size + chunk.len() as u64 > limit {
                break Some(BlobError::TooLarge { limit });
            }
            hashing.update(&chunk);
            if let Err(e) = writer.wait_for_capacity(IN_FLIGHT).await {
                break Some(e.into());
            }
            writer.put(chunk);
        };
        if let Some(err) = failure {
            if let Err(e) = writer.abort().await {
                tracing::warn!(error = %e, "could not discard an aborted upload");
            }
            return Err(err);
        }
        writer.finish().await?;
        let digests = hashing.finish();
        let key = content_key(prefix, organization_id, &digests.blake3);
        let target = Path::from(key.as_str());
        let stored_already = match self.store.rename_if_not_exists(&staging, &target).await {
            Ok(()) => false,
            Err(object_store::Error::AlreadyExists { .. }) => true,
            // Stores without conditional copy (S3 unless AWS_COPY_IF_NOT_EXISTS is set): copy
            // only when absent. Two racing uploads of one content write identical bytes.
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. }) => {
                let exists = self.exists(&key).await?;
                if !exists {
                    self.store.copy(&staging, &target).await?;
                    self.store.delete(&staging).await?;
                }
                exists
            }
            Err(e) => return Err(e.into()),
        };
        if stored_already {
            // The same content is stored already: keep that object and drop the copy — unless
            // the stored one no longer is that content (bit rot, tampering). Then this upload is
            // the good copy, and keeping the damaged one would leave the content unstorable.
            if self.digest(&key).await?.as_ref() != Some(&digests) {
                tracing::warn!(%key, "a stored object did not match its content address; replaced by this upload of it");
                self.store.copy(&staging, &target).await?;
            }
            self.store.delete(&staging).await?;
        }
        Ok(StoredBlob { key, digests })
    }

    /// The object's size and its bytes as a stream; `None` when it is gone.
    pub async fn open(
        &self,
        key: &str,
    ) -> Result<Option<(u64, BoxStream<'static, Result<Bytes, BlobError>>)>, BlobError> {
        match self.store.get(&Path::from(key)).await {
            Ok(got) => {
                let size = got.meta.size;
                let stream = match got.payload {
                    // object_store reads local files 8 KiB at a time; megabyte reads are several
                    // times faster for multi-gigabyte evidence.
                    GetResultPayload::File(file, _) => read_file(file),
                    GetResultPayload::Stream(stream) => stream.map_err(BlobError::from).boxed(),
                };
                Ok(Some((size, stream)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.store.head(&Path::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-reads an object and recomputes its digests; `None` when it is gone.
    pub async fn digest(&self, key: &str) -> Result<Option<Digests>, BlobError> {
        let Some((_, mut stream)) = self.open(key).await? else { return Ok(None) };
        let mut hashing = Hashing::default();
        while let Some(chunk) = stream.next().await {
            hashing.update(&chunk?);
        }
        Ok(Some(hashing.finish()))
    }

    /// Writes the local file at `path` to `key` (replacing what is there: for objects named by
    /// their writer, such as archives, never for content-addressed ones); its size.
    pub async fn put_file(&self, key: &str, path: &std::path::Path) -> Result<u64, BlobError> {
        use tokio::io::AsyncReadExt;
        let upload = self.store.put_multipart(&Path::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut file = tokio::fs::File::open(path).await?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(IN_FLIGHT).await?;
            writer.write(&buf[..n]);
            size += n as u64;
        }
        writer.finish().await?;
        Ok(size)
    }

    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

const READ_CHUNK: usize = 1024 * 1024;

fn read_file(file: std::fs::File) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; READ_CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(BlobError::Io(e)), None)),
            Err(e) => Some((Err(BlobError::Io(std::io::Error::other(e))), None)),
        }
    })
    .boxed()
}

pub fn content_key(prefix: Option<&str>, organization_id: Uuid, blake3_hex: &str) -> String {
    let key = format!("{organization_id}/blake3/{}/{blake3_hex}", &blake3_hex[..2]);
    match prefix {
        Some(prefix) => format!("{prefix}/{key}"),
        None => key,
    }
}

/// The organisation a content key belongs to: the segment before `blake3`.
fn owner_of(key: &str) -> Option<Uuid> {
    let segments: Vec<&str> = key.split('/').collect();
    let at = segments.iter().position(|s| *s == "blake3")?;
    Uuid::parse_str(segments.get(at.checked_sub(1)?)?).ok()
}

/// A storage prefix: path segments of letters, digits, `.`, `_` and `-`, separated by `/`, at
/// most 200 characters, never `uploads` first (the staging area) nor `.`/`..`; what is wrong
/// when it is not one.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    for segment in prefix.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err("must be path segments separated by single slashes, without . or ..".into());
        }
        if !segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(format!("segment {segment:?} may hold only letters, digits, '.', '_' and '-'"));
        }
    }
    if prefix.split('/').next() == Some("uploads") {
        return Err("may not start with `uploads` (the staging area)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_s3_store_takes_objects_up_to_what_s3_copies() {
        let s3 = super::BlobStore::from_url("s3://evidence-bucket/custos").unwrap();
        assert_eq!(s3.max_object_bytes(), 5 * 1024 * 1024 * 1024);
        assert_eq!(super::BlobStore::from_url("memory://").unwrap().max_object_bytes(), u64::MAX);
    }

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + use<> {
        futures::stream::iter(parts.iter().map(|p| Ok(Bytes::from_static(p))).collect::<Vec<_>>())
    }

    #[tokio::test]
    async fn ingest_hashes_addresses_by_content_and_deduplicates() {
        let store = BlobStore::from_url("memory://").unwrap();
        let org = Uuid::now_v7();
        let a = store.ingest(org, None, chunks(&[b"hello ", b"world"]), 1024).await.unwrap();
        assert_eq!(a.digests.size, 11);
        assert_eq!(a.digests.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        assert_eq!(a.digests.blake3, blake3::hash(b"hello world").to_hex().to_string());
        assert_eq!(a.key, content_key(None, org, &a.digests.blake3));
        let b = store.ingest(org, None, chunks(&[b"hello world"]), 1024).await.unwrap();
        assert_eq!(a.key, b.key);
        assert_eq!(store.digest(&a.key).await.unwrap(), Some(a.digests));
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_and_leaves_nothing() {
        let store = BlobStore::from_url("memory://").unwrap();
        let err = store.ingest(Uuid::now_v7(), None, chunks(&[b"0123456789", b"x"]), 10).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10 }));
        let left: Vec<_> = store.store.list(None).collect().await;
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn the_sweep_removes_stale_staging_only() {
        let dir = std::env::temp_dir().join(format!("custos-blobs-{}", Uuid::now_v7()));
        let store = BlobStore::from_url(&format!("file://{}", dir.display())).unwrap();
        let kept = store.ingest(Uuid::now_v7(), None, chunks(&[b"evidence"]), 1024).await.unwrap();
        std::fs::create_dir_all(dir.join("uploads")).unwrap();
        std::fs::write(dir.join("uploads/dead#1"), b"half an upload").unwrap();
        assert_eq!(store.sweep_staging(std::time::Duration::from_secs(3600)).await.unwrap(), 0, "too young");
        assert_eq!(store.sweep_staging(std::time::Duration::ZERO).await.unwrap(), 1);
        assert!(!dir.join("uploads/dead#1").exists());
        assert!(store.exists(&kept.key).await.unwrap(), "stored evidence is never swept");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_storage_prefix_leads_the_key_and_the_owner_is_still_found() {
        let store = BlobStore::from_url("memory://").unwrap();
        let org = Uuid::now_v7();
        let blob = store.ingest(org, Some("company-data-eu/hot"), chunks(&[b"x"]), 10).await.unwrap();
        assert!(blob.key.starts_with(&format!("company-data-eu/hot/{org}/blake3/")), "{}", blob.key);
        let found = store.content_older_than(std::time::Duration::ZERO).await.unwrap();
        assert_eq!(found, vec![(org, blob.key)]);
    }

    #[test]
    fn storage_prefixes_are_plain_paths() {
        for good in ["company-data-us", "a/b.c/d_e"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for bad in ["", "/x", "x/", "a//b", "../x", "a/./b", "uploads/x", "sp ace", "ü"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_absolute_file_urls_and_memory_are_accepted() {
        assert!(matches!(BlobStore::from_url("file://relative/dir"), Err(BlobError::Config(_))));
        assert!(matches!(BlobStore::from_url("ftp://x"), Err(BlobError::Config(_))));
    }
}
