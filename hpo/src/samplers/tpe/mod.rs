//! Tree-structured Parzen Estimator sampler (Optuna-style): multivariate over groups of parameters active together, or independent per parameter, with a constant liar for pending trials.
//!
//! Finished trials are ranked and split into a small "below" (good) group and
//! the "above" rest. With `constant_liar`, trials asked but not finished join
//! the rest as if they were the worst, so the next ask avoids their region.
//! Multivariate (the default): for each group of parameters that are active
//! together, a joint Parzen estimator l(x) is fit to the good trials where
//! the group is active and g(x) to the rest, `n_ei_candidates` whole points
//! are drawn from l and the one maximising ln l(x) − ln g(x) (the expected-
//! improvement criterion of Bergstra et al.) is suggested. Independent: the
//! same per parameter, with Optuna's univariate estimators.

mod parzen;
mod parzen_joint;

use std::cmp::Ordering;
use std::collections::HashSet;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use parzen::{capped_weights, observation_weights, CategoricalMixture, TruncNormMixture};
use parzen_joint::{DimSpec, JointParzen};

use super::random::{sample_all_except, sample_one};
use super::{check_count, Ask, AskSampler};
use crate::rng::trial_rng;
use crate::space::{ParamKind, ParamSpec};
use crate::{invalid, Direction, FinishedTrial, Params, PendingTrial, Result, TrialState};

/// Most trials in the good group, whatever `gamma` says (Optuna's cap).
const MAX_BELOW: usize = 25;

/// Most observations an "above" estimator keeps; past it they are
/// subsampled by weight (`capped_weights`). Every candidate is scored
/// against every component of g, so without a cap an ask costs time linear
/// in the study's size (Optuna's complaint: 70 asks/s fall to 8 after 1,000
/// trials). A kernel density from a thousand draws of the same mixture
/// differs from the full one far less than g's own estimation error, and
/// studies below the cap are modelled exactly.
pub(crate) const MAX_ABOVE: usize = 1000;

/// Most EI candidates per parameter: each costs a pass over all observations.
pub const MAX_EI_CANDIDATES: u32 = 10_000;

/// `{"type": "tpe", "seed": 0, "n_startup_trials": 10, "n_ei_candidates": 24, "gamma": 0.1,
/// "prior_weight": 1.0, "multivariate": true, "constant_liar": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpeSamplerConfig {
    pub seed: u64,
    /// Trials sampled at random before TPE takes over.
    pub n_startup_trials: u64,
    /// Candidates drawn from l(x) (per parameter, or per group when
    /// multivariate); the best l/g ratio wins.
    pub n_ei_candidates: u32,
    /// Fraction of trials (capped at 25) that form the "good" group.
    pub gamma: f64,
    /// Weight of the prior component in each Parzen estimator.
    pub prior_weight: f64,
    /// One joint density per group of parameters that are active together
    /// (Optuna's `multivariate=True, group=True`), so correlated parameters
    /// are learnt together; `false` fits one density per parameter.
    pub multivariate: bool,
    /// Pending trials (asked, not finished) count as the worst trials, so
    /// parallel asks spread out instead of piling onto one region (Optuna's
    /// `constant_liar`).
    pub constant_liar: bool,
}

impl Default for TpeSamplerConfig {
    fn default() -> Self {
        TpeSamplerConfig {
            seed: 0,
            n_startup_trials: 10,
            n_ei_candidates: 24,
            gamma: 0.1,
            prior_weight: 1.0,
            multivariate: true,
            constant_liar: true,
        }
    }
}

impl TpeSamplerConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return Err(invalid(format!(
                "sampler.gamma must be in (0, 1] (got {})",
                self.gamma
            )));
        }
        if !(self.prior_weight.is_finite() && self.prior_weight > 0.0) {
            return Err(invalid(format!(
                "sampler.prior_weight must be a positive finite number (got {})",
                self.prior_weight
            )));
        }
        check_count(
            "n_ei_candidates",
            self.n_ei_candidates,
            1..=MAX_EI_CANDIDATES,
        )
    }
}

/// TPE sampler; random for the first `n_startup_trials` trials.
#[derive(Debug, Clone, PartialEq)]
pub struct TpeSampler {
    config: TpeSamplerConfig,
}

impl TpeSampler {
    pub fn new(config: TpeSamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(TpeSampler { config })
    }

    /// Builds from a config that may not have been validated, replacing
    /// out-of-range settings with safe ones instead of failing or panicking.
    pub(crate) fn new_clamped(mut config: TpeSamplerConfig) -> Self {
        let defaults = TpeSamplerConfig::default();
        if !(config.gamma > 0.0 && config.gamma <= 1.0) {
            config.gamma = defaults.gamma;
        }
        if !(config.prior_weight.is_finite() && config.prior_weight > 0.0) {
            config.prior_weight = defaults.prior_weight;
        }
        config.n_ei_candidates = config.n_ei_candidates.clamp(1, MAX_EI_CANDIDATES);
        TpeSampler { config }
    }

