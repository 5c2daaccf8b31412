//! `ArtifactStore` over any object_store backend: a local directory in
//! embedded mode, memory in tests (and S3 in distributed mode).
//!
//! With a keyring (the default) each object is sealed ([`crate::encryption`])
//! and its key record, which also holds its size and SHA-256, is written
//! beside it as `<path>.key`. Without one, the object is written as it is
//! with its SHA-256 beside it as `<path>.sha256`. Both kinds read, so a
//! store written before encryption keeps working.

use crate::encryption::{envelope, Encryption};
use crate::error::{object_error, Classify};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;
pub use tracseq_core::digest::sha256_hex;
use tracseq_core::ports::{
    ArtifactMeta, ArtifactPath, ArtifactStore, ByteStream, DIGEST_SUFFIX, KEY_SUFFIX,
};
use tracseq_core::{Error, Result};

pub struct ObjectArtifactStore {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Objects at least this large are uploaded in parts, so a large model or
    /// data set is never one huge request and a failed part is retried alone.
    multipart_threshold: usize,
    pub(crate) encryption: Encryption,
    /// Sealed artifacts up to this size are authenticated whole before a
    /// stream releases anything ([`VERIFY_WHOLE_BYTES`]).
    verify_whole: u64,
}

/// Part size for multipart uploads (S3's minimum is 5 MiB).
pub const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;

/// How long one S3 request keeps retrying through an outage (connection
/// refused, timeouts, 5xx) before its caller sees `Unavailable`.
#[cfg(feature = "s3")]
pub const S3_OUTAGE_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

