//! Pruners: decide from intermediate values whether a running trial should stop early.
//!
//! The study spec's [`PrunerConfig`] and the median pruner are here; the
//! successive-halving (ASHA) and Hyperband pruners are in `asha`.

mod asha;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use asha::{AshaPrunerConfig, HyperbandPrunerConfig};

use crate::{invalid, Direction, FinishedTrial, Result, TrialState};

/// Pruner choice as given in a study spec: `{"type": "none"}`,
/// `{"type": "median", ...}`, `{"type": "asha", ...}` or `{"type": "hyperband", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", from = "PrunerConfigRepr")]
pub enum PrunerConfig {
    /// Never prune.
    #[default]
    None,
    Median(MedianPrunerConfig),
    Asha(AshaPrunerConfig),
    Hyperband(HyperbandPrunerConfig),
}

/// Deserialisation shape of `PrunerConfig`: serde lets a unit variant of an
/// internally tagged enum ignore extra keys, so `none` goes through an empty
/// struct that rejects them like every other config does.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum PrunerConfigRepr {
    None(NoFields),
    Median(MedianPrunerConfig),
    Asha(AshaPrunerConfig),
    Hyperband(HyperbandPrunerConfig),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl From<PrunerConfigRepr> for PrunerConfig {
    fn from(repr: PrunerConfigRepr) -> Self {
        match repr {
            PrunerConfigRepr::None(NoFields {}) => PrunerConfig::None,
            PrunerConfigRepr::Median(m) => PrunerConfig::Median(m),
            PrunerConfigRepr::Asha(a) => PrunerConfig::Asha(a),
            PrunerConfigRepr::Hyperband(h) => PrunerConfig::Hyperband(h),
        }
    }
}

/// Optuna's MedianPruner: stop a trial whose best intermediate value so far
/// is worse than the median of completed trials at the same step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MedianPrunerConfig {
    /// Completed trials that must have reported the step before any pruning at it.
    pub n_startup_trials: u32,
    /// Steps before this one are never pruned (noisy early learning curves).
    pub n_warmup_steps: u32,
    /// Prune only at every `interval_steps`-th step after the warm-up.
    pub interval_steps: u32,
}

impl Default for MedianPrunerConfig {
    fn default() -> Self {
        MedianPrunerConfig {
            n_startup_trials: 5,
            n_warmup_steps: 0,
            interval_steps: 1,
        }
    }
}

impl PrunerConfig {
    /// Checks every field; call at the edge.
    pub fn validate(&self) -> Result<()> {
        match self {
            PrunerConfig::None => Ok(()),
            PrunerConfig::Median(m) if m.interval_steps == 0 => {
                Err(invalid("pruner.interval_steps must be at least 1 (got 0)"))
            }
            PrunerConfig::Median(_) => Ok(()),
            PrunerConfig::Asha(a) => a.validate(),
            PrunerConfig::Hyperband(h) => h.validate(),
        }
    }

    /// Whether the running trial that just reported `step` should stop.
    /// `trial_intermediate` holds its values so far, `step` included.
    ///
    /// Hyperband needs the trial's number to find its bracket; this call
    /// doesn't have it, so Hyperband judges the trial as plain ASHA against
    /// all brackets. Callers that know the number use [`Self::should_prune_trial`].
    pub fn should_prune(
        &self,
        direction: Direction,
        step: u32,
        trial_intermediate: &BTreeMap<u32, f64>,
        history: &[FinishedTrial],
    ) -> bool {
        let report = Report::new(None, direction, step, trial_intermediate, history);
        self.judge(&report)
    }

    /// [`Self::should_prune`] for trial `number`, which Hyperband brackets by;
    /// the other pruners ignore it.
    pub fn should_prune_trial(
        &self,
        number: u64,
        direction: Direction,
        step: u32,
        trial_intermediate: &BTreeMap<u32, f64>,
        history: &[FinishedTrial],
    ) -> bool {
        let report = Report::new(Some(number), direction, step, trial_intermediate, history);
        self.judge(&report)
    }

    /// Both public calls, once their arguments are bundled.
    fn judge(&self, report: &Report<'_>) -> bool {
        match self {
            PrunerConfig::None => false,
            PrunerConfig::Median(m) => m.should_prune(report),
            PrunerConfig::Asha(a) => a.should_prune(report),
            PrunerConfig::Hyperband(h) => h.should_prune(report),
        }
    }
}

