//! Model serving: loaded, digest-checked artifacts cached per (name, version).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracseq_core::ports::ArtifactPath;
use tracseq_core::types::{validate_name, ModelVersion};
use tracseq_core::{Error, Platform, Result};
use tracseq_learn::artifact::ModelArtifact;

pub struct LoadedModel {
    pub version: ModelVersion,
    pub artifact: ModelArtifact,
}

/// How long "latest version" answers are reused. Registrations can come from
/// other processes, so the pointer is re-read now and then rather than
/// invalidated by events; within this window a new version is not yet served.
const LATEST_TTL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ModelCache {
    loaded: RwLock<HashMap<(String, u32), Arc<LoadedModel>>>,
    latest: RwLock<HashMap<String, (u32, Instant)>>,
}

impl ModelCache {
    pub async fn get(
        &self,
        p: &Platform,
        name: &str,
        version: Option<u32>,
    ) -> Result<Arc<LoadedModel>> {
        validate_name("model", name)?;
        let version = match version {
            Some(v) => v,
            None => self.latest_version(p, name).await?,
        };
        let key = (name.to_string(), version);
        if let Some(m) = self
            .loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let record = p.state.get_model_version(name, Some(version)).await?;
        let bytes = p
            .artifacts
            .get(&ArtifactPath::parse(&record.artifact_path)?)
            .await?;
        let sha = record.sha256.clone();
        let artifact = tokio::task::spawn_blocking(move || ModelArtifact::from_bytes(&bytes, &sha))
            .await
            .map_err(|e| Error::Internal(format!("model loader panicked: {e}")))?
            .map_err(|e| Error::Internal(format!("model '{name}' version {version}: {e}")))?;
        let loaded = Arc::new(LoadedModel {
            version: record,
            artifact,
        });
        self.loaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, loaded.clone());
        Ok(loaded)
    }

    async fn latest_version(&self, p: &Platform, name: &str) -> Result<u32> {
        if let Some((v, at)) = self
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            if at.elapsed() < LATEST_TTL {
                return Ok(*v);
            }
        }
        let v = p.state.get_model_version(name, None).await?.version;
        self.latest
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (v, Instant::now()));
        Ok(v)
    }
}