/// Where an S3 artifact store lives. `None` fields fall back to `AWS_*`.
#[cfg(feature = "s3")]
#[derive(Clone, Debug, Default)]
pub struct S3Options {
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl ObjectArtifactStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectArtifactStore {
            store,
            multipart_threshold: 2 * MULTIPART_PART_SIZE,
            encryption: Encryption::off(),
            verify_whole: VERIFY_WHOLE_BYTES,
        }
    }

    /// Sets the size up to which a sealed stream is authenticated whole
    /// first (tests use 0 to exercise the segment-by-segment path).
    pub fn with_verify_whole(mut self, bytes: u64) -> Self {
        self.verify_whole = bytes;
        self
    }

    /// Seals what is written and opens what is read with these keys.
    pub fn with_encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    pub fn encryption(&self) -> &Encryption {
        &self.encryption
    }

    /// Sets the size from which uploads go in parts (tests use a small one).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes.max(1);
        self
    }

    async fn put_object(&self, path: &ObjectPath, bytes: Bytes) -> Result<()> {
        if bytes.len() < self.multipart_threshold {
            self.store
                .put(path, PutPayload::from(bytes))
                .await
                .classify()?;
            return Ok(());
        }
        let upload = self.store.put_multipart(path).await.classify()?;
        let mut writer =
            object_store::WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_SIZE);
        writer.put(bytes);
        // No object becomes visible unless every part was stored; a failed
        // completion is aborted by `finish`, and the caller's retry starts over.
        writer.finish().await.classify()?;
        Ok(())
    }

    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Artifacts under a local directory (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Unavailable(format!(
                "cannot create artifact directory {}: {e}",
                dir.display()
            ))
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).classify()?;
        Ok(Self::new(Arc::new(fs)))
    }

    /// Artifacts in an S3-compatible bucket (AWS, MinIO, s3s): `url` is
    /// `s3://bucket[/prefix]`; credentials and region also come from the
    /// usual `AWS_*` variables. Path-style requests, so MinIO works.
    #[cfg(feature = "s3")]
    pub fn s3(opts: &S3Options) -> Result<Self> {
        use object_store::aws::AmazonS3Builder;
        let rest = opts.url.strip_prefix("s3://").ok_or_else(|| {
            Error::Invalid(format!("artifact url '{}' must start with s3://", opts.url))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Invalid(format!(
                "artifact url '{}' names no bucket",
                opts.url
            )));
        }
        // An outage is ridden out for `S3_OUTAGE_BUDGET`, however the
        // jittered backoff falls: a retry count would make that budget a
        // dice roll (ten short draws end it in about a second), so the count
        // is only a ceiling the time budget reaches first.
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: std::time::Duration::from_millis(100),
                max_backoff: std::time::Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: usize::MAX,
            retry_timeout: S3_OUTAGE_BUDGET,
        };
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_virtual_hosted_style_request(false)
            .with_retry(retry);
        if let Some(endpoint) = &opts.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &opts.region {
            b = b.with_region(region);
        }
        if let (Some(key), Some(secret)) = (&opts.access_key_id, &opts.secret_access_key) {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
        }
        let s3 = b
            .build()
            .map_err(|e| Error::Invalid(format!("S3 configuration: {e}")))?;
        let prefix = prefix.trim_matches('/');
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
        };
        Ok(Self::new(store))
    }

    /// The object at `path`, opened for reading.
    async fn open(&self, path: &ArtifactPath) -> Result<object_store::GetResult> {
        self.store
            .get(&ObjectPath::from(path.as_str()))
            .await
            .classify()
    }

    /// The store's metadata of the object at `path`.
    async fn stat(&self, path: &ArtifactPath) -> Result<object_store::ObjectMeta> {
        self.store
            .head(&ObjectPath::from(path.as_str()))
            .await
            .classify()
    }

    async fn digest_of(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .read_optional(key)
            .await?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }

    /// A small object that may be missing (a digest or a key record).
    pub(crate) async fn read_optional(&self, key: &str) -> Result<Option<Bytes>> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => Ok(Some(r.bytes().await.classify()?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_error(e)),
        }
    }

    /// Deletes an object if it is there.
    pub(crate) async fn delete_quietly(&self, key: &str) -> Result<()> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(e)),
        }
    }

    /// The opened key record of a sealed artifact; `None` when it has none
    /// (written in plain text, or missing).
    pub(crate) async fn key_record(&self, path: &ArtifactPath) -> Result<Option<envelope::Opened>> {
        let Some(record) = self.read_optional(&path.key_record_key()).await? else {
            return Ok(None);
        };
        let Some(keyring) = &self.encryption.keyring else {
            return Err(Error::Unavailable(format!(
                "artifact '{path}' is encrypted and this process has no key-encryption key \
                 (encryption.disabled is set)"
            )));
        };
        envelope::open_record(keyring, path, &record).map(Some)
    }

    /// The plaintext of a whole sealed payload (on the blocking pool when large).
    async fn open_sealed(&self, opened: envelope::Opened, payload: Bytes) -> Result<Bytes> {
        let plain = if payload.len() < BLOCKING_CRYPTO_BYTES {
            opened.open_all(&payload)?
        } else {
            tokio::task::spawn_blocking(move || opened.open_all(&payload))
                .await
                .map_err(|e| Error::Internal(format!("decryption task failed: {e}")))??
        };
        Ok(Bytes::from(plain))
    }

    /// Whether an artifact without a key record may be served as it is:
    /// not when it is a sealed payload whose record is gone, and not when
    /// plain text is no longer accepted.
    fn check_plain(&self, path: &ArtifactPath, start: &[u8]) -> Result<()> {
        if start.starts_with(envelope::MAGIC) {
            return Err(envelope::tampered(
                path.as_str(),
                "is encrypted but its key record is missing",
            ));
        }
        if self.encryption.require {
            return Err(Error::Internal(format!(
                "artifact '{path}' is stored without encryption and encryption.require is set: \
                 `tracseq-ml keys migrate` seals it"
            )));
        }
        Ok(())
    }

    /// Writes an object's payload, then the record beside it (a digest, or
    /// a key record), then removes the other kind of record an older
    /// version may have left: a reader never sees a record for content
    /// that is not there yet.
    async fn write_beside(
        &self,
        path: &ArtifactPath,
        payload: Bytes,
        record: (String, Vec<u8>),
        stale: String,
        (size, sha256): (u64, String),
    ) -> Result<ArtifactMeta> {
        self.put_object(&ObjectPath::from(path.as_str()), payload)
            .await?;
        self.store
            .put(&ObjectPath::from(record.0), PutPayload::from(record.1))
            .await
            .classify()?;
        self.delete_quietly(&stale).await?;
        let meta = self.stat(path).await?;
        Ok(ArtifactMeta {
            path: path.to_string(),
            size,
            sha256: Some(sha256),
            modified: meta.last_modified,
        })
    }
}

