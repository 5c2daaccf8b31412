//! Runs one job of each kind and says how it ended. Training is CPU-bound,
//! so it runs on the blocking pool; it reaches the trial reporter (pruning)
//! through the runtime handle.

use crate::datasets::DatasetCache;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, warn};
use tracseq_core::ports::{ArtifactPath, TrialReporter};
use tracseq_core::protocol::{
    BatchPredictPayload, BatchPredictResult, DeployPayload, DeployResult, JobSpec, NoopPayload,
    NoopResult, TrainPayload, TrainResult, TrialPayload, TrialResult,
};
use tracseq_core::types::{Job, Lineage, NewModelVersion};
use tracseq_core::{Error, Platform};
use tracseq_learn::artifact::ModelArtifact;
use tracseq_learn::automl::{self, EvalOptions, Step};
use tracseq_learn::dataset::{ColumnData, Dataset};
use tracseq_learn::metrics::Metric;
use tracseq_learn::LearnError;

/// How a job attempt ended.
#[derive(Debug)]
pub enum Outcome {
    Succeeded(Value),
    Pruned(Value),
    Failed { error: String, retryable: bool },
}

impl Outcome {
    fn failed(e: Error) -> Outcome {
        let retryable = e.is_attempt_retryable();
        Outcome::Failed {
            error: e.to_string(),
            retryable,
        }
    }
}

fn learn_err(e: LearnError) -> Error {
    match e {
        LearnError::Invalid(m) => Error::Invalid(m),
        other => Error::Internal(other.to_string()),
    }
}

pub struct Runner {
    pub platform: Platform,
    pub datasets: Arc<DatasetCache>,
    /// Where trials report intermediate values and learn whether to stop.
    pub reporter: Arc<dyn TrialReporter>,
}

impl Runner {
    /// Runs the job; `stop` is raised when the lease is lost or the job is
    /// cancelled, and long-running steps check it between folds.
    pub async fn run(&self, job: &Job, stop: Arc<AtomicBool>) -> Outcome {
        // A malformed payload is `Invalid`: failed at once, not retried.
        let result = match job.spec() {
            Ok(JobSpec::Trial(p)) => self.trial(job, p, stop).await,
            Ok(JobSpec::Train(p)) => self.train(job, p).await,
            Ok(JobSpec::BatchPredict(p)) => self.batch_predict(job, p).await,
            Ok(JobSpec::Noop(p)) => noop(&p, &stop).await,
            Ok(JobSpec::Deploy(p)) => self.deploy(p).await,
            Err(e) => Err(e),
        };
        result.unwrap_or_else(Outcome::failed)
    }

    async fn trial(
        &self,
        job: &Job,
        p: TrialPayload,
        stop: Arc<AtomicBool>,
    ) -> Result<Outcome, Error> {
        let number = job
            .trial_number
            .ok_or_else(|| Error::Invalid("trial job without a trial number".into()))?;
        let data = self.datasets.get(&self.platform, p.dataset_id).await?;
        let opts = eval_options(job, p.folds, p.seed, &p.metric)?;
        let reporter = self.reporter.clone();
        let handle = tokio::runtime::Handle::current();
        let (exp, target, params) = (p.experiment_id, p.target.clone(), p.params.clone());
        let stop_inner = stop.clone();
        let eval = tokio::task::spawn_blocking(move || {
            let mut on_step = |step: u32, value: f64| {
                if stop_inner.load(Ordering::SeqCst) {
                    return Step::Stop;
                }
                match handle.block_on(reporter.report(exp, number, step, value)) {
                    Ok(true) => Step::Stop,
                    Ok(false) => Step::Continue,
                    // The trial was finished elsewhere (its experiment was
                    // cancelled): nothing more to compute.
                    Err(Error::Conflict(_)) => Step::Stop,
                    Err(e) => {
                        // Pruning is an optimisation: a failed report must not fail the trial.
                        warn!(experiment_id = %exp, trial = number, error = %e, "report failed");
                        Step::Continue
                    }
                }
            };
            automl::evaluate(&data, &target, &params, &opts, &mut on_step)
        })
        .await
        .map_err(|e| Error::Internal(format!("trial panicked: {e}")))?
        .map_err(learn_err)?;
        if stop.load(Ordering::SeqCst) {
            return Ok(Outcome::Failed {
                error: "stopped: lease lost or job cancelled".into(),
                retryable: true,
            });
        }
        let mut result = TrialResult {
            value: eval.value,
            metric: eval.metric.name().to_string(),
            fold_values: eval.fold_values,
            metrics: eval.metrics,
            pruned: eval.pruned,
            artifact: None,
            // Measured on every trial (they cost one clock read and one
            // serialization per fold), so a multi-objective experiment can
            // optimise them and any experiment's results show them.
            latency_us: eval.latency_us,
            model_bytes: eval.model_bytes,
        };
        let path = ArtifactPath::trial(p.experiment_id, number, "result.json")?;
        result.artifact = Some(path.to_string());
        self.platform
            .artifacts
            .put(&path, Bytes::from(serde_json::to_vec_pretty(&result)?))
            .await?;
        debug!(job_id = %job.id, trial = number, value = result.value, pruned = result.pruned, "trial finished");
        let value = serde_json::to_value(&result)?;
        Ok(if result.pruned {
            Outcome::Pruned(value)
        } else {
            Outcome::Succeeded(value)
        })
    }

