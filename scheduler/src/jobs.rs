//! Jobs a request submits outside an experiment (batch prediction): the
//! scheduler builds them, with its retry and time limits, so a route only
//! parses the request and renders the answer.

use chrono::{DateTime, Utc};
use tracseq_core::protocol::{BatchPredictPayload, JobSpec};
use tracseq_core::resources::ResourceRequest;
use tracseq_core::types::{DispatchMessage, Job, NewJob};
use tracseq_core::{DatasetId, Error, Platform, Result};

/// Attempts of a batch-prediction job: a worker lost mid-run is worth two
/// more tries, a data set the model cannot read is not (that error is not
/// retryable and ends the job at once).
pub const BATCH_PREDICT_MAX_ATTEMPTS: u32 = 3;

/// How long one batch-prediction attempt may run.
pub const BATCH_PREDICT_TIMEOUT_SECS: u64 = 3600;

/// Queues a batch prediction of data set `dataset_id` with `model` version
/// `version` (which the caller resolved) and returns the queued job. A data
/// set that does not exist is [`Error::Invalid`], naming `dataset_id`.
pub async fn submit_batch_predict(
    p: &Platform,
    model: &str,
    version: u32,
    dataset_id: DatasetId,
    now: DateTime<Utc>,
) -> Result<Job> {
    p.state.get_dataset(dataset_id).await.map_err(|e| match e {
        Error::NotFound(_) => Error::Invalid(format!("dataset_id {dataset_id} does not exist")),
        other => other,
    })?;
    // Prediction asks for no particular resources; the queue follows from
    // that, as for every other job.
    let resources = ResourceRequest::default();
    let job = NewJob {
        spec: JobSpec::BatchPredict(BatchPredictPayload {
            model: model.to_string(),
            version,
            dataset_id,
        }),
        experiment_id: None,
        resource_class: resources.resource_class().into(),
        resources,
        priority: 0,
        max_attempts: BATCH_PREDICT_MAX_ATTEMPTS,
        timeout_secs: BATCH_PREDICT_TIMEOUT_SECS,
    }
    .into_job(now, None)?;
    p.state.insert_job(&job).await?;
    // If this publish is lost, the scheduler re-publishes queued jobs at start.
    p.queue
        .publish(&job.resource_class, &DispatchMessage::for_job(&job))
        .await?;
    Ok(job)
}
