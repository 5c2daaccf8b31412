//! Unit tests of the TPE sampler: determinism, ranking, validity, multivariate groups and the constant liar.

use super::*;
use crate::samplers::test_support::{complete, run_sequential};
use crate::{RandomSampler, Sampler, SearchSpace};
use serde_json::json;
use std::collections::BTreeMap;

fn space() -> SearchSpace {
    SearchSpace::from_json(&json!({
        "family": {"type": "categorical", "choices": ["linear", "gbm"]},
        "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
        "gbm_iterations": {"type": "int", "low": 50, "high": 400, "step": 50, "when": {"family": ["gbm"]}},
        "depth": {"type": "int", "low": 1, "high": 64, "log": true},
        "x": {"type": "float", "low": -5, "high": 5},
        "frac": {"type": "float", "low": 0, "high": 1, "step": 0.05}
    }))
    .unwrap()
}

fn objective(p: &Params) -> f64 {
    let x = p["x"].as_f64().unwrap();
    x * x + p["frac"].as_f64().unwrap()
}

fn history(n: u64) -> Vec<FinishedTrial> {
    let space = space();
    let random = RandomSampler::new(99);
    (0..n)
        .map(|i| {
            let params = random.sample(&space, &[], Direction::Minimize, i);
            let (state, value) = match i % 7 {
                5 => (TrialState::Failed, None),
                6 => (TrialState::Pruned, None),
                _ => (TrialState::Complete, Some(objective(&params))),
            };
            let intermediate = if state == TrialState::Pruned {
                BTreeMap::from([(1, objective(&params) + 1.0)])
            } else {
                BTreeMap::new()
            };
            FinishedTrial {
                number: i,
                params: params.into(),
                state,
                value,
                intermediate: intermediate.into(),
            }
        })
        .collect()
}

fn tpe_with(seed: u64, multivariate: bool, constant_liar: bool) -> TpeSampler {
    TpeSampler::new(TpeSamplerConfig {
        seed,
        multivariate,
        constant_liar,
        ..Default::default()
    })
    .unwrap()
}

/// Both modes, so every behaviour test covers each.
fn both_modes(seed: u64) -> [TpeSampler; 2] {
    [tpe_with(seed, true, true), tpe_with(seed, false, true)]
}

#[test]
fn deterministic_per_seed_and_number_whatever_the_history_order() {
    let space = space();
    let hist = history(80);
    let mut shuffled = hist.clone();
    shuffled.reverse();
    shuffled.swap(3, 40);
    for (a, b) in both_modes(5).iter().zip(both_modes(5)) {
        for n in [80, 81, 200] {
            let p = a.sample(&space, &hist, Direction::Minimize, n);
            space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            assert_eq!(p, b.sample(&space, &shuffled, Direction::Minimize, n));
        }
    }
    for (a, b) in both_modes(5).iter().zip(both_modes(6)) {
        let differs = (80..90).any(|n| {
            a.sample(&space, &hist, Direction::Minimize, n)
                != b.sample(&space, &hist, Direction::Minimize, n)
        });
        assert!(differs);
    }
}

#[test]
fn startup_trials_are_random_draws() {
    let space = space();
    let hist = history(12); // 12 trials, 1 failed: 11 usable
    let cfg = TpeSamplerConfig {
        seed: 4,
        n_startup_trials: 12,
        ..Default::default()
    };
    let p = TpeSampler::new(cfg)
        .unwrap()
        .sample(&space, &hist, Direction::Minimize, 12);
    assert_eq!(
        p,
        RandomSampler::new(4).sample(&space, &[], Direction::Minimize, 12)
    );
}

#[test]
fn suggestions_are_valid_across_many_asks() {
    let space = space();
    let hist = history(150);
    for s in both_modes(1) {
        for n in 150..200 {
            for dir in [Direction::Minimize, Direction::Maximize] {
                let p = s.sample(&space, &hist, dir, n);
                space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            }
        }
    }
}

#[test]
fn concentrates_near_the_good_region() {
    // Good trials all have x near 2; suggestions should follow.
    let space =
        SearchSpace::from_json(&json!({"x": {"type": "float", "low": -10, "high": 10}})).unwrap();
    let hist: Vec<FinishedTrial> = (0..100)
        .map(|i| {
            let x = -10.0 + 20.0 * ((i * 37) % 100) as f64 / 99.0;
            let mut params = Params::new();
            params.insert("x".into(), json!(x));
            complete(i, params, (x - 2.0).abs())
        })
        .collect();
    for s in both_modes(0) {
        let distance = |direction, n| {
            let x = s.sample(&space, &hist, direction, n)["x"].as_f64().unwrap();
            (x - 2.0).abs()
        };
        let near = (100..150)
            .filter(|&n| distance(Direction::Minimize, n) < 2.0)
            .count();
        assert!(near >= 40, "{near}/50");
        // Maximising flips which end is good.
        let far = (100..150)
            .filter(|&n| distance(Direction::Maximize, n) > 8.0)
            .count();
        assert!(far >= 40, "{far}/50");
    }
}

