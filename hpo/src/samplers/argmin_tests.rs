//! Tests of the argmin-backed samplers: their trials are argmin's own steps, they converge, they share work between parallel trials, and their configs validate.

use std::sync::Mutex;

use argmin::core::{CostFunction, Executor};
use argmin::solver::neldermead::NelderMead;
use argmin::solver::particleswarm::ParticleSwarm;
use rand_chacha_09::rand_core::SeedableRng as _;
use serde_json::json;

use super::nelder_mead::Barrier;
use super::replay::Subspace;
use super::test_support::{assert_unparsable, run_sequential};
use crate::{
    Direction, FinishedTrial, NelderMeadSampler, NelderMeadSamplerConfig, Params,
    ParticleSwarmSampler, ParticleSwarmSamplerConfig, PendingTrial, Sampler, SamplerConfig,
    SearchSpace,
};

fn plane() -> SearchSpace {
    SearchSpace::from_json(&json!({
        "x": {"type": "float", "low": -5, "high": 5},
        "y": {"type": "float", "low": -5, "high": 5}
    }))
    .unwrap()
}

/// A smooth bowl with its minimum 0 at (1, −0.5).
fn bowl(p: &Params) -> f64 {
    let x = p["x"].as_f64().unwrap();
    let y = p["y"].as_f64().unwrap();
    (x - 1.0).powi(2) + 2.0 * (y + 0.5).powi(2)
}

/// Records every point argmin evaluates, answering with `f` at that point
/// (wrapped in the sampler's barrier, as the sampler's own problem is).
struct Recorder<'a> {
    space: &'a SearchSpace,
    sub: &'a Subspace,
    f: &'a dyn Fn(&Params) -> f64,
    calls: Mutex<Vec<Vec<f64>>>,
}

impl CostFunction for Recorder<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, u: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        self.calls.lock().unwrap().push(u.clone());
        Ok((self.f)(&self.sub.to_params(self.space, u)))
    }
}

fn positions(space: &SearchSpace, trials: &[FinishedTrial]) -> Vec<Vec<f64>> {
    let sub = Subspace::of(space);
    trials
        .iter()
        .map(|t| {
            sub.names()
                .map(|n| sub.unit_of_value(space, n, &t.params[n]).unwrap())
                .collect()
        })
        .collect()
}

fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>]) {
    assert_eq!(a.len(), b.len());
    for (i, (p, q)) in a.iter().zip(b).enumerate() {
        let same = p.iter().zip(q).all(|(x, y)| (x - y).abs() < 1e-9);
        assert!(same, "trial {i}: {p:?} vs argmin's {q:?}");
    }
}

#[test]
fn nelder_mead_trials_are_argmins_own_steps() {
    let space = plane();
    let sub = Subspace::of(&space);
    let sampler = NelderMeadSampler::new(NelderMeadSamplerConfig::default()).unwrap();
    let trials = run_sequential(&sampler, &space, &bowl, 40);

    // argmin run directly on the same function from the same simplex.
    let recorder = Recorder {
        space: &space,
        sub: &sub,
        f: &bowl,
        calls: Mutex::new(Vec::new()),
    };
    let simplex = vec![vec![0.5, 0.5], vec![0.75, 0.5], vec![0.5, 0.75]];
    let solver = NelderMead::new(simplex).with_sd_tolerance(1e-9).unwrap();
    Executor::new(Barrier(&recorder), solver)
        .configure(|s| s.max_iters(200))
        .run()
        .unwrap();
    let calls = recorder.calls.into_inner().unwrap();
    assert!(calls.len() >= 40, "argmin stopped after {}", calls.len());
    assert_close(&positions(&space, &trials), &calls[..40]);
}

/// argmin's problems are used by reference in the test above.
impl CostFunction for &Recorder<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, u: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        (*self).cost(u)
    }
}

#[test]
fn nelder_mead_converges_on_a_smooth_function() {
    let space = plane();
    let sampler = NelderMeadSampler::new(NelderMeadSamplerConfig::default()).unwrap();
    let trials = run_sequential(&sampler, &space, &bowl, 60);
    let best = trials
        .iter()
        .filter_map(|t| t.value)
        .fold(f64::INFINITY, f64::min);
    assert!(best < 1e-4, "best after 60 trials: {best}");
    // Starting from a corner via initial_point works too.
    let sampler = NelderMeadSampler::new(NelderMeadSamplerConfig {
        initial_point: json!({"x": -4.0, "y": 4.0}).as_object().unwrap().clone(),
        ..Default::default()
    })
    .unwrap();
    let trials = run_sequential(&sampler, &space, &bowl, 80);
    assert_eq!(trials[0].params["x"], json!(-4.0));
    let best = trials
        .iter()
        .filter_map(|t| t.value)
        .fold(f64::INFINITY, f64::min);
    assert!(best < 1e-3, "best after 80 trials from a corner: {best}");
}

