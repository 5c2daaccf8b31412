//! Multi-objective experiments on the memory backends: ask/tell with
//! validation of told values and the Pareto front of the summary, and the
//! AutoML loop turning workers' measurements into objective values (the
//! test acting as the worker).

mod common;

use chrono::Utc;
use common::{automl_experiment, drive, experiment, jobs, platform};
use serde_json::{json, Value};
use tracseq_core::protocol::{TrainPayload, TrialResult};
use tracseq_core::types::{ExperimentState, JobKind, TrialState};
use tracseq_core::{Error, ExperimentId, Platform};
use tracseq_hpo::multi::pareto::dominates;
use tracseq_scheduler::service;
use tracseq_scheduler::spec::TellRequest;
use tracseq_scheduler::summary;

fn tell_values(values: Vec<f64>) -> TellRequest {
    TellRequest {
        value: None,
        values: Some(values),
        state: None,
        params: None,
    }
}

/// Tells `req` for trial `number`: it must be refused as invalid with a
/// message containing `needle`, before anything is written (the trial still
/// runs, with no value).
async fn assert_tell_refused(
    p: &Platform,
    id: ExperimentId,
    number: u64,
    req: TellRequest,
    needle: &str,
) {
    let err = service::tell(p, id, number, req, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains(needle), "{err}");
    let stored = p.state.get_trial(id, number).await.unwrap();
    assert_eq!(
        (stored.state, stored.value, stored.values),
        (TrialState::Running, None, None)
    );
}

/// Maximise accuracy-like `a`, minimise cost-like `c`: they conflict along x.
fn objective(params: &serde_json::Map<String, Value>) -> Vec<f64> {
    let x = params["x"].as_f64().unwrap();
    let y = params["y"].as_f64().unwrap();
    vec![1.0 - (x - 1.0).powi(2) - y * y, x * x + (y - 0.5).powi(2)]
}

/// Losses (smaller is better) of a front point given as JSON values.
fn losses(values: &Value) -> Vec<f64> {
    let v: Vec<f64> = serde_json::from_value(values.clone()).unwrap();
    vec![-v[0], v[1]]
}

#[tokio::test]
async fn ask_tell_front_is_non_dominated_and_complete() {
    let p = platform();
    let id = experiment(
        &p,
        json!({"name": "mo", "seed": 3, "budget": {"trials": 60},
               "objectives": [{"name": "score", "direction": "maximize"}, {"name": "cost", "direction": "minimize"}],
               "sampler": {"type": "nsga2", "population_size": 10},
               "search_space": {"x": {"type": "float", "low": -2, "high": 2},
                                "y": {"type": "float", "low": -2, "high": 2}}}),
    )
    .await;
    for _ in 0..60 {
        let t = service::ask(&p, id, Utc::now()).await.unwrap();
        if t.number % 13 == 5 {
            // Failed trials have no values and never reach the front.
            let failed = TellRequest {
                value: None,
                values: None,
                state: Some("failed".into()),
                params: None,
            };
            service::tell(&p, id, t.number, failed, Utc::now())
                .await
                .unwrap();
            continue;
        }
        let told = service::tell(
            &p,
            id,
            t.number,
            tell_values(objective(&t.params)),
            Utc::now(),
        )
        .await
        .unwrap();
        assert_eq!(told.values.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            told.value,
            told.values.as_ref().map(|v| v[0]),
            "value is the first objective"
        );
    }
    let exp = p.state.get_experiment(id).await.unwrap();
    let summary = serde_json::to_value(summary::summary(&p, exp.clone()).await.unwrap()).unwrap();
    let front = summary["pareto_front"].as_array().unwrap().clone();
    assert!(front.len() >= 3, "{summary}");
    let trials = p.state.list_trials(id).await.unwrap();
    let complete: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .collect();
    let front_numbers: Vec<u64> = front
        .iter()
        .map(|f| f["number"].as_u64().unwrap())
        .collect();
    for f in &front {
        let l = losses(&f["values"]);
        for g in &front {
            assert!(!dominates(&losses(&g["values"]), &l), "{g} dominates {f}");
        }
        let n = f["number"].as_u64().unwrap();
        let trial = trials.iter().find(|t| t.number == n).unwrap();
        assert_eq!(trial.state, TrialState::Complete);
        assert_eq!(f["params"], json!(trial.params));
    }
    // Every complete trial left out is dominated by a front point.
    for t in complete
        .iter()
        .filter(|t| !front_numbers.contains(&t.number))
    {
        let l = losses(&json!(t.values));
        assert!(
            front.iter().any(|f| dominates(&losses(&f["values"]), &l)),
            "trial {} is neither on the front nor dominated",
            t.number
        );
    }
    // Sorted best first by the first objective (maximised).
    let first: Vec<f64> = front
        .iter()
        .map(|f| f["values"][0].as_f64().unwrap())
        .collect();
    assert!(first.windows(2).all(|w| w[0] >= w[1]), "{first:?}");
    // The best trial is the best by the first objective, so the front's head.
    assert_eq!(summary["best_trial"]["number"], front[0]["number"]);
    assert_eq!(summary["best_trial"]["values"], front[0]["values"]);
    // Importance explains the first objective.
    assert!(summary["importance"]["params"].is_array(), "{summary}");
    // Listings stay light.
    let brief = serde_json::to_value(summary::brief_summary(&p, exp).await.unwrap()).unwrap();
    assert!(brief.get("pareto_front").is_none());
}

