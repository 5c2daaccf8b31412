//! The sampler interface, its serde configuration, and the per-trial RNG every sampler draws from.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::grid::{GridSampler, GridSamplerConfig};
use super::nsga2::{Nsga2Sampler, Nsga2SamplerConfig};
use super::{
    invalid, Direction, FinishedTrial, NelderMeadSampler, NelderMeadSamplerConfig, Params,
    ParticleSwarmSampler, ParticleSwarmSamplerConfig, PendingTrial, RandomSampler, Result,
    SearchSpace, TpeSampler,
};

/// Suggests parameters for a new trial from the study's finished trials.
pub trait Sampler {
    /// Parameters for trial `trial_number`: every active parameter of `space`
    /// and no inactive one, knowing `pending`: trials asked before this one
    /// whose params are known but whose results the sampler may not use
    /// (they run in parallel, or an AutoML trial's deterministic history
    /// stops before them). Samplers whose draws don't depend on other trials
    /// (random, grid) ignore them. Deterministic in (sampler config, `space`,
    /// `history`, `pending`, `direction`, `trial_number`); the order of
    /// `history`, of `pending` and of earlier asks doesn't matter.
    fn sample_with_pending(
        &self,
        space: &SearchSpace,
        history: &[FinishedTrial],
        pending: &[PendingTrial],
        direction: Direction,
        trial_number: u64,
    ) -> Params;

    /// `sample_with_pending` with no trial pending (a sequential study).
    fn sample(
        &self,
        space: &SearchSpace,
        history: &[FinishedTrial],
        direction: Direction,
        trial_number: u64,
    ) -> Params {
        self.sample_with_pending(space, history, &[], direction, trial_number)
    }

    /// Trials `0..k` that must be finished, and passed as history, before
    /// AutoML trial `trial_number` is sampled, on top of the parallelism
    /// rule; the dispatcher waits for them. 0 (the default) adds nothing;
    /// particle swarm answers its generation's first trial number, so each
    /// generation starts from the whole previous one.
    fn required_history(&self, trial_number: u64) -> u64 {
        let _ = trial_number;
        0
    }
}

/// The RNG for one trial. The seed keys a ChaCha8 generator and the trial
/// number picks its stream: streams are independent by construction, so trial
/// `n` draws the same numbers whether it is asked first or after a thousand
/// others, and parallel asks need no shared RNG state.
pub(crate) fn trial_rng(seed: u64, trial_number: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(trial_number);
    rng
}

/// Sampler choice as given in a study spec: `{"type": "random", ...}`,
/// `{"type": "tpe", ...}`, `{"type": "grid", ...}`, `{"type": "nelder_mead", ...}`,
/// `{"type": "particle_swarm", ...}` or `{"type": "nsga2", ...}`
/// (multi-objective; see `hpo::multi` for which support several objectives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SamplerConfig {
    Random(RandomSamplerConfig),
    Tpe(TpeSamplerConfig),
    Grid(GridSamplerConfig),
    Nsga2(Nsga2SamplerConfig),
    #[serde(rename = "nelder_mead")]
    NelderMead(NelderMeadSamplerConfig),
    #[serde(rename = "particle_swarm")]
    ParticleSwarm(ParticleSwarmSamplerConfig),
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig::Tpe(TpeSamplerConfig::default())
    }
}

impl SamplerConfig {
    /// Checks every field; call at the edge before `build`.
    pub fn validate(&self) -> Result<()> {
        match self {
            SamplerConfig::Random(_) => Ok(()),
            SamplerConfig::Tpe(c) => c.validate(),
            SamplerConfig::Grid(c) => c.validate(),
            SamplerConfig::Nsga2(c) => c.validate(),
            SamplerConfig::NelderMead(c) => c.validate(),
            SamplerConfig::ParticleSwarm(c) => c.validate(),
        }
    }

    /// Checks the config against the space it will sample; answers the
    /// number of points for a grid (`None` for the unbounded samplers).
    pub fn validate_for(&self, space: &SearchSpace) -> Result<Option<u64>> {
        self.validate()?;
        match self {
            SamplerConfig::Grid(c) => c.size(space).map(Some),
            SamplerConfig::NelderMead(c) => c.validate_for(space).map(|()| None),
            SamplerConfig::ParticleSwarm(c) => c.validate_for(space).map(|()| None),
            SamplerConfig::Random(_) | SamplerConfig::Tpe(_) | SamplerConfig::Nsga2(_) => Ok(None),
        }
    }

