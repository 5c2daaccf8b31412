//! Tree-structured Parzen Estimator sampler (Optuna-style, independent per parameter).
//!
//! Finished trials are ranked and split into a small "below" (good) group and
//! the "above" rest; for each active parameter a Parzen estimator l(x) is fit
//! to the good trials' values and g(x) to the rest, `n_ei_candidates` values
//! are drawn from l, and the one maximising ln l(x) − ln g(x) (the expected-
//! improvement criterion of Bergstra et al.) is suggested.

use std::cmp::Ordering;

use rand::Rng;
use serde_json::Value;

use super::parzen::{CategoricalMixture, TruncNormMixture};
use super::random::{sample_all, sample_one};
use super::sampler::{trial_rng, MAX_EI_CANDIDATES};
use super::{
    Direction, FinishedTrial, ParamKind, ParamSpec, Params, Result, Sampler, SearchSpace,
    TpeSamplerConfig, TrialState,
};

/// Most trials in the good group, whatever `gamma` says (Optuna's cap).
const MAX_BELOW: usize = 25;

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

    fn sample_param<R: Rng + ?Sized>(
        &self,
        spec: &ParamSpec,
        below: &[&FinishedTrial],
        above: &[&FinishedTrial],
        rng: &mut R,
        scratch: &mut Vec<f64>,
    ) -> Value {
        // Only trials in which the parameter was active (and whose value still
        // fits the space) inform its estimators, as in Optuna's independent TPE.
        let observed = |group: &[&FinishedTrial]| -> Vec<f64> {
            group
                .iter()
                .filter_map(|t| t.params.get(spec.name()))
                .filter_map(|v| spec.to_internal(v))
                .collect()
        };
        let below_obs = observed(below);
        let above_obs = observed(above);
        if below_obs.is_empty() && above_obs.is_empty() {
            // Nothing known (e.g. a branch never taken yet): uniform is the honest guess.
            return sample_one(spec, rng);
        }
        let n_candidates = self.config.n_ei_candidates as usize;
        let prior_weight = self.config.prior_weight;
        if let ParamKind::Categorical { choices } = spec.kind() {
            // Internal values of a categorical are choice indices.
            let to_idx = |v: &[f64]| -> Vec<usize> { v.iter().map(|&x| x as usize).collect() };
            let l = CategoricalMixture::new(&to_idx(&below_obs), choices.len(), prior_weight);
            let g = CategoricalMixture::new(&to_idx(&above_obs), choices.len(), prior_weight);
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
        let l = TruncNormMixture::new(&below_obs, low, high, step, prior_weight);
        let g = TruncNormMixture::new(&above_obs, low, high, step, prior_weight);
        let candidates: Vec<f64> = (0..n_candidates).map(|_| l.sample(rng)).collect();
        let scores = score_unique(&candidates, |x| {
            l.log_pdf(x, scratch) - g.log_pdf(x, scratch)
        });
        spec.internal_to_value(candidates[first_argmax(&scores)])
    }
}

