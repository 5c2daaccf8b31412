//! Job payloads: what a worker needs to run each kind of job. They cross the
//! state store (and, in distributed mode, other hosts), so workers parse them
//! strictly and fail a job with a bad payload as non-retryable.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use tracseq_core::{DatasetId, ExperimentId};

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
