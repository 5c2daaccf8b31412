//! Successive halving (ASHA) and Hyperband pruners: stop trials that fall out
//! of the top `1/eta` at geometrically spaced rungs.
//!
//! Like Optuna's `SuccessiveHalvingPruner`, the pruner is asynchronous: a trial
//! is judged at a rung as soon as it gets there, against whatever trials have
//! reported at that rung before it, so nothing waits for a full rung.
//! Unlike Optuna it keeps no per-trial rung attributes: a rung value is
//! recomputed from the intermediate values alone (see [`rung_value`]), which
//! keeps the pruner a pure function of its inputs like the rest of this crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Report;
use crate::{invalid, Direction, FinishedTrial, Result};

fn one() -> u32 {
    1
}

fn three() -> u32 {
    3
}

/// Asynchronous successive halving (Li et al., "A System for Massively
/// Parallel Hyperparameter Tuning"), `{"type": "asha", ...}`.
///
/// Rung `k` sits at step `min_resource * reduction_factor^(k + min_early_stopping_rate)`
/// (steps are the raw step numbers trials report). A trial that reaches a rung
/// continues only if its value there is within the best `n / reduction_factor`
/// of the `n` trials that reported at that rung, itself included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AshaPrunerConfig {
    /// Step of the first rung when `min_early_stopping_rate` is 0.
    #[serde(default = "one")]
    pub min_resource: u32,
    /// `eta`: rungs are `eta` times further apart each, and `1/eta` of a rung goes on.
    #[serde(default = "three")]
    pub reduction_factor: u32,
    /// `s`: skips the first `s` rungs, i.e. the first rung is at `min_resource * eta^s`.
    #[serde(default)]
    pub min_early_stopping_rate: u32,
    /// Trials, other than the one judged, that must have reported at a rung
    /// before anyone is stopped there.
    #[serde(default)]
    pub bootstrap_count: u32,
}

impl Default for AshaPrunerConfig {
    fn default() -> Self {
        AshaPrunerConfig {
            min_resource: 1,
            reduction_factor: 3,
            min_early_stopping_rate: 0,
            bootstrap_count: 0,
        }
    }
}

/// Hyperband (Li et al., 2018) run asynchronously as Optuna's `HyperbandPruner`
/// does, `{"type": "hyperband", ...}`: brackets `s = 0..=s_max`, with
/// `s_max = floor(log_eta(max_resource / min_resource))`, each an ASHA with
/// `min_early_stopping_rate = s` that compares a trial only with trials of its
/// own bracket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperbandPrunerConfig {
    /// Step of bracket 0's first rung.
    #[serde(default = "one")]
    pub min_resource: u32,
    /// The step a trial that is never stopped ends at. No rung is at or after
    /// it: a trial that got there has spent its whole budget, and stopping it
    /// would only throw its result away. Required, as it sets the brackets.
    pub max_resource: u32,
    /// `eta`, as for ASHA.
    #[serde(default = "three")]
    pub reduction_factor: u32,
}

/// One ASHA rung schedule, shared by both pruners.
#[derive(Debug, Clone, Copy)]
struct Rungs {
    min_resource: u32,
    eta: u32,
    rate: u32,
    bootstrap: u32,
    /// Rungs at or after this step don't stop anyone.
    end: Option<u32>,
}

impl Rungs {
    /// Step of rung `k`, or `None` once it no longer fits a step number.
    fn step(&self, k: u32) -> Option<u32> {
        let power = k.checked_add(self.rate)?;
        let factor = self.eta.max(2).checked_pow(power)?;
        self.min_resource.max(1).checked_mul(factor)
    }

