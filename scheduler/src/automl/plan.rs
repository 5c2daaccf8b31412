//! What an AutoML experiment does next, decided from what the store holds:
//! pure functions over the spec, the experiment and its trials, so every
//! rule (budgets, parallelism, the deterministic history, an unschedulable
//! fleet, the final train job) is tested without a store or a queue. The
//! driver ([`super`]) reads, calls these, and carries out the answer.

use crate::history::{history, no_improvement_stop, pending_between, sampling_bound, time_is_up};
use crate::objectives;
use crate::spec::ExperimentSpec;
use crate::summary::best_trial;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use tracseq_core::lifecycle::experiment::Event as ExperimentEvent;
use tracseq_core::protocol::{TrainPayload, TrainResult, TrialPayload, TrialResult};
use tracseq_core::types::{Experiment, Job, JobState, Trial, TrialOutcome, TrialState};
use tracseq_core::{Error, Result};
use tracseq_hpo::{Params, Sampler, SearchSpace};

/// The next step of a running AutoML experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A trial's job was unschedulable: every trial asks for the same
    /// resources, so the experiment stops with the reason instead of
    /// queueing the whole budget to the same end.
    Unschedulable { reason: String },
    /// A budget (trials, time, no improvement) is spent and nothing runs:
    /// the trials are done; the best one is trained.
    TrialsDone { best: Option<u64>, total: u64 },
    /// Nothing to start until a running trial finishes: the parallelism is
    /// full, a spent budget waits for its running trials, or the next trial
    /// must learn from trials still running.
    Wait,
    /// Start trial `payload`'s number with its params.
    Start { number: u64, payload: TrialPayload },
}

/// The next step of `exp`, whose trials (numbered densely, each finished
/// job already reconciled onto its trial) are `trials`.
pub fn plan(
    spec: &ExperimentSpec,
    exp: &Experiment,
    trials: &[Trial],
    space: &SearchSpace,
    sampler: &dyn Sampler,
    now: DateTime<Utc>,
) -> Result<Action> {
    if let Some(reason) = trials.iter().find_map(unschedulable_reason) {
        return Ok(Action::Unschedulable { reason });
    }
    let running = trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .count() as u32;
    let number = trials.len() as u64;
    // A spent trial budget, the time budget and a stalled best value all end
    // the experiment the same way: the trials are done once nothing runs.
    let budget_left = spec.budget.trials.is_none_or(|b| number < b)
        && !time_is_up(spec, exp, now)
        && no_improvement_stop(spec, trials).is_none();
    if !budget_left {
        if running > 0 {
            return Ok(Action::Wait);
        }
        return Ok(Action::TrialsDone {
            best: best_trial(spec, trials).map(|b| b.number),
            total: number,
        });
    }
    if running >= spec.parallelism {
        return Ok(Action::Wait);
    }
    let bound = sampling_bound(spec, sampler, number);
    if trials
        .iter()
        .any(|t| t.number < bound && t.state == TrialState::Running)
    {
        // Wait for the trials this one must learn from.
        return Ok(Action::Wait);
    }
    // Trials bound..number run in parallel with this one: the sampler knows
    // their params (constant liar, a generation's positions) but never their
    // results, whatever the timing.
    let params = match objectives::suggest(spec, space, trials, Some(bound), number)? {
        Some(params) => params,
        None => sampler.sample_with_pending(
            space,
            &history(trials, Some(bound)),
            &pending_between(trials, bound, number),
            spec.direction,
            number,
        ),
    };
    Ok(Action::Start {
        number,
        payload: trial_payload(spec, exp, params)?,
    })
}

fn trial_payload(spec: &ExperimentSpec, exp: &Experiment, params: Params) -> Result<TrialPayload> {
    Ok(TrialPayload {
        experiment_id: exp.id,
        dataset_id: spec.dataset_id.ok_or_else(|| missing("dataset_id"))?,
        target: spec.target.clone().ok_or_else(|| missing("target"))?,
        params,
        folds: spec.cv_folds,
        seed: spec.seed,
        metric: spec.metric.clone().ok_or_else(|| missing("metric"))?,
    })
}

/// The next step of a finalizing experiment.
#[derive(Debug, Clone, PartialEq)]
pub enum Finalize {
    /// No train job yet: queue this one (the best trial's params on all rows).
    QueueTraining(Box<TrainPayload>),
    /// The train job ended: the experiment's event.
    Event(ExperimentEvent),
    /// The train job is still on its way (or there is no trial to train).
    Wait,
}

