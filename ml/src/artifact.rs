//! The versioned model artifact: everything needed to serve a model, with a
//! SHA-256 digest checked before anything is decoded.
//!
//! Bytes are JSON so artifacts can be inspected in object storage. The
//! digest is stored beside the artifact (in the model registry), not in it:
//! [`ModelArtifact::from_bytes`] refuses bytes whose digest differs.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::dataset::ColumnKind;
use crate::error::{LearnError, Result};
use crate::model::{Family, FittedModel};
use crate::preprocess::{FeatureEncoder, Preprocessor};
use crate::profile::DataProfile;
use crate::task::Task;

/// Version of the artifact layout this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One input feature the model expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    pub kind: ColumnKind,
    /// Categories seen in training (categorical features only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

impl FeatureSpec {
    /// The schema a preprocessor was fitted on.
    pub fn from_preprocessor(p: &Preprocessor) -> Vec<FeatureSpec> {
        p.features
            .iter()
            .map(|f| FeatureSpec {
                name: f.name().to_string(),
                kind: f.kind(),
                categories: match f {
                    FeatureEncoder::Numeric(_) => None,
                    FeatureEncoder::Categorical(e) => {
                        Some(e.categories.iter().chain(&e.rare).cloned().collect())
                    }
                },
            })
            .collect()
    }
}

/// A trained model with its preprocessing, schema, profile and metrics.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelArtifact {
    pub format_version: u32,
    pub family: Family,
    pub task: Task,
    pub target: String,
    /// The hyperparameters it was trained with, as the sampler gave them.
    pub params: Map<String, Value>,
    pub feature_schema: Vec<FeatureSpec>,
    pub preprocessor: Preprocessor,
    pub model: FittedModel,
    pub profile: DataProfile,
    /// Cross-validated metrics of this configuration, by name.
    pub metrics: BTreeMap<String, f64>,
    pub created_at: DateTime<Utc>,
    /// Feature name -> position, rebuilt by [`ModelArtifact::prepare`].
    #[serde(skip)]
    pub(crate) feature_index: HashMap<String, usize>,
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ModelArtifact {
    /// Assembles an artifact and checks that its parts fit together.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        task: Task,
        target: String,
        params: Map<String, Value>,
        preprocessor: Preprocessor,
        model: FittedModel,
        profile: DataProfile,
        metrics: BTreeMap<String, f64>,
    ) -> Result<ModelArtifact> {
        let mut artifact = ModelArtifact {
            format_version: FORMAT_VERSION,
            family: model.family(),
            task,
            target,
            params,
            feature_schema: FeatureSpec::from_preprocessor(&preprocessor),
            preprocessor,
            model,
            profile,
            metrics: metrics.into_iter().filter(|(_, v)| v.is_finite()).collect(),
            created_at: Utc::now(),
            feature_index: HashMap::new(),
        };
        artifact
            .check_consistency()
            .map_err(|e| LearnError::Internal(e.to_string()))?;
        artifact.prepare();
        Ok(artifact)
    }

    /// JSON bytes of the artifact (what gets stored and digested).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Every map key is a string and floats that could be non-finite are
        // filtered on construction, so serialisation cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Decodes an artifact after checking its SHA-256 against
    /// `expected_sha256` (hex, case-insensitive).
    pub fn from_bytes(bytes: &[u8], expected_sha256: &str) -> Result<ModelArtifact> {
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
            return Err(LearnError::Corrupt(format!(
                "SHA-256 mismatch: expected {expected_sha256}, got {actual}"
            )));
        }
        let version: Value = serde_json::from_slice(bytes)
            .map_err(|e| LearnError::Corrupt(format!("artifact is not valid JSON: {e}")))?;
        match version.get("format_version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            other => {
                return Err(LearnError::Corrupt(format!(
                "unsupported artifact format_version {other:?}; this build reads {FORMAT_VERSION}"
            )))
            }
        }
        let mut artifact: ModelArtifact = serde_json::from_value(version)
            .map_err(|e| LearnError::Corrupt(format!("artifact does not decode: {e}")))?;
        artifact.check_consistency()?;
        artifact.prepare();
        Ok(artifact)
    }

    /// Only the training profile of an artifact's bytes, after the same
    /// digest and format checks as [`ModelArtifact::from_bytes`]: what the
    /// drift monitor needs, without decoding (or being able to run) the
    /// model itself.
    pub fn profile_from_bytes(bytes: &[u8], expected_sha256: &str) -> Result<DataProfile> {
        #[derive(Deserialize)]
        struct ProfileOnly {
            format_version: u32,
            profile: DataProfile,
        }
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(expected_sha256.trim()) {
            return Err(LearnError::Corrupt(format!(
                "SHA-256 mismatch: expected {expected_sha256}, got {actual}"
            )));
        }
        let part: ProfileOnly = serde_json::from_slice(bytes)
            .map_err(|e| LearnError::Corrupt(format!("artifact profile does not decode: {e}")))?;
        if part.format_version != FORMAT_VERSION {
            return Err(LearnError::Corrupt(format!(
                "unsupported artifact format_version {}; this build reads {FORMAT_VERSION}",
                part.format_version
            )));
        }
        Ok(part.profile)
    }

    /// Rebuilds lookups that are not stored. Called by the constructors;
    /// call it after deserialising an artifact by other means to keep
    /// prediction on its fast path.
    pub fn prepare(&mut self) {
        self.feature_index = self
            .preprocessor
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().to_string(), i))
            .collect();
    }

    /// Shapes must agree so prediction can index without checks.
    fn check_consistency(&self) -> Result<()> {
        let corrupt = |m: String| Err(LearnError::Corrupt(m));
        self.model.validate().map_err(LearnError::Corrupt)?;
        if !self.preprocessor.is_consistent() {
            return corrupt("preprocessor outputs do not match its features".to_string());
        }
        if self.model.n_features() != self.preprocessor.n_outputs()
            || self.preprocessor.output_names.len() != self.preprocessor.n_outputs()
            || self
                .preprocessor
                .output_source
                .iter()
                .any(|&s| s >= self.preprocessor.features.len())
        {
            return corrupt(format!(
                "model expects {} encoded columns, preprocessor makes {}",
                self.model.n_features(),
                self.preprocessor.n_outputs()
            ));
        }
        if self.model.output_width() != self.task.output_width().max(1)
            || (self.task.is_classification() && self.task.n_classes() < 2)
        {
            return corrupt(format!(
                "model outputs {} values but the task needs {}",
                self.model.output_width(),
                self.task.output_width()
            ));
        }
        if self.model.family() != self.family {
            return corrupt("family does not match the model".to_string());
        }
        let schema_names = self.feature_schema.iter().map(|f| f.name.as_str());
        let encoder_names = self.preprocessor.features.iter().map(FeatureEncoder::name);
        if !schema_names.eq(encoder_names) {
            return corrupt("feature schema does not match the preprocessor".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_profile_alone_reads_back_as_the_whole_artifact_holds_it() {
        let bytes = crate::lab::example_artifact_bytes(300, 7).unwrap();
        let digest = sha256_hex(&bytes);
        let whole = ModelArtifact::from_bytes(&bytes, &digest).unwrap();
        let profile = ModelArtifact::profile_from_bytes(&bytes, &digest).unwrap();
        assert_eq!(profile, whole.profile);
        let err = ModelArtifact::profile_from_bytes(&bytes, &sha256_hex(b"other")).unwrap_err();
        assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    }
}