#[async_trait]
impl ArtifactStore for ObjectArtifactStore {
    async fn put(&self, path: &ArtifactPath, bytes: Bytes) -> Result<ArtifactMeta> {
        let Some(keyring) = &self.encryption.keyring else {
            // Encryption disabled: as it is, with its digest beside it.
            let digest = sha256_hex(&bytes);
            let size = bytes.len() as u64;
            let record = (path.digest_key(), digest.clone().into_bytes());
            return self
                .write_beside(path, bytes, record, path.key_record_key(), (size, digest))
                .await;
        };
        let kek = keyring.active();
        let sealed = if bytes.len() < BLOCKING_CRYPTO_BYTES {
            envelope::seal(&kek, path, &bytes)?
        } else {
            let p = path.clone();
            tokio::task::spawn_blocking(move || envelope::seal(&kek, &p, &bytes))
                .await
                .map_err(|e| Error::Internal(format!("sealing task failed: {e}")))??
        };
        self.write_beside(
            path,
            Bytes::from(sealed.payload),
            (path.key_record_key(), sealed.record),
            path.digest_key(),
            (sealed.size, sealed.sha256),
        )
        .await
    }

    async fn get(&self, path: &ArtifactPath) -> Result<Bytes> {
        let Some(opened) = self.key_record(path).await? else {
            let bytes = self.open(path).await?.bytes().await.classify()?;
            self.check_plain(path, &bytes)?;
            return Ok(bytes);
        };
        let payload = self.open(path).await?.bytes().await.classify()?;
        self.open_sealed(opened, payload).await
    }

    async fn get_stream(&self, path: &ArtifactPath) -> Result<ByteStream> {
        let Some(opened) = self.key_record(path).await? else {
            let mut inner = self.open(path).await?.into_stream().map_err(object_error);
            // Enough of the start to tell a sealed payload from plain text.
            let (mut first, mut seen) = (Vec::new(), 0);
            while seen < envelope::MAGIC.len() {
                match inner.next().await {
                    Some(chunk) => {
                        let chunk = chunk?;
                        seen += chunk.len();
                        first.push(chunk);
                    }
                    None => break,
                }
            }
            let head: Vec<u8> = first
                .iter()
                .flat_map(|c| c.iter().copied())
                .take(8)
                .collect();
            self.check_plain(path, &head)?;
            return Ok(Box::pin(
                futures::stream::iter(first.into_iter().map(Ok)).chain(inner),
            ));
        };
        let object = self.open(path).await?;
        // A cut or padded payload is refused before its first byte is sent.
        if object.meta.size != opened.sealed_len() {
            return Err(opened.wrong_length(object.meta.size));
        }
        if opened.size <= self.verify_whole {
            // Authenticated whole before anything is sent, so a damaged
            // artifact is an error answer, not a cut download.
            let payload = object.bytes().await.classify()?;
            let plain = self.open_sealed(opened, payload).await?;
            return Ok(Box::pin(futures::stream::once(async move { Ok(plain) })));
        }
        Ok(decrypting(
            opened,
            Box::pin(object.into_stream().map_err(object_error)),
        ))
    }