    async fn train(&self, job: &Job, p: TrainPayload) -> Result<Outcome, Error> {
        // A retried train job whose first attempt registered its version
        // before dying must not register a second one.
        if let Some(v) = self
            .platform
            .state
            .find_model_version_by_job(job.id)
            .await?
        {
            return trained(v);
        }
        let data = self.datasets.get(&self.platform, p.dataset_id).await?;
        let opts = eval_options(job, p.folds, p.seed, &p.metric)?;
        let (target, params, cv) = (p.target.clone(), p.params.clone(), p.cv_metrics.clone());
        let (artifact, bytes) = tokio::task::spawn_blocking(move || {
            let artifact = automl::fit_final(&data, &target, &params, &opts, cv)?;
            let bytes = artifact.to_bytes();
            Ok::<_, LearnError>((artifact, bytes))
        })
        .await
        .map_err(|e| Error::Internal(format!("training panicked: {e}")))?
        .map_err(learn_err)?;
        let sha256 = tracseq_learn::artifact::sha256_hex(&bytes);
        let bytes = Bytes::from(bytes);
        let dataset_sha256 = match self.platform.state.get_dataset(p.dataset_id).await {
            Ok(d) => Some(d.sha256),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        // The model is its experiment's owner's.
        let owner = match self.platform.state.get_experiment(p.experiment_id).await {
            Ok(e) => e.owner,
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        for _ in 0..8 {
            let version = self
                .platform
                .state
                .next_model_version(&p.model_name)
                .await?;
            let path = ArtifactPath::model(&p.model_name, version, "model.json")?;
            // The artifact is durable before the version that points at it exists.
            let meta = self.platform.artifacts.put(&path, bytes.clone()).await?;
            if meta.sha256.as_deref() != Some(sha256.as_str()) {
                return Err(Error::Unavailable(format!(
                    "artifact {path} was stored with a different digest"
                )));
            }
            let new = NewModelVersion {
                name: p.model_name.clone(),
                version,
                job_id: Some(job.id),
                family: artifact.family.name().to_string(),
                experiment_id: Some(p.experiment_id),
                artifact_path: path.to_string(),
                sha256: sha256.clone(),
                metrics: artifact.metrics.clone(),
                params: p.params.clone(),
                target: p.target.clone(),
                owner: owner.clone(),
                description: None,
                lineage: Lineage {
                    trial: Some(p.best_trial),
                    dataset_id: Some(p.dataset_id),
                    dataset_sha256: dataset_sha256.clone(),
                    feature_set_version: None,
                },
                tags: Default::default(),
            };
            match self
                .platform
                .state
                .register_model_version(new, chrono::Utc::now())
                .await
            {
                Ok(v) => return trained(v),
                // Another train job took this number between our read and write.
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Conflict(format!(
            "could not register a version of model '{}'",
            p.model_name
        )))
    }

    async fn batch_predict(&self, job: &Job, p: BatchPredictPayload) -> Result<Outcome, Error> {
        let version = self
            .platform
            .state
            .get_model_version(&p.model, Some(p.version))
            .await?;
        let bytes = self
            .platform
            .artifacts
            .get(&ArtifactPath::parse(&version.artifact_path)?)
            .await?;
        let data = self.datasets.get(&self.platform, p.dataset_id).await?;
        let sha = version.sha256.clone();
        let predictions = tokio::task::spawn_blocking(move || {
            let model = ModelArtifact::from_bytes(&bytes, &sha)?;
            let records = dataset_records(&data, &model.target);
            model.predict(&records)
        })
        .await
        .map_err(|e| Error::Internal(format!("batch prediction panicked: {e}")))?
        .map_err(learn_err)?;
        let path = ArtifactPath::job(job.id, "predictions.json")?;
        let body = json!({"model": p.model, "version": p.version, "predictions": predictions});
        let meta = self
            .platform
            .artifacts
            .put(&path, Bytes::from(serde_json::to_vec(&body)?))
            .await?;
        let result = BatchPredictResult {
            artifact: meta.path,
            sha256: meta.sha256,
            rows: predictions.len(),
            model: p.model,
            version: p.version,
        };
        Ok(Outcome::Succeeded(serde_json::to_value(result)?))
    }
}

impl Runner {
    /// Checks the version's artifact (its digest, and that it loads as a
    /// model) and renders the target's files into the artifact store. The
    /// platform target needs no files: a deployment goes live only once a
    /// worker has loaded the artifact it points at.
    async fn deploy(&self, p: DeployPayload) -> Result<Outcome, Error> {
        let bytes = self
            .platform
            .artifacts
            .get(&ArtifactPath::parse(&p.artifact_path)?)
            .await?;
        let sha = p.sha256.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            ModelArtifact::from_bytes(&bytes, &sha).map(|_| bytes)
        })
        .await
        .map_err(|e| Error::Internal(format!("loading the model panicked: {e}")))?
        .map_err(learn_err)?;
        let mut result = DeployResult {
            deployment_id: p.deployment_id,
            outputs: Vec::new(),
            note: None,
            sha256: p.sha256.clone(),
        };
        if let Some(renderer) = crate::deploy::renderer(p.target) {
            let rendered = renderer.render(&crate::deploy::Context {
                payload: &p,
                model_bytes: &bytes,
            })?;
            for file in rendered.files {
                let path = ArtifactPath::deployment(p.deployment_id, &file.name)?;
                let meta = self
                    .platform
                    .artifacts
                    .put(&path, Bytes::from(file.bytes))
                    .await?;
                result.outputs.push(meta.path);
            }
            result.note = rendered.note;
        }
        Ok(Outcome::Succeeded(serde_json::to_value(result)?))
    }
}

fn trained(v: tracseq_core::types::ModelVersion) -> Result<Outcome, Error> {
    let r = TrainResult {
        model_name: v.name,
        version: v.version,
        artifact: v.artifact_path,
        sha256: v.sha256,
    };
    Ok(Outcome::Succeeded(serde_json::to_value(r)?))
}

/// Rows of a data set as prediction records (the target column left out).
pub fn dataset_records(data: &Dataset, target: &str) -> Vec<Map<String, Value>> {
    let mut rows = vec![Map::new(); data.n_rows()];
    for col in data.columns.iter().filter(|c| c.name != target) {
        match &col.data {
            ColumnData::Numeric(v) => {
                for (row, x) in rows.iter_mut().zip(v) {
                    let cell = if x.is_finite() { json!(x) } else { Value::Null };
                    row.insert(col.name.clone(), cell);
                }
            }
            ColumnData::Categorical(v) => {
                for (row, x) in rows.iter_mut().zip(v) {
                    row.insert(
                        col.name.clone(),
                        x.clone().map_or(Value::Null, Value::String),
                    );
                }
            }
        }
    }
    rows
}

/// Longest a no-op job may sleep: enough for overhead and placement tests,
/// short of anything that would hold a slot like real work.
const MAX_NOOP_SLEEP_MS: u64 = 60_000;

/// A no-op job: does nothing, or sleeps `sleep_ms` (stopping early when the
/// lease is lost), which measures the platform's own cost per job and lets
/// tests hold a slot or a GPU share for a known time.
async fn noop(p: &NoopPayload, stop: &AtomicBool) -> Result<Outcome, Error> {
    let sleep_ms = p.sleep_ms;
    if sleep_ms > MAX_NOOP_SLEEP_MS {
        return Err(Error::Invalid(format!(
            "noop sleep_ms must be at most {MAX_NOOP_SLEEP_MS}, got {sleep_ms}"
        )));
    }
    let until = tokio::time::Instant::now() + std::time::Duration::from_millis(sleep_ms);
    while tokio::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
        let left = until - tokio::time::Instant::now();
        tokio::time::sleep(left.min(std::time::Duration::from_millis(50))).await;
    }
    let result = NoopResult {
        noop: true,
        slept_ms: sleep_ms,
    };
    Ok(Outcome::Succeeded(serde_json::to_value(result)?))
}

/// The device a job's model trains on: the first GPU its placement gave it,
/// else the CPU, so a job without a GPU share never touches a GPU (which
/// placement would not have accounted for).
fn torch_device(job: &Job) -> String {
    match job.gpus.as_ref().and_then(|g| g.devices.first()) {
        Some(d) => format!("cuda:{}", d.index),
        None => "cpu".into(),
    }
}

/// How a trial or train job's payload asks for its models to be evaluated,
/// on the device the job was placed on.
fn eval_options(job: &Job, folds: u32, seed: u64, metric: &str) -> Result<EvalOptions, Error> {
    let metric: Metric = metric.parse().map_err(learn_err)?;
    Ok(EvalOptions {
        folds: folds as usize,
        seed,
        metric: Some(metric),
        device: Some(torch_device(job)),
    })
}
