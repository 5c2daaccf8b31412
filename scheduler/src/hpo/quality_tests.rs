//! Optimisation-quality checks: on known functions and an equal budget, TPE must beat random search.

use std::collections::BTreeMap;

use serde_json::json;

use super::{
    Direction, FinishedTrial, Params, RandomSampler, Sampler, SearchSpace, TpeSampler,
    TpeSamplerConfig, TrialState,
};

const BUDGET: u64 = 60;
const SEEDS: u64 = 8;

/// Best value found by `sampler` in `BUDGET` sequential trials.
fn best_of(sampler: &dyn Sampler, space: &SearchSpace, f: &dyn Fn(&Params) -> f64) -> f64 {
    let mut history = Vec::new();
    let mut best = f64::INFINITY;
    for number in 0..BUDGET {
        let params = sampler.sample(space, &history, Direction::Minimize, number);
        space
            .validate(&params)
            .unwrap_or_else(|e| panic!("{params:?}: {e}"));
        let value = f(&params);
        best = best.min(value);
        history.push(FinishedTrial {
            number,
            params,
            state: TrialState::Complete,
            value: Some(value),
            intermediate: BTreeMap::new(),
        });
    }
    best
}

/// Runs both samplers over all seeds and checks TPE wins on the mean and on a majority.
fn assert_tpe_beats_random(space: &SearchSpace, f: &dyn Fn(&Params) -> f64) {
    let mut tpe_best = Vec::new();
    let mut random_best = Vec::new();
    for seed in 0..SEEDS {
        let tpe = TpeSampler::new(TpeSamplerConfig {
            seed,
            ..Default::default()
        })
        .unwrap();
        tpe_best.push(best_of(&tpe, space, f));
        random_best.push(best_of(&RandomSampler::new(seed), space, f));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let wins = tpe_best
        .iter()
        .zip(&random_best)
        .filter(|(t, r)| t < r)
        .count();
    assert!(
        mean(&tpe_best) < mean(&random_best) && wins * 2 > SEEDS as usize,
        "tpe {tpe_best:?} (mean {}) vs random {random_best:?} (mean {}), tpe wins {wins}/{SEEDS}",
        mean(&tpe_best),
        mean(&random_best)
    );
}

fn f64_of(p: &Params, name: &str) -> f64 {
    p[name].as_f64().unwrap()
}

#[test]
fn tpe_beats_random_on_shifted_sphere_with_log_param() {
    let space = SearchSpace::from_json(&json!({
        "x0": {"type": "float", "low": -5, "high": 5},
        "x1": {"type": "float", "low": -5, "high": 5},
        "x2": {"type": "float", "low": -5, "high": 5},
        "x3": {"type": "float", "low": -5, "high": 5},
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": true}
    }))
    .unwrap();
    let shifts = [1.3, -2.1, 0.7, 3.2];
    let f = |p: &Params| {
        let sphere: f64 = shifts
            .iter()
            .enumerate()
            .map(|(i, s)| (f64_of(p, &format!("x{i}")) - s).powi(2))
            .sum();
        sphere + (f64_of(p, "lr").log10() + 2.5).powi(2)
    };
    assert_tpe_beats_random(&space, &f);
}

#[test]
fn tpe_beats_random_on_conditional_space() {
    // Three model families with their own parameters; "gbm" holds the optimum.
    let space = SearchSpace::from_json(&json!({
        "family": {"type": "categorical", "choices": ["linear", "gbm", "nn"]},
        "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
        "gbm_iterations": {"type": "int", "low": 50, "high": 400, "step": 50, "when": {"family": ["gbm"]}},
        "gbm_lr": {"type": "float", "low": 1e-3, "high": 1.0, "log": true, "when": {"family": ["gbm"]}},
        "gbm_subsample": {"type": "float", "low": 0.1, "high": 1.0, "when": {"family": ["gbm"]}},
        "nn_units": {"type": "int", "low": 8, "high": 512, "log": true, "when": {"family": ["nn"]}},
        "nn_dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05, "when": {"family": ["nn"]}},
        "x": {"type": "float", "low": -3, "high": 3}
    }))
    .unwrap();
    let f = |p: &Params| {
        let shared = (f64_of(p, "x") - 1.0).powi(2);
        let branch = match p["family"].as_str().unwrap() {
            "linear" => 1.0 + 0.1 * (f64_of(p, "linear_l2").log10() + 3.0).powi(2),
            "gbm" => {
                let it = f64_of(p, "gbm_iterations");
                ((it - 250.0) / 200.0).powi(2)
                    + 0.5 * (f64_of(p, "gbm_lr").log10() + 1.3).powi(2)
                    + (f64_of(p, "gbm_subsample") - 0.8).powi(2)
            }
            _ => {
                0.6 + 0.5 * (f64_of(p, "nn_units").log2() - 7.0).powi(2)
                    + 4.0 * (f64_of(p, "nn_dropout") - 0.2).powi(2)
            }
        };
        shared + branch
    };
    assert_tpe_beats_random(&space, &f);
}
