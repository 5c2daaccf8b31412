//! `ArtifactStore` over any object_store backend: a local directory in
//! embedded mode, memory in tests (and S3 in distributed mode).
//!
//! Each object's SHA-256 is written beside it as `<path>.sha256`, so digests
//! survive restarts and are visible to any client of the bucket or directory.

use crate::error::{object_error, Classify};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::sync::Arc;
pub use tracseq_core::digest::sha256_hex;
use tracseq_core::ports::{ArtifactMeta, ArtifactPath, ArtifactStore, ByteStream, DIGEST_SUFFIX};
use tracseq_core::{Error, Result};

pub struct ObjectArtifactStore {
    store: Arc<dyn ObjectStore>,
    /// Objects at least this large are uploaded in parts, so a large model or
    /// data set is never one huge request and a failed part is retried alone.
    multipart_threshold: usize,
}

/// Part size for multipart uploads (S3's minimum is 5 MiB).
pub const MULTIPART_PART_SIZE: usize = 8 * 1024 * 1024;

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
        }
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
        let retry = object_store::RetryConfig {
            max_retries: 10,
            retry_timeout: std::time::Duration::from_secs(120),
            ..Default::default()
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
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => {
                let b = r.bytes().await.classify()?;
                Ok(Some(String::from_utf8_lossy(&b).trim().to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_error(e)),
        }
    }
}

#[async_trait]
impl ArtifactStore for ObjectArtifactStore {
    async fn put(&self, path: &ArtifactPath, bytes: Bytes) -> Result<ArtifactMeta> {
        let digest = sha256_hex(&bytes);
        let size = bytes.len() as u64;
        // The object first, then its digest: a reader never sees a digest for
        // content that is not there yet.
        self.put_object(&ObjectPath::from(path.as_str()), bytes)
            .await?;
        self.store
            .put(
                &ObjectPath::from(path.digest_key()),
                PutPayload::from(digest.clone().into_bytes()),
            )
            .await
            .classify()?;
        let meta = self.stat(path).await?;
        Ok(ArtifactMeta {
            path: path.to_string(),
            size,
            sha256: Some(digest),
            modified: meta.last_modified,
        })
    }

    async fn get(&self, path: &ArtifactPath) -> Result<Bytes> {
        self.open(path).await?.bytes().await.classify()
    }

    async fn get_stream(&self, path: &ArtifactPath) -> Result<ByteStream> {
        let r = self.open(path).await?;
        Ok(Box::pin(r.into_stream().map_err(object_error)))
    }