    pub fn config(&self) -> &TpeSamplerConfig {
        &self.config
    }

    /// Every active parameter: those named in `fixed` take its values, the
    /// others are sampled. The argmin-backed samplers fix their continuous
    /// subspace this way and let TPE choose the rest. Same determinism as
    /// `Sampler::sample`.
    pub(crate) fn sample_except(&self, ask: &Ask<'_>, fixed: &Params) -> Params {
        let space = ask.space;
        let mut rng = trial_rng(self.config.seed, ask.trial_number);
        let (below, above) = split_trials(ask.history, ask.direction, self.config.gamma);
        if ((below.len() + above.len()) as u64) < self.config.n_startup_trials {
            return sample_all_except(space, &mut rng, fixed);
        }
        let below: Vec<&Params> = below.iter().map(|t| &*t.params).collect();
        let above = self.above_rows(above, ask.history, ask.pending);

        let groups = if self.config.multivariate {
            space.activation_groups()
        } else {
            (0..space.len()).map(|i| vec![i]).collect()
        };
        let mut group_of = vec![0; space.len()];
        for (g, members) in groups.iter().enumerate() {
            for &i in members {
                group_of[i] = g;
            }
        }
        let mut params = Params::new();
        let mut done = vec![false; groups.len()];
        for (i, &g) in group_of.iter().enumerate() {
            // A group's members share their activity, and its first member
            // (in topological order) is reached first: it decides for all.
            if done[g] {
                continue;
            }
            done[g] = true;
            if !space.is_active_at(i, &params) {
                continue;
            }
            let mut free = Vec::with_capacity(groups[g].len());
            for &m in &groups[g] {
                let spec = &space.params()[m];
                match fixed.get(spec.name()) {
                    Some(v) => {
                        params.insert(spec.name().to_string(), v.clone());
                    }
                    None => free.push(spec),
                }
            }
            if free.is_empty() {
                continue;
            }
            if self.config.multivariate {
                self.sample_group(&free, &below, &above, &mut rng, &mut params);
            } else {
                let value = self.sample_param(free[0], &below, &above, &mut rng);
                params.insert(free[0].name().to_string(), value);
            }
        }
        params
    }

