//! The experiment state machine: every change of an experiment's state, as
//! one pure function.
//!
//! ```text
//! running ──TrialsDone (a best trial)──> finalizing ──Trained──> completed
//!    │  └──TrialsDone (no trial completed)──> failed     └──TrainingFailed──> failed
//!    ├──Stalled (ask/tell: no improvement)──> completed
//!    ├──BudgetSpent (ask/tell: budget used, last trial told)──> completed
//!    ├──Unschedulable (no worker can hold a trial)──> failed
//!    └──Cancel (also from finalizing)──> cancelled
//! ```
//!
//! The scheduler decides *when* an event happens (a spent budget, a train
//! job that ended); this module decides what it does to the record and
//! which work follows, returned as [`Effect`]s. The caller stores the new
//! record with a compare-and-set on the state it read, so a cancel racing
//! the scheduler's own transition wins or loses whole.

use crate::types::{Experiment, ExperimentKind, ExperimentState};
use chrono::{DateTime, Utc};

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An AutoML experiment's search is over (trial budget, time budget or
    /// no improvement) and no trial runs any more.
    TrialsDone {
        /// The number of the best complete trial, if any trial completed
        /// with a usable value.
        best: Option<u64>,
        /// Trials created in all.
        total: u64,
    },
    /// An ask/tell experiment's best value stopped improving for the
    /// configured number of trials.
    Stalled { trials: u64 },
    /// An ask/tell experiment used its trial or time budget and its last
    /// trial was told: nothing more can be asked.
    BudgetSpent { trials: u64 },
    /// A trial's job can never be placed on the fleet; every trial asks for
    /// the same resources, so the search cannot go on.
    Unschedulable { reason: String },
    /// The final train job registered `model_name` version `version`.
    Trained { model_name: String, version: u32 },
    /// The final train job ended without a model.
    TrainingFailed { error: String },
    /// A user cancelled the experiment.
    Cancel,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Queue the final train job with the best trial's params.
    QueueTraining,
    /// Cancel the experiment's live jobs and fail its running trials.
    CancelWork,
    /// The experiment reached a terminal state.
    Finished(ExperimentState),
}

/// Why an event does not apply; the experiment is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("experiment is {state}, cannot {action}")]
    WrongState {
        state: ExperimentState,
        action: &'static str,
    },
    #[error("a {kind} experiment cannot {action}")]
    WrongKind {
        kind: ExperimentKind,
        action: &'static str,
    },
}

