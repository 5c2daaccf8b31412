//! The AutoML loop's stop rules on the memory backends, with the test acting
//! as the worker: no-improvement stopping and grid exhaustion both end in
//! the final training job, not in more trials.

use chrono::Utc;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tracseq_core::config::LimitsConfig;
use tracseq_core::lifecycle::{Event, RetryPolicy};
use tracseq_core::ports::{transition, ArtifactPath, JobFilter};
use tracseq_core::protocol::TrialResult;
use tracseq_core::types::{DatasetRecord, ExperimentState, JobKind, JobState};
use tracseq_core::{DatasetId, ExperimentId, Platform, WorkerId};
use tracseq_scheduler::service;
use tracseq_scheduler::spec::ExperimentRequest;
use tracseq_scheduler::Scheduler;

async fn dataset(p: &Platform) -> DatasetId {
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
    };
    p.state.insert_dataset(&rec).await.unwrap();
    id
}

async fn experiment(p: &Platform, body: Value) -> ExperimentId {
    let req: ExperimentRequest = serde_json::from_value(body).unwrap();
    service::create_experiment(p, req, &LimitsConfig::default(), Utc::now())
        .await
        .unwrap()
        .id
}

/// Ticks the scheduler and finishes each queued trial job with the next of
/// `values` (rmse: smaller is better) until the experiment leaves `running`;
/// answers how many trial jobs ran.
async fn drive(p: &Platform, id: ExperimentId, values: &[f64]) -> usize {
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
        let queued = p
            .state
            .list_jobs(&JobFilter {
                experiment_id: Some(id),
                states: vec![JobState::Queued],
                limit: None,
            })
            .await
            .unwrap();
        for job in queued.into_iter().filter(|j| j.kind == JobKind::Trial) {
            let value = values[ran];
            ran += 1;
            let now = Utc::now();
            let lease = chrono::Duration::seconds(60);
            let claim = Event::ClaimAndStart {
                worker: worker.clone(),
                lease,
                gpus: None,
            };
            transition(p.state.as_ref(), job.id, claim, now, &p.policy)
                .await
                .unwrap();
            let result = TrialResult {
                value,
                metric: "rmse".into(),
                fold_values: vec![value],
                metrics: [("rmse".to_string(), value)].into_iter().collect(),
                pruned: false,
                artifact: None,
                latency_us: None,
                model_bytes: None,
            };
            let done = Event::Succeed {
                worker: worker.clone(),
                attempt: 1,
                result: serde_json::to_value(&result).unwrap(),
            };
            transition(p.state.as_ref(), job.id, done, now, &p.policy)
                .await
                .unwrap();
        }
    }
    panic!("experiment {id} never left running");
}

async fn train_jobs(p: &Platform, id: ExperimentId) -> usize {
    p.state
        .list_jobs(&JobFilter {
            experiment_id: Some(id),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|j| j.kind == JobKind::Train)
        .count()
}

#[tokio::test]
async fn automl_finalizes_after_n_trials_without_improvement() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let ds = dataset(&p).await;
    let id = experiment(
        &p,
        json!({"name": "stall", "dataset_id": ds, "target": "quality_score", "metric": "rmse",
               "sampler": {"type": "random"}, "parallelism": 1,
               "budget": {"trials": 50, "no_improvement_trials": 3}}),
    )
    .await;
    // Trial 1 is the best; trials 2, 3 and 4 don't beat it (a tie included).
    let ran = drive(&p, id, &[5.0, 4.0, 4.5, 4.0, 4.2, 1.0, 1.0]).await;
    assert_eq!(ran, 5);
    let exp = p.state.get_experiment(id).await.unwrap();
    assert_eq!(exp.state, ExperimentState::Finalizing, "{exp:?}");
    assert_eq!(p.state.list_trials(id).await.unwrap().len(), 5);
    assert_eq!(train_jobs(&p, id).await, 1);
}

#[tokio::test]
async fn automl_grid_runs_each_point_once_then_finalizes() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let ds = dataset(&p).await;
    let id = experiment(
        &p,
        json!({"name": "grid", "dataset_id": ds, "target": "quality_score", "metric": "rmse",
               "search_space": {
                   "family": {"type": "categorical", "choices": ["linear", "gbm"]},
                   "linear_l2": {"type": "float", "low": 0.01, "high": 1.0, "log": true, "when": {"family": ["linear"]}}
               },
               "sampler": {"type": "grid", "points_per_dimension": 3}, "parallelism": 2}),
    )
    .await;
    let ran = drive(&p, id, &[3.0, 2.0, 1.0, 0.5, 0.1, 0.1]).await;
    assert_eq!(ran, 4);
    let trials = p.state.list_trials(id).await.unwrap();
    let mut points: Vec<String> = trials
        .iter()
        .map(|t| {
            let sorted: std::collections::BTreeMap<_, _> = t.params.iter().collect();
            serde_json::to_string(&sorted).unwrap()
        })
        .collect();
    points.sort();
    points.dedup();
    assert_eq!(points.len(), 4, "{points:?}");
    assert_eq!(train_jobs(&p, id).await, 1);
}
