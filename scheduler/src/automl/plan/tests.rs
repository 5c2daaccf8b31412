//! Every rule of the plan on hand-built trials: no store, no queue, no clock.

use super::*;
use crate::spec::{validate, ExperimentRequest};
use chrono::Duration;
use serde_json::{json, Map, Value};
use tracseq_core::config::LimitsConfig;
use tracseq_core::fixtures::{new_experiment, new_job, t0};
use tracseq_core::types::{ExperimentKind, JobKind};
use tracseq_core::DatasetId;
use tracseq_hpo::Direction;

/// An AutoML spec minimising rmse with `extra` merged into the request.
fn spec(extra: Value) -> ExperimentSpec {
    let mut body = json!({"name": "plan", "dataset_id": DatasetId::new(),
                          "target": "quality_score", "metric": "rmse",
                          "model_name": "m", "sampler": {"type": "random"},
                          "budget": {"trials": 50}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let req: ExperimentRequest = serde_json::from_value(body).unwrap();
    let mut spec = validate(&req, &LimitsConfig::default()).unwrap();
    // Resolved from the data set by the service; fixed here.
    spec.metric = Some("rmse".into());
    spec.direction = Direction::Minimize;
    spec
}

fn experiment(spec: &ExperimentSpec) -> Experiment {
    Experiment {
        kind: ExperimentKind::Automl,
        spec: serde_json::to_value(spec).unwrap(),
        ..new_experiment("plan")
    }
}

fn running(exp: &Experiment, number: u64) -> Trial {
    let mut p = Map::new();
    p.insert("family".into(), json!("linear"));
    Trial::new_running(exp.id, number, p, None, t0())
}

fn ended(exp: &Experiment, number: u64, outcome: TrialOutcome) -> Trial {
    let mut t = running(exp, number);
    outcome.apply(&mut t, t0());
    t
}

/// Trial `number`, failed because its job ended in `state` with `error`.
fn failed_by(
    spec: &ExperimentSpec,
    exp: &Experiment,
    number: u64,
    state: JobState,
    error: &str,
) -> Trial {
    let mut job = new_job(Some(exp.id), 1);
    job.state = state;
    job.last_error = Some(error.into());
    ended(exp, number, job_outcome(spec, &job).unwrap())
}

fn complete(exp: &Experiment, number: u64, value: f64) -> Trial {
    let detail = serde_json::to_value(result(value)).unwrap();
    ended(
        exp,
        number,
        TrialOutcome::new(TrialState::Complete, Some(value), Some(detail)),
    )
}

fn result(value: f64) -> TrialResult {
    TrialResult {
        value,
        metric: "rmse".into(),
        fold_values: vec![value],
        metrics: [("rmse".to_string(), value)].into(),
        pruned: false,
        artifact: None,
        latency_us: None,
        model_bytes: None,
    }
}

fn next(spec: &ExperimentSpec, exp: &Experiment, trials: &[Trial], now: DateTime<Utc>) -> Action {
    let space = spec.space().unwrap();
    plan(
        spec,
        exp,
        trials,
        &space,
        spec.sampler.build().as_ref(),
        now,
    )
    .unwrap()
}

#[test]
fn an_empty_experiment_starts_trial_zero_with_the_spec_in_its_payload() {
    let spec = spec(json!({}));
    let exp = experiment(&spec);
    let Action::Start { number, payload } = next(&spec, &exp, &[], t0()) else {
        panic!("expected a start");
    };
    assert_eq!(number, 0);
    assert_eq!(payload.experiment_id, exp.id);
    assert_eq!(Some(payload.dataset_id), spec.dataset_id);
    assert_eq!((payload.folds, payload.seed), (spec.cv_folds, spec.seed));
    assert_eq!(payload.metric, "rmse");
    assert!(!payload.params.is_empty());
}

#[test]
fn the_same_trials_plan_the_same_params() {
    let spec = spec(json!({"parallelism": 1}));
    let exp = experiment(&spec);
    let trials = [complete(&exp, 0, 2.0), complete(&exp, 1, 1.0)];
    assert_eq!(
        next(&spec, &exp, &trials, t0()),
        next(&spec, &exp, &trials, t0())
    );
}

#[test]
fn a_full_parallelism_waits() {
    let spec = spec(json!({"parallelism": 2}));
    let exp = experiment(&spec);
    let trials = [running(&exp, 0), running(&exp, 1)];
    assert_eq!(next(&spec, &exp, &trials, t0()), Action::Wait);
}

#[test]
fn a_trial_waits_for_the_running_trials_it_must_learn_from() {
    // Parallelism 2: trial 2 learns from trials below 1, and trial 0 runs.
    let spec = spec(json!({"parallelism": 2}));
    let exp = experiment(&spec);
    let trials = [running(&exp, 0), complete(&exp, 1, 1.0)];
    assert_eq!(next(&spec, &exp, &trials, t0()), Action::Wait);
    let trials = [complete(&exp, 0, 2.0), running(&exp, 1)];
    assert!(matches!(
        next(&spec, &exp, &trials, t0()),
        Action::Start { number: 2, .. }
    ));
}

#[test]
fn a_spent_trial_budget_waits_for_running_trials_then_names_the_best() {
    let spec = spec(json!({"budget": {"trials": 2}, "parallelism": 2}));
    let exp = experiment(&spec);
    let trials = [complete(&exp, 0, 2.0), running(&exp, 1)];
    assert_eq!(next(&spec, &exp, &trials, t0()), Action::Wait);
    let trials = [complete(&exp, 0, 2.0), complete(&exp, 1, 0.5)];
    assert_eq!(
        next(&spec, &exp, &trials, t0()),
        Action::TrialsDone {
            best: Some(1),
            total: 2
        }
    );
}

#[test]
fn a_spent_time_budget_ends_the_trials() {
    let spec = spec(json!({"budget": {"seconds": 60}}));
    let exp = experiment(&spec);
    let trials = [complete(&exp, 0, 1.0)];
    assert!(matches!(
        next(&spec, &exp, &trials, exp.created_at + Duration::seconds(59)),
        Action::Start { number: 1, .. }
    ));
    assert_eq!(
        next(&spec, &exp, &trials, exp.created_at + Duration::seconds(61)),
        Action::TrialsDone {
            best: Some(0),
            total: 1
        }
    );
}

#[test]
fn an_unschedulable_trial_stops_the_experiment_with_its_reason() {
    let spec = spec(json!({}));
    let exp = experiment(&spec);
    let failed = failed_by(
        &spec,
        &exp,
        1,
        JobState::Unschedulable,
        "unschedulable: needs 2 GPUs",
    );
    let trials = [complete(&exp, 0, 1.0), failed];
    assert_eq!(
        next(&spec, &exp, &trials, t0()),
        Action::Unschedulable {
            reason: "trial 1 is unschedulable: needs 2 GPUs".into()
        }
    );
}

#[test]
fn a_trial_that_failed_otherwise_does_not_stop_the_experiment() {
    let spec = spec(json!({}));
    let exp = experiment(&spec);
    // Even with a message that reads like one.
    let words = "unschedulable: a worker's own words";
    let trials = [failed_by(&spec, &exp, 0, JobState::Dead, words)];
    assert!(matches!(
        next(&spec, &exp, &trials, t0()),
        Action::Start { number: 1, .. }
    ));
}

#[test]
fn a_job_outcome_follows_the_job_state_and_its_result() {
    let spec = spec(json!({}));
    let mut job = new_job(None, 1);
    for state in [
        JobState::Queued,
        JobState::Leased,
        JobState::Running,
        JobState::Failed,
    ] {
        job.state = state;
        assert_eq!(job_outcome(&spec, &job), None, "{state} is not over");
    }
    job.result = Some(serde_json::to_value(result(0.25)).unwrap());
    for (state, trial) in [
        (JobState::Succeeded, TrialState::Complete),
        (JobState::Pruned, TrialState::Pruned),
    ] {
        job.state = state;
        let outcome = job_outcome(&spec, &job).unwrap();
        assert_eq!((outcome.state, outcome.value), (trial, Some(0.25)));
    }
    job.result = Some(json!({"not": "a trial result"}));
    job.state = JobState::Succeeded;
    let outcome = job_outcome(&spec, &job).unwrap();
    assert_eq!(outcome.state, TrialState::Failed);
    assert_eq!(
        outcome.detail,
        Some(json!({"error": "job result unreadable"}))
    );
    for state in [JobState::Dead, JobState::Cancelled, JobState::Unschedulable] {
        job.state = state;
        job.last_error = Some("boom".into());
        let outcome = job_outcome(&spec, &job).unwrap();
        assert_eq!(outcome.state, TrialState::Failed);
        assert_eq!(
            outcome.detail,
            Some(json!({"error": "boom", "job_state": state}))
        );
    }
}

#[test]
fn a_multi_objective_result_without_every_objective_fails_its_trial() {
    let spec = spec(json!({"metric": null, "objectives": [
        {"name": "rmse"}, {"name": "latency_us"}]}));
    let mut job = new_job(None, 1);
    job.state = JobState::Succeeded;
    job.result = Some(serde_json::to_value(result(0.5)).unwrap());
    let outcome = job_outcome(&spec, &job).unwrap();
    assert_eq!(outcome.state, TrialState::Failed);
    assert!(outcome.detail.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("latency_us"));
    job.result = Some(
        serde_json::to_value(TrialResult {
            latency_us: Some(3.0),
            ..result(0.5)
        })
        .unwrap(),
    );
    let outcome = job_outcome(&spec, &job).unwrap();
    assert_eq!(outcome.state, TrialState::Complete);
    assert_eq!(outcome.values, Some(vec![0.5, 3.0]));
}

#[test]
fn finalizing_queues_the_best_trial_for_training_once() {
    let spec = spec(json!({}));
    let exp = experiment(&spec);
    let trials = [complete(&exp, 0, 2.0), complete(&exp, 1, 0.5)];
    let Finalize::QueueTraining(payload) = finalize(&spec, &exp, None, &trials).unwrap() else {
        panic!("expected a train job");
    };
    assert_eq!(payload.best_trial, 1);
    assert_eq!(payload.params, *trials[1].params);
    assert_eq!(payload.model_name, "m");
    assert_eq!(payload.cv_metrics, result(0.5).metrics);
    // No complete trial: nothing to train.
    let failed = TrialOutcome::new(TrialState::Failed, None, None);
    assert_eq!(
        finalize(&spec, &exp, None, &[ended(&exp, 0, failed)]).unwrap(),
        Finalize::Wait
    );
}

#[test]
fn the_train_job_state_decides_how_the_experiment_ends() {
    let spec = spec(json!({}));
    let exp = experiment(&spec);
    let mut train = new_job(Some(exp.id), 1);
    train.kind = JobKind::Train;
    for state in [JobState::Queued, JobState::Running, JobState::Failed] {
        train.state = state;
        assert_eq!(
            finalize(&spec, &exp, Some(&train), &[]).unwrap(),
            Finalize::Wait
        );
    }
    train.state = JobState::Succeeded;
    train.result = Some(json!({"model_name": "m", "version": 4,
                               "artifact": "models/m/4", "sha256": "00"}));
    assert_eq!(
        finalize(&spec, &exp, Some(&train), &[]).unwrap(),
        Finalize::Event(ExperimentEvent::Trained {
            model_name: "m".into(),
            version: 4
        })
    );
    for state in [
        JobState::Dead,
        JobState::Cancelled,
        JobState::Pruned,
        JobState::Unschedulable,
    ] {
        train.state = state;
        train.last_error = Some("out of memory".into());
        assert_eq!(
            finalize(&spec, &exp, Some(&train), &[]).unwrap(),
            Finalize::Event(ExperimentEvent::TrainingFailed {
                error: "out of memory".into()
            })
        );
    }
}
