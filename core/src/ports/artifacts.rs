//! `ArtifactStore`: content-addressed-by-path blobs (data sets, trial results, models).

use crate::{Error, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Chunks of an artifact being read.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<Bytes>> + Send>>;

pub const DIGEST_SUFFIX: &str = ".sha256";

/// Beside an encrypted artifact: its key record (the key id and the wrapped
/// data key).
pub const KEY_SUFFIX: &str = ".key";

/// A validated relative key such as `models/sample-quality/3/model.json`.
/// Validation happens here, once, so no backend ever sees `..` or an absolute path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArtifactPath(String);

impl ArtifactPath {
    pub const MAX_LEN: usize = 512;

    /// The longest segment: a file name on common file systems.
    pub const MAX_SEGMENT: usize = 255;

    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Err(Error::Invalid(format!(
                "artifact path '{}' {why}",
                crate::error::excerpt(s, 100)
            )))
        };
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return bad("must be 1-512 characters");
        }
        for seg in s.split('/') {
            if seg.is_empty() || seg == "." || seg == ".." {
                return bad("must not have empty, '.' or '..' segments");
            }
            if seg.len() > Self::MAX_SEGMENT {
                return bad("must not have a segment longer than 255 characters");
            }
            if !seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c))
            {
                return bad("may only use [A-Za-z0-9-_.=] in segments");
            }
        }
        if s.ends_with(DIGEST_SUFFIX) || s.ends_with(KEY_SUFFIX) {
            return bad("must not end with '.sha256' or '.key' (reserved for digests and keys)");
        }
        Ok(ArtifactPath(s.to_string()))
    }

    /// Where the digest of this artifact is kept, beside it.
    pub fn digest_key(&self) -> String {
        format!("{}{DIGEST_SUFFIX}", self.0)
    }

    /// Where the key record of this artifact is kept when it is encrypted.
    pub fn key_record_key(&self) -> String {
        format!("{}{KEY_SUFFIX}", self.0)
    }

    /// Whether a key of the store is one of the records kept beside an
    /// artifact rather than an artifact.
    pub fn is_sidecar(key: &str) -> bool {
        key.ends_with(DIGEST_SUFFIX) || key.ends_with(KEY_SUFFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `experiments/{id}/trials/{n}/{file}`
    pub fn trial(experiment: crate::ExperimentId, number: u64, file: &str) -> Result<Self> {
        Self::parse(&format!("experiments/{experiment}/trials/{number}/{file}"))
    }

    /// `models/{name}/{version}/{file}`
    pub fn model(name: &str, version: u32, file: &str) -> Result<Self> {
        Self::parse(&format!("models/{name}/{version}/{file}"))
    }

    /// `datasets/{id}/{file}`
    pub fn dataset(id: crate::DatasetId, file: &str) -> Result<Self> {
        Self::parse(&format!("datasets/{id}/{file}"))
    }

    /// `jobs/{id}/{file}` (batch prediction outputs)
    pub fn job(id: crate::JobId, file: &str) -> Result<Self> {
        Self::parse(&format!("jobs/{id}/{file}"))
    }

    /// A deployment's rendered file (`file` may hold `/`: a build context).
    pub fn deployment(id: crate::ids::DeploymentId, file: &str) -> Result<Self> {
        Self::parse(&format!("deployments/{id}/{file}"))
    }
}

impl TryFrom<String> for ArtifactPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(&s)
    }
}

impl From<ArtifactPath> for String {
    fn from(p: ArtifactPath) -> String {
        p.0
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactMeta {
    pub path: String,
    pub size: u64,
    /// SHA-256 of the content, hex; recorded at upload.
    pub sha256: Option<String>,
    pub modified: DateTime<Utc>,
}

#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores the bytes (replacing any previous object) and returns their metadata
    /// including the SHA-256 digest. Returns only once the object is durable.
    async fn put(&self, path: &ArtifactPath, bytes: Bytes) -> Result<ArtifactMeta>;
    async fn get(&self, path: &ArtifactPath) -> Result<Bytes>;
    /// The object as a stream of chunks, for downloads that should not be
    /// held in memory whole. The default reads it whole.
    async fn get_stream(&self, path: &ArtifactPath) -> Result<ByteStream> {
        let bytes = self.get(path).await?;
        Ok(Box::pin(futures::stream::once(async move { Ok(bytes) })))
    }
    async fn head(&self, path: &ArtifactPath) -> Result<ArtifactMeta>;
    /// Objects under a prefix (a path prefix ending at a segment boundary), sorted by path.
    async fn list(&self, prefix: Option<&ArtifactPath>) -> Result<Vec<ArtifactMeta>>;
    async fn delete(&self, path: &ArtifactPath) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        assert!(ArtifactPath::parse("models/m/1/model.json").is_ok());
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "a/./b",
            "a b",
            "trailing/",
            "x\\y",
            "models/m/1/model.key",
            "models/m/1/model.json.sha256",
        ] {
            assert!(ArtifactPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ArtifactPath::parse(&"a".repeat(513)).is_err());
        assert_eq!(
            ArtifactPath::model("m", 3, "model.json").unwrap().as_str(),
            "models/m/3/model.json"
        );
    }
}
