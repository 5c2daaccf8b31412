//! Samplers: the [`Sampler`] interface and its implementations (random, grid,
//! TPE, Nelder–Mead, particle swarm, NSGA-II), and the study spec's
//! [`SamplerConfig`] that builds them.

mod config;
pub mod grid;
mod nelder_mead;
pub mod nsga2;
mod particle_swarm;
mod random;
mod replay;
mod tpe;

#[cfg(test)]
mod argmin_tests;
#[cfg(test)]
mod quality_tests;
#[cfg(test)]
mod test_support;

pub use config::{build_multi_objective, SamplerConfig};
pub use nelder_mead::{NelderMeadSampler, NelderMeadSamplerConfig};
pub use particle_swarm::{ParticleSwarmSampler, ParticleSwarmSamplerConfig, MAX_POPULATION};
pub use random::{RandomSampler, RandomSamplerConfig};
pub use tpe::{TpeSampler, TpeSamplerConfig, MAX_EI_CANDIDATES};

use std::ops::RangeInclusive;

use crate::space::SearchSpace;
use crate::{invalid, Direction, FinishedTrial, Params, PendingTrial, Result};

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

/// `Ok` when the config's count `field` lies in `range`; otherwise the error
/// every sampler config words the same way.
pub(crate) fn check_count(field: &str, value: u32, range: RangeInclusive<u32>) -> Result<()> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(invalid(format!(
        "sampler.{field} must be in {}..={} (got {value})",
        range.start(),
        range.end()
    )))
}

/// One ask, as [`Sampler::sample_with_pending`] receives it. The samplers
/// take it whole and pass it on whole (the argmin-backed ones hand it to
/// TPE for the parameters they leave), rather than threading the same five
/// arguments through every layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub(crate) space: &'a SearchSpace,
    pub(crate) history: &'a [FinishedTrial],
    pub(crate) pending: &'a [PendingTrial],
    pub(crate) direction: Direction,
    pub(crate) trial_number: u64,
}

/// What each sampler of this crate implements. [`Sampler`] follows from it
/// (below), so the public five-argument signature is spelt out once, not
/// once per sampler.
pub(crate) trait AskSampler {
    /// [`Sampler::sample_with_pending`], with its arguments bundled.
    fn ask(&self, ask: &Ask<'_>) -> Params;

    /// [`Sampler::required_history`].
    fn required_history(&self, trial_number: u64) -> u64 {
        let _ = trial_number;
        0
    }
}

impl<T: AskSampler> Sampler for T {
    fn sample_with_pending(
        &self,
        space: &SearchSpace,
        history: &[FinishedTrial],
        pending: &[PendingTrial],
        direction: Direction,
        trial_number: u64,
    ) -> Params {
        self.ask(&Ask {
            space,
            history,
            pending,
            direction,
            trial_number,
        })
    }

    fn required_history(&self, trial_number: u64) -> u64 {
        AskSampler::required_history(self, trial_number)
    }
}
