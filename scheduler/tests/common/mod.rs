//! Helpers for the scheduler's integration tests on the memory backends,
//! with the test acting as the worker: a data set, an experiment, and a
//! driver that ticks the scheduler and finishes each queued trial job.

#![allow(dead_code)]

use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracseq_core::config::LimitsConfig;
use tracseq_core::lifecycle::{Event, RetryPolicy};
use tracseq_core::ports::{transition, ArtifactPath, JobFilter};
use tracseq_core::protocol::TrialResult;
use tracseq_core::types::{DatasetRecord, ExperimentState, Job, JobKind, JobState};
use tracseq_core::{DatasetId, ExperimentId, Platform, WorkerId};
use tracseq_scheduler::service;
use tracseq_scheduler::spec::ExperimentRequest;
use tracseq_scheduler::Scheduler;

/// The memory backends with the default retry policy.
pub fn platform() -> Platform {
    tracseq_backends::platform::in_memory(RetryPolicy::default())
}

/// Stores 60 rows of the lab data as a data set.
pub async fn dataset(p: &Platform) -> DatasetId {
    let id = DatasetId::new();
    let path = ArtifactPath::dataset(id, "data.csv").unwrap();
    let csv = tracseq_learn::lab::generate_csv(60, 3);
    let meta = p.artifacts.put(&path, csv.into()).await.unwrap();
    let rec = DatasetRecord {
        id,
        name: "d".into(),
        artifact_path: path.to_string(),
        sha256: meta.sha256.unwrap(),
        size_bytes: meta.size,
        rows: 0,
        schema: json!([]),
        created_at: Utc::now(),
        owner: None,
    };
    p.state.insert_dataset(&rec).await.unwrap();
    id
}

/// Creates an experiment from its request body, as the API would.
pub async fn experiment(p: &Platform, body: Value) -> ExperimentId {
    let req: ExperimentRequest = serde_json::from_value(body).unwrap();
    service::create_experiment(p, req, &LimitsConfig::default(), Utc::now())
        .await
        .unwrap()
        .id
}

/// An AutoML experiment predicting `quality_score` over a fresh lab data
/// set; `fields` adds the rest of the spec (name, sampler, budget...).
pub async fn automl_experiment(p: &Platform, fields: Value) -> ExperimentId {
    let mut body = json!({"dataset_id": dataset(p).await, "target": "quality_score"});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    experiment(p, body).await
}

/// A trial's result with `value` as its rmse and nothing measured.
pub fn rmse_result(value: f64) -> TrialResult {
    TrialResult {
        value,
        metric: "rmse".into(),
        fold_values: vec![value],
        metrics: [("rmse".to_string(), value)].into_iter().collect(),
        pruned: false,
        artifact: None,
        latency_us: None,
        model_bytes: None,
    }
}

/// Every job of the experiment.
pub async fn jobs(p: &Platform, id: ExperimentId) -> Vec<Job> {
    p.state
        .list_jobs(&JobFilter {
            experiment_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Ticks the scheduler and finishes each queued trial job with
/// `result(trial number)` until the experiment leaves `running`; answers
/// how many trial jobs ran.
pub async fn drive(
    p: &Platform,
    id: ExperimentId,
    mut result: impl FnMut(u64) -> TrialResult,
) -> usize {
    let s = Scheduler::new(
        p.clone(),
        Duration::from_millis(10),
        Arc::new(Notify::new()),
    );
    let worker = WorkerId("w".into());
    let mut ran = 0;
    for _ in 0..200 {
        s.tick(Utc::now()).await.unwrap();
        if p.state.get_experiment(id).await.unwrap().state != ExperimentState::Running {
            return ran;
        }
        let filter = JobFilter {
            experiment_id: Some(id),
            states: vec![JobState::Queued],
            limit: None,
        };
        let queued = p.state.list_jobs(&filter).await.unwrap();
        for job in queued.into_iter().filter(|j| j.kind == JobKind::Trial) {
            ran += 1;
            let now = Utc::now();
            let claim = Event::ClaimAndStart {
                worker: worker.clone(),
                lease: chrono::Duration::seconds(60),
                gpus: None,
            };
            transition(p.state.as_ref(), job.id, claim, now, &p.policy)
                .await
                .unwrap();
            let r = result(job.trial_number.unwrap());
            let done = Event::Succeed {
                worker: worker.clone(),
                attempt: 1,
                result: serde_json::to_value(&r).unwrap(),
            };
            transition(p.state.as_ref(), job.id, done, now, &p.policy)
                .await
                .unwrap();
        }
    }
    panic!("experiment {id} never left running");
}
