//! Particle swarm sampler: argmin's particle swarm over the continuous subspace, each generation's particles evaluated as parallel trials.
//!
//! Generation g is trials `[g·population, (g+1)·population)`: argmin's
//! `ParticleSwarm` evaluates a whole population with one `bulk_cost` call,
//! and the tape (see `replay`) answers it only once every particle's trial
//! has finished; until then each ask takes the generation's next position.
//! In an AutoML experiment `required_history` makes the dispatcher wait for
//! the previous generation, so with `parallelism` = `population` a whole
//! generation runs at once. The swarm's random draws come from its own
//! ChaCha8 stream seeded by `seed` and are replayed with it. TPE chooses the
//! parameters outside the continuous subspace, and explores when an ask/tell
//! client asks beyond a generation whose trials are still running.

use std::borrow::Borrow;

use argmin::core::{CostFunction, SendAlias, SyncAlias};
use argmin::solver::particleswarm::ParticleSwarm;
use rand_chacha_09::rand_core::SeedableRng as _;
use rand_chacha_09::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::replay::{
    explorer, require_subspace, sample_replayed, Lookup, Next, Stop, Subspace, Tape,
};
use super::tpe::TpeSampler;
use super::{check_count, Ask, AskSampler};
use crate::space::SearchSpace;
use crate::{invalid, Params, Result};

/// Most particles per generation: each generation is that many parallel
/// trials, and the experiment limits parallelism far below this.
pub const MAX_POPULATION: u32 = 1000;

/// `{"type": "particle_swarm", "seed": 0, "population": 10, "inertia": 0.721,
/// "cognitive": 1.193, "social": 1.193}` (argmin's defaults, from SPSO 2011).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParticleSwarmSamplerConfig {
    /// Seeds the swarm's draws and the TPE that chooses the other parameters.
    pub seed: u64,
    /// Particles per generation (= trials per generation).
    pub population: u32,
    /// Weight of a particle's previous velocity.
    pub inertia: f64,
    /// Pull towards the particle's own best position.
    pub cognitive: f64,
    /// Pull towards the swarm's best position.
    pub social: f64,
}

impl Default for ParticleSwarmSamplerConfig {
    fn default() -> Self {
        ParticleSwarmSamplerConfig {
            seed: 0,
            population: 10,
            inertia: 1.0 / (2.0 * std::f64::consts::LN_2),
            cognitive: 0.5 + std::f64::consts::LN_2,
            social: 0.5 + std::f64::consts::LN_2,
        }
    }
}

impl ParticleSwarmSamplerConfig {
    pub fn validate(&self) -> Result<()> {
        check_count("population", self.population, 2..=MAX_POPULATION)?;
        for (name, v) in [
            ("inertia", self.inertia),
            ("cognitive", self.cognitive),
            ("social", self.social),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(invalid(format!(
                    "sampler.{name} must be a finite number >= 0 (got {v})"
                )));
            }
        }
        Ok(())
    }

    pub fn validate_for(&self, space: &SearchSpace) -> Result<()> {
        self.validate()?;
        require_subspace(space, "particle_swarm").map(|_| ())
    }
}

/// The tape as argmin's cost function, answering a generation at once.
struct Problem<'a> {
    tape: &'a Tape,
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        self.tape.answer(x)
    }

    /// A generation's values once all its trials finished. The first
    /// position no trial holds is the next suggestion even when earlier
    /// ones are still pending: a generation's trials run in parallel.
    fn bulk_cost<P>(&self, params: &[P]) -> Result<Vec<f64>, argmin::core::Error>
    where
        P: Borrow<Vec<f64>> + SyncAlias,
        f64: SendAlias,
        Self: SyncAlias,
    {
        let mut costs = Vec::with_capacity(params.len());
        let mut blocked = false;
        for p in params {
            match self.tape.lookup(p.borrow()) {
                Lookup::Value(v) => costs.push(v),
                Lookup::Pending => blocked = true,
                Lookup::Unassigned => return Err(Stop::Need(p.borrow().clone()).into()),
            }
        }
        if blocked {
            return Err(Stop::Blocked.into());
        }
        Ok(costs)
    }
}

/// Particle swarm over the continuous subspace, TPE for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticleSwarmSampler {
    config: ParticleSwarmSamplerConfig,
    tpe: TpeSampler,
}

impl ParticleSwarmSampler {
    pub fn new(config: ParticleSwarmSamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::new_clamped(config))
    }

    /// Builds from a config that may not have been validated: out-of-range
    /// settings take their defaults, so no input can make an ask panic.
    pub(crate) fn new_clamped(mut config: ParticleSwarmSamplerConfig) -> Self {
        if config.validate().is_err() {
            config = ParticleSwarmSamplerConfig {
                seed: config.seed,
                population: config.population.clamp(2, MAX_POPULATION),
                ..Default::default()
            };
        }
        let tpe = explorer(config.seed);
        ParticleSwarmSampler { config, tpe }
    }

    fn next(&self, sub: &Subspace, tape: &Tape) -> Next {
        let c = &self.config;
        let d = sub.len();
        // `new` seeds a throwaway RNG from the OS before ours replaces it;
        // argmin offers no constructor that takes the generator directly.
        let solver = ParticleSwarm::new((vec![0.0; d], vec![1.0; d]), c.population as usize)
            .with_rng_generator(ChaCha8Rng::seed_from_u64(c.seed))
            .with_inertia_factor(c.inertia)
            .and_then(|s| s.with_cognitive_factor(c.cognitive))
            .and_then(|s| s.with_social_factor(c.social));
        let Ok(solver) = solver else {
            // Unreachable: the config was validated or clamped.
            return Next::Explore;
        };
        // Each iteration consumes a generation of trials or stops the run.
        let iterations = (tape.len() / c.population as usize) as u64 + 1;
        Next::replay(Problem { tape }, solver, |state| {
            state.max_iters(iterations)
        })
    }
}

impl AskSampler for ParticleSwarmSampler {
    fn ask(&self, ask: &Ask<'_>) -> Params {
        sample_replayed(&self.tpe, ask, |sub, tape| self.next(sub, tape))
    }

    /// A generation starts from the whole previous one.
    fn required_history(&self, trial_number: u64) -> u64 {
        let population = u64::from(self.config.population.max(1));
        trial_number / population * population
    }
}
