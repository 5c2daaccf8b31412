//! Benchmark: one TPE ask on a 6-parameter mixed space with 100, 1,000 and 10,000 finished trials (multivariate and independent, with parallel trials pending), and one Nelder–Mead and particle-swarm ask (their argmin replay).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use tracseq_hpo::{
    Direction, FinishedTrial, NelderMeadSamplerConfig, Params, ParticleSwarmSamplerConfig,
    PendingTrial, RandomSampler, Sampler, SamplerConfig, SearchSpace, TpeSamplerConfig, TrialState,
};

/// Every kind of parameter the sampler handles, all active, so each ask pays
/// for six estimators pairs (the worst case for a space of this size).
fn space() -> SearchSpace {
    SearchSpace::from_json(&json!({
        "x": {"type": "float", "low": -5, "high": 5},
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": true},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
        "iterations": {"type": "int", "low": 50, "high": 1000, "step": 50},
        "units": {"type": "int", "low": 8, "high": 1024, "log": true},
        "family": {"type": "categorical", "choices": ["linear", "gbm", "nn", "svm"]}
    }))
    .expect("benchmark space is valid")
}

fn objective(p: &Params) -> f64 {
    let f = |k: &str| p[k].as_f64().unwrap_or(0.0);
    let family = if p["family"] == json!("gbm") {
        0.0
    } else {
        1.0
    };
    (f("x") - 1.0).powi(2)
        + (f("lr").log10() + 2.0).powi(2)
        + (f("dropout") - 0.2).powi(2)
        + ((f("iterations") - 400.0) / 300.0).powi(2)
        + (f("units").log2() - 6.0).powi(2) / 10.0
        + family
}

/// A study history: random suggestions, one in ten pruned and one in twenty failed.
fn history(space: &SearchSpace, n: u64) -> Vec<FinishedTrial> {
    let random = RandomSampler::new(7);
    (0..n)
        .map(|number| {
            let params = random.sample(space, &[], Direction::Minimize, number);
            let value = objective(&params);
            let (state, value, intermediate) = match number % 20 {
                0 => (TrialState::Failed, None, BTreeMap::new()),
                1 | 11 => (TrialState::Pruned, None, BTreeMap::from([(3, value + 1.0)])),
                _ => (
                    TrialState::Complete,
                    Some(value),
                    BTreeMap::from([(3, value + 0.5)]),
                ),
            };
            FinishedTrial {
                number,
                params: params.into(),
                state,
                value,
                intermediate: intermediate.into(),
            }
        })
        .collect()
}

/// Four trials asked after the history and still running: what the
/// constant liar adds to every ask of a parallel study.
fn pending(space: &SearchSpace, n: u64) -> Vec<PendingTrial> {
    let random = RandomSampler::new(8);
    (n..n + 4)
        .map(|number| PendingTrial {
            number,
            params: random
                .sample(space, &[], Direction::Minimize, number)
                .into(),
        })
        .collect()
}

fn tpe_ask(c: &mut Criterion) {
    let space = space();
    for (group_name, multivariate) in [("tpe_ask", true), ("tpe_ask_independent", false)] {
        let sampler = SamplerConfig::Tpe(TpeSamplerConfig {
            seed: 1,
            multivariate,
            ..Default::default()
        })
        .build();
        let mut group = c.benchmark_group(group_name);
        for n in [100u64, 1000, 10_000] {
            let hist = history(&space, n);
            let pend = pending(&space, n);
            group.bench_with_input(BenchmarkId::from_parameter(n), &hist, |b, hist| {
                let mut number = n + 4;
                b.iter(|| {
                    number += 1;
                    black_box(sampler.sample_with_pending(
                        &space,
                        black_box(hist),
                        &pend,
                        Direction::Minimize,
                        number,
                    ))
                })
            });
        }
        group.finish();
    }
}

/// The argmin-backed samplers replay their solver over the whole history on
/// every ask; this is what that costs (the same space, whose two unstepped
/// unconditional floats form the continuous subspace; the history is their
/// own run, so the replay consumes every trial).
fn argmin_ask(c: &mut Criterion) {
    let space = space();
    let objective = |p: &Params| objective(p);
    let configs = [
        (
            "nelder_mead_ask",
            SamplerConfig::NelderMead(NelderMeadSamplerConfig {
                seed: 1,
                sd_tolerance: 0.0,
                ..Default::default()
            }),
        ),
        (
            "particle_swarm_ask",
            SamplerConfig::ParticleSwarm(ParticleSwarmSamplerConfig {
                seed: 1,
                ..Default::default()
            }),
        ),
    ];
    for (group_name, config) in configs {
        let sampler = config.build();
        let mut group = c.benchmark_group(group_name);
        let mut hist = Vec::new();
        for n in [100u64, 1000] {
            while (hist.len() as u64) < n {
                let number = hist.len() as u64;
                let params = sampler.sample(&space, &hist, Direction::Minimize, number);
                let value = objective(&params);
                hist.push(FinishedTrial {
                    number,
                    params: params.into(),
                    state: TrialState::Complete,
                    value: Some(value),
                    intermediate: Default::default(),
                });
            }
            group.bench_with_input(BenchmarkId::from_parameter(n), &hist, |b, hist| {
                b.iter(|| {
                    black_box(sampler.sample(&space, black_box(hist), Direction::Minimize, n))
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, tpe_ask, argmin_ask);
criterion_main!(benches);
