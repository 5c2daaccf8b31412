//! NSGA-II sampler (Deb et al. 2002) for multi-objective studies, as a pure function of the study's history.
//!
//! Trials are grouped into generations by number: trial `n` belongs to
//! generation `n / population_size`. Generation 0 samples at random. The
//! parents of generation `g` are the elite population `P(g)`, built from the
//! history by NSGA-II's own recursion: `P(1)` is the best `population_size`
//! complete trials of generation 0, `P(g+1)` the best of `P(g)` together with
//! generation `g`'s complete trials. "Best" is NSGA-II's elitist selection:
//! whole non-dominated fronts in rank order, the last front that does not fit
//! truncated by crowding distance (most isolated first). Recomputing the
//! recursion on every ask costs O(generations · M · (2N)²) — at 10,000 trials
//! with the default population, about 420 sorts of at most 48 points — and
//! needs no stored state.
//!
//! A child takes two parents by binary tournament (lower rank wins, then the
//! larger crowding distance), then, with probability `crossover_prob`,
//! crosses them: numeric parameters by simulated binary crossover in the
//! samplers' internal space (log space for log parameters, so a
//! learning-rate child lands between its parents' orders of magnitude),
//! categoricals by a fair coin per parameter. Without crossover the child
//! copies the first parent. Each parameter then mutates with probability
//! `mutation_prob` (default 1 / the first parent's number of parameters, as
//! in Optuna): polynomial mutation for numbers, a uniform redraw for
//! categoricals. Ints and stepped floats are rounded back onto their grid.
//! A conditional parameter active in the child but in only one parent takes
//! that parent's value, and one active in neither is drawn from its prior.
//!
//! Every draw comes from `trial_rng(seed, trial_number)`, so a trial's params
//! depend only on the seed, its number and the history it is shown.

use std::cmp::Ordering;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::random::{sample_all, sample_one};
use super::{check_count, Ask, AskSampler};
use crate::multi::pareto::{crowding_distance, losses, non_dominated_sort};
use crate::multi::{MultiObjectiveSampler, MultiObjectiveTrial};
use crate::rng::trial_rng;
use crate::space::{ParamKind, ParamSpec, SearchSpace};
use crate::{invalid, Direction, Params, Result};

/// Largest population: elitist selection sorts twice this many trials per
/// generation on every ask.
pub const MAX_POPULATION: u32 = 1000;
/// Distribution index of simulated binary crossover: larger keeps children
/// closer to their parents. 20 is Deb's setting for NSGA-II.
const ETA_CROSSOVER: f64 = 20.0;
/// Distribution index of polynomial mutation (Deb's setting).
const ETA_MUTATION: f64 = 20.0;

/// `{"type": "nsga2", "seed": 0, "population_size": 24, "crossover_prob": 0.9, "mutation_prob": null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nsga2SamplerConfig {
    pub seed: u64,
    /// Trials per generation, and the size of the elite parent population.
    pub population_size: u32,
    /// Chance that a child crosses its two parents instead of copying one.
    pub crossover_prob: f64,
    /// Chance that each parameter mutates; `None` = 1 / number of parameters.
    pub mutation_prob: Option<f64>,
}

impl Default for Nsga2SamplerConfig {
    fn default() -> Self {
        Nsga2SamplerConfig {
            seed: 0,
            population_size: 24,
            crossover_prob: 0.9,
            mutation_prob: None,
        }
    }
}

impl Nsga2SamplerConfig {
    pub fn validate(&self) -> Result<()> {
        check_count("population_size", self.population_size, 2..=MAX_POPULATION)?;
        if !(0.0..=1.0).contains(&self.crossover_prob) {
            return Err(invalid(format!(
                "sampler.crossover_prob must be in [0, 1] (got {})",
                self.crossover_prob
            )));
        }
        if let Some(p) = self.mutation_prob {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(format!(
                    "sampler.mutation_prob must be in [0, 1] or null (got {p})"
                )));
            }
        }
        Ok(())
    }
}