impl Sampler for TpeSampler {
    fn sample(
        &self,
        space: &SearchSpace,
        history: &[FinishedTrial],
        direction: Direction,
        trial_number: u64,
    ) -> Params {
        let mut rng = trial_rng(self.config.seed, trial_number);
        let (below, above) = split_trials(history, direction, self.config.gamma);
        if ((below.len() + above.len()) as u64) < self.config.n_startup_trials {
            return sample_all(space, &mut rng);
        }

        let mut params = Params::new();
        let mut scratch = Vec::with_capacity(history.len() + 1);
        for (i, spec) in space.params().iter().enumerate() {
            // Parents come first, so activity is decided by values already drawn.
            if space.is_active_at(i, &params) {
                let value = self.sample_param(spec, &below, &above, &mut rng, &mut scratch);
                params.insert(spec.name().to_string(), value);
            }
        }
        params
    }
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

/// Scores every candidate, evaluating each distinct value once: on a grid
/// most of the draws repeat, and each evaluation is a pass over all observations.
fn score_unique(candidates: &[f64], mut score: impl FnMut(f64) -> f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| candidates[a].total_cmp(&candidates[b]));
    let mut scores = vec![f64::NEG_INFINITY; candidates.len()];
    let mut prev: Option<(f64, f64)> = None;
    for i in order {
        let x = candidates[i];
        let s = match prev {
            Some((px, ps)) if px.total_cmp(&x) == Ordering::Equal => ps,
            _ => score(x),
        };
        scores[i] = s;
        prev = Some((x, s));
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
mod tests {
    use super::*;
    use crate::hpo::RandomSampler;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn space() -> SearchSpace {
        SearchSpace::from_json(&json!({
            "family": {"type": "categorical", "choices": ["linear", "gbm"]},
            "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
            "gbm_iterations": {"type": "int", "low": 50, "high": 400, "step": 50, "when": {"family": ["gbm"]}},
            "depth": {"type": "int", "low": 1, "high": 64, "log": true},
            "x": {"type": "float", "low": -5, "high": 5},
            "frac": {"type": "float", "low": 0, "high": 1, "step": 0.05}
        }))
        .unwrap()
    }

    fn objective(p: &Params) -> f64 {
        let x = p["x"].as_f64().unwrap();
        x * x + p["frac"].as_f64().unwrap()
    }

    fn history(n: u64) -> Vec<FinishedTrial> {
        let space = space();
        let random = RandomSampler::new(99);
        (0..n)
            .map(|i| {
                let params = random.sample(&space, &[], Direction::Minimize, i);
                let (state, value) = match i % 7 {
                    5 => (TrialState::Failed, None),
                    6 => (TrialState::Pruned, None),
                    _ => (TrialState::Complete, Some(objective(&params))),
                };
                let intermediate = if state == TrialState::Pruned {
                    BTreeMap::from([(1, objective(&params) + 1.0)])
                } else {
                    BTreeMap::new()
                };
                FinishedTrial {
                    number: i,
                    params,
                    state,
                    value,
                    intermediate,
                }
            })
            .collect()
    }

    fn tpe(seed: u64) -> TpeSampler {
        TpeSampler::new(TpeSamplerConfig {
            seed,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn deterministic_per_seed_and_number_whatever_the_history_order() {
        let space = space();
        let hist = history(80);
        let mut shuffled = hist.clone();
        shuffled.reverse();
        shuffled.swap(3, 40);
        let a = tpe(5);
        for n in [80, 81, 200] {
            let p = a.sample(&space, &hist, Direction::Minimize, n);
            space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            assert_eq!(p, tpe(5).sample(&space, &shuffled, Direction::Minimize, n));
        }
        let differs = (80..90).any(|n| {
            a.sample(&space, &hist, Direction::Minimize, n)
                != tpe(6).sample(&space, &hist, Direction::Minimize, n)
        });
        assert!(differs);
    }

    #[test]
    fn startup_trials_are_random_draws() {
        let space = space();
        let hist = history(12); // 12 trials, 1 failed: 11 usable
        let cfg = TpeSamplerConfig {
            seed: 4,
            n_startup_trials: 12,
            ..Default::default()
        };
        let p = TpeSampler::new(cfg)
            .unwrap()
            .sample(&space, &hist, Direction::Minimize, 12);
        assert_eq!(
            p,
            RandomSampler::new(4).sample(&space, &[], Direction::Minimize, 12)
        );
    }

    #[test]
    fn suggestions_are_valid_across_many_asks() {
        let space = space();
        let hist = history(150);
        let s = tpe(1);
        for n in 150..200 {
            for dir in [Direction::Minimize, Direction::Maximize] {
                let p = s.sample(&space, &hist, dir, n);
                space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            }
        }
    }

    #[test]
    fn concentrates_near_the_good_region() {
        // Good trials all have x near 2; suggestions should follow.
        let space =
            SearchSpace::from_json(&json!({"x": {"type": "float", "low": -10, "high": 10}}))
                .unwrap();
        let hist: Vec<FinishedTrial> = (0..100)
            .map(|i| {
                let x = -10.0 + 20.0 * ((i * 37) % 100) as f64 / 99.0;
                let mut params = Params::new();
                params.insert("x".into(), json!(x));
                FinishedTrial {
                    number: i,
                    params,
                    state: TrialState::Complete,
                    value: Some((x - 2.0).abs()),
                    intermediate: BTreeMap::new(),
                }
            })
            .collect();
        let s = tpe(0);
        let near = (100..150)
            .filter(|&n| {
                (s.sample(&space, &hist, Direction::Minimize, n)["x"]
                    .as_f64()
                    .unwrap()
                    - 2.0)
                    .abs()
                    < 2.0
            })
            .count();
        assert!(near >= 40, "{near}/50");
        // Maximising flips which end is good.
        let far = (100..150)
            .filter(|&n| {
                (s.sample(&space, &hist, Direction::Maximize, n)["x"]
                    .as_f64()
                    .unwrap()
                    - 2.0)
                    .abs()
                    > 8.0
            })
            .count();
        assert!(far >= 40, "{far}/50");
    }

    #[test]
    fn ranking_follows_optuna() {
        let t = |number, state, value: Option<f64>, inter: &[(u32, f64)]| FinishedTrial {
            number,
            params: Params::new(),
            state,
            value,
            intermediate: inter.iter().copied().collect(),
        };
        let hist = vec![
            t(0, TrialState::Complete, Some(3.0), &[]),
            t(1, TrialState::Pruned, None, &[(1, 0.1)]),
            t(2, TrialState::Pruned, None, &[(1, 0.5), (3, 9.0)]),
            t(3, TrialState::Failed, None, &[]),
            t(4, TrialState::Complete, Some(1.0), &[]),
            t(5, TrialState::Complete, None, &[]),
            t(6, TrialState::Complete, Some(f64::NAN), &[]),
            t(7, TrialState::Pruned, None, &[]),
            t(8, TrialState::Complete, Some(1.0), &[]),
        ];
        let ranked = |d| {
            let mut r: Vec<Ranked<'_>> = hist
                .iter()
                .filter_map(|t| rank_key(t, d).map(|k| (k, t)))
                .collect();
            r.sort_by(cmp_ranked);
            r.iter().map(|(_, t)| t.number).collect::<Vec<_>>()
        };
        assert_eq!(ranked(Direction::Minimize), [4, 8, 0, 2, 1, 7]);
        assert_eq!(ranked(Direction::Maximize), [0, 4, 8, 2, 1, 7]);
        let numbers = |(b, a): (Vec<&FinishedTrial>, Vec<&FinishedTrial>)| {
            let n = |g: Vec<&FinishedTrial>| g.iter().map(|t| t.number).collect::<Vec<_>>();
            (n(b), n(a))
        };
        // Six usable trials, γ = 0.5: the best three, then the rest, each in trial order.
        assert_eq!(
            numbers(split_trials(&hist, Direction::Minimize, 0.5)),
            (vec![0, 4, 8], vec![1, 2, 7])
        );
        assert_eq!(
            numbers(split_trials(&hist, Direction::Minimize, 1.0)),
            (vec![0, 1, 2, 4, 7, 8], vec![])
        );
        assert_eq!(
            numbers(split_trials(&[], Direction::Minimize, 0.1)),
            (vec![], vec![])
        );
        assert_eq!(n_below(0.1, 6), 1);
        assert_eq!(n_below(0.1, 1000), 25);
        assert_eq!(n_below(1.0, 3), 3);
    }

    #[test]
    fn history_with_foreign_values_is_ignored_not_fatal() {
        let space = space();
        let mut hist = history(40);
        hist[0].params.insert("x".into(), json!("not a number"));
        hist[1].params.insert("family".into(), json!("svm"));
        hist[2].params.insert("gbm_iterations".into(), json!(1e9));
        hist[3].value = Some(f64::INFINITY);
        let p = tpe(2).sample(&space, &hist, Direction::Minimize, 40);
        space.validate(&p).unwrap();
    }

    #[test]
    fn clamped_build_never_panics() {
        let s = TpeSampler::new_clamped(TpeSamplerConfig {
            gamma: f64::NAN,
            prior_weight: -1.0,
            n_ei_candidates: 0,
            n_startup_trials: 0,
            seed: 1,
        });
        let space = space();
        let p = s.sample(&space, &history(30), Direction::Minimize, 30);
        space.validate(&p).unwrap();
        let p = s.sample(&space, &[], Direction::Minimize, 0);
        space.validate(&p).unwrap();
    }

    #[test]
    fn scores_each_distinct_candidate_once() {
        let mut calls = 0;
        let scores = score_unique(&[1.0, 2.0, 1.0, 3.0, 2.0], |x| {
            calls += 1;
            -x
        });
        assert_eq!(calls, 3);
        assert_eq!(scores, [-1.0, -2.0, -1.0, -3.0, -2.0]);
        assert_eq!(first_argmax(&[f64::NAN, 1.0, 1.0]), 1);
        assert_eq!(first_argmax(&[f64::NAN]), 0);
    }
}