#[test]
fn nelder_mead_shares_the_simplex_with_parallel_workers_then_explores() {
    let space = plane();
    let sampler = NelderMeadSampler::new(NelderMeadSamplerConfig::default()).unwrap();
    let sequential = run_sequential(&sampler, &space, &bowl, 5);
    let ask = |history: &[FinishedTrial], pending: &[PendingTrial], number| {
        sampler.sample_with_pending(&space, history, pending, Direction::Minimize, number)
    };
    let pend = |t: &FinishedTrial| PendingTrial {
        number: t.number,
        params: t.params.clone(),
    };
    // The three vertices go out together, each to its own trial.
    for n in 0..3 {
        let pending: Vec<PendingTrial> = sequential[..n].iter().map(pend).collect();
        assert_eq!(ask(&[], &pending, n as u64), *sequential[n].params);
    }
    // A fourth worker can't have the simplex's next step: it explores.
    let pending: Vec<PendingTrial> = sequential[..3].iter().map(pend).collect();
    let explore = ask(&[], &pending, 3);
    assert!(sequential[..4].iter().all(|t| *t.params != explore));
    // Once the vertices finish, the next trial is the step (the exploration,
    // still pending, is skipped over).
    let pending = [PendingTrial {
        number: 3,
        params: explore.clone().into(),
    }];
    assert_eq!(ask(&sequential[..3], &pending, 4), *sequential[3].params);
    // While that step runs, the sampler waits for it: exploration again.
    let pending = [
        PendingTrial {
            number: 3,
            params: explore.into(),
        },
        pend(&FinishedTrial {
            number: 4,
            ..sequential[3].clone()
        }),
    ];
    let again = ask(&sequential[..3], &pending, 5);
    assert!(sequential.iter().all(|t| *t.params != again));
}