#[test]
fn ranking_follows_optuna() {
    let t = |number, state, value: Option<f64>, inter: &[(u32, f64)]| FinishedTrial {
        number,
        params: Default::default(),
        state,
        value,
        intermediate: std::sync::Arc::new(inter.iter().copied().collect()),
    };
    let hist = vec![
        t(0, TrialState::Complete, Some(3.0), &[]),
        t(1, TrialState::Pruned, None, &[(1, 0.1)]),
        t(2, TrialState::Pruned, None, &[(1, 0.5), (3, 9.0)]),
        t(3, TrialState::Failed, None, &[]),
        t(4, TrialState::Complete, Some(1.0), &[]),
        t(5, TrialState::Complete, None, &[]),
        t(6, TrialState::Complete, Some(f64::NAN), &[]),
        t(7, TrialState::Pruned, None, &[]),
        t(8, TrialState::Complete, Some(1.0), &[]),
    ];
    let ranked = |d| {
        let mut r: Vec<Ranked<'_>> = hist
            .iter()
            .filter_map(|t| rank_key(t, d).map(|k| (k, t)))
            .collect();
        r.sort_by(cmp_ranked);
        r.iter().map(|(_, t)| t.number).collect::<Vec<_>>()
    };
    assert_eq!(ranked(Direction::Minimize), [4, 8, 0, 2, 1, 7]);
    assert_eq!(ranked(Direction::Maximize), [0, 4, 8, 2, 1, 7]);
    let numbers = |(b, a): (Vec<&FinishedTrial>, Vec<&FinishedTrial>)| {
        let n = |g: Vec<&FinishedTrial>| g.iter().map(|t| t.number).collect::<Vec<_>>();
        (n(b), n(a))
    };
    // Six usable trials, γ = 0.5: the best three, then the rest, each in trial order.
    assert_eq!(
        numbers(split_trials(&hist, Direction::Minimize, 0.5)),
        (vec![0, 4, 8], vec![1, 2, 7])
    );
    assert_eq!(
        numbers(split_trials(&hist, Direction::Minimize, 1.0)),
        (vec![0, 1, 2, 4, 7, 8], vec![])
    );
    assert_eq!(
        numbers(split_trials(&[], Direction::Minimize, 0.1)),
        (vec![], vec![])
    );
    assert_eq!(n_below(0.1, 6), 1);
    assert_eq!(n_below(0.1, 1000), 25);
    assert_eq!(n_below(1.0, 3), 3);
}

#[test]
fn history_with_foreign_values_is_ignored_not_fatal() {
    let space = space();
    let mut hist = history(40);
    std::sync::Arc::make_mut(&mut hist[0].params).insert("x".into(), json!("not a number"));
    std::sync::Arc::make_mut(&mut hist[1].params).insert("family".into(), json!("svm"));
    std::sync::Arc::make_mut(&mut hist[2].params).insert("gbm_iterations".into(), json!(1e9));
    hist[3].value = Some(f64::INFINITY);
    for s in both_modes(2) {
        let p = s.sample(&space, &hist, Direction::Minimize, 40);
        space.validate(&p).unwrap();
        // Pending trials with foreign values are ignored the same way.
        let pending = [PendingTrial {
            number: 40,
            params: json!({"x": "?", "family": "svm"})
                .as_object()
                .unwrap()
                .clone()
                .into(),
        }];
        let p = s.sample_with_pending(&space, &hist, &pending, Direction::Minimize, 41);
        space.validate(&p).unwrap();
    }
}

#[test]
fn clamped_build_never_panics() {
    let s = TpeSampler::new_clamped(TpeSamplerConfig {
        gamma: f64::NAN,
        prior_weight: -1.0,
        n_ei_candidates: 0,
        n_startup_trials: 0,
        seed: 1,
        multivariate: true,
        constant_liar: true,
    });
    let space = space();
    let p = s.sample(&space, &history(30), Direction::Minimize, 30);
    space.validate(&p).unwrap();
    let p = s.sample(&space, &[], Direction::Minimize, 0);
    space.validate(&p).unwrap();
}

#[test]
fn scores_each_distinct_candidate_once() {
    let mut calls = 0;
    let scores = score_unique_points(&[1.0, 2.0, 1.0, 3.0, 2.0], 1, |x| {
        calls += 1;
        -x[0]
    });
    assert_eq!(calls, 3);
    assert_eq!(scores, [-1.0, -2.0, -1.0, -3.0, -2.0]);
    // Points of two values: equal only when both are.
    let mut calls = 0;
    let scores = score_unique_points(&[1.0, 2.0, 1.0, 3.0, 1.0, 2.0], 2, |x| {
        calls += 1;
        x[0] + x[1]
    });
    assert_eq!(calls, 2);
    assert_eq!(scores, [3.0, 4.0, 3.0]);
    assert_eq!(first_argmax(&[f64::NAN, 1.0, 1.0]), 1);
    assert_eq!(first_argmax(&[f64::NAN]), 0);
}