/// What every pruner judges a running trial on, bundled so the pruners pass
/// one value on rather than the same four arguments.
#[derive(Debug, Clone, Copy)]
struct Report<'a> {
    /// The trial's number, when the caller knows it (Hyperband brackets by it).
    number: Option<u64>,
    direction: Direction,
    /// The step the trial just reported.
    step: u32,
    /// The trial's values so far, `step` included.
    trial: &'a BTreeMap<u32, f64>,
    /// The finished trials it is compared with.
    history: &'a [FinishedTrial],
}

impl<'a> Report<'a> {
    fn new(
        number: Option<u64>,
        direction: Direction,
        step: u32,
        trial: &'a BTreeMap<u32, f64>,
        history: &'a [FinishedTrial],
    ) -> Self {
        Report {
            number,
            direction,
            step,
            trial,
            history,
        }
    }
}

impl MedianPrunerConfig {
    fn should_prune(&self, report: &Report<'_>) -> bool {
        let Report {
            direction,
            step,
            trial,
            history,
            ..
        } = *report;
        if !trial.contains_key(&step) || step < self.n_warmup_steps {
            return false;
        }
        if !self.is_first_in_interval(step, trial) {
            return false;
        }
        // Best so far rather than the latest value, so a trial isn't cut for
        // one noisy step after a good one.
        let best = trial
            .values()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(|a, b| if direction.is_better(b, a) { b } else { a });
        let Some(best) = best else {
            // Only NaNs reported: the trial is diverging; Optuna prunes it.
            return true;
        };
        let mut at_step: Vec<f64> = history
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| t.intermediate.get(&step).copied())
            .filter(|v| !v.is_nan())
            .collect();
        if at_step.is_empty() || at_step.len() < self.n_startup_trials as usize {
            return false;
        }
        at_step.sort_by(f64::total_cmp);
        let mid = at_step.len() / 2;
        let median = if at_step.len() % 2 == 1 {
            at_step[mid]
        } else {
            0.5 * (at_step[mid - 1] + at_step[mid])
        };
        direction.is_better(median, best)
    }

    /// Optuna's `_is_first_in_interval_step`: `step` is the first reported
    /// step at or after the latest pruning point, so a trial that reports
    /// sparsely is still checked once per interval.
    fn is_first_in_interval(&self, step: u32, reported: &BTreeMap<u32, f64>) -> bool {
        let interval = self.interval_steps.max(1);
        let warmup = self.n_warmup_steps;
        let nearest_lower_pruning_step = (step - warmup) / interval * interval + warmup;
        let previous = reported.keys().copied().filter(|&s| s != step).max();
        previous.is_none_or(|p| p < nearest_lower_pruning_step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn completed(number: u64, curve: &[(u32, f64)]) -> FinishedTrial {
        FinishedTrial {
            number,
            params: Default::default(),
            state: TrialState::Complete,
            value: curve.last().map(|(_, v)| *v),
            intermediate: Arc::new(curve.iter().copied().collect()),
        }
    }

    /// Five completed trials with values 1..=5 at steps 0..10; median 3.
    fn history() -> Vec<FinishedTrial> {
        (1..=5)
            .map(|v| completed(v, &(0..10).map(|s| (s, v as f64)).collect::<Vec<_>>()))
            .collect()
    }

    fn median(n_startup_trials: u32, n_warmup_steps: u32, interval_steps: u32) -> PrunerConfig {
        PrunerConfig::Median(MedianPrunerConfig {
            n_startup_trials,
            n_warmup_steps,
            interval_steps,
        })
    }

    fn curve(values: &[(u32, f64)]) -> BTreeMap<u32, f64> {
        values.iter().copied().collect()
    }

    #[test]
    fn prunes_worse_than_median_per_direction() {
        let p = median(5, 0, 1);
        let h = history();
        let flat = |v: f64| curve(&[(0, v), (1, v), (2, v)]);
        // (direction, the trial's curve up to step 2, pruned at step 2?)
        let cases = [
            (Direction::Minimize, flat(4.0), true),
            (Direction::Minimize, flat(2.0), false),
            (Direction::Maximize, flat(4.0), false),
            (Direction::Maximize, flat(2.0), true),
            // The best value so far counts, not the latest.
            (
                Direction::Minimize,
                curve(&[(0, 1.0), (1, 4.0), (2, 4.0)]),
                false,
            ),
        ];
        for (direction, trial, pruned) in cases {
            let got = p.should_prune(direction, 2, &trial, &h);
            assert_eq!(got, pruned, "{direction}: {trial:?}");
        }
        // Equal to the median is not worse.
        assert!(!p.should_prune(Direction::Minimize, 0, &curve(&[(0, 3.0)]), &h));
        assert!(!PrunerConfig::None.should_prune(Direction::Minimize, 2, &curve(&[(2, 99.0)]), &h));
    }

    #[test]
    fn even_count_median_interpolates() {
        let h: Vec<FinishedTrial> = [1.0, 2.0, 4.0, 10.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| completed(i as u64, &[(0, v)]))
            .collect();
        let p = median(1, 0, 1);
        assert!(p.should_prune(Direction::Minimize, 0, &curve(&[(0, 3.1)]), &h));
        assert!(!p.should_prune(Direction::Minimize, 0, &curve(&[(0, 2.9)]), &h));
    }

    #[test]
    fn warmup_steps_are_never_pruned() {
        let p = median(5, 3, 1);
        let h = history();
        let bad = |upto: u32| curve(&(0..=upto).map(|s| (s, 100.0)).collect::<Vec<_>>());
        assert!(!p.should_prune(Direction::Minimize, 2, &bad(2), &h));
        assert!(p.should_prune(Direction::Minimize, 3, &bad(3), &h));
    }

    #[test]
    fn needs_enough_completed_trials_at_the_step() {
        let mut h = history();
        let p = median(5, 0, 1);
        let bad = curve(&[(0, 100.0), (1, 100.0)]);
        assert!(p.should_prune(Direction::Minimize, 1, &bad, &h));
        // Only completed trials count; a failed or pruned one doesn't.
        h[0].state = TrialState::Pruned;
        assert!(!p.should_prune(Direction::Minimize, 1, &bad, &h));
        h[0].state = TrialState::Complete;
        // A trial that never reported this step doesn't count either.
        Arc::make_mut(&mut h[1].intermediate).remove(&1);
        assert!(!p.should_prune(Direction::Minimize, 1, &bad, &h));
        let bad_first = curve(&[(0, 100.0)]);
        assert!(p.should_prune(Direction::Minimize, 0, &bad_first, &h));
        assert!(!median(0, 0, 1).should_prune(Direction::Minimize, 0, &bad_first, &[]));
    }

    #[test]
    fn only_first_step_of_each_interval_is_checked() {
        let p = median(5, 2, 3); // pruning points 2, 5, 8, ...
        let h = history();
        let bad = |steps: &[u32]| curve(&steps.iter().map(|&s| (s, 100.0)).collect::<Vec<_>>());
        assert!(p.should_prune(Direction::Minimize, 2, &bad(&[0, 1, 2]), &h));
        assert!(!p.should_prune(Direction::Minimize, 3, &bad(&[0, 1, 2, 3]), &h));
        assert!(!p.should_prune(Direction::Minimize, 4, &bad(&[0, 1, 2, 3, 4]), &h));
        assert!(p.should_prune(Direction::Minimize, 5, &bad(&[0, 1, 2, 3, 4, 5]), &h));
        // Reporting sparsely: 6 is the first report since the pruning point 5.
        assert!(p.should_prune(Direction::Minimize, 6, &bad(&[0, 4, 6]), &h));
        // Step not reported, or a NaN-only trial.
        assert!(!p.should_prune(Direction::Minimize, 5, &bad(&[0, 1, 2]), &h));
        assert!(p.should_prune(Direction::Minimize, 2, &curve(&[(2, f64::NAN)]), &h));
    }

    #[test]
    fn config_parses_validates_and_rejects_unknown_fields() {
        let p: PrunerConfig = serde_json::from_value(json!({"type": "median"})).unwrap();
        assert_eq!(p, PrunerConfig::Median(MedianPrunerConfig::default()));
        let p: PrunerConfig = serde_json::from_value(json!({"type": "none"})).unwrap();
        assert_eq!(p, PrunerConfig::None);
        let p: PrunerConfig =
            serde_json::from_value(json!({"type": "median", "n_warmup_steps": 4})).unwrap();
        p.validate().unwrap();
        assert!(
            serde_json::from_value::<PrunerConfig>(json!({"type": "median", "warmup": 4})).is_err()
        );
        assert!(serde_json::from_value::<PrunerConfig>(json!({"type": "successive"})).is_err());
        assert!(serde_json::from_value::<PrunerConfig>(json!({"type": "none", "n": 1})).is_err());
        assert_eq!(
            serde_json::to_value(PrunerConfig::None).unwrap(),
            json!({"type": "none"})
        );
        let err = median(5, 0, 0).validate().unwrap_err().to_string();
        assert!(err.contains("interval_steps"), "{err}");
        // An unvalidated zero interval still can't divide by zero.
        assert!(!median(0, 0, 0).should_prune(
            Direction::Minimize,
            1,
            &curve(&[(1, 1.0)]),
            &history()
        ));
        let back: PrunerConfig = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
