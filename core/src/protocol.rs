//! The job protocol: what a worker needs to run each kind of job
//! ([`JobSpec`]) and what each kind gives back (the `*Result` types).
//!
//! Jobs are created from a typed [`JobSpec`], so a job's kind and payload
//! cannot disagree. They are stored as `kind` + JSON `payload` (the stored
//! format and the HTTP API show both), and a payload crosses the state store
//! and, in distributed mode, other hosts, so a worker decodes it again with
//! [`crate::types::Job::spec`], strictly: a malformed payload is an
//! [`Error::Invalid`] and fails the job without a retry.

use crate::types::JobKind;
use crate::{DatasetId, Error, ExperimentId, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A job's work, one variant per [`JobKind`].
#[derive(Clone, Debug, PartialEq)]
pub enum JobSpec {
    /// Cross-validate one HPO trial's parameters.
    Trial(TrialPayload),
    /// Fit the experiment's final model and register it.
    Train(TrainPayload),
    /// Predict a whole data set with a registered model version.
    BatchPredict(BatchPredictPayload),
    /// Do nothing (or sleep): proves and measures the dispatch path.
    Noop(NoopPayload),
    /// Check a version's artifact and render a deployment's files.
    Deploy(DeployPayload),
}

impl JobSpec {
    pub fn kind(&self) -> JobKind {
        match self {
            JobSpec::Trial(_) => JobKind::Trial,
            JobSpec::Train(_) => JobKind::Train,
            JobSpec::BatchPredict(_) => JobKind::BatchPredict,
            JobSpec::Noop(_) => JobKind::Noop,
            JobSpec::Deploy(_) => JobKind::Deploy,
        }
    }

    /// The payload as stored and shown.
    pub fn to_payload(&self) -> Result<Value> {
        Ok(match self {
            JobSpec::Trial(p) => serde_json::to_value(p)?,
            JobSpec::Train(p) => serde_json::to_value(p)?,
            JobSpec::BatchPredict(p) => serde_json::to_value(p)?,
            JobSpec::Noop(p) => serde_json::to_value(p)?,
            JobSpec::Deploy(p) => serde_json::to_value(p)?,
        })
    }

    /// Decodes a stored `kind` + `payload`; the error names the kind and
    /// what is wrong with the payload.
    pub fn from_parts(kind: JobKind, payload: &Value) -> Result<JobSpec> {
        fn decode<T: serde::de::DeserializeOwned>(kind: JobKind, payload: &Value) -> Result<T> {
            T::deserialize(payload)
                .map_err(|e| Error::Invalid(format!("malformed {kind} payload: {e}")))
        }
        Ok(match kind {
            JobKind::Trial => JobSpec::Trial(decode(kind, payload)?),
            JobKind::Train => JobSpec::Train(decode(kind, payload)?),
            JobKind::BatchPredict => JobSpec::BatchPredict(decode(kind, payload)?),
            JobKind::Noop => JobSpec::Noop(decode(kind, payload)?),
            JobKind::Deploy => JobSpec::Deploy(decode(kind, payload)?),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrialPayload {
    pub experiment_id: ExperimentId,
    pub dataset_id: DatasetId,
    pub target: String,
    pub params: Map<String, Value>,
    pub folds: u32,
    pub seed: u64,
    pub metric: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainPayload {
    pub experiment_id: ExperimentId,
    pub dataset_id: DatasetId,
    pub target: String,
    pub params: Map<String, Value>,
    pub folds: u32,
    pub seed: u64,
    pub metric: String,
    pub model_name: String,
    /// The winning trial's cross-validated metrics, stored with the model.
    pub cv_metrics: BTreeMap<String, f64>,
    pub best_trial: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchPredictPayload {
    pub model: String,
    pub version: u32,
    pub dataset_id: DatasetId,
}

/// A deploy job: everything the worker needs to check the version's
/// artifact and render the target's files, so it reads no configuration
/// and no registry record of its own (the scheduler resolved them when it
/// created the deployment).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployPayload {
    pub deployment_id: crate::ids::DeploymentId,
    pub model: String,
    pub version: u32,
    pub family: String,
    pub target: crate::lifecycle::deployment::Target,
    pub artifact_path: String,
    pub sha256: String,
    pub replicas: u32,
    #[serde(default)]
    pub resources: Option<crate::resources::ResourceRequest>,
    /// The image the rendered serving image builds on (config `deploy.image`).
    pub base_image: String,
    /// Where rendered images are pushed (config `deploy.registry`).
    #[serde(default)]
    pub registry: Option<String>,
    /// The IAM role SageMaker assumes (config `deploy.sagemaker_role_arn`).
    #[serde(default)]
    pub sagemaker_role_arn: Option<String>,
}

/// What a deploy job records as its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeployResult {
    pub deployment_id: crate::ids::DeploymentId,
    /// Artifact paths of the rendered files (none for the platform target).
    pub outputs: Vec<String>,
    /// What was not done, e.g. that rendered files were not applied.
    pub note: Option<String>,
    /// The digest the artifact was checked against.
    pub sha256: String,
}

/// A no-op job: sleeps `sleep_ms` (0: returns at once), so tests can hold a
/// slot or a GPU share for a known time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopPayload {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sleep_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a trial job records as its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    pub value: f64,
    pub metric: String,
    pub fold_values: Vec<f64>,
    pub metrics: BTreeMap<String, f64>,
    pub pruned: bool,
    pub artifact: Option<String>,
    /// Mean prediction time per validation row, in microseconds, measured
    /// by the worker (the `latency_us` objective). Absent from results of
    /// older workers and of trials pruned before their first fold ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<f64>,
    /// Bytes of the fitted model as serialized in the artifact, mean over
    /// the folds (the `model_bytes` objective).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_bytes: Option<u64>,
}

/// What a train job records as its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainResult {
    pub model_name: String,
    pub version: u32,
    pub artifact: String,
    pub sha256: String,
}

/// What a batch-predict job records as its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchPredictResult {
    /// Where the predictions are (`jobs/<id>/predictions.json`).
    pub artifact: String,
    pub sha256: Option<String>,
    pub rows: usize,
    pub model: String,
    pub version: u32,
}

/// What a no-op job records as its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoopResult {
    pub noop: bool,
    pub slept_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_spec_round_trips_through_its_stored_kind_and_payload() {
        let specs = [
            JobSpec::Noop(NoopPayload::default()),
            JobSpec::Noop(NoopPayload { sleep_ms: 20 }),
            JobSpec::BatchPredict(BatchPredictPayload {
                model: "m".into(),
                version: 2,
                dataset_id: DatasetId::new(),
            }),
            JobSpec::Trial(TrialPayload {
                experiment_id: ExperimentId::new(),
                dataset_id: DatasetId::new(),
                target: "y".into(),
                params: Map::new(),
                folds: 3,
                seed: 1,
                metric: "rmse".into(),
            }),
        ];
        for spec in specs {
            let payload = spec.to_payload().unwrap();
            assert_eq!(JobSpec::from_parts(spec.kind(), &payload).unwrap(), spec);
        }
    }

    #[test]
    fn a_noop_payload_stays_an_empty_object_as_before() {
        let payload = JobSpec::Noop(NoopPayload::default()).to_payload().unwrap();
        assert_eq!(payload, json!({}));
    }

    #[test]
    fn a_payload_of_another_kind_is_refused_naming_the_kind() {
        let err = JobSpec::from_parts(JobKind::Train, &json!({"sleep_ms": 3})).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(err.to_string().contains("malformed train payload"), "{err}");
        let err = JobSpec::from_parts(JobKind::Noop, &json!({"sleep": 3})).unwrap_err();
        assert!(err.to_string().contains("sleep"), "{err}");
    }
}
