//! `ArtifactStore` over any object_store backend: a local directory in
//! embedded mode, memory in tests (and S3 in distributed mode).
//!
//! Each object's SHA-256 is written beside it as `<path>.sha256`, so digests
//! survive restarts and are visible to any client of the bucket or directory.

use crate::ports::{ArtifactMeta, ArtifactPath, ArtifactStore, DIGEST_SUFFIX};
use crate::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub struct ObjectArtifactStore {
    store: Arc<dyn ObjectStore>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ObjectArtifactStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectArtifactStore { store }
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
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self::new(Arc::new(fs)))
    }

    async fn digest_of(&self, key: &str) -> Result<Option<String>> {
        match self.store.get(&ObjectPath::from(key)).await {
            Ok(r) => {
                let b = r.bytes().await?;
                Ok(Some(String::from_utf8_lossy(&b).trim().to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
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
        self.store
            .put(&ObjectPath::from(path.as_str()), PutPayload::from(bytes))
            .await?;
        self.store
            .put(
                &ObjectPath::from(path.digest_key()),
                PutPayload::from(digest.clone().into_bytes()),
            )
            .await?;
        let meta = self.store.head(&ObjectPath::from(path.as_str())).await?;
        Ok(ArtifactMeta {
            path: path.to_string(),
            size,
            sha256: Some(digest),
            modified: meta.last_modified,
        })
    }

    async fn get(&self, path: &ArtifactPath) -> Result<Bytes> {
        let r = self.store.get(&ObjectPath::from(path.as_str())).await?;
        Ok(r.bytes().await?)
    }

    async fn head(&self, path: &ArtifactPath) -> Result<ArtifactMeta> {
        let meta = self.store.head(&ObjectPath::from(path.as_str())).await?;
        Ok(ArtifactMeta {
            path: path.to_string(),
            size: meta.size,
            sha256: self.digest_of(&path.digest_key()).await?,
            modified: meta.last_modified,
        })
    }

    async fn list(&self, prefix: Option<&ArtifactPath>) -> Result<Vec<ArtifactMeta>> {
        let prefix = prefix.map(|p| ObjectPath::from(p.as_str()));
        let metas: Vec<_> = self.store.list(prefix.as_ref()).try_collect().await?;
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
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
