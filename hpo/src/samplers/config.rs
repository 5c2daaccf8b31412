//! The sampler configuration of a study spec: checking it, and building the single- or multi-objective sampler it describes.

use serde::{Deserialize, Serialize};

use super::grid::{GridSampler, GridSamplerConfig};
use super::nelder_mead::{NelderMeadSampler, NelderMeadSamplerConfig};
use super::nsga2::{Nsga2Sampler, Nsga2SamplerConfig};
use super::particle_swarm::{ParticleSwarmSampler, ParticleSwarmSamplerConfig};
use super::random::{RandomSampler, RandomSamplerConfig};
use super::tpe::{TpeSampler, TpeSamplerConfig};
use super::Sampler;
use crate::multi::{MultiObjectiveSampler, MultiObjectiveTrial};
use crate::space::SearchSpace;
use crate::{invalid, Direction, Params, Result};

/// Sampler choice as given in a study spec: `{"type": "random", ...}`,
/// `{"type": "tpe", ...}`, `{"type": "grid", ...}`, `{"type": "nelder_mead", ...}`,
/// `{"type": "particle_swarm", ...}` or `{"type": "nsga2", ...}`
/// (multi-objective; see [`build_multi_objective`] for which support several objectives).
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

/// Random and grid sampling don't learn from values, so any number of
/// objectives suits them.
struct ValueBlind(Box<dyn Sampler + Send + Sync>);

impl MultiObjectiveSampler for ValueBlind {
    fn sample_multi(
        &self,
        space: &SearchSpace,
        _history: &[MultiObjectiveTrial],
        directions: &[Direction],
        trial_number: u64,
    ) -> Params {
        let direction = directions.first().copied().unwrap_or_default();
        self.0.sample(space, &[], direction, trial_number)
    }
}

/// The sampler `config` describes, for a multi-objective study; `Invalid`
/// (naming the sampler) for one that needs a single objective.
pub fn build_multi_objective(
    config: &SamplerConfig,
) -> Result<Box<dyn MultiObjectiveSampler + Send + Sync>> {
    match config {
        SamplerConfig::Nsga2(c) => Ok(Box::new(Nsga2Sampler::new_clamped(c.clone()))),
        SamplerConfig::Random(_) | SamplerConfig::Grid(_) => {
            Ok(Box::new(ValueBlind(config.build())))
        }
        // TPE ranks trials by one value; any sampler added later is
        // single-objective until it says otherwise.
        other => {
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                .unwrap_or_else(|| "this sampler".into());
            Err(invalid(format!(
                "sampler \"{name}\" optimises a single objective; for several objectives use \"nsga2\" (the default), \"random\" or \"grid\""
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samplers::test_support::assert_unparsable;
    use crate::TrialState;
    use serde_json::json;
    use std::sync::Arc;

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
        assert_unparsable([
            json!({"type": "tpe", "gama": 0.2}),
            json!({"type": "random", "seed": 1, "n_startup_trials": 3}),
            json!({"type": "grid", "points": 3}),
            json!({"type": "grid", "grid": [1, 2]}),
            json!({"seed": 1}),
            json!({"type": "random", "seed": -1}),
        ]);
    }

    #[test]
    fn validate_names_the_field() {
        let with = |set: fn(&mut TpeSamplerConfig)| {
            let mut c = TpeSamplerConfig::default();
            set(&mut c);
            c
        };
        let cases = [
            (with(|c| c.gamma = 0.0), "gamma"),
            (with(|c| c.gamma = f64::NAN), "gamma"),
            (with(|c| c.gamma = 1.5), "gamma"),
            (with(|c| c.prior_weight = 0.0), "prior_weight"),
            (with(|c| c.prior_weight = f64::INFINITY), "prior_weight"),
            (with(|c| c.n_ei_candidates = 0), "n_ei_candidates"),
        ];
        for (c, field) in cases {
            let err = SamplerConfig::Tpe(c).validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn only_value_blind_samplers_and_nsga2_take_several_objectives() {
        for ok in [
            json!({"type": "nsga2"}),
            json!({"type": "random"}),
            json!({"type": "grid"}),
        ] {
            let c: SamplerConfig = serde_json::from_value(ok.clone()).unwrap();
            assert!(build_multi_objective(&c).is_ok(), "{ok}");
        }
        let tpe: SamplerConfig = serde_json::from_value(json!({"type": "tpe"})).unwrap();
        let err = build_multi_objective(&tpe).err().unwrap().to_string();
        assert!(err.contains("\"tpe\"") && err.contains("nsga2"), "{err}");
    }

    #[test]
    fn random_ignores_values_and_stays_reproducible() {
        let space =
            SearchSpace::from_json(&json!({"x": {"type": "float", "low": 0, "high": 1}})).unwrap();
        let c: SamplerConfig =
            serde_json::from_value(json!({"type": "random", "seed": 3})).unwrap();
        let s = build_multi_objective(&c).unwrap();
        let dirs = [Direction::Minimize, Direction::Maximize];
        let a = s.sample_multi(&space, &[], &dirs, 4);
        let history = [MultiObjectiveTrial {
            number: 0,
            params: Arc::new(a.clone()),
            state: TrialState::Complete,
            values: Some(vec![1.0, 2.0]),
        }];
        assert_eq!(s.sample_multi(&space, &history, &dirs, 4), a);
        assert_eq!(a, c.build().sample(&space, &[], Direction::Minimize, 4));
    }
}