    /// The rung steps a trial can be stopped at, up to `upto` included.
    fn steps_upto(&self, upto: u32) -> impl Iterator<Item = u32> + '_ {
        (0..)
            .map_while(|k| self.step(k))
            .take_while(move |&s| s <= upto && self.end.is_none_or(|e| s < e))
    }

    /// Whether the trial that just reported should stop, against the
    /// finished trials `competes` admits. Only the rungs this report decided
    /// (those whose rung value is the value at the reported step) are judged:
    /// earlier ones were judged at earlier reports, and the trial went on.
    fn should_prune(&self, report: &Report<'_>, competes: impl Fn(&FinishedTrial) -> bool) -> bool {
        let (step, trial) = (report.step, report.trial);
        if !trial.contains_key(&step) {
            return false;
        }
        for rung in self.steps_upto(step) {
            let Some((&at, &value)) = trial.range(rung..).next() else {
                continue;
            };
            if at != step {
                continue;
            }
            if value.is_nan() {
                // Diverged at a rung; Optuna prunes it too.
                return true;
            }
            let others: Vec<f64> = report
                .history
                .iter()
                .filter(|t| competes(t))
                .filter_map(|t| rung_value(&t.intermediate, rung))
                .filter(|v| !v.is_nan())
                .collect();
            if !self.promotes(report.direction, value, others) {
                return true;
            }
        }
        false
    }

    /// Whether `value` is within the best `n / eta` of the `n` values at a rung
    /// (`others` plus itself). Ties favour continuing. With fewer than `eta`
    /// values, or fewer than `bootstrap` others, everyone continues: Optuna
    /// stops all but the best there, but without pause/resume that would cut
    /// most of the first trials of a study on no evidence.
    fn promotes(&self, direction: Direction, value: f64, others: Vec<f64>) -> bool {
        let eta = self.eta.max(2) as usize;
        let n = others.len() + 1;
        if others.len() < self.bootstrap as usize || n < eta {
            return true;
        }
        let mut losses: Vec<f64> = others.into_iter().map(|v| direction.as_loss(v)).collect();
        losses.sort_by(f64::total_cmp);
        let own = direction.as_loss(value);
        // The `k`-th best of all `n` values, counting `own` in: with
        // `others` sorted, that is `others[k - 1]` if `own` is not better, and
        // `own` already qualifies if it is.
        let k = n / eta;
        own <= losses[k - 1]
    }
}

/// A trial's value at the rung at `rung_step`: the value it reported at the
/// first step at or after the rung. That is the value Optuna records when the
/// trial crosses the rung, so a trial that reports every few steps is still
/// judged once per rung, and one that skips a rung step can't slip past it.
/// `None` if the trial never got that far.
pub(crate) fn rung_value(intermediate: &BTreeMap<u32, f64>, rung_step: u32) -> Option<f64> {
    intermediate.range(rung_step..).next().map(|(_, &v)| v)
}

impl AshaPrunerConfig {
    /// Checks every field; call at the edge.
    pub fn validate(&self) -> Result<()> {
        check_common(self.min_resource, self.reduction_factor)?;
        if self.rungs().step(0).is_none() {
            return Err(invalid(format!(
                "pruner.min_early_stopping_rate is too large: the first rung, \
                 min_resource * reduction_factor^{} = {} * {}^{}, is past the largest step",
                self.min_early_stopping_rate,
                self.min_resource,
                self.reduction_factor,
                self.min_early_stopping_rate
            )));
        }
        Ok(())
    }

    fn rungs(&self) -> Rungs {
        Rungs {
            min_resource: self.min_resource,
            eta: self.reduction_factor,
            rate: self.min_early_stopping_rate,
            bootstrap: self.bootstrap_count,
            end: None,
        }
    }

    /// The rung steps up to `upto` included.
    pub fn rung_steps(&self, upto: u32) -> Vec<u32> {
        self.rungs().steps_upto(upto).collect()
    }

    /// Competitors are every finished trial, complete, pruned or failed: a
    /// trial that reached a rung is evidence about it however it ended later.
    /// Only finished trials are passed in, so running ones don't count yet.
    pub(super) fn should_prune(&self, report: &Report<'_>) -> bool {
        self.rungs().should_prune(report, |_| true)
    }
}