#[tokio::test]
async fn told_values_are_checked_before_anything_is_written() {
    let p = platform();
    let id = experiment(
        &p,
        json!({"name": "mo", "objectives": [{"name": "a", "direction": "maximize"}, {"name": "b", "direction": "minimize"}],
               "search_space": {"x": {"type": "float", "low": 0, "high": 1}}}),
    )
    .await;
    let t = service::ask(&p, id, Utc::now()).await.unwrap();
    let bad = [
        (
            tell_values(vec![1.0]),
            "values must hold one number per objective (2: a, b); got 1",
        ),
        (tell_values(vec![1.0, 2.0, 3.0]), "got 3"),
        (
            tell_values(vec![1.0, f64::INFINITY]),
            "values[1] must be finite",
        ),
        (
            TellRequest {
                value: Some(1.0),
                values: None,
                state: None,
                params: None,
            },
            "value is for single-objective experiments; this one has 2 objectives (a, b)",
        ),
        (
            TellRequest {
                value: None,
                values: None,
                state: None,
                params: None,
            },
            "values is required for a complete trial",
        ),
        (
            TellRequest {
                state: Some("failed".into()),
                ..tell_values(vec![1.0, 2.0])
            },
            "a failed trial has no values",
        ),
    ];
    for (req, needle) in bad {
        assert_tell_refused(&p, id, t.number, req, needle).await;
    }
    // A pruned trial may come without values.
    let pruned = TellRequest {
        value: None,
        values: None,
        state: Some("pruned".into()),
        params: None,
    };
    let told = service::tell(&p, id, t.number, pruned, Utc::now())
        .await
        .unwrap();
    assert_eq!((told.state, told.values), (TrialState::Pruned, None));
    // A single-objective experiment refuses values.
    let single = experiment(
        &p,
        json!({"name": "so", "search_space": {"x": {"type": "float", "low": 0, "high": 1}}}),
    )
    .await;
    let t = service::ask(&p, single, Utc::now()).await.unwrap();
    let values = tell_values(vec![1.0, 2.0]);
    assert_tell_refused(
        &p,
        single,
        t.number,
        values,
        "values is for multi-objective experiments",
    )
    .await;
}

#[tokio::test]
async fn automl_trials_take_their_values_from_the_workers_measurements() {
    let p = platform();
    let id = automl_experiment(
        &p,
        json!({"name": "mo", "parallelism": 2, "seed": 1,
               "objectives": [{"name": "rmse"}, {"name": "latency_us"}, {"name": "model_bytes"}],
               "budget": {"trials": 8}}),
    )
    .await;
    // rmse falls with the trial number while latency and size rise: every
    // trial trades one for the other, so all are on the front. Trial 6's
    // worker measured no latency.
    drive(&p, id, |n| TrialResult {
        value: 10.0 - n as f64,
        metric: "rmse".into(),
        fold_values: vec![10.0 - n as f64],
        metrics: Default::default(),
        pruned: false,
        artifact: None,
        latency_us: (n != 6).then_some(1.0 + n as f64),
        model_bytes: Some(1000 + 10 * n),
    })
    .await;
    let trials = p.state.list_trials(id).await.unwrap();
    assert_eq!(trials.len(), 8);
    for t in &trials {
        let n = t.number;
        if n == 6 {
            assert_eq!(t.state, TrialState::Failed);
            let error = t.detail.as_ref().unwrap()["error"].as_str().unwrap();
            assert!(error.contains("latency_us"), "{error}");
            continue;
        }
        assert_eq!(t.state, TrialState::Complete);
        assert_eq!(
            t.values,
            Some(vec![
                10.0 - n as f64,
                1.0 + n as f64,
                (1000 + 10 * n) as f64
            ])
        );
    }
    let exp = p.state.get_experiment(id).await.unwrap();
    assert_eq!(exp.state, ExperimentState::Finalizing);
    let spec = tracseq_scheduler::spec::ExperimentSpec::from_value(&exp.spec).unwrap();
    let front = summary::summary(&p, exp)
        .await
        .unwrap()
        .pareto_front
        .unwrap();
    let numbers: Vec<u64> = front.iter().map(|f| f.number).collect();
    assert_eq!(numbers, vec![7, 5, 4, 3, 2, 1, 0], "best rmse first");
    // The final model is the best by the metric, the first objective.
    let train = jobs(&p, id)
        .await
        .into_iter()
        .find(|j| j.kind == JobKind::Train)
        .unwrap();
    let payload: TrainPayload = serde_json::from_value(train.payload).unwrap();
    assert_eq!(payload.best_trial, 7);
    assert_eq!(spec.metric.as_deref(), Some("rmse"));
}

#[tokio::test]
async fn best_trial_breaks_first_objective_ties_by_the_next_objectives() {
    let p = platform();
    let id = experiment(
        &p,
        json!({"name": "ties", "sampler": {"type": "random"},
               "objectives": [{"name": "a", "direction": "maximize"}, {"name": "b", "direction": "minimize"}],
               "search_space": {"x": {"type": "float", "low": 0, "high": 1}}}),
    )
    .await;
    // Trials 0 and 1 tie on the first objective; 1 dominates 0.
    for values in [vec![0.9, 5.0], vec![0.9, 2.0], vec![0.5, 1.0]] {
        let t = service::ask(&p, id, Utc::now()).await.unwrap();
        service::tell(&p, id, t.number, tell_values(values), Utc::now())
            .await
            .unwrap();
    }
    let exp = p.state.get_experiment(id).await.unwrap();
    let summary = summary::summary(&p, exp).await.unwrap();
    let front: Vec<u64> = summary
        .pareto_front
        .unwrap()
        .iter()
        .map(|f| f.number)
        .collect();
    assert_eq!(front, vec![1, 2]);
    let best = summary.best_trial.unwrap();
    assert_eq!((best.number, best.value), (1, 0.9));
    assert_eq!(best.values, Some(vec![0.9, 2.0]));
}
