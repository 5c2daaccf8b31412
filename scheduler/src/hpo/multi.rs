//! Multi-objective sampling: the trial view and sampler interface for studies with several objectives, and which sampler configurations support them.
//!
//! This sits beside the single-objective [`Sampler`] interface rather than
//! changing it: single-objective samplers keep their signature, and a
//! multi-objective study is sampled through [`build_multi_objective`].

use super::nsga2::Nsga2Sampler;
use super::{invalid, Direction, Params, Result, Sampler, SamplerConfig, SearchSpace, TrialState};
use std::sync::Arc;

/// Most objectives one study may have. Non-dominated sorting and crowding
/// work for any number, but past a handful almost every point is
/// non-dominated and the front stops guiding the search.
pub const MAX_OBJECTIVES: usize = 4;

/// A finished trial of a multi-objective study, as samplers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiObjectiveTrial {
    pub number: u64,
    pub params: Arc<Params>,
    pub state: TrialState,
    /// One value per objective; `None` (or a vector of the wrong length, or
    /// with a non-finite entry) makes a complete trial unusable, and it is
    /// ignored like a failed one.
    pub values: Option<Vec<f64>>,
}

impl MultiObjectiveTrial {
    /// The objective values if this trial is complete and they are usable
    /// for a study with `objectives` objectives.
    pub fn usable_values(&self, objectives: usize) -> Option<&[f64]> {
        let values = self.values.as_deref()?;
        (self.state == TrialState::Complete
            && values.len() == objectives
            && values.iter().all(|v| v.is_finite()))
        .then_some(values)
    }
}

/// Suggests parameters for a new trial of a multi-objective study.
pub trait MultiObjectiveSampler {
    /// Parameters for trial `trial_number`: every active parameter of
    /// `space` and no inactive one. Deterministic in (sampler config,
    /// `space`, `history`, `directions`, `trial_number`); the order of
    /// `history` doesn't matter.
    fn sample_multi(
        &self,
        space: &SearchSpace,
        history: &[MultiObjectiveTrial],
        directions: &[Direction],
        trial_number: u64,
    ) -> Params;
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
    use serde_json::json;

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

    #[test]
    fn usable_values_need_a_complete_trial_with_one_finite_value_per_objective() {
        let t = |state, values: Option<Vec<f64>>| MultiObjectiveTrial {
            number: 0,
            params: Arc::default(),
            state,
            values,
        };
        assert!(t(TrialState::Complete, Some(vec![1.0, 2.0]))
            .usable_values(2)
            .is_some());
        assert!(t(TrialState::Complete, Some(vec![1.0]))
            .usable_values(2)
            .is_none());
        assert!(t(TrialState::Complete, Some(vec![1.0, f64::NAN]))
            .usable_values(2)
            .is_none());
        assert!(t(TrialState::Pruned, Some(vec![1.0, 2.0]))
            .usable_values(2)
            .is_none());
        assert!(t(TrialState::Complete, None).usable_values(2).is_none());
    }
}
