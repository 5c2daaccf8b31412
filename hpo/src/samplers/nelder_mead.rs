//! Nelder–Mead sampler: argmin's simplex method refining the continuous subspace, one trial per simplex step, replayed from the study's trials.
//!
//! The first d + 1 trials are the initial simplex's vertices (independent,
//! so parallel workers may run them together). From then on each ask
//! replays argmin's `NelderMead` through its `Executor` against the tape of
//! finished trials (see `replay`): its next cost call is the trial. Points
//! outside the unit cube cost +∞ without a trial (an extreme barrier), so
//! the simplex stays inside the space without clamping distorting its
//! geometry. Nelder–Mead is sequential: while its point is pending (another
//! worker runs it), or after it has converged, trials explore with TPE, and
//! TPE also chooses every parameter outside the continuous subspace.

use argmin::core::CostFunction;
use argmin::solver::neldermead::NelderMead;
use serde::{Deserialize, Serialize};

use super::replay::{explorer, require_subspace, sample_replayed, Lookup, Next, Subspace, Tape};
use super::tpe::TpeSampler;
use super::{Ask, AskSampler};
use crate::space::SearchSpace;
use crate::{invalid, Params, Result};

/// `{"type": "nelder_mead", "seed": 0, "initial_point": {}, "initial_step": 0.25,
/// "alpha": 1.0, "gamma": 2.0, "rho": 0.5, "sigma": 0.5, "sd_tolerance": 1e-9}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NelderMeadSamplerConfig {
    /// Seeds the TPE that chooses the other parameters and explores.
    pub seed: u64,
    /// The first vertex, for parameters of the continuous subspace; those
    /// not listed start mid-range (in log space for `log` floats).
    pub initial_point: Params,
    /// Edge of the initial simplex as a fraction of each parameter's range.
    pub initial_step: f64,
    /// Reflection coefficient (argmin's default 1).
    pub alpha: f64,
    /// Expansion coefficient (2).
    pub gamma: f64,
    /// Contraction coefficient (0.5).
    pub rho: f64,
    /// Shrink coefficient (0.5).
    pub sigma: f64,
    /// Converged once the standard deviation of the simplex's values falls
    /// below this (argmin's termination test); later trials explore with TPE.
    pub sd_tolerance: f64,
}

impl Default for NelderMeadSamplerConfig {
    fn default() -> Self {
        NelderMeadSamplerConfig {
            seed: 0,
            initial_point: Params::new(),
            initial_step: 0.25,
            alpha: 1.0,
            gamma: 2.0,
            rho: 0.5,
            sigma: 0.5,
            sd_tolerance: 1e-9,
        }
    }
}

impl NelderMeadSamplerConfig {
    /// Checks every field, naming the one at fault (argmin's own checks
    /// would only say which coefficient of "Nelder-Mead" is wrong).
    pub fn validate(&self) -> Result<()> {
        let in_range = |name: &str, v: f64, ok: bool, range: &str| {
            if ok && v.is_finite() {
                Ok(())
            } else {
                Err(invalid(format!("sampler.{name} must be {range} (got {v})")))
            }
        };
        let c = self;
        in_range(
            "initial_step",
            c.initial_step,
            c.initial_step > 0.0 && c.initial_step <= 1.0,
            "in (0, 1]",
        )?;
        in_range("alpha", c.alpha, c.alpha > 0.0, "> 0")?;
        in_range("gamma", c.gamma, c.gamma > 1.0, "> 1")?;
        in_range("rho", c.rho, c.rho > 0.0 && c.rho <= 0.5, "in (0, 0.5]")?;
        in_range(
            "sigma",
            c.sigma,
            c.sigma > 0.0 && c.sigma <= 1.0,
            "in (0, 1]",
        )?;
        in_range(
            "sd_tolerance",
            c.sd_tolerance,
            c.sd_tolerance >= 0.0,
            "a finite number >= 0",
        )?;
        Ok(())
    }