impl HyperbandPrunerConfig {
    /// Checks every field; call at the edge.
    pub fn validate(&self) -> Result<()> {
        check_common(self.min_resource, self.reduction_factor)?;
        if self.max_resource <= self.min_resource {
            return Err(invalid(format!(
                "pruner.max_resource must be greater than min_resource (got {} <= {})",
                self.max_resource, self.min_resource
            )));
        }
        Ok(())
    }

    /// `s_max = floor(log_eta(max_resource / min_resource))`, computed in
    /// integers: the largest `s` with `min_resource * eta^s <= max_resource`.
    pub fn max_bracket(&self) -> u32 {
        let (min, max, eta) = (
            u64::from(self.min_resource.max(1)),
            u64::from(self.max_resource),
            u64::from(self.reduction_factor.max(2)),
        );
        let mut s = 0;
        let mut r = min * eta;
        while r <= max {
            s += 1;
            r *= eta;
        }
        s
    }

    /// Optuna's trial allocation budget of bracket `s`:
    /// `ceil(n_brackets * eta^(s_max - s) / (s_max - s + 1))`, so the
    /// aggressive brackets, which stop most of their trials early, get more.
    fn bracket_budget(&self, s: u32) -> u64 {
        let n_brackets = u64::from(self.max_bracket()) + 1;
        let depth = self.max_bracket() - s;
        // eta^depth <= max/min < 2^32 and n_brackets <= 33: no overflow.
        let num = n_brackets * u64::from(self.reduction_factor.max(2)).pow(depth);
        num.div_ceil(u64::from(depth) + 1)
    }

    /// The bracket of trial `number`: a fixed hash of the number (SplitMix64's
    /// finaliser, the same on every platform and release) modulo the total
    /// budget, then bracket `s` takes the next `bracket_budget(s)` slots, as
    /// Optuna does with a CRC32 of study name and number. A hash rather than
    /// round-robin, so the first trials of a study spread over the brackets.
    pub fn bracket_of(&self, number: u64) -> u32 {
        let s_max = self.max_bracket();
        let total: u64 = (0..=s_max).map(|s| self.bracket_budget(s)).sum();
        let mut slot = mix(number) % total;
        for s in 0..=s_max {
            let budget = self.bracket_budget(s);
            if slot < budget {
                return s;
            }
            slot -= budget;
        }
        s_max
    }

    fn rungs(&self, bracket: u32) -> Rungs {
        Rungs {
            min_resource: self.min_resource,
            eta: self.reduction_factor,
            rate: bracket,
            bootstrap: 0,
            end: Some(self.max_resource),
        }
    }

    /// The rung steps of `bracket` a trial can be stopped at (all below `max_resource`).
    pub fn rung_steps(&self, bracket: u32) -> Vec<u32> {
        self.rungs(bracket).steps_upto(u32::MAX).collect()
    }

    /// Trial `number`, in its bracket, against the finished trials of that
    /// bracket. Without the number its bracket is unknown: the trial is
    /// judged as plain ASHA (bracket 0's rungs, below `max_resource`) against
    /// every finished trial rather than against one bracket picked at random.
    pub(super) fn should_prune(&self, report: &Report<'_>) -> bool {
        match report.number {
            Some(number) => {
                let bracket = self.bracket_of(number);
                self.rungs(bracket)
                    .should_prune(report, |t| self.bracket_of(t.number) == bracket)
            }
            None => self.rungs(0).should_prune(report, |_| true),
        }
    }
}

fn check_common(min_resource: u32, reduction_factor: u32) -> Result<()> {
    if min_resource == 0 {
        return Err(invalid("pruner.min_resource must be at least 1 (got 0)"));
    }
    if reduction_factor < 2 {
        return Err(invalid(format!(
            "pruner.reduction_factor must be at least 2 (got {reduction_factor})"
        )));
    }
    Ok(())
}

/// SplitMix64's output function: a bijective, well-mixed hash of a `u64`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
#[path = "asha_tests.rs"]
mod tests;