#[test]
fn argmin_samplers_leave_other_parameters_to_tpe() {
    let space = SearchSpace::from_json(&json!({
        "x": {"type": "float", "low": -5, "high": 5},
        "y": {"type": "float", "low": -5, "high": 5},
        "kind": {"type": "categorical", "choices": ["a", "b", "c"]},
        "depth": {"type": "int", "low": 1, "high": 9, "when": {"kind": ["b"]}},
        "frac": {"type": "float", "low": 0, "high": 1, "step": 0.1}
    }))
    .unwrap();
    let f = |p: &Params| {
        // The kind matters more than where the solver is, so TPE can tell.
        bowl(p) + if p["kind"] == json!("b") { 0.0 } else { 30.0 } + p["frac"].as_f64().unwrap()
    };
    let nm = NelderMeadSampler::new(NelderMeadSamplerConfig::default()).unwrap();
    let pso = ParticleSwarmSampler::new(ParticleSwarmSamplerConfig::default()).unwrap();
    for sampler in [&nm as &dyn Sampler, &pso] {
        let trials = run_sequential(sampler, &space, &f, 40);
        let kinds: std::collections::BTreeSet<String> = trials
            .iter()
            .map(|t| t.params["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        // TPE learns the other parameters: the later trials favour kind b.
        let late_b = trials[20..]
            .iter()
            .filter(|t| t.params["kind"] == json!("b"))
            .count();
        assert!(late_b >= 10, "{late_b}/20");
    }
}

fn swarm(population: u32, seed: u64) -> ParticleSwarmSampler {
    ParticleSwarmSampler::new(ParticleSwarmSamplerConfig {
        population,
        seed,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn particle_swarm_generations_are_argmins_own() {
    let space = plane();
    let sub = Subspace::of(&space);
    let (pop, generations) = (6, 5);
    let trials = run_sequential(&swarm(pop, 3), &space, &bowl, u64::from(pop) * generations);

    let recorder = Recorder {
        space: &space,
        sub: &sub,
        f: &bowl,
        calls: Mutex::new(Vec::new()),
    };
    let c = ParticleSwarmSamplerConfig::default();
    let solver = ParticleSwarm::new((vec![0.0; 2], vec![1.0; 2]), pop as usize)
        .with_rng_generator(rand_chacha_09::ChaCha8Rng::seed_from_u64(3))
        .with_inertia_factor(c.inertia)
        .unwrap()
        .with_cognitive_factor(c.cognitive)
        .unwrap()
        .with_social_factor(c.social)
        .unwrap();
    Executor::new(Barrier(&recorder), solver)
        .configure(|s| s.max_iters(generations - 1))
        .run()
        .unwrap();
    let calls = recorder.calls.into_inner().unwrap();
    assert_close(&positions(&space, &trials), &calls);
}

#[test]
fn particle_swarm_improves_generation_over_generation() {
    let space = SearchSpace::from_json(&json!({
        "a": {"type": "float", "low": -5, "high": 5},
        "b": {"type": "float", "low": -5, "high": 5},
        "c": {"type": "float", "low": 1e-4, "high": 1, "log": true}
    }))
    .unwrap();
    let f = |p: &Params| {
        (p["a"].as_f64().unwrap() - 1.0).powi(2)
            + (p["b"].as_f64().unwrap() + 2.0).powi(2)
            + (p["c"].as_f64().unwrap().log10() + 2.0).powi(2)
    };
    let pop = 10;
    for seed in 0..3 {
        let trials = run_sequential(&swarm(pop, seed), &space, &f, 100);
        let gens: Vec<Vec<f64>> = trials
            .chunks(pop as usize)
            .map(|g| g.iter().map(|t| t.value.unwrap()).collect())
            .collect();
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        // The swarm contracts onto the optimum: later generations' typical
        // particle is far better than the random first generation's, and
        // the best so far improves over the run.
        assert!(
            median(&gens[9]) < 0.2 * median(&gens[0]),
            "seed {seed}: medians {:?}",
            gens.iter().map(|g| median(g)).collect::<Vec<_>>()
        );
        let best_first_half = gens[..5]
            .iter()
            .map(|g| min(g))
            .fold(f64::INFINITY, f64::min);
        let best_second_half = gens[5..]
            .iter()
            .map(|g| min(g))
            .fold(f64::INFINITY, f64::min);
        assert!(
            best_second_half < 0.5 * best_first_half,
            "seed {seed}: {best_first_half} then {best_second_half}"
        );
    }
}

#[test]
fn particle_swarm_runs_a_generation_in_parallel_and_waits_for_it() {
    let space = plane();
    let pop = 4;
    let sampler = swarm(pop, 1);
    let sequential = run_sequential(&sampler, &space, &bowl, 12);
    let pend = |t: &FinishedTrial| PendingTrial {
        number: t.number,
        params: t.params.clone(),
    };
    // Generation 0 goes out to parallel workers position by position.
    for n in 0..4 {
        let pending: Vec<PendingTrial> = sequential[..n].iter().map(pend).collect();
        let p = sampler.sample_with_pending(&space, &[], &pending, Direction::Minimize, n as u64);
        assert_eq!(p, *sequential[n].params, "trial {n}");
    }
    // Generation 1 needs all of generation 0: the dispatcher waits for
    // trials 0..4, an ask/tell client asking early gets an exploration.
    assert_eq!(
        (0..12)
            .map(|n| sampler.required_history(n))
            .collect::<Vec<_>>(),
        [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8]
    );
    let pending: Vec<PendingTrial> = sequential[2..4].iter().map(pend).collect();
    let early =
        sampler.sample_with_pending(&space, &sequential[..2], &pending, Direction::Minimize, 4);
    assert!(sequential.iter().all(|t| *t.params != early));
    // With generation 0 finished, generation 1 is handed out the same way.
    let pending: Vec<PendingTrial> = sequential[4..6].iter().map(pend).collect();
    let p = sampler.sample_with_pending(&space, &sequential[..4], &pending, Direction::Minimize, 6);
    assert_eq!(p, *sequential[6].params);
}

#[test]
fn argmin_samplers_are_deterministic_whatever_the_history_order() {
    let space = plane();
    let nm = NelderMeadSampler::new(NelderMeadSamplerConfig::default()).unwrap();
    let pso = swarm(5, 9);
    for sampler in [&nm as &dyn Sampler, &pso] {
        let trials = run_sequential(sampler, &space, &bowl, 30);
        let mut shuffled = trials.clone();
        shuffled.reverse();
        shuffled.swap(2, 17);
        for n in [10usize, 20, 29] {
            let a = sampler.sample(&space, &trials[..n], Direction::Minimize, n as u64);
            let mut part: Vec<FinishedTrial> = shuffled
                .iter()
                .filter(|t| t.number < n as u64)
                .cloned()
                .collect();
            part.rotate_left(3);
            assert_eq!(
                a,
                sampler.sample(&space, &part, Direction::Minimize, n as u64)
            );
            assert_eq!(a, *trials[n].params);
        }
    }
    // Another seed moves the swarm.
    let other = run_sequential(&swarm(5, 10), &space, &bowl, 5);
    let first = run_sequential(&pso, &space, &bowl, 5);
    assert_ne!(other[0].params, first[0].params);
}

#[test]
fn configs_parse_round_trip_and_reject_unknown_fields() {
    let c: SamplerConfig = serde_json::from_value(json!({"type": "nelder_mead"})).unwrap();
    assert_eq!(c, SamplerConfig::NelderMead(Default::default()));
    let c: SamplerConfig = serde_json::from_value(json!({
        "type": "nelder_mead", "seed": 3, "initial_point": {"x": 1.5}, "initial_step": 0.1,
        "alpha": 1.5, "gamma": 2.5, "rho": 0.4, "sigma": 0.3, "sd_tolerance": 1e-6
    }))
    .unwrap();
    c.validate_for(&plane()).unwrap();
    let back: SamplerConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let c: SamplerConfig = serde_json::from_value(json!({
        "type": "particle_swarm", "seed": 1, "population": 8, "inertia": 0.5,
        "cognitive": 1.0, "social": 2.0
    }))
    .unwrap();
    assert_eq!(c.validate_for(&plane()).unwrap(), None);
    let SamplerConfig::ParticleSwarm(p) = &c else {
        panic!("{c:?}")
    };
    assert_eq!(p.population, 8);
    assert_eq!(c.build().required_history(17), 16);
    let back: SamplerConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert_unparsable([
        json!({"type": "nelder_mead", "step": 0.1}),
        json!({"type": "particle_swarm", "particles": 8}),
        json!({"type": "neldermead"}),
        json!({"type": "particle_swarm", "population": -1}),
    ]);
}

#[test]
fn validation_names_the_field_at_fault() {
    let space = plane();
    // `config` is the sampler's settings; `kind` adds its type.
    let check = |kind: &str, mut config: serde_json::Value, field: &str| {
        config["type"] = json!(kind);
        let c: SamplerConfig = serde_json::from_value(config.clone()).unwrap();
        let err = c.validate_for(&space).unwrap_err().to_string();
        assert!(err.contains(field), "{config}: {err}");
    };
    for (config, field) in [
        (json!({"alpha": 0}), "sampler.alpha must be > 0"),
        (json!({"gamma": 1}), "sampler.gamma must be > 1"),
        (json!({"rho": 0.6}), "sampler.rho must be in (0, 0.5]"),
        (json!({"sigma": 0}), "sampler.sigma"),
        (json!({"initial_step": 1.5}), "sampler.initial_step"),
        (json!({"sd_tolerance": -1}), "sampler.sd_tolerance"),
        (
            json!({"initial_point": {"z": 1}}),
            "sampler.initial_point.z: not a float parameter",
        ),
        (
            json!({"initial_point": {"x": 9}}),
            "sampler.initial_point.x: parameter 'x': 9 is outside [-5, 5]",
        ),
    ] {
        check("nelder_mead", config, field);
    }
    for (config, field) in [
        (
            json!({"population": 1}),
            "sampler.population must be in 2..=1000",
        ),
        (json!({"population": 5000}), "sampler.population"),
        (
            json!({"social": -1}),
            "sampler.social must be a finite number >= 0",
        ),
    ] {
        check("particle_swarm", config, field);
    }
    // No continuous subspace to search.
    let discrete = SearchSpace::from_json(&json!({
        "k": {"type": "categorical", "choices": [1, 2]},
        "n": {"type": "int", "low": 1, "high": 3},
        "f": {"type": "float", "low": 0, "high": 1, "step": 0.5},
        "c": {"type": "float", "low": 0, "high": 1, "when": {"k": [1]}}
    }))
    .unwrap();
    for kind in ["nelder_mead", "particle_swarm"] {
        let c: SamplerConfig = serde_json::from_value(json!({"type": kind})).unwrap();
        let err = c.validate_for(&discrete).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "sampler {kind} needs at least one float parameter"
            )),
            "{err}"
        );
        // Built anyway (unvalidated), it still answers valid params.
        let p = c.build().sample(&discrete, &[], Direction::Minimize, 0);
        discrete.validate(&p).unwrap();
    }
    // Unvalidated bad settings build without panicking and still sample.
    let c: SamplerConfig =
        serde_json::from_value(json!({"type": "nelder_mead", "rho": 7, "alpha": -1})).unwrap();
    let trials = run_sequential(c.build().as_ref(), &space, &bowl, 6);
    assert_eq!(trials.len(), 6);
    let c: SamplerConfig =
        serde_json::from_value(json!({"type": "particle_swarm", "population": 0})).unwrap();
    let trials = run_sequential(c.build().as_ref(), &space, &bowl, 6);
    assert_eq!(trials.len(), 6);
}