    /// Checks the config against the space: there must be a continuous
    /// subspace, and `initial_point` must lie in it.
    pub fn validate_for(&self, space: &SearchSpace) -> Result<()> {
        self.validate()?;
        let sub = require_subspace(space, "nelder_mead")?;
        for (name, value) in &self.initial_point {
            if !sub.contains(name) {
                return Err(invalid(format!(
                    "sampler.initial_point.{name}: not a float parameter without step or when \
                     in search_space (Nelder-Mead refines only those)"
                )));
            }
            if let Some(spec) = space.get(name) {
                spec.check_value(value)
                    .map_err(|e| invalid(format!("sampler.initial_point.{name}: {e}")))?;
            }
        }
        Ok(())
    }
}

/// An extreme barrier around a cost function on the unit cube: points
/// outside it cost +∞ without being evaluated, so the simplex stays inside
/// the space without clamping distorting its geometry.
pub(super) struct Barrier<P>(pub(super) P);

impl<P: CostFunction<Param = Vec<f64>, Output = f64>> CostFunction for Barrier<P> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        if x.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Ok(f64::INFINITY);
        }
        self.0.cost(x)
    }
}

/// Nelder–Mead over the continuous subspace, TPE for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct NelderMeadSampler {
    config: NelderMeadSamplerConfig,
    tpe: TpeSampler,
}

impl NelderMeadSampler {
    pub fn new(config: NelderMeadSamplerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::new_clamped(config))
    }

    /// Builds from a config that may not have been validated: a field out
    /// of range takes its default, so no input can make an ask panic.
    pub(crate) fn new_clamped(mut config: NelderMeadSamplerConfig) -> Self {
        if config.validate().is_err() {
            let d = NelderMeadSamplerConfig::default();
            config = NelderMeadSamplerConfig {
                seed: config.seed,
                initial_point: config.initial_point,
                ..d
            };
        }
        let tpe = explorer(config.seed);
        NelderMeadSampler { config, tpe }
    }

    /// The initial simplex in the unit cube: the initial point, and one
    /// vertex per axis `initial_step` along it (backwards where forwards
    /// would leave the cube).
    fn initial_simplex(&self, sub: &Subspace, space: &SearchSpace) -> Vec<Vec<f64>> {
        let start: Vec<f64> = sub
            .names()
            .map(|name| {
                self.config
                    .initial_point
                    .get(name)
                    .and_then(|v| sub.unit_of_value(space, name, v))
                    .unwrap_or(0.5)
            })
            .collect();
        let step = self.config.initial_step;
        let mut vertices = vec![start.clone()];
        for i in 0..start.len() {
            let mut v = start.clone();
            v[i] = if v[i] + step <= 1.0 {
                v[i] + step
            } else {
                v[i] - step
            };
            vertices.push(v);
        }
        vertices
    }

    /// What the simplex method wants next, given the tape.
    fn next(&self, sub: &Subspace, space: &SearchSpace, tape: &Tape) -> Next {
        let vertices = self.initial_simplex(sub, space);
        // Until every vertex has a value, hand out the first one no trial holds.
        let mut waiting = false;
        for v in &vertices {
            match tape.lookup(v) {
                Lookup::Unassigned => return Next::Point(v.clone()),
                Lookup::Pending => waiting = true,
                Lookup::Value(_) => {}
            }
        }
        if waiting {
            return Next::Explore;
        }
        // argmin's `init` unwraps its cost calls, so it may only run once
        // every vertex has a value: it re-reads them from the start of the tape.
        tape.rewind();
        let c = &self.config;
        let solver = NelderMead::new(vertices)
            .with_alpha(c.alpha)
            .and_then(|s| s.with_gamma(c.gamma))
            .and_then(|s| s.with_rho(c.rho))
            .and_then(|s| s.with_sigma(c.sigma))
            .and_then(|s| s.with_sd_tolerance(c.sd_tolerance));
        let Ok(solver) = solver else {
            // Unreachable: the config was validated or clamped.
            return Next::Explore;
        };
        // Every iteration consumes at least one trial or stops the run (its
        // contractions and shrinks stay inside the cube, where each point
        // needs a trial), so the tape's length bounds the iterations.
        let iterations = tape.len() as u64 + 1;
        Next::replay(Barrier(tape), solver, |state| state.max_iters(iterations))
    }
}

impl AskSampler for NelderMeadSampler {
    fn ask(&self, ask: &Ask<'_>) -> Params {
        sample_replayed(&self.tpe, ask, |sub, tape| self.next(sub, ask.space, tape))
    }
}