/// Applies `event` to `exp` at time `now`. On `Err` the experiment is
/// unchanged.
pub fn on_event(
    exp: &mut Experiment,
    event: Event,
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, Rejection> {
    use ExperimentState::{Cancelled, Completed, Failed, Finalizing, Running};
    let effects = match event {
        Event::TrialsDone { best, total } => {
            require_kind(exp, ExperimentKind::Automl, "finish its trials")?;
            require(exp, &[Running], "finish its trials")?;
            if best.is_none() {
                finish(
                    exp,
                    Failed,
                    Some(format!("none of the {total} trials completed")),
                    now,
                )
            } else {
                exp.state = Finalizing;
                exp.updated_at = now;
                vec![Effect::QueueTraining]
            }
        }
        Event::Stalled { .. } => {
            require_kind(exp, ExperimentKind::AskTell, "stop for no improvement")?;
            require(exp, &[Running], "stop for no improvement")?;
            finish(exp, Completed, None, now)
        }
        Event::BudgetSpent { .. } => {
            require_kind(exp, ExperimentKind::AskTell, "complete on its budget")?;
            require(exp, &[Running], "complete on its budget")?;
            finish(exp, Completed, None, now)
        }
        Event::Unschedulable { reason } => {
            require(exp, &[Running], "fail as unschedulable")?;
            finish(exp, Failed, Some(reason), now)
        }
        Event::Trained {
            model_name,
            version,
        } => {
            require(exp, &[Finalizing], "complete with a model")?;
            exp.model_name = Some(model_name);
            exp.model_version = Some(version);
            finish(exp, Completed, None, now)
        }
        Event::TrainingFailed { error } => {
            require(exp, &[Finalizing], "fail its final training")?;
            finish(
                exp,
                Failed,
                Some(format!("final training failed: {error}")),
                now,
            )
        }
        Event::Cancel => {
            require(exp, &[Running, Finalizing], "cancel")?;
            let mut effects = vec![Effect::CancelWork];
            effects.extend(finish(exp, Cancelled, None, now));
            effects
        }
    };
    Ok(effects)
}

fn require(
    exp: &Experiment,
    allowed: &[ExperimentState],
    action: &'static str,
) -> Result<(), Rejection> {
    if allowed.contains(&exp.state) {
        Ok(())
    } else {
        Err(Rejection::WrongState {
            state: exp.state,
            action,
        })
    }
}

fn require_kind(
    exp: &Experiment,
    kind: ExperimentKind,
    action: &'static str,
) -> Result<(), Rejection> {
    if exp.kind == kind {
        Ok(())
    } else {
        Err(Rejection::WrongKind {
            kind: exp.kind,
            action,
        })
    }
}

fn finish(
    exp: &mut Experiment,
    state: ExperimentState,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    exp.state = state;
    if error.is_some() {
        exp.error = error;
    }
    exp.updated_at = now;
    exp.finished_at = Some(now);
    vec![Effect::Finished(state)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{new_experiment, t0};
    use chrono::Duration;
    use ExperimentState::{Cancelled, Completed, Failed, Finalizing, Running};

    fn exp(kind: ExperimentKind, state: ExperimentState) -> Experiment {
        Experiment {
            kind,
            state,
            ..new_experiment("e")
        }
    }

    fn done(best: Option<u64>, total: u64) -> Event {
        Event::TrialsDone { best, total }
    }

    fn later() -> DateTime<Utc> {
        t0() + Duration::seconds(5)
    }

    #[test]
    fn a_spent_budget_completes_a_running_ask_tell_experiment() {
        let mut e = exp(ExperimentKind::AskTell, Running);
        let effects = on_event(&mut e, Event::BudgetSpent { trials: 5 }, later()).unwrap();
        assert_eq!(effects, vec![Effect::Finished(Completed)]);
        assert_eq!(e.state, Completed);
        assert_eq!(e.finished_at, Some(later()));
        assert_eq!(e.error, None);
    }

    #[test]
    fn a_spent_budget_is_refused_for_automl_and_for_a_finished_experiment() {
        let mut automl = exp(ExperimentKind::Automl, Running);
        let err = on_event(&mut automl, Event::BudgetSpent { trials: 5 }, later()).unwrap_err();
        assert!(matches!(err, Rejection::WrongKind { .. }), "{err}");
        assert_eq!(automl.state, Running);
        for state in [Completed, Cancelled, Failed] {
            let mut e = exp(ExperimentKind::AskTell, state);
            let before = e.clone();
            assert!(on_event(&mut e, Event::BudgetSpent { trials: 5 }, later()).is_err());
            assert_eq!(e, before, "{state}: unchanged");
        }
    }

    fn trained() -> Event {
        Event::Trained {
            model_name: "m".into(),
            version: 3,
        }
    }

    /// Applies `event` and checks that a rejection changed nothing.
    fn apply(e: &mut Experiment, event: Event) -> Result<Vec<Effect>, Rejection> {
        let before = e.clone();
        let out = on_event(e, event, later());
        if out.is_err() {
            assert_eq!(
                *e, before,
                "a rejected event must leave the experiment as it was"
            );
        }
        out
    }

    #[test]
    fn trials_done_with_a_complete_trial_starts_finalizing_and_queues_training() {
        let mut e = exp(ExperimentKind::Automl, Running);
        let effects = apply(&mut e, done(Some(3), 5)).unwrap();
        assert_eq!(effects, vec![Effect::QueueTraining]);
        assert_eq!(e.state, Finalizing);
        assert_eq!(e.updated_at, later());
        assert_eq!(e.finished_at, None, "finalizing is not the end");
    }

    #[test]
    fn trials_done_without_a_complete_trial_fails_saying_how_many_ran() {
        let mut e = exp(ExperimentKind::Automl, Running);
        let effects = apply(&mut e, done(None, 4)).unwrap();
        assert_eq!(effects, vec![Effect::Finished(Failed)]);
        assert_eq!(e.state, Failed);
        assert_eq!(e.error.as_deref(), Some("none of the 4 trials completed"));
        assert_eq!(e.finished_at, Some(later()));
    }

    #[test]
    fn an_ask_tell_experiment_has_no_trials_done_event() {
        let mut e = exp(ExperimentKind::AskTell, Running);
        let err = apply(&mut e, done(Some(0), 1)).unwrap_err();
        assert!(matches!(err, Rejection::WrongKind { .. }), "{err}");
    }

    #[test]
    fn a_stalled_ask_tell_experiment_completes() {
        let mut e = exp(ExperimentKind::AskTell, Running);
        let effects = apply(&mut e, Event::Stalled { trials: 10 }).unwrap();
        assert_eq!(effects, vec![Effect::Finished(Completed)]);
        assert_eq!((e.state, e.error.clone()), (Completed, None));
        assert_eq!(e.finished_at, Some(later()));
    }

    #[test]
    fn an_automl_experiment_stops_through_trials_done_not_stalled() {
        let mut e = exp(ExperimentKind::Automl, Running);
        assert!(apply(&mut e, Event::Stalled { trials: 3 }).is_err());
    }

    #[test]
    fn an_unschedulable_trial_fails_a_running_experiment_with_the_reason() {
        for kind in [ExperimentKind::Automl, ExperimentKind::AskTell] {
            let mut e = exp(kind, Running);
            let reason = "trial 0 is unschedulable: needs 2 GPUs".to_string();
            let effects = apply(
                &mut e,
                Event::Unschedulable {
                    reason: reason.clone(),
                },
            )
            .unwrap();
            assert_eq!(effects, vec![Effect::Finished(Failed)]);
            assert_eq!(e.error, Some(reason));
        }
    }

    #[test]
    fn a_trained_model_completes_a_finalizing_experiment_and_is_recorded() {
        let mut e = exp(ExperimentKind::Automl, Finalizing);
        let effects = apply(&mut e, trained()).unwrap();
        assert_eq!(effects, vec![Effect::Finished(Completed)]);
        assert_eq!(e.state, Completed);
        assert_eq!(
            (e.model_name.as_deref(), e.model_version),
            (Some("m"), Some(3))
        );
        assert_eq!(e.finished_at, Some(later()));
    }

    #[test]
    fn failed_training_fails_a_finalizing_experiment_with_the_jobs_error() {
        let mut e = exp(ExperimentKind::Automl, Finalizing);
        let error = "worker lost".to_string();
        apply(&mut e, Event::TrainingFailed { error }).unwrap();
        assert_eq!(e.state, Failed);
        assert_eq!(
            e.error.as_deref(),
            Some("final training failed: worker lost")
        );
    }

    #[test]
    fn training_outcomes_need_a_finalizing_experiment() {
        for state in [Running, Completed, Failed, Cancelled] {
            let mut e = exp(ExperimentKind::Automl, state);
            assert!(apply(&mut e, trained()).is_err(), "{state}");
            let failed = Event::TrainingFailed { error: "x".into() };
            assert!(apply(&mut e, failed).is_err(), "{state}");
        }
    }

    #[test]
    fn cancel_stops_a_running_or_finalizing_experiment_and_its_work() {
        for state in [Running, Finalizing] {
            let mut e = exp(ExperimentKind::Automl, state);
            let effects = apply(&mut e, Event::Cancel).unwrap();
            assert_eq!(
                effects,
                vec![Effect::CancelWork, Effect::Finished(Cancelled)]
            );
            assert_eq!(e.state, Cancelled);
            assert_eq!(e.finished_at, Some(later()));
        }
    }

    #[test]
    fn nothing_moves_a_finished_experiment() {
        for state in [Completed, Failed, Cancelled] {
            for kind in [ExperimentKind::Automl, ExperimentKind::AskTell] {
                let events = [
                    done(Some(0), 1),
                    Event::Stalled { trials: 1 },
                    Event::BudgetSpent { trials: 1 },
                    Event::Unschedulable { reason: "r".into() },
                    trained(),
                    Event::TrainingFailed { error: "x".into() },
                    Event::Cancel,
                ];
                for event in events {
                    let mut e = exp(kind, state);
                    let err = apply(&mut e, event.clone()).unwrap_err();
                    assert!(
                        matches!(
                            err,
                            Rejection::WrongState { .. } | Rejection::WrongKind { .. }
                        ),
                        "{state} {event:?}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_cancel_that_lost_the_race_to_finalizing_still_applies_to_the_new_state() {
        // The scheduler moved the experiment to finalizing between the
        // cancel's read and its write: the compare-and-set fails, the cancel
        // reads again and applies to the finalizing record.
        let read = exp(ExperimentKind::Automl, Running);
        let mut scheduler = read.clone();
        apply(&mut scheduler, done(Some(0), 1)).unwrap();
        let mut cancel = scheduler.clone();
        assert_eq!(
            apply(&mut cancel, Event::Cancel).unwrap(),
            vec![Effect::CancelWork, Effect::Finished(Cancelled)]
        );
    }

    #[test]
    fn a_training_result_that_lost_the_race_to_a_cancel_is_refused() {
        let mut e = exp(ExperimentKind::Automl, Finalizing);
        apply(&mut e, Event::Cancel).unwrap();
        let err = apply(&mut e, trained()).unwrap_err();
        assert_eq!(
            err,
            Rejection::WrongState {
                state: Cancelled,
                action: "complete with a model"
            }
        );
        assert_eq!(e.model_version, None);
    }

    #[test]
    fn the_rejection_message_names_the_state_and_the_action() {
        let mut e = exp(ExperimentKind::Automl, Completed);
        let err = apply(&mut e, Event::Cancel).unwrap_err();
        assert_eq!(err.to_string(), "experiment is completed, cannot cancel");
    }
}
