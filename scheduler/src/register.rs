//! Registering a model version from outside a train job: an artifact
//! uploaded or already in the store, checked against the digest its
//! registrant gave and decoded as a model before anything is written.
//!
//! Nothing is half-registered: every check runs first; the artifact is then
//! copied under the version's own path (so a later change of the source
//! object cannot change the version) and the version record is stored with
//! its first tags in one transaction. A crash between the copy and the
//! record leaves an unreferenced object that the next registration of that
//! number overwrites, never a version without its artifact.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::registry::{check_model_name_free, validate_tags};
use tracseq_core::security::Actor;
use tracseq_core::types::{validate_name, Lineage, ModelVersion, NewModelVersion};
use tracseq_core::{Error, ExperimentId, Platform, Result};
use tracseq_learn::artifact::{sha256_hex, ModelArtifact};

/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4000;
/// Most metrics on one registration.
pub const MAX_METRICS: usize = 256;
/// Longest feature set version.
pub const MAX_FEATURE_SET_VERSION: usize = 128;
/// Largest `params`, as JSON: hyperparameters, not data.
pub const MAX_PARAMS_BYTES: usize = 64 * 1024;

/// Where the artifact's bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// Sent with the request.
    Upload(Bytes),
    /// An object already in the artifact store.
    Stored(ArtifactPath),
}

#[derive(Clone, Debug)]
pub struct Registration {
    pub name: String,
    pub source: Source,
    /// The SHA-256 the registrant expects the bytes to have.
    pub sha256: String,
    /// Overrides the artifact's own cross-validated metrics when given.
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Overrides the artifact's own parameters when given.
    pub params: Option<Map<String, Value>>,
    pub tags: BTreeMap<String, String>,
    pub description: Option<String>,
    pub experiment_id: Option<ExperimentId>,
    pub lineage: Lineage,
}

fn invalid(msg: String) -> Error {
    Error::Invalid(msg)
}

/// Checks what needs no store: the fields' shapes and sizes.
fn check_fields(r: &Registration) -> Result<()> {
    validate_name("name", &r.name)?;
    check_model_name_free("name", &r.name).map_err(invalid)?;
    let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(&r.sha256) {
        return Err(invalid(
            "sha256 must be the artifact's SHA-256 as 64 hex digits".into(),
        ));
    }
    validate_tags(&r.tags).map_err(invalid)?;
    if let Some(d) = &r.description {
        if d.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(invalid(format!(
                "description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(invalid("description contains a control character".into()));
        }
    }
    if let Some(m) = &r.metrics {
        if m.len() > MAX_METRICS {
            return Err(invalid(format!(
                "metrics: {} given; at most {MAX_METRICS}",
                m.len()
            )));
        }
        for (k, v) in m {
            let shown: String = k.chars().take(64).collect();
            if k.is_empty() || k.len() > 64 {
                return Err(invalid(format!(
                    "metric name '{shown}' must be 1 to 64 bytes"
                )));
            }
            if !v.is_finite() {
                return Err(invalid(format!("metric '{shown}' must be a finite number")));
            }
        }
    }
    if let Some(p) = &r.params {
        let bytes = serde_json::to_vec(p).map_or(usize::MAX, |b| b.len());
        if bytes > MAX_PARAMS_BYTES {
            return Err(invalid(format!(
                "params is {bytes} bytes of JSON; at most {MAX_PARAMS_BYTES}"
            )));
        }
    }
    if let Some(s) = &r.lineage.dataset_sha256 {
        if !hex(s) {
            return Err(invalid(
                "lineage.dataset_sha256 must be 64 hex digits".into(),
            ));
        }
    }
    if let Some(f) = &r.lineage.feature_set_version {
        if f.is_empty() || f.len() > MAX_FEATURE_SET_VERSION || f.chars().any(|c| c.is_control()) {
            return Err(invalid(format!(
                "lineage.feature_set_version must be 1 to {MAX_FEATURE_SET_VERSION} bytes of text"
            )));
        }
    }
    if r.lineage.trial.is_some() && r.experiment_id.is_none() {
        return Err(invalid(
            "lineage.trial names a trial of an experiment: give experiment_id too".into(),
        ));
    }
    Ok(())
}

/// Registers the next version of `r.name` (see the module docs).
pub async fn register(
    p: &Platform,
    r: Registration,
    by: &Actor,
    now: DateTime<Utc>,
) -> Result<ModelVersion> {
    check_fields(&r)?;
    // The references must exist: a lineage that points nowhere is a typo.
    if let Some(e) = r.experiment_id {
        p.state.get_experiment(e).await?;
        if let Some(n) = r.lineage.trial {
            p.state.get_trial(e, n).await?;
        }
    }
    if let Some(d) = r.lineage.dataset_id {
        let ds = p.state.get_dataset(d).await?;
        if let Some(given) = &r.lineage.dataset_sha256 {
            if !given.eq_ignore_ascii_case(&ds.sha256) {
                return Err(invalid(format!(
                    "lineage.dataset_sha256 does not match data set {d} (its SHA-256 is {})",
                    ds.sha256
                )));
            }
        }
    }
    let bytes = match &r.source {
        Source::Upload(b) => b.clone(),
        Source::Stored(path) => p.artifacts.get(path).await?,
    };
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(&r.sha256) {
        return Err(invalid(format!(
            "sha256 does not match the artifact: given {}, the bytes have {actual}",
            r.sha256
        )));
    }
    let decode_bytes = bytes.clone();
    let artifact = tokio::task::spawn_blocking(move || {
        ModelArtifact::from_bytes(&decode_bytes, &actual).map(|a| {
            let family = a.family.name().to_string();
            (a, family)
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("artifact check panicked: {e}")))?;
    let (artifact, family) = artifact.map_err(|e| {
        invalid(format!(
            "the artifact is not a model this platform serves: {e}"
        ))
    })?;
    let sha256 = r.sha256.to_ascii_lowercase();
    for _ in 0..8 {
        let version = p.state.next_model_version(&r.name).await?;
        let path = ArtifactPath::model(&r.name, version, "model.json")?;
        let meta = p.artifacts.put(&path, bytes.clone()).await?;
        if meta.sha256.as_deref().is_some_and(|s| s != sha256) {
            return Err(Error::Unavailable(format!(
                "artifact {path} was stored with a different digest"
            )));
        }
        let new = NewModelVersion {
            name: r.name.clone(),
            version,
            job_id: None,
            family: family.clone(),
            experiment_id: r.experiment_id,
            artifact_path: path.to_string(),
            sha256: sha256.clone(),
            metrics: r
                .metrics
                .clone()
                .unwrap_or_else(|| artifact.metrics.clone()),
            params: r.params.clone().unwrap_or_else(|| artifact.params.clone()),
            target: artifact.target.clone(),
            owner: Some(by.clone()),
            description: r.description.clone(),
            lineage: r.lineage.clone(),
            tags: r.tags.clone(),
        };
        match p.state.register_model_version(new, now).await {
            Ok(v) => return Ok(v),
            // Another registration or train job took the number: next one.
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Unavailable(format!(
        "model '{}': could not claim a version number after 8 tries; try again",
        r.name
    )))
}

#[cfg(test)]
#[path = "register_tests.rs"]
mod tests;