/// NSGA-II; see the module docs. Also usable for a single objective, where it
/// is a plain elitist genetic algorithm.
#[derive(Debug, Clone, PartialEq)]
pub struct Nsga2Sampler {
    config: Nsga2SamplerConfig,
}

/// A member of the elite population.
struct Member<'a> {
    trial: &'a MultiObjectiveTrial,
    rank: usize,
    crowding: f64,
}

impl Nsga2Sampler {
    pub fn new(config: Nsga2SamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Nsga2Sampler { config })
    }

    /// Builds from a config that may not have been validated, replacing
    /// out-of-range settings with the defaults instead of failing or panicking.
    pub(crate) fn new_clamped(mut config: Nsga2SamplerConfig) -> Self {
        let defaults = Nsga2SamplerConfig::default();
        if !(2..=MAX_POPULATION).contains(&config.population_size) {
            config.population_size = defaults.population_size;
        }
        if !(0.0..=1.0).contains(&config.crossover_prob) {
            config.crossover_prob = defaults.crossover_prob;
        }
        if config
            .mutation_prob
            .is_some_and(|p| !(0.0..=1.0).contains(&p))
        {
            config.mutation_prob = defaults.mutation_prob;
        }
        Nsga2Sampler { config }
    }

    /// The parents of generation `generation` (≥ 1), ranked and crowded
    /// within themselves for the tournament. Empty when no trial of an
    /// earlier generation completed with usable values.
    fn parents<'a>(
        &self,
        history: &'a [MultiObjectiveTrial],
        directions: &[Direction],
        generation: u64,
    ) -> Vec<Member<'a>> {
        let pop = u64::from(self.config.population_size);
        // Generations past the newest trial hold nothing; bounding by the
        // history keeps the buckets small whatever number is asked for.
        let known = history
            .iter()
            .map(|t| t.number / pop + 1)
            .max()
            .unwrap_or(0);
        let mut by_generation: Vec<Vec<(&MultiObjectiveTrial, Vec<f64>)>> =
            (0..generation.min(known)).map(|_| Vec::new()).collect();
        for t in history {
            let g = t.number / pop;
            if g >= generation {
                continue;
            }
            if let Some(values) = t.usable_values(directions.len()) {
                by_generation[g as usize].push((t, losses(values, directions)));
            }
        }
        let mut elite: Vec<(&MultiObjectiveTrial, Vec<f64>)> = Vec::new();
        for mut offspring in by_generation {
            // By number, so the history's order cannot change the outcome.
            offspring.sort_by_key(|(t, _)| t.number);
            elite.append(&mut offspring);
            elite = select_elite(elite, self.config.population_size as usize);
        }
        let points: Vec<Vec<f64>> = elite.iter().map(|(_, l)| l.clone()).collect();
        let mut members: Vec<Member<'a>> = elite
            .into_iter()
            .map(|(trial, _)| Member {
                trial,
                rank: 0,
                crowding: 0.0,
            })
            .collect();
        for (rank, front) in non_dominated_sort(&points).iter().enumerate() {
            for (&i, d) in front.iter().zip(crowding_distance(&points, front)) {
                members[i].rank = rank;
                members[i].crowding = d;
            }
        }
        members
    }

    fn child<R: Rng + ?Sized>(
        &self,
        space: &SearchSpace,
        first: &Params,
        second: &Params,
        rng: &mut R,
    ) -> Params {
        let crossover = rng.gen::<f64>() < self.config.crossover_prob;
        let mutation_prob = self
            .config
            .mutation_prob
            .unwrap_or(1.0 / first.len().max(1) as f64);
        let mut child = Params::new();
        for (i, spec) in space.params().iter().enumerate() {
            // Parents come first in the space's order, so the child's own
            // choices decide which conditional parameters it has.
            if !space.is_active_at(i, &child) {
                continue;
            }
            let own = |p: &Params| {
                p.get(spec.name())
                    .filter(|v| spec.to_internal(v).is_some())
                    .cloned()
            };
            let value = match (own(first), own(second)) {
                (Some(a), Some(b)) if crossover => cross(spec, &a, &b, rng),
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => sample_one(spec, rng),
            };
            let value = if rng.gen::<f64>() < mutation_prob {
                mutate(spec, &value, rng)
            } else {
                value
            };
            child.insert(spec.name().to_string(), value);
        }
        child
    }
}

