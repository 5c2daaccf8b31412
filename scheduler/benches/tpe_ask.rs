//! Benchmark: one TPE ask (`Sampler::sample`) on a 6-parameter mixed space with 100 and 1,000 finished trials.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::json;
use tracseq_scheduler::hpo::{
    Direction, FinishedTrial, Params, RandomSampler, Sampler, SamplerConfig, SearchSpace,
    TpeSamplerConfig, TrialState,
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
                params,
                state,
                value,
                intermediate,
            }
        })
        .collect()
}

fn tpe_ask(c: &mut Criterion) {
    let space = space();
    let sampler = SamplerConfig::Tpe(TpeSamplerConfig {
        seed: 1,
        ..Default::default()
    })
    .build();
    let mut group = c.benchmark_group("tpe_ask");
    for n in [100u64, 1000] {
        let hist = history(&space, n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &hist, |b, hist| {
            let mut number = n;
            b.iter(|| {
                number += 1;
                black_box(sampler.sample(&space, black_box(hist), Direction::Minimize, number))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tpe_ask);
criterion_main!(benches);
