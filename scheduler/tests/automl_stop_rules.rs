//! The AutoML loop's stop rules on the memory backends, with the test acting
//! as the worker: no-improvement stopping and grid exhaustion both end in
//! the final training job, not in more trials.

mod common;

use common::{automl_experiment, drive, jobs, platform, rmse_result};
use serde_json::json;
use tracseq_core::types::{ExperimentState, JobKind};
use tracseq_core::ExperimentId;
use tracseq_core::Platform;

/// Drives the experiment, finishing its trial jobs in the order they run
/// with the next of `values` (rmse: smaller is better); answers how many
/// trial jobs ran.
async fn drive_with(p: &Platform, id: ExperimentId, values: &[f64]) -> usize {
    let mut next = values.iter().copied();
    drive(p, id, |_| {
        rmse_result(next.next().expect("a value per trial"))
    })
    .await
}

async fn train_jobs(p: &Platform, id: ExperimentId) -> usize {
    jobs(p, id)
        .await
        .iter()
        .filter(|j| j.kind == JobKind::Train)
        .count()
}

#[tokio::test]
async fn automl_finalizes_after_n_trials_without_improvement() {
    let p = platform();
    let id = automl_experiment(
        &p,
        json!({"name": "stall", "metric": "rmse", "sampler": {"type": "random"}, "parallelism": 1,
               "budget": {"trials": 50, "no_improvement_trials": 3}}),
    )
    .await;
    // Trial 1 is the best; trials 2, 3 and 4 don't beat it (a tie included).
    let ran = drive_with(&p, id, &[5.0, 4.0, 4.5, 4.0, 4.2, 1.0, 1.0]).await;
    assert_eq!(ran, 5);
    let exp = p.state.get_experiment(id).await.unwrap();
    assert_eq!(exp.state, ExperimentState::Finalizing, "{exp:?}");
    assert_eq!(p.state.list_trials(id).await.unwrap().len(), 5);
    assert_eq!(train_jobs(&p, id).await, 1);
}

#[tokio::test]
async fn automl_grid_runs_each_point_once_then_finalizes() {
    let p = platform();
    let id = automl_experiment(
        &p,
        json!({"name": "grid", "metric": "rmse",
               "search_space": {
                   "family": {"type": "categorical", "choices": ["linear", "gbm"]},
                   "linear_l2": {"type": "float", "low": 0.01, "high": 1.0, "log": true, "when": {"family": ["linear"]}}
               },
               "sampler": {"type": "grid", "points_per_dimension": 3}, "parallelism": 2}),
    )
    .await;
    let ran = drive_with(&p, id, &[3.0, 2.0, 1.0, 0.5, 0.1, 0.1]).await;
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
