//! Random sampler: independent uniform (or log-uniform, or uniform-on-grid) draws for each active parameter.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ask, AskSampler};
use crate::rng::trial_rng;
use crate::space::{ParamKind, ParamSpec, SearchSpace};
use crate::Params;

/// `{"type": "random", "seed": 0}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomSamplerConfig {
    pub seed: u64,
}

/// Ignores history; the baseline TPE must beat and TPE's start-up phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSampler {
    seed: u64,
}

impl RandomSampler {
    pub fn new(seed: u64) -> Self {
        RandomSampler { seed }
    }
}

impl AskSampler for RandomSampler {
    fn ask(&self, ask: &Ask<'_>) -> Params {
        sample_all(ask.space, &mut trial_rng(self.seed, ask.trial_number))
    }
}

/// Draws every active parameter, parents first so children see their parent's value.
pub(crate) fn sample_all<R: Rng + ?Sized>(space: &SearchSpace, rng: &mut R) -> Params {
    sample_all_except(space, rng, &Params::new())
}

/// As `sample_all`, but active parameters named in `fixed` take its values
/// (and draw nothing from `rng`).
pub(crate) fn sample_all_except<R: Rng + ?Sized>(
    space: &SearchSpace,
    rng: &mut R,
    fixed: &Params,
) -> Params {
    let mut params = Params::new();
    for (i, spec) in space.params().iter().enumerate() {
        if space.is_active_at(i, &params) {
            let value = match fixed.get(spec.name()) {
                Some(v) => v.clone(),
                None => sample_one(spec, rng),
            };
            params.insert(spec.name().to_string(), value);
        }
    }
    params
}

/// One uniform draw from a parameter's distribution.
pub(crate) fn sample_one<R: Rng + ?Sized>(spec: &ParamSpec, rng: &mut R) -> Value {
    match spec.kind() {
        ParamKind::Categorical { choices } => choices[rng.gen_range(0..choices.len())].clone(),
        ParamKind::Float {
            low,
            high,
            step: Some(step),
            ..
        } => {
            // Picking the grid index keeps both end points as likely as the
            // inner ones, which rounding a continuous draw would not.
            let n = ((high - low) / step).round() as u64;
            let k = rng.gen_range(0..=n);
            spec.internal_to_value(low + k as f64 * step)
        }
        ParamKind::Int {
            low,
            high,
            step,
            log: false,
        } => {
            let n = ((high - low) / step) as u64;
            let k = rng.gen_range(0..=n);
            spec.internal_to_value((low + k as i64 * step) as f64)
        }
        // Float (linear or log) and log-int: uniform in internal space, then
        // mapped back; for log-int the internal interval is widened by half
        // an integer on each side so every integer gets its log-width share.
        ParamKind::Float { .. } | ParamKind::Int { .. } => {
            let Some((lo, hi, _)) = spec.internal_bounds() else {
                return Value::Null;
            };
            spec.internal_to_value(rng.gen_range(lo..=hi))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samplers::test_support::mixed_space;
    use crate::{Direction, Sampler};
    use serde_json::json;

    #[test]
    fn respects_bounds_grid_log_and_conditions() {
        let space = mixed_space();
        let sampler = RandomSampler::new(3);
        let mut seen_grid = std::collections::BTreeSet::new();
        let mut small_l2 = 0;
        let mut small_depth = 0;
        for n in 0..600 {
            let p = sampler.sample(&space, &[], Direction::Minimize, n);
            space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            match p["family"].as_str().unwrap() {
                "linear" => small_l2 += usize::from(p["l2"].as_f64().unwrap() < 1e-3),
                "gbm" => {
                    seen_grid.insert(p["trees"].as_i64().unwrap());
                    small_depth += usize::from(p["depth"].as_i64().unwrap() <= 31);
                }
                _ => {}
            }
        }
        // All 8 grid points, the end points included, show up.
        assert_eq!(seen_grid.len(), 8, "{seen_grid:?}");
        // Log-uniform: [1e-6, 1e-3) is 3 of 7 decades, so ~43% of ~200 linear
        // draws; a linear-uniform draw would land there ~0.01% of the time.
        assert!(small_l2 > 50, "{small_l2}");
        // Half of the log range of [1, 1000] lies below ~31.
        assert!(small_depth > 50, "{small_depth}");
    }

    #[test]
    fn deterministic_per_seed_and_number() {
        let space = mixed_space();
        let a = RandomSampler::new(11);
        let first: Vec<Params> = (0..20)
            .map(|n| a.sample(&space, &[], Direction::Minimize, n))
            .collect();
        // Asked in reverse order, by another instance: same answers.
        let b = RandomSampler::new(11);
        for n in (0..20).rev() {
            assert_eq!(
                b.sample(&space, &[], Direction::Maximize, n),
                first[n as usize]
            );
        }
        let other = RandomSampler::new(12);
        let differs =
            (0..20).any(|n| other.sample(&space, &[], Direction::Minimize, n) != first[n as usize]);
        assert!(differs);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn degenerate_int_range_is_fine() {
        let space =
            SearchSpace::from_json(&json!({"k": {"type": "int", "low": 7, "high": 7}})).unwrap();
        let p = RandomSampler::new(0).sample(&space, &[], Direction::Minimize, 0);
        assert_eq!(p["k"], json!(7));
    }
}