/// 100 trials on [-5, 5]² where only the diagonal x = y is good.
fn diagonal_history() -> (SearchSpace, Vec<FinishedTrial>) {
    let space = SearchSpace::from_json(&json!({
        "x": {"type": "float", "low": -5, "high": 5},
        "y": {"type": "float", "low": -5, "high": 5}
    }))
    .unwrap();
    let diagonal = |p: &Params| (p["x"].as_f64().unwrap() - p["y"].as_f64().unwrap()).abs();
    let hist = run_sequential(&RandomSampler::new(5), &space, &diagonal, 100);
    (space, hist)
}

#[test]
fn multivariate_draws_follow_correlations_independent_ones_cannot() {
    // The good trials spread along the whole diagonal: each marginal alone
    // is nearly uniform, only the joint density knows x and y move together.
    let (space, hist) = diagonal_history();
    let off_diagonal = |s: &TpeSampler| -> f64 {
        (100..160)
            .map(|n| {
                let p = s.sample(&space, &hist, Direction::Minimize, n);
                (p["x"].as_f64().unwrap() - p["y"].as_f64().unwrap()).abs()
            })
            .sum::<f64>()
            / 60.0
    };
    let joint = off_diagonal(&tpe_with(3, true, true));
    let independent = off_diagonal(&tpe_with(3, false, true));
    assert!(
        joint < 0.5 * independent,
        "mean |x - y|: multivariate {joint}, independent {independent}"
    );
}