/// What a finalizing experiment does next, given its train job (if one was
/// queued) and its trials.
pub fn finalize(
    spec: &ExperimentSpec,
    exp: &Experiment,
    train: Option<&Job>,
    trials: &[Trial],
) -> Result<Finalize> {
    let Some(train) = train else {
        let Some(best) = best_trial(spec, trials) else {
            return Ok(Finalize::Wait);
        };
        let cv_metrics = trials
            .iter()
            .find(|t| t.number == best.number)
            .and_then(|t| t.detail.clone())
            .and_then(|d| serde_json::from_value::<TrialResult>(d).ok())
            .map(|r| r.metrics)
            .unwrap_or_default();
        let trial = trial_payload(spec, exp, best.params)?;
        return Ok(Finalize::QueueTraining(Box::new(TrainPayload {
            experiment_id: trial.experiment_id,
            dataset_id: trial.dataset_id,
            target: trial.target,
            params: trial.params,
            folds: trial.folds,
            seed: trial.seed,
            metric: trial.metric,
            model_name: spec
                .model_name
                .clone()
                .ok_or_else(|| missing("model_name"))?,
            cv_metrics,
            best_trial: best.number,
        })));
    };
    let event = match train.state {
        JobState::Succeeded => {
            let result: TrainResult =
                serde_json::from_value(train.result.clone().unwrap_or_default())?;
            ExperimentEvent::Trained {
                model_name: result.model_name,
                version: result.version,
            }
        }
        JobState::Dead | JobState::Cancelled | JobState::Pruned | JobState::Unschedulable => {
            ExperimentEvent::TrainingFailed {
                error: train.last_error.clone().unwrap_or_default(),
            }
        }
        _ => return Ok(Finalize::Wait),
    };
    Ok(Finalize::Event(event))
}

/// A trial job's outcome once the job is over (`None` while it is not).
pub fn job_outcome(spec: &ExperimentSpec, job: &Job) -> Option<TrialOutcome> {
    match job.state {
        JobState::Succeeded | JobState::Pruned => Some(
            match job
                .result
                .clone()
                .map(serde_json::from_value::<TrialResult>)
            {
                Some(Ok(r)) => trial_outcome(spec, job.state, r),
                _ => TrialOutcome::new(
                    TrialState::Failed,
                    None,
                    Some(json!({"error": "job result unreadable"})),
                ),
            },
        ),
        // The job's final state goes with the error, so the experiment can
        // tell an unschedulable trial from a failed one.
        JobState::Dead | JobState::Cancelled | JobState::Unschedulable => Some(TrialOutcome::new(
            TrialState::Failed,
            None,
            Some(json!({"error": job.last_error, "job_state": job.state})),
        )),
        _ => None,
    }
}

/// A finished trial job's result as its trial's outcome. In a
/// multi-objective experiment a complete trial needs every objective's value;
/// a result without one (a worker that does not measure it) fails the trial
/// with the reason, since the sampler and the front cannot place it.
fn trial_outcome(spec: &ExperimentSpec, job_state: JobState, r: TrialResult) -> TrialOutcome {
    let state = if job_state == JobState::Pruned {
        TrialState::Pruned
    } else {
        TrialState::Complete
    };
    let values = match (&spec.objectives, state) {
        (Some(objectives), TrialState::Complete) => {
            match objectives::automl_values(objectives, &r) {
                Ok(values) => Some(values),
                Err(reason) => {
                    let mut detail = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
                    if let Some(obj) = detail.as_object_mut() {
                        obj.insert("error".into(), json!(reason));
                    }
                    return TrialOutcome::new(TrialState::Failed, None, Some(detail));
                }
            }
        }
        _ => None,
    };
    TrialOutcome::new(state, Some(r.value), serde_json::to_value(&r).ok()).with_values(values)
}

fn missing(field: &str) -> Error {
    Error::Internal(format!("AutoML experiment spec lacks {field}"))
}

/// A trial that failed because its job was unschedulable, and why.
fn unschedulable_reason(t: &Trial) -> Option<String> {
    if t.state != TrialState::Failed {
        return None;
    }
    let detail = t.detail.as_ref()?;
    let job_state = JobState::deserialize(detail.get("job_state")?).ok()?;
    if job_state != JobState::Unschedulable {
        return None;
    }
    let error = detail.get("error").and_then(|e| e.as_str()).unwrap_or("");
    Some(format!("trial {} is {error}", t.number))
}

#[cfg(test)]
mod tests;
