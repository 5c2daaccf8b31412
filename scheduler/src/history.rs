//! What the samplers, pruners and stopping rules learn from an experiment's
//! trials: the history (with the determinism bound of AutoML trials), the
//! pending trials and the stop rules. Pure functions of the
//! trials and the spec, shared by the experiment operations, the dispatch
//! loop and the multi-objective code.

use crate::spec::ExperimentSpec;
use chrono::{DateTime, Utc};
use tracseq_core::types::{Experiment, Trial, TrialState};
use tracseq_hpo::FinishedTrial;

/// The trials a sampler or pruner may learn from, as HPO inputs. `below`
/// limits them to numbers under it: AutoML trial `n` sees exactly the
/// trials `0..=n-parallelism`, which are finished before `n` starts, so the
/// same seed gives the same trials however the workers interleave.
pub fn history(trials: &[Trial], below: Option<u64>) -> Vec<FinishedTrial> {
    trials
        .iter()
        .filter(|t| below.is_none_or(|b| t.number < b))
        .filter_map(|t| {
            let state = finished_state(t.state)?;
            Some(FinishedTrial {
                number: t.number,
                params: t.params.clone(),
                state,
                value: t.value,
                intermediate: t.intermediate.clone(),
            })
        })
        .collect()
}

/// A finished trial's state as the samplers see it; `None` while running.
pub(crate) fn finished_state(state: TrialState) -> Option<tracseq_hpo::TrialState> {
    match state {
        TrialState::Running => None,
        TrialState::Complete => Some(tracseq_hpo::TrialState::Complete),
        TrialState::Pruned => Some(tracseq_hpo::TrialState::Pruned),
        TrialState::Failed => Some(tracseq_hpo::TrialState::Failed),
    }
}

/// The deterministic history bound of AutoML trial `number`.
pub fn history_bound(spec: &ExperimentSpec, number: u64) -> u64 {
    (number + 1).saturating_sub(spec.parallelism as u64)
}

/// The history bound an AutoML trial is sampled with: the parallelism rule,
/// raised where the sampler needs more finished trials (a particle swarm's
/// whole previous generation). Still a function of the number alone.
pub fn sampling_bound(
    spec: &ExperimentSpec,
    sampler: &dyn tracseq_hpo::Sampler,
    number: u64,
) -> u64 {
    history_bound(spec, number)
        .max(sampler.required_history(number))
        .min(number)
}

/// Trials `from..to` as pending trials: AutoML trial `to` knows their params
/// (they were sampled before it) but may not use their results, whether
/// they have finished by now or not, so it samples the same way whatever
/// the timing.
pub fn pending_between(trials: &[Trial], from: u64, to: u64) -> Vec<tracseq_hpo::PendingTrial> {
    trials
        .iter()
        .filter(|t| (from..to).contains(&t.number))
        .map(|t| tracseq_hpo::PendingTrial {
            number: t.number,
            params: t.params.clone(),
        })
        .collect()
}

/// The running trials of an ask/tell experiment, as pending trials.
pub fn running_trials(trials: &[Trial]) -> Vec<tracseq_hpo::PendingTrial> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .map(|t| tracseq_hpo::PendingTrial {
            number: t.number,
            params: t.params.clone(),
        })
        .collect()
}

/// Complete trials since the best value last improved: `values` are the
/// complete trials' `(number, value)`, taken in trial-number order (so the
/// answer doesn't depend on the order trials finish or are listed in). Only
/// a strictly better value counts as an improvement; the first complete
/// trial is one. Non-finite values are ignored like failed trials.
pub fn trials_since_improvement(direction: tracseq_hpo::Direction, values: &[(u64, f64)]) -> u64 {
    let mut sorted: Vec<(u64, f64)> = values
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    sorted.sort_by_key(|&(number, _)| number);
    let mut best: Option<f64> = None;
    let mut since = 0;
    for (_, v) in sorted {
        if best.is_none_or(|b| direction.is_better(v, b)) {
            best = Some(v);
            since = 0;
        } else {
            since += 1;
        }
    }
    since
}

/// `Some(N)` when the experiment's `budget.no_improvement_trials` (N) is set
/// and the best value has not improved in the last N complete trials: no new
/// trial may start.
pub fn no_improvement_stop(spec: &ExperimentSpec, trials: &[Trial]) -> Option<u64> {
    let n = spec.budget.no_improvement_trials?;
    let values: Vec<(u64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.value.map(|v| (t.number, v)))
        .collect();
    (trials_since_improvement(spec.direction, &values) >= n).then_some(n)
}

pub fn time_is_up(spec: &ExperimentSpec, exp: &Experiment, now: DateTime<Utc>) -> bool {
    spec.budget
        .seconds
        .is_some_and(|s| (now - exp.created_at).num_seconds() >= s as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trials_since_improvement_counts_complete_trials_after_the_best() {
        use tracseq_hpo::Direction::{Maximize, Minimize};
        assert_eq!(trials_since_improvement(Minimize, &[]), 0);
        assert_eq!(trials_since_improvement(Minimize, &[(0, 1.0)]), 0);
        // Equal values don't improve; order is by trial number, not by slice order.
        let v = [(3, 0.5), (0, 1.0), (1, 0.5), (2, 0.7), (4, f64::NAN)];
        assert_eq!(trials_since_improvement(Minimize, &v), 2);
        assert_eq!(trials_since_improvement(Maximize, &v), 3);
        let v = [(0, 3.0), (1, 2.0), (2, 1.0)];
        assert_eq!(trials_since_improvement(Minimize, &v), 0);
        assert_eq!(trials_since_improvement(Maximize, &v), 2);
    }
}
