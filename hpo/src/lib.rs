//! Hyperparameter optimisation: search spaces, samplers (random, grid, TPE,
//! Nelder–Mead, particle swarm, NSGA-II) and pruners.
//!
//! Everything here is a pure function of its inputs: no I/O, no clock reads and
//! no global RNG. Each trial's random draws come from an RNG derived from
//! `(seed, trial_number)` alone, so a study replays bit-for-bit whatever order
//! its asks arrive in, and the scheduler can recompute a suggestion after a
//! crash instead of persisting sampler state.
//!
//! Modules: [`space`] (search spaces), [`samplers`] (the [`Sampler`]
//! interface, its implementations and the [`SamplerConfig`] that builds
//! them), [`multi`] (multi-objective trials and Pareto dominance),
//! [`pruners`] and [`importance`]. The types every module shares (trials,
//! [`Direction`], [`HpoError`]) are defined here. The crate depends on no
//! other TracSeq crate, no async runtime and no native library.

pub mod importance;
pub mod multi;
pub mod pruners;
mod rng;
pub mod samplers;
pub mod space;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use pruners::{AshaPrunerConfig, HyperbandPrunerConfig, MedianPrunerConfig, PrunerConfig};
pub use samplers::{
    build_multi_objective, NelderMeadSampler, NelderMeadSamplerConfig, ParticleSwarmSampler,
    ParticleSwarmSamplerConfig, RandomSampler, RandomSamplerConfig, Sampler, SamplerConfig,
    TpeSampler, TpeSamplerConfig, MAX_EI_CANDIDATES, MAX_POPULATION,
};
pub use space::{
    Condition, ParamKind, ParamSpec, SearchSpace, MAX_CHOICES, MAX_INT_ABS, MAX_NAME_LEN,
    MAX_PARAMS,
};

/// One trial's parameter values: ints are JSON integers, floats JSON numbers,
/// categoricals the choice value itself. Inactive conditional parameters are absent.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// A trial that was asked but has not finished (it runs in parallel): its
/// params are known, its value is not. Samplers that spread parallel trials
/// (TPE's constant liar) or wait on evaluations (Nelder–Mead, particle swarm)
/// read these; the others ignore them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingTrial {
    pub number: u64,
    pub params: Arc<Params>,
}

/// Errors of this crate. Every message names the parameter or key at fault
/// and what is wrong with it, so the API can hand it to the user verbatim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpoError {
    /// A search space, sampler/pruner configuration or told parameter set is malformed.
    #[error("{0}")]
    Invalid(String),
}

impl HpoError {
    /// Bad input stays bad on retry.
    pub fn is_retryable(&self) -> bool {
        match self {
            HpoError::Invalid(_) => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = HpoError> = std::result::Result<T, E>;

pub(crate) fn invalid(message: impl Into<String>) -> HpoError {
    HpoError::Invalid(message.into())
}

/// Whether a study looks for the smallest or the largest objective value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Minimize,
    Maximize,
}

impl Direction {
    /// Whether `a` is strictly better than `b` in this direction.
    pub fn is_better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// The value mapped so that smaller is always better, which lets ranking
    /// code be written once.
    pub(crate) fn as_loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = HpoError;

    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("minimize") {
            Ok(Direction::Minimize)
        } else if s.eq_ignore_ascii_case("maximize") {
            Ok(Direction::Maximize)
        } else {
            Err(invalid(format!(
                "direction must be \"minimize\" or \"maximize\" (got {s:?})"
            )))
        }
    }
}

/// How a finished trial ended, as far as samplers and pruners care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    Complete,
    Pruned,
    Failed,
}

/// A trial the sampler and pruner learn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedTrial {
    pub number: u64,
    /// Shared with the stored trial: a sampler reads every finished trial on
    /// each ask, so building the history must not copy them.
    pub params: Arc<Params>,
    pub state: TrialState,
    /// The objective value; `None` (or NaN) for a complete trial makes it unusable
    /// and it is ignored like a failed one.
    pub value: Option<f64>,
    /// Intermediate values reported by step, used to rank pruned trials and by pruners.
    #[serde(default)]
    pub intermediate: Arc<BTreeMap<u32, f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_parses_and_prints() {
        assert_eq!(
            "minimize".parse::<Direction>().unwrap(),
            Direction::Minimize
        );
        assert_eq!(
            "MAXIMIZE".parse::<Direction>().unwrap(),
            Direction::Maximize
        );
        let err = "up".parse::<Direction>().unwrap_err();
        assert!(err.to_string().contains("\"up\""), "{err}");
        assert_eq!(Direction::Maximize.to_string(), "maximize");
        assert_eq!(
            serde_json::to_value(Direction::Minimize).unwrap(),
            serde_json::json!("minimize")
        );
        let d: Direction = serde_json::from_value(serde_json::json!("maximize")).unwrap();
        assert_eq!(d, Direction::Maximize);
        assert!(Direction::Maximize.is_better(2.0, 1.0));
        assert!(Direction::Minimize.is_better(1.0, 2.0));
        assert!(!HpoError::Invalid("x".into()).is_retryable());
    }

    #[test]
    fn finished_trial_round_trips_through_json() {
        let json = serde_json::json!({
            "number": 3, "params": {"x": 1.5}, "state": "pruned", "value": null,
            "intermediate": {"1": 0.5, "2": 0.25}
        });
        let t: FinishedTrial = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(t.state, TrialState::Pruned);
        assert_eq!(t.intermediate.get(&2), Some(&0.25));
        assert_eq!(serde_json::to_value(&t).unwrap(), json);
    }
}