    /// The "above" rows in trial order: the finished rest and, with the
    /// constant liar, the pending trials (as the worst, they always belong
    /// here). A pending trial that also appears finished counts as finished.
    fn above_rows<'a>(
        &self,
        above: Vec<&'a FinishedTrial>,
        history: &'a [FinishedTrial],
        pending: &'a [PendingTrial],
    ) -> Vec<&'a Params> {
        if !self.config.constant_liar || pending.is_empty() {
            return above.iter().map(|t| &*t.params).collect();
        }
        let finished: HashSet<u64> = history.iter().map(|t| t.number).collect();
        let mut liars: Vec<&PendingTrial> = pending
            .iter()
            .filter(|p| !finished.contains(&p.number))
            .collect();
        liars.sort_by_key(|p| p.number);
        liars.dedup_by_key(|p| p.number);
        // Both lists are in trial order: merge them.
        let mut rows = Vec::with_capacity(above.len() + liars.len());
        let mut liars = liars.into_iter().peekable();
        for t in above {
            while let Some(p) = liars.next_if(|p| p.number < t.number) {
                rows.push(&*p.params);
            }
            rows.push(&*t.params);
        }
        rows.extend(liars.map(|p| &*p.params));
        rows
    }

    /// One joint draw for a group's free members (multivariate mode).
    fn sample_group<R: Rng + ?Sized>(
        &self,
        members: &[&ParamSpec],
        below: &[&Params],
        above: &[&Params],
        rng: &mut R,
        params: &mut Params,
    ) {
        let (below_cols, below_w) = observations(below, members, usize::MAX, rng);
        let (above_cols, above_w) = observations(above, members, MAX_ABOVE, rng);
        if below_w.is_empty() && above_w.is_empty() {
            // Nothing known (e.g. a branch never taken yet): uniform is the honest guess.
            for m in members {
                params.insert(m.name().to_string(), sample_one(m, rng));
            }
            return;
        }
        let dims: Vec<DimSpec> = members.iter().map(|m| dim_spec(m)).collect();
        let prior_weight = self.config.prior_weight;
        let mut l = JointParzen::new(&dims, below_cols, &below_w, prior_weight);
        let mut g = JointParzen::new(&dims, above_cols, &above_w, prior_weight);
        let d = members.len();
        let n_candidates = self.config.n_ei_candidates as usize;
        let mut candidates = Vec::with_capacity(n_candidates * d);
        let mut x = Vec::with_capacity(d);
        for _ in 0..n_candidates {
            l.sample(rng, &mut x);
            candidates.extend_from_slice(&x);
        }
        let mut terms = Vec::new();
        let scores = score_unique_points(&candidates, d, |c| {
            l.log_pdf(c, &mut terms) - g.log_pdf(c, &mut terms)
        });
        let best = first_argmax(&scores) * d;
        for (m, &v) in members.iter().zip(&candidates[best..best + d]) {
            params.insert(m.name().to_string(), m.internal_to_value(v));
        }
    }

    /// One parameter's draw (independent mode).
    fn sample_param<R: Rng + ?Sized>(
        &self,
        spec: &ParamSpec,
        below: &[&Params],
        above: &[&Params],
        rng: &mut R,
    ) -> Value {
        // Only trials in which the parameter was active (and whose value still
        // fits the space) inform its estimators, as in Optuna's independent TPE.
        let (mut below_cols, below_w) = observations(below, &[spec], usize::MAX, rng);
        let (mut above_cols, above_w) = observations(above, &[spec], MAX_ABOVE, rng);
        if below_w.is_empty() && above_w.is_empty() {
            return sample_one(spec, rng);
        }
        let (below_obs, above_obs) = (below_cols.remove(0), above_cols.remove(0));
        let n_candidates = self.config.n_ei_candidates as usize;
        let prior_weight = self.config.prior_weight;
        if let ParamKind::Categorical { choices } = spec.kind() {
            // Internal values of a categorical are choice indices.
            let to_idx = |v: &[f64]| -> Vec<usize> { v.iter().map(|&x| x as usize).collect() };
            let n = choices.len();
            let l =
                CategoricalMixture::new_weighted(&to_idx(&below_obs), &below_w, n, prior_weight);
            let g =
                CategoricalMixture::new_weighted(&to_idx(&above_obs), &above_w, n, prior_weight);
            let candidates: Vec<usize> = (0..n_candidates).map(|_| l.sample(rng)).collect();
            let scores: Vec<f64> = candidates
                .iter()
                .map(|&c| l.log_prob(c) - g.log_prob(c))
                .collect();
            return choices[candidates[first_argmax(&scores)]].clone();
        }
        let Some((low, high, step)) = spec.internal_bounds() else {
            // Every non-categorical kind has numeric bounds.
            return sample_one(spec, rng);
        };
        let l = TruncNormMixture::new_weighted(&below_obs, &below_w, low, high, step, prior_weight);
        let g = TruncNormMixture::new_weighted(&above_obs, &above_w, low, high, step, prior_weight);
        let candidates: Vec<f64> = (0..n_candidates).map(|_| l.sample(rng)).collect();
        let mut scratch = Vec::with_capacity(l.len().max(g.len()));
        let scores = score_unique_points(&candidates, 1, |x| {
            l.log_pdf(x[0], &mut scratch) - g.log_pdf(x[0], &mut scratch)
        });
        spec.internal_to_value(candidates[first_argmax(&scores)])
    }
}

impl AskSampler for TpeSampler {
    fn ask(&self, ask: &Ask<'_>) -> Params {
        self.sample_except(ask, &Params::new())
    }
}

fn dim_spec(spec: &ParamSpec) -> DimSpec {
    match (spec.kind(), spec.internal_bounds()) {
        (ParamKind::Categorical { choices }, _) => DimSpec::Categorical {
            n_choices: choices.len(),
        },
        (_, Some((low, high, step))) => DimSpec::Numeric { low, high, step },
        // Numeric kinds always have bounds; a degenerate point keeps this total.
        (_, None) => DimSpec::Numeric {
            low: 0.0,
            high: 0.0,
            step: None,
        },
    }
}

/// The rows' internal values of `members` as columns (`columns[j][i]`),
/// with each row's mixture weight. A row counts only when every member is
/// present with a value that fits the space (history from an older space
/// is not learnt from). Past `cap` rows where the first member is present,
/// a weighted subsample of them is parsed instead (see `MAX_ABOVE`); the
/// presence test is a map lookup, parsing the values the costly part.
fn observations<R: Rng + ?Sized>(
    rows: &[&Params],
    members: &[&ParamSpec],
    cap: usize,
    rng: &mut R,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut cols: Vec<Vec<f64>> = vec![Vec::new(); members.len()];
    let mut row = Vec::with_capacity(members.len());
    let mut push = |p: &Params, cols: &mut Vec<Vec<f64>>| -> bool {
        row.clear();
        for m in members {
            match p.get(m.name()).and_then(|v| m.to_internal(v)) {
                Some(x) => row.push(x),
                None => return false,
            }
        }
        cols.iter_mut().zip(&row).for_each(|(c, &x)| c.push(x));
        true
    };
    let first = members[0].name();
    let present: Vec<&Params> = rows
        .iter()
        .copied()
        .filter(|p| p.contains_key(first))
        .collect();
    if present.len() <= cap {
        for p in present {
            push(p, &mut cols);
        }
        let weights = observation_weights(cols[0].len());
        return (cols, weights);
    }
    let mut weights = Vec::with_capacity(cap);
    for (i, w) in capped_weights(present.len(), cap, rng) {
        if push(present[i], &mut cols) {
            weights.push(w);
        }
    }
    (cols, weights)
}