/// NSGA-II's elitist selection of `n` candidates: fronts in rank order, the
/// last partial front by descending crowding distance (ties to the lower
/// trial number).
fn select_elite(
    candidates: Vec<(&MultiObjectiveTrial, Vec<f64>)>,
    n: usize,
) -> Vec<(&MultiObjectiveTrial, Vec<f64>)> {
    if candidates.len() <= n {
        return candidates;
    }
    let points: Vec<Vec<f64>> = candidates.iter().map(|(_, l)| l.clone()).collect();
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    for front in non_dominated_sort(&points) {
        let room = n - chosen.len();
        if front.len() <= room {
            chosen.extend(&front);
        } else {
            let distance = crowding_distance(&points, &front);
            let mut order: Vec<usize> = (0..front.len()).collect();
            order.sort_by(|&a, &b| {
                distance[b].total_cmp(&distance[a]).then(
                    candidates[front[a]]
                        .0
                        .number
                        .cmp(&candidates[front[b]].0.number),
                )
            });
            chosen.extend(order.into_iter().take(room).map(|k| front[k]));
        }
        if chosen.len() == n {
            break;
        }
    }
    chosen.sort_unstable();
    let mut keep = vec![false; candidates.len()];
    for i in chosen {
        keep[i] = true;
    }
    candidates
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect()
}

/// NSGA-II's crowded-comparison operator: the better rank, then the less
/// crowded; then the lower trial number, so nothing depends on chance.
fn crowded_order(a: &Member<'_>, b: &Member<'_>) -> Ordering {
    a.rank
        .cmp(&b.rank)
        .then(b.crowding.total_cmp(&a.crowding))
        .then(a.trial.number.cmp(&b.trial.number))
}