    /// The sampler this configuration describes. Expects a validated config;
    /// an unvalidated one still builds (out-of-range TPE settings are clamped)
    /// so that no input can make this panic.
    pub fn build(&self) -> Box<dyn Sampler + Send + Sync> {
        match self {
            SamplerConfig::Random(c) => Box::new(RandomSampler::new(c.seed)),
            SamplerConfig::Tpe(c) => Box::new(TpeSampler::new_clamped(c.clone())),
            SamplerConfig::Grid(c) => Box::new(GridSampler::new(c.clone())),
            SamplerConfig::Nsga2(c) => Box::new(Nsga2Sampler::new_clamped(c.clone())),
            SamplerConfig::NelderMead(c) => Box::new(NelderMeadSampler::new_clamped(c.clone())),
            SamplerConfig::ParticleSwarm(c) => {
                Box::new(ParticleSwarmSampler::new_clamped(c.clone()))
            }
        }
    }
}

/// `{"type": "random", "seed": 0}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomSamplerConfig {
    pub seed: u64,
}

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
        if self.n_ei_candidates == 0 || self.n_ei_candidates > MAX_EI_CANDIDATES {
            return Err(invalid(format!(
                "sampler.n_ei_candidates must be in 1..={MAX_EI_CANDIDATES} (got {})",
                self.n_ei_candidates
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;
    use serde_json::json;

    #[test]
    fn parses_configs_with_defaults() {
        let c: SamplerConfig =
            serde_json::from_value(json!({"type": "random", "seed": 42})).unwrap();
        assert_eq!(c, SamplerConfig::Random(RandomSamplerConfig { seed: 42 }));
        let c: SamplerConfig = serde_json::from_value(json!({"type": "tpe"})).unwrap();
        assert_eq!(c, SamplerConfig::Tpe(TpeSamplerConfig::default()));
        let c: SamplerConfig =
            serde_json::from_value(json!({"type": "tpe", "seed": 7, "gamma": 0.2})).unwrap();
        let SamplerConfig::Tpe(tpe) = &c else {
            panic!("{c:?}")
        };
        assert_eq!((tpe.seed, tpe.gamma, tpe.n_ei_candidates), (7, 0.2, 24));
        c.validate().unwrap();
        let back: SamplerConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let c: SamplerConfig = serde_json::from_value(
            json!({"type": "grid", "seed": 1, "grid": {"x": [1, 2]}, "shuffle": false}),
        )
        .unwrap();
        let SamplerConfig::Grid(grid) = &c else {
            panic!("{c:?}")
        };
        assert_eq!((grid.points_per_dimension, grid.shuffle), (5, false));
        let back: SamplerConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validate_for_sizes_grids_only() {
        let space = SearchSpace::from_json(
            &json!({"k": {"type": "categorical", "choices": ["a", "b", "c"]}}),
        )
        .unwrap();
        let grid: SamplerConfig = serde_json::from_value(json!({"type": "grid"})).unwrap();
        assert_eq!(grid.validate_for(&space).unwrap(), Some(3));
        assert_eq!(SamplerConfig::default().validate_for(&space).unwrap(), None);
        let bad: SamplerConfig =
            serde_json::from_value(json!({"type": "grid", "grid": {"k": ["d"]}})).unwrap();
        assert!(bad.validate_for(&space).is_err());
    }

    #[test]
    fn rejects_unknown_fields_and_types() {
        for bad in [
            json!({"type": "tpe", "gama": 0.2}),
            json!({"type": "random", "seed": 1, "n_startup_trials": 3}),
            json!({"type": "grid", "points": 3}),
            json!({"type": "grid", "grid": [1, 2]}),
            json!({"seed": 1}),
            json!({"type": "random", "seed": -1}),
        ] {
            assert!(
                serde_json::from_value::<SamplerConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn validate_names_the_field() {
        let cases = [
            (
                TpeSamplerConfig {
                    gamma: 0.0,
                    ..Default::default()
                },
                "gamma",
            ),
            (
                TpeSamplerConfig {
                    gamma: f64::NAN,
                    ..Default::default()
                },
                "gamma",
            ),
            (
                TpeSamplerConfig {
                    gamma: 1.5,
                    ..Default::default()
                },
                "gamma",
            ),
            (
                TpeSamplerConfig {
                    prior_weight: 0.0,
                    ..Default::default()
                },
                "prior_weight",
            ),
            (
                TpeSamplerConfig {
                    prior_weight: f64::INFINITY,
                    ..Default::default()
                },
                "prior_weight",
            ),
            (
                TpeSamplerConfig {
                    n_ei_candidates: 0,
                    ..Default::default()
                },
                "n_ei_candidates",
            ),
        ];
        for (c, field) in cases {
            let err = SamplerConfig::Tpe(c).validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn trial_rng_depends_only_on_seed_and_number() {
        let a = trial_rng(1, 5).next_u64();
        assert_eq!(a, trial_rng(1, 5).next_u64());
        assert_ne!(a, trial_rng(1, 6).next_u64());
        assert_ne!(a, trial_rng(2, 5).next_u64());
    }
}
