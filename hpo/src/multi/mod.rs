//! Multi-objective sampling: the trial view and sampler interface for studies with several objectives, and Pareto dominance ([`pareto`]).
//!
//! This sits beside the single-objective [`Sampler`] interface rather than
//! changing it: single-objective samplers keep their signature, and a
//! multi-objective study is sampled through [`build_multi_objective`], which
//! says which sampler configurations support several objectives (it lives
//! with the sampler configuration it reads, so this module depends on no
//! sampler; NSGA-II implements the interface in `samplers::nsga2`).
//!
//! [`Sampler`]: crate::samplers::Sampler
//! [`build_multi_objective`]: crate::samplers::build_multi_objective

pub mod pareto;

use std::sync::Arc;

use crate::space::SearchSpace;
use crate::{Direction, Params, TrialState};

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

#[cfg(test)]
mod tests {
    use super::*;

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