/// Binary tournament over `pool` (indices into `members`).
fn tournament<R: Rng + ?Sized>(members: &[Member<'_>], pool: &[usize], rng: &mut R) -> usize {
    let a = pool[rng.gen_range(0..pool.len())];
    let b = pool[rng.gen_range(0..pool.len())];
    match crowded_order(&members[a], &members[b]) {
        Ordering::Greater => b,
        _ => a,
    }
}

/// One child value of two parent values.
fn cross<R: Rng + ?Sized>(spec: &ParamSpec, a: &Value, b: &Value, rng: &mut R) -> Value {
    if let ParamKind::Categorical { .. } = spec.kind() {
        return if rng.gen_bool(0.5) {
            a.clone()
        } else {
            b.clone()
        };
    }
    let (Some(x1), Some(x2), Some((lo, hi, _))) = (
        spec.to_internal(a),
        spec.to_internal(b),
        spec.internal_bounds(),
    ) else {
        return a.clone();
    };
    spec.internal_to_value(sbx(x1, x2, lo, hi, rng))
}

/// One parent value, mutated.
fn mutate<R: Rng + ?Sized>(spec: &ParamSpec, value: &Value, rng: &mut R) -> Value {
    if let ParamKind::Categorical { .. } = spec.kind() {
        return sample_one(spec, rng);
    }
    let (Some(x), Some((lo, hi, _))) = (spec.to_internal(value), spec.internal_bounds()) else {
        return sample_one(spec, rng);
    };
    spec.internal_to_value(polynomial_mutation(x, lo, hi, rng))
}

/// Bounded simulated binary crossover (Deb & Agrawal 1995, as in the NSGA-II
/// reference code): the two children spread around the parents' mean by a
/// factor drawn so that the spread shrinks near the bounds; one child is
/// returned.
fn sbx<R: Rng + ?Sized>(x1: f64, x2: f64, lo: f64, hi: f64, rng: &mut R) -> f64 {
    let (y1, y2) = if x1 <= x2 { (x1, x2) } else { (x2, x1) };
    if y2 - y1 < 1e-14 || hi <= lo {
        return x1;
    }
    let u: f64 = rng.gen();
    let power = 1.0 / (ETA_CROSSOVER + 1.0);
    let spread = |beta: f64| {
        let alpha = 2.0 - beta.powf(-(ETA_CROSSOVER + 1.0));
        if u <= 1.0 / alpha {
            (u * alpha).powf(power)
        } else {
            (1.0 / (2.0 - u * alpha)).powf(power)
        }
    };
    let beta_low = 1.0 + 2.0 * (y1 - lo) / (y2 - y1);
    let beta_high = 1.0 + 2.0 * (hi - y2) / (y2 - y1);
    let c1 = 0.5 * ((y1 + y2) - spread(beta_low) * (y2 - y1));
    let c2 = 0.5 * ((y1 + y2) + spread(beta_high) * (y2 - y1));
    let c = if rng.gen_bool(0.5) { c1 } else { c2 };
    c.clamp(lo, hi)
}

/// Bounded polynomial mutation (Deb's NSGA-II reference code): a shift whose
/// size follows a polynomial distribution, scaled to the parameter's range
/// and shrinking toward the nearer bound.
fn polynomial_mutation<R: Rng + ?Sized>(x: f64, lo: f64, hi: f64, rng: &mut R) -> f64 {
    if hi <= lo {
        return x;
    }
    let range = hi - lo;
    let (d1, d2) = ((x - lo) / range, (hi - x) / range);
    let u: f64 = rng.gen();
    let power = 1.0 / (ETA_MUTATION + 1.0);
    let delta = if u < 0.5 {
        let v = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - d1).powf(ETA_MUTATION + 1.0);
        v.powf(power) - 1.0
    } else {
        let v = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * (1.0 - d2).powf(ETA_MUTATION + 1.0);
        1.0 - v.powf(power)
    };
    (x + delta * range).clamp(lo, hi)
}

impl MultiObjectiveSampler for Nsga2Sampler {
    fn sample_multi(
        &self,
        space: &SearchSpace,
        history: &[MultiObjectiveTrial],
        directions: &[Direction],
        trial_number: u64,
    ) -> Params {
        let mut rng = trial_rng(self.config.seed, trial_number);
        let generation = trial_number / u64::from(self.config.population_size);
        if generation == 0 || directions.is_empty() {
            return sample_all(space, &mut rng);
        }
        let members = self.parents(history, directions, generation);
        if members.is_empty() {
            return sample_all(space, &mut rng);
        }
        let everyone: Vec<usize> = (0..members.len()).collect();
        let first = tournament(&members, &everyone, &mut rng);
        let others: Vec<usize> = everyone.iter().copied().filter(|&i| i != first).collect();
        let second = if others.is_empty() {
            first
        } else {
            tournament(&members, &others, &mut rng)
        };
        self.child(
            space,
            &members[first].trial.params,
            &members[second].trial.params,
            &mut rng,
        )
    }
}

impl AskSampler for Nsga2Sampler {
    /// Pending trials are ignored: a generation is bred from finished ones.
    fn ask(&self, ask: &Ask<'_>) -> Params {
        let history: Vec<MultiObjectiveTrial> = ask
            .history
            .iter()
            .map(|t| MultiObjectiveTrial {
                number: t.number,
                params: t.params.clone(),
                state: t.state,
                values: t.value.map(|v| vec![v]),
            })
            .collect();
        self.sample_multi(ask.space, &history, &[ask.direction], ask.trial_number)
    }
}

#[cfg(test)]
#[path = "nsga2_tests.rs"]
mod tests;
