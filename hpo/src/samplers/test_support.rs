//! What the sampler tests share: finished trials, studies asked and told one
//! trial after another, the mixed conditional space several samplers are
//! tested on, and the check that bad configurations don't parse.

use serde_json::{json, Value};

use super::{Sampler, SamplerConfig};
use crate::{Direction, FinishedTrial, Params, SearchSpace, TrialState};

/// A complete trial with `value`.
pub(crate) fn complete(number: u64, params: Params, value: f64) -> FinishedTrial {
    FinishedTrial {
        number,
        params: params.into(),
        state: TrialState::Complete,
        value: Some(value),
        intermediate: Default::default(),
    }
}

/// `n` trials asked one after another: `ask` draws trial `number`'s params
/// knowing the trials so far, which must be valid in `space`, and `tell`
/// makes its finished trial.
pub(crate) fn run_study<T>(
    space: &SearchSpace,
    n: u64,
    mut ask: impl FnMut(&[T], u64) -> Params,
    mut tell: impl FnMut(u64, Params) -> T,
) -> Vec<T> {
    let mut trials = Vec::new();
    for number in 0..n {
        let params = ask(&trials, number);
        space
            .validate(&params)
            .unwrap_or_else(|e| panic!("trial {number}: {params:?}: {e}"));
        trials.push(tell(number, params));
    }
    trials
}

/// `n` trials of `sampler` minimising `f`, asked and told one after another.
/// With a `RandomSampler` this is a history that learnt nothing.
pub(crate) fn run_sequential(
    sampler: &dyn Sampler,
    space: &SearchSpace,
    f: &dyn Fn(&Params) -> f64,
    n: u64,
) -> Vec<FinishedTrial> {
    run_study(
        space,
        n,
        |history, number| sampler.sample(space, history, Direction::Minimize, number),
        |number, params| {
            let value = f(&params);
            complete(number, params, value)
        },
    )
}

/// A conditional space with every kind of parameter: a log float, a
/// stepped int, a log int and a stepped float, each under one branch of a
/// categorical, and an unconditional float.
pub(crate) fn mixed_space() -> SearchSpace {
    SearchSpace::from_json(&json!({
        "family": {"type": "categorical", "choices": ["linear", "gbm", "nn"]},
        "l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
        "trees": {"type": "int", "low": 50, "high": 400, "step": 50, "when": {"family": ["gbm"]}},
        "depth": {"type": "int", "low": 1, "high": 1000, "log": true, "when": {"family": ["gbm"]}},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1, "when": {"family": ["nn"]}},
        "x": {"type": "float", "low": -5, "high": 5}
    }))
    .unwrap()
}

/// Each of `bad` fails to parse as a sampler configuration.
pub(crate) fn assert_unparsable(bad: impl IntoIterator<Item = Value>) {
    for bad in bad {
        assert!(
            serde_json::from_value::<SamplerConfig>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