#[test]
fn conditional_groups_are_sampled_jointly_only_where_active() {
    // In the gbm branch, lr and rounds trade off (lr * rounds ~ 10): a
    // joint density over the branch's group finds the ridge.
    let space = SearchSpace::from_json(&json!({
        "family": {"type": "categorical", "choices": ["linear", "gbm"]},
        "l2": {"type": "float", "low": 0, "high": 1, "when": {"family": ["linear"]}},
        "lr": {"type": "float", "low": 0.01, "high": 1, "log": true, "when": {"family": ["gbm"]}},
        "rounds": {"type": "int", "low": 10, "high": 1000, "log": true, "when": {"family": ["gbm"]}}
    }))
    .unwrap();
    let f = |p: &Params| match p["family"].as_str().unwrap() {
        "gbm" => {
            let lr = p["lr"].as_f64().unwrap();
            let rounds = p["rounds"].as_f64().unwrap();
            (lr * rounds / 10.0).ln().abs()
        }
        _ => 1.0 + p["l2"].as_f64().unwrap(),
    };
    let hist = run_sequential(&RandomSampler::new(8), &space, &f, 120);
    let ridge_error = |s: &TpeSampler| -> (f64, usize) {
        let mut total = 0.0;
        let mut gbm = 0;
        for n in 120..200 {
            let p = s.sample(&space, &hist, Direction::Minimize, n);
            space.validate(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            if p["family"] == json!("gbm") {
                gbm += 1;
                total += f(&p);
            }
        }
        (total / gbm.max(1) as f64, gbm)
    };
    let (joint, joint_gbm) = ridge_error(&tpe_with(4, true, true));
    let (independent, _) = ridge_error(&tpe_with(4, false, true));
    assert!(joint_gbm >= 60, "the good branch is chosen: {joint_gbm}/80");
    assert!(
        joint < 0.7 * independent,
        "mean distance from the ridge: multivariate {joint}, independent {independent}"
    );
}

/// `k` parallel asks after `first` finished trials: each sees the earlier
/// asks as pending.
fn parallel_asks(
    s: &TpeSampler,
    space: &SearchSpace,
    hist: &[FinishedTrial],
    first: u64,
    k: u64,
) -> Vec<Params> {
    let mut pending: Vec<PendingTrial> = Vec::new();
    for n in first..first + k {
        let params = s.sample_with_pending(space, hist, &pending, Direction::Minimize, n);
        pending.push(PendingTrial {
            number: n,
            params: params.into(),
        });
    }
    pending
        .into_iter()
        .map(|p| std::sync::Arc::unwrap_or_clone(p.params))
        .collect()
}

#[test]
fn constant_liar_spreads_parallel_asks() {
    // Eight workers ask one after another while none has finished; each
    // ask knows the earlier ones as pending. Without the liar they crowd
    // the current best guess (and, on a grid, repeat points exactly).
    let space = SearchSpace::from_json(&json!({
        "n": {"type": "int", "low": 0, "high": 40},
        "m": {"type": "int", "low": 0, "high": 40}
    }))
    .unwrap();
    for multivariate in [true, false] {
        let (mut spread, mut distinct) = ([0.0; 2], [0; 2]);
        for seed in 0..8 {
            let f = |p: &Params| {
                (p["n"].as_f64().unwrap() - 20.0).powi(2)
                    + (p["m"].as_f64().unwrap() - 10.0).powi(2)
            };
            let hist = run_sequential(&RandomSampler::new(seed + 100), &space, &f, 20);
            for (i, liar) in [true, false].into_iter().enumerate() {
                let asks = parallel_asks(&tpe_with(seed, multivariate, liar), &space, &hist, 20, 8);
                let points: Vec<(f64, f64)> = asks
                    .iter()
                    .map(|p| (p["n"].as_f64().unwrap(), p["m"].as_f64().unwrap()))
                    .collect();
                // Mean distance from each ask to its nearest other ask.
                spread[i] += points
                    .iter()
                    .enumerate()
                    .map(|(a, pa)| {
                        points
                            .iter()
                            .enumerate()
                            .filter(|(b, _)| *b != a)
                            .map(|(_, pb)| (pa.0 - pb.0).hypot(pa.1 - pb.1))
                            .fold(f64::INFINITY, f64::min)
                    })
                    .sum::<f64>()
                    / 64.0;
                let unique: std::collections::BTreeSet<(i64, i64)> =
                    points.iter().map(|p| (p.0 as i64, p.1 as i64)).collect();
                distinct[i] += unique.len();
            }
        }
        let [with_liar, without] = spread;
        assert!(
            with_liar > 2.0 * without,
            "multivariate {multivariate}: nearest-neighbour distance {with_liar} with the liar, {without} without"
        );
        // Pending points are (almost) never handed out again.
        assert!(
            distinct[0] >= 63,
            "multivariate {multivariate}: {} distinct points of 64 with the liar ({} without)",
            distinct[0],
            distinct[1]
        );
    }
}

#[test]
fn pending_trials_are_ignored_without_the_liar_and_their_order_never_matters() {
    let space = space();
    let hist = history(60);
    let pending: Vec<PendingTrial> = history(66)[60..]
        .iter()
        .map(|t| PendingTrial {
            number: t.number,
            params: t.params.clone(),
        })
        .collect();
    let mut reversed = pending.clone();
    reversed.reverse();
    for multivariate in [true, false] {
        let off = tpe_with(7, multivariate, false);
        assert_eq!(
            off.sample_with_pending(&space, &hist, &pending, Direction::Minimize, 66),
            off.sample(&space, &hist, Direction::Minimize, 66)
        );
        let on = tpe_with(7, multivariate, true);
        let a = on.sample_with_pending(&space, &hist, &pending, Direction::Minimize, 66);
        assert_eq!(
            a,
            on.sample_with_pending(&space, &hist, &reversed, Direction::Minimize, 66)
        );
        // A "pending" trial that has in fact finished counts as finished.
        let mut stale = pending.clone();
        stale.push(PendingTrial {
            number: 3,
            params: hist[3].params.clone(),
        });
        assert_eq!(
            a,
            on.sample_with_pending(&space, &hist, &stale, Direction::Minimize, 66)
        );
        // The liar changes what is suggested somewhere in a run of asks.
        let differs = (66..126).any(|n| {
            on.sample_with_pending(&space, &hist, &pending, Direction::Minimize, n)
                != on.sample(&space, &hist, Direction::Minimize, n)
        });
        assert!(differs, "multivariate {multivariate}");
    }
}

#[test]
fn large_histories_are_subsampled_deterministically_and_still_learn() {
    // Past MAX_ABOVE observations g is built from a weighted subsample:
    // asks stay valid, deterministic and drawn to the good region.
    let space =
        SearchSpace::from_json(&json!({"x": {"type": "float", "low": -10, "high": 10}})).unwrap();
    let n = 3 * MAX_ABOVE as u64;
    let hist: Vec<FinishedTrial> = (0..n)
        .map(|i| {
            let x = -10.0 + 20.0 * ((i * 7919) % n) as f64 / (n - 1) as f64;
            complete(
                i,
                json!({"x": x}).as_object().unwrap().clone(),
                (x - 3.0).abs(),
            )
        })
        .collect();
    let mut shuffled = hist.clone();
    shuffled.reverse();
    for s in both_modes(2) {
        let near = (n..n + 30)
            .filter(|&t| {
                let p = s.sample(&space, &hist, Direction::Minimize, t);
                assert_eq!(p, s.sample(&space, &shuffled, Direction::Minimize, t));
                (p["x"].as_f64().unwrap() - 3.0).abs() < 1.0
            })
            .count();
        assert!(near >= 25, "{near}/30");
    }
}