/// Optuna's `default_gamma` with a configurable fraction: ⌈γ·n⌉ capped at 25.
fn n_below(gamma: f64, n: usize) -> usize {
    ((gamma * n as f64).ceil() as usize).min(MAX_BELOW).min(n)
}

/// Ranking key of a usable trial; smaller is better in each position.
/// Complete trials by value; then pruned trials, those that got further
/// first, ties by their last intermediate value (as in Optuna, pruned trials
/// reach the good group only when too few trials completed). Failed trials
/// and complete ones without a value are unusable.
fn rank_key(t: &FinishedTrial, direction: Direction) -> Option<(u8, f64, f64)> {
    // `+ 0.0` folds -0.0 into 0.0 so total_cmp sees them as equal.
    match t.state {
        TrialState::Complete => t
            .value
            .filter(|v| !v.is_nan())
            .map(|v| (0, direction.as_loss(v) + 0.0, 0.0)),
        TrialState::Pruned => Some(match t.intermediate.last_key_value() {
            Some((&step, &v)) => {
                let loss = if v.is_nan() {
                    f64::INFINITY
                } else {
                    direction.as_loss(v) + 0.0
                };
                (1, -f64::from(step), loss)
            }
            None => (2, 0.0, 0.0),
        }),
        TrialState::Failed => None,
    }
}

type Ranked<'a> = ((u8, f64, f64), &'a FinishedTrial);

/// Total order on ranked trials; the trial number breaks ties so the order of
/// `history` never matters.
fn cmp_ranked(a: &Ranked<'_>, b: &Ranked<'_>) -> Ordering {
    let ((ga, pa, sa), ta) = a;
    let ((gb, pb, sb), tb) = b;
    ga.cmp(gb)
        .then(pa.total_cmp(pb))
        .then(sa.total_cmp(sb))
        .then(ta.number.cmp(&tb.number))
}

/// Splits the usable trials into the best ⌈γ·n⌉ (at most 25) and the rest,
/// each in trial order, which drives the recency weights.
fn split_trials<'a>(
    history: &'a [FinishedTrial],
    direction: Direction,
    gamma: f64,
) -> (Vec<&'a FinishedTrial>, Vec<&'a FinishedTrial>) {
    let mut ranked: Vec<Ranked<'a>> = history
        .iter()
        .filter_map(|t| rank_key(t, direction).map(|k| (k, t)))
        .collect();
    let n_below = n_below(gamma, ranked.len());
    // Only membership of the good group matters, and selecting it is linear
    // where a full sort of a thousand trials was a visible share of an ask.
    if n_below < ranked.len() {
        ranked.select_nth_unstable_by(n_below, cmp_ranked);
    }
    let in_trial_order = |group: &mut [Ranked<'a>]| -> Vec<&'a FinishedTrial> {
        group.sort_unstable_by(|a, b| a.1.number.cmp(&b.1.number).then_with(|| cmp_ranked(a, b)));
        group.iter().map(|(_, t)| *t).collect()
    };
    let (below, above) = ranked.split_at_mut(n_below);
    (in_trial_order(below), in_trial_order(above))
}

/// Scores every candidate point (`dim` values each, laid end to end),
/// evaluating each distinct point once: on grids and categoricals most draws
/// repeat, and each evaluation is a pass over all observations.
fn score_unique_points(
    candidates: &[f64],
    dim: usize,
    mut score: impl FnMut(&[f64]) -> f64,
) -> Vec<f64> {
    let point = |i: usize| &candidates[i * dim..(i + 1) * dim];
    let cmp = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    };
    let n = candidates.len().checked_div(dim).unwrap_or(0);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(point(a), point(b)));
    let mut scores = vec![f64::NEG_INFINITY; n];
    let mut prev: Option<(usize, f64)> = None;
    for i in order {
        let s = match prev {
            Some((p, ps)) if cmp(point(p), point(i)) == Ordering::Equal => ps,
            _ => score(point(i)),
        };
        scores[i] = s;
        prev = Some((i, s));
    }
    scores
}

/// Index of the first maximum (NaN never wins), so ties go to the earliest draw.
fn first_argmax(scores: &[f64]) -> usize {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for (i, &s) in scores.iter().enumerate() {
        if s > best_score {
            best = i;
            best_score = s;
        }
    }
    best
}

#[cfg(test)]
#[path = "tpe_tests.rs"]
mod tests;