    async fn head(&self, path: &ArtifactPath) -> Result<ArtifactMeta> {
        let meta = self.stat(path).await?;
        let (size, sha256) = match self.key_record(path).await? {
            Some(opened) => (opened.size, Some(opened.sha256)),
            None => (meta.size, self.digest_of(&path.digest_key()).await?),
        };
        Ok(ArtifactMeta {
            path: path.to_string(),
            size,
            sha256,
            modified: meta.last_modified,
        })
    }

    async fn list(&self, prefix: Option<&ArtifactPath>) -> Result<Vec<ArtifactMeta>> {
        let prefix = prefix.map(|p| ObjectPath::from(p.as_str()));
        let metas: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .classify()?;
        let keys: std::collections::HashSet<String> =
            metas.iter().map(|m| m.location.to_string()).collect();
        let mut out = Vec::new();
        for m in metas {
            let key = m.location.to_string();
            if ArtifactPath::is_sidecar(&key) {
                continue;
            }
            let sealed = keys.contains(&format!("{key}{KEY_SUFFIX}"));
            let (size, sha256) = match ArtifactPath::parse(&key) {
                Ok(path) if sealed => match self.key_record(&path).await? {
                    Some(opened) => (opened.size, Some(opened.sha256)),
                    None => (m.size, None),
                },
                _ if keys.contains(&format!("{key}{DIGEST_SUFFIX}")) => (
                    m.size,
                    self.digest_of(&format!("{key}{DIGEST_SUFFIX}")).await?,
                ),
                _ => (m.size, None),
            };
            out.push(ArtifactMeta {
                path: key,
                size,
                sha256,
                modified: m.last_modified,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        // Deleting a missing object is not an error for callers cleaning up.
        for key in [path.to_string(), path.digest_key(), path.key_record_key()] {
            self.delete_quietly(&key).await?;
        }
        Ok(())
    }
}

/// Objects at least this large are sealed and opened on the blocking pool,
/// so a 64 MB data set does not stall the runtime's other tasks.
const BLOCKING_CRYPTO_BYTES: usize = 1024 * 1024;

/// Sealed artifacts up to this size are read whole and authenticated before
/// a stream gives out their first byte; larger ones are released segment by
/// segment, each authenticated, and a failure ends the stream with an error.
pub const VERIFY_WHOLE_BYTES: u64 = 16 * 1024 * 1024;

/// The plaintext of a sealed payload arriving in chunks, each segment
/// released once authenticated; the first failure ends the stream.
fn decrypting(opened: envelope::Opened, inner: ByteStream) -> ByteStream {
    let state = (inner, Some(envelope::Decryptor::new(opened)));
    Box::pin(futures::stream::unfold(
        state,
        |(mut inner, mut dec)| async move {
            loop {
                let d = dec.as_mut()?;
                match inner.next().await {
                    Some(Ok(chunk)) => match d.push(&chunk) {
                        Ok(plain) if plain.is_empty() => continue,
                        Ok(plain) => return Some((Ok(Bytes::from(plain)), (inner, dec))),
                        Err(e) => return Some((Err(e), (inner, None))),
                    },
                    Some(Err(e)) => return Some((Err(e), (inner, None))),
                    None => {
                        let last = dec.take()?.finish().map(Bytes::from);
                        return Some((last, (inner, None)));
                    }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::artifact_store_suite;

    #[tokio::test]
    async fn multipart_uploads_conform() {
        // A threshold below the suite's 3 MiB object sends it in parts.
        let store = ObjectArtifactStore::in_memory().with_multipart_threshold(1024 * 1024);
        artifact_store_suite(&store, "mp").await;
        let dir = tempfile::tempdir().unwrap();
        let local = ObjectArtifactStore::local(dir.path())
            .unwrap()
            .with_multipart_threshold(1024 * 1024);
        artifact_store_suite(&local, "mp").await;
    }
}