    async fn head(&self, path: &ArtifactPath) -> Result<ArtifactMeta> {
        let meta = self.stat(path).await?;
        Ok(ArtifactMeta {
            path: path.to_string(),
            size: meta.size,
            sha256: self.digest_of(&path.digest_key()).await?,
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
        let mut out = Vec::new();
        for m in metas {
            let key = m.location.to_string();
            if key.ends_with(DIGEST_SUFFIX) {
                continue;
            }
            let sha256 = self.digest_of(&format!("{key}{DIGEST_SUFFIX}")).await?;
            out.push(ArtifactMeta {
                path: key,
                size: m.size,
                sha256,
                modified: m.last_modified,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        // Deleting a missing object is not an error for callers cleaning up.
        for key in [path.to_string(), path.digest_key()] {
            match self.store.delete(&ObjectPath::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(object_error(e)),
            }
        }
        Ok(())
    }
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

#[cfg(all(test, feature = "s3"))]
mod s3_conformance {
    //! Against a real S3 server: `ops/test.sh` starts one and exports
    //! `TRACSEQ_TEST_S3_ENDPOINT` (plus bucket and keys).
    use super::*;
    use crate::testing::artifact_store_suite;

    fn options() -> Option<S3Options> {
        let Ok(endpoint) = std::env::var("TRACSEQ_TEST_S3_ENDPOINT") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "TRACSEQ_TEST_S3_ENDPOINT is not set: run the tests through ops/test.sh, which starts an S3 server"
            );
            eprintln!(
                "skipped: no S3 server (TRACSEQ_TEST_S3_ENDPOINT unset); ops/test.sh starts one"
            );
            return None;
        };
        let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let bucket = var("TRACSEQ_TEST_S3_BUCKET", "tracseq-test");
        Some(S3Options {
            url: format!("s3://{bucket}/t-{}", uuid::Uuid::new_v4().simple()),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some(var("TRACSEQ_TEST_S3_ACCESS_KEY", "tracseq")),
            secret_access_key: Some(var("TRACSEQ_TEST_S3_SECRET_KEY", "tracseq-secret")),
        })
    }

    #[tokio::test]
    async fn s3_artifacts_conform() {
        let Some(opts) = options() else { return };
        artifact_store_suite(&ObjectArtifactStore::s3(&opts).unwrap(), "suite").await;
    }

    #[tokio::test]
    async fn s3_multipart_upload_of_a_large_artifact() {
        let Some(opts) = options() else { return };
        let store = ObjectArtifactStore::s3(&opts).unwrap();
        let path = ArtifactPath::parse("models/big/1/model.json").unwrap();
        let body: Vec<u8> = (0..(20 * 1024 * 1024u32))
            .map(|i| (i % 251) as u8)
            .collect();
        let meta = store.put(&path, Bytes::from(body.clone())).await.unwrap();
        assert_eq!(meta.size, body.len() as u64);
        assert_eq!(meta.sha256.as_deref(), Some(sha256_hex(&body).as_str()));
        assert_eq!(store.get(&path).await.unwrap().len(), body.len());
        assert_eq!(store.head(&path).await.unwrap().sha256, meta.sha256);
    }

    /// A private s3s-fs on its own port and directory, so the test can stop
    /// and restart it without touching the shared one.
    struct OwnServer {
        child: std::process::Child,
    }

    impl OwnServer {
        fn start(
            bin: &std::path::Path,
            dir: &std::path::Path,
            port: u16,
            o: &S3Options,
        ) -> OwnServer {
            let child = std::process::Command::new(bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--access-key",
                    o.access_key_id.as_deref().unwrap_or_default(),
                ])
                .args([
                    "--secret-key",
                    o.secret_access_key.as_deref().unwrap_or_default(),
                ])
                .arg(dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start s3s-fs");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            OwnServer { child }
        }
    }

    impl Drop for OwnServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn s3_outage_makes_an_upload_wait_and_retry_not_vanish() {
        let Some(shared) = options() else { return };
        let bin = std::env::var_os("TRACSEQ_TEST_S3_BIN")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::Path::new(&h).join(".cache/tracseq-ml/bin/s3s-fs"))
            })
            .filter(|p| p.exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "no s3s-fs binary (ops/s3-server.sh installs it)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outage")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = S3Options {
            url: "s3://outage/t".into(),
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            ..shared
        };
        let server = OwnServer::start(&bin, dir.path(), port, &opts);
        let store = std::sync::Arc::new(ObjectArtifactStore::s3(&opts).unwrap());
        let before = ArtifactPath::parse("models/m/1/model.json").unwrap();
        store
            .put(&before, Bytes::from_static(b"before"))
            .await
            .unwrap();

        drop(server); // S3 goes away...
        let during = ArtifactPath::parse("models/m/2/model.json").unwrap();
        let (s, p) = (store.clone(), during.clone());
        let upload =
            tokio::spawn(async move { s.put(&p, Bytes::from_static(b"during the outage")).await });
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert!(
            !upload.is_finished(),
            "the upload waits and retries while S3 is down"
        );

        let _server = OwnServer::start(&bin, dir.path(), port, &opts); // ...and comes back.
        let meta = upload
            .await
            .unwrap()
            .expect("the upload completes once S3 is back");
        assert_eq!(meta.size, 17);
        assert_eq!(
            store.get(&during).await.unwrap(),
            Bytes::from_static(b"during the outage")
        );
        assert_eq!(
            store.get(&before).await.unwrap(),
            Bytes::from_static(b"before")
        );
    }

    #[test]
    fn bad_urls_are_rejected() {
        for url in ["http://x", "s3://"] {
            let bad = S3Options {
                url: url.into(),
                ..Default::default()
            };
            assert!(
                matches!(ObjectArtifactStore::s3(&bad), Err(Error::Invalid(_))),
                "{url}"
            );
        }
    }
}
