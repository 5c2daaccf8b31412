//! Tests of the ASHA and Hyperband pruners.

use super::*;
use crate::{PrunerConfig, TrialState};
use serde_json::json;
use std::sync::Arc;

fn curve(values: &[(u32, f64)]) -> BTreeMap<u32, f64> {
    values.iter().copied().collect()
}

fn finished(number: u64, state: TrialState, intermediate: BTreeMap<u32, f64>) -> FinishedTrial {
    FinishedTrial {
        number,
        params: Default::default(),
        state,
        value: intermediate.values().last().copied(),
        intermediate: Arc::new(intermediate),
    }
}

/// `n` finished trials at `value` on steps `1..=upto`.
fn flat_history(numbers: impl Iterator<Item = u64>, upto: u32, value: f64) -> Vec<FinishedTrial> {
    numbers
        .map(|n| {
            let c = (1..=upto).map(|s| (s, value)).collect();
            finished(n, TrialState::Complete, c)
        })
        .collect()
}

fn asha(min_resource: u32, eta: u32, rate: u32, bootstrap: u32) -> PrunerConfig {
    PrunerConfig::Asha(AshaPrunerConfig {
        min_resource,
        reduction_factor: eta,
        min_early_stopping_rate: rate,
        bootstrap_count: bootstrap,
    })
}

/// Runs trials one after another on steps `1..=steps`, each seeing the
/// earlier ones as history; the step each was pruned at, or `None`.
fn run_study(
    p: &PrunerConfig,
    direction: Direction,
    curves: &[Box<dyn Fn(u32) -> f64>],
    steps: u32,
) -> Vec<Option<u32>> {
    let mut history = Vec::new();
    let mut outcome = Vec::new();
    for (number, f) in curves.iter().enumerate() {
        let mut seen = BTreeMap::new();
        let mut pruned_at = None;
        for step in 1..=steps {
            seen.insert(step, f(step));
            if p.should_prune_trial(number as u64, direction, step, &seen, &history) {
                pruned_at = Some(step);
                break;
            }
        }
        let state = if pruned_at.is_some() {
            TrialState::Pruned
        } else {
            TrialState::Complete
        };
        history.push(finished(number as u64, state, seen));
        outcome.push(pruned_at);
    }
    outcome
}

/// Nine learning curves `c + 1/step` and a planted bad one, trial 6.
fn curves(sign: f64) -> Vec<Box<dyn Fn(u32) -> f64>> {
    let offsets = [0.5, 0.3, 0.7, 0.4, 0.05, 0.6, 10.0, 0.2, 0.8, 0.35];
    offsets
        .iter()
        .map(|&c| Box::new(move |s: u32| sign * (c + 1.0 / f64::from(s))) as Box<_>)
        .collect()
}

#[test]
fn asha_prunes_a_planted_bad_configuration_early_and_keeps_the_best() {
    let p = asha(1, 3, 0, 0);
    let out = run_study(&p, Direction::Minimize, &curves(1.0), 27);
    // The bad curve is cut at the first rung, the best (trial 4) runs to the end.
    assert_eq!(out[6], Some(1), "{out:?}");
    assert_eq!(out[4], None, "{out:?}");
    // Only rung steps ever stop a trial, and ASHA does halve the good ones too.
    assert!(
        out.iter().flatten().all(|s| [1, 3, 9, 27].contains(s)),
        "{out:?}"
    );
    assert!(out.iter().filter(|o| o.is_some()).count() >= 3, "{out:?}");
    // The first trials continue: fewer than eta trials at each rung.
    assert_eq!(&out[..2], &[None, None]);
}

#[test]
fn maximize_mirrors_minimize() {
    let p = asha(1, 3, 0, 0);
    let min = run_study(&p, Direction::Minimize, &curves(1.0), 27);
    let max = run_study(&p, Direction::Maximize, &curves(-1.0), 27);
    assert_eq!(min, max);
    // The same curves maximised: the bad (now best) one is kept.
    let flipped = run_study(&p, Direction::Maximize, &curves(1.0), 27);
    assert_eq!(flipped[6], None, "{flipped:?}");
}

#[test]
fn rungs_sit_at_min_resource_times_eta_powers() {
    let a = AshaPrunerConfig::default();
    assert_eq!(a.rung_steps(100), vec![1, 3, 9, 27, 81]);
    let a = AshaPrunerConfig {
        min_resource: 2,
        min_early_stopping_rate: 1,
        ..Default::default()
    };
    assert_eq!(a.rung_steps(200), vec![6, 18, 54, 162]);
    // No overflow near the largest step.
    let huge = AshaPrunerConfig {
        reduction_factor: 2,
        ..Default::default()
    };
    assert_eq!(huge.rung_steps(u32::MAX).len(), 32);

    // Judged only at rung steps: with 6, 18, ... bad values elsewhere pass.
    let p = PrunerConfig::Asha(a);
    let h = flat_history(0..5, 20, 1.0);
    let bad = |steps: &[u32]| curve(&steps.iter().map(|&s| (s, 9.0)).collect::<Vec<_>>());
    assert!(!p.should_prune(Direction::Minimize, 5, &bad(&[1, 2, 3, 4, 5]), &h));
    assert!(p.should_prune(Direction::Minimize, 6, &bad(&[5, 6]), &h));
    assert!(!p.should_prune(Direction::Minimize, 7, &bad(&[5, 6, 7]), &h));
    // Reporting sparsely: step 8 is the first at or after rung 6, so it decides.
    assert!(p.should_prune(Direction::Minimize, 8, &bad(&[4, 8]), &h));
    // A rung decided at an earlier report is not judged again.
    let good_then_bad = curve(&[(6, 0.5), (7, 9.0)]);
    assert!(!p.should_prune(Direction::Minimize, 6, &good_then_bad, &h));
    assert!(!p.should_prune(Direction::Minimize, 7, &good_then_bad, &h));
    // A step that wasn't reported, and a NaN at a rung.
    assert!(!p.should_prune(Direction::Minimize, 6, &bad(&[5]), &h));
    assert!(p.should_prune(Direction::Minimize, 6, &curve(&[(6, f64::NAN)]), &h));
}

#[test]
fn top_fraction_ties_and_competitor_values() {
    let p = asha(1, 3, 0, 0);
    let h: Vec<FinishedTrial> = [1.0, 2.0, 3.0, 4.0, 5.0]
        .iter()
        .enumerate()
        .map(|(i, &v)| finished(i as u64, TrialState::Pruned, curve(&[(1, v)])))
        .collect();
    // Six values at rung 1: the best two go on, ties with the second included.
    let at = |v: f64| p.should_prune(Direction::Minimize, 1, &curve(&[(1, v)]), &h);
    assert!(!at(0.5));
    assert!(!at(2.0));
    assert!(at(2.5));
    // A competitor's rung value is its value at the first step at or after the rung.
    let sparse = vec![
        finished(0, TrialState::Complete, curve(&[(2, 1.0)])),
        finished(1, TrialState::Failed, curve(&[(5, 1.0)])),
    ];
    assert!(p.should_prune(Direction::Minimize, 1, &curve(&[(1, 2.0)]), &sparse));
    // NaN competitors don't count: two values left, fewer than eta.
    let mut nan = sparse.clone();
    Arc::make_mut(&mut nan[1].intermediate).insert(1, f64::NAN);
    assert!(!p.should_prune(Direction::Minimize, 1, &curve(&[(1, 2.0)]), &nan));
}

#[test]
fn bootstrap_and_fewer_than_eta_continue() {
    let bad = curve(&[(1, 9.0)]);
    // Fewer than eta values at the rung: everyone continues.
    let two = flat_history(0..1, 1, 1.0);
    assert!(!asha(1, 3, 0, 0).should_prune(Direction::Minimize, 1, &bad, &two));
    let three = flat_history(0..2, 1, 1.0);
    assert!(asha(1, 3, 0, 0).should_prune(Direction::Minimize, 1, &bad, &three));
    // bootstrap_count other trials must have reached the rung first.
    let p = asha(1, 3, 0, 5);
    assert!(!p.should_prune(Direction::Minimize, 1, &bad, &flat_history(0..4, 1, 1.0)));
    assert!(p.should_prune(Direction::Minimize, 1, &bad, &flat_history(0..5, 1, 1.0)));
}

fn hyperband(min_resource: u32, max_resource: u32, eta: u32) -> HyperbandPrunerConfig {
    HyperbandPrunerConfig {
        min_resource,
        max_resource,
        reduction_factor: eta,
    }
}

#[test]
fn hyperband_bracket_assignment_is_deterministic_and_budget_weighted() {
    let h = hyperband(1, 27, 3);
    assert_eq!(h.max_bracket(), 3);
    // Optuna's budgets for 4 brackets, eta 3: 27, 12, 6, 4.
    let budgets: Vec<u64> = (0..=3).map(|s| h.bracket_budget(s)).collect();
    assert_eq!(budgets, vec![27, 12, 6, 4]);
    let first: Vec<u32> = (0..12).map(|n| h.bracket_of(n)).collect();
    // Pinned: a study replays with the same brackets on every release.
    assert_eq!(first, vec![0, 0, 0, 1, 1, 3, 0, 0, 2, 1, 1, 0]);
    assert_eq!(
        first,
        (0..12).map(|n| h.clone().bracket_of(n)).collect::<Vec<_>>()
    );
    let mut counts = [0u32; 4];
    for n in 0..4900 {
        counts[h.bracket_of(n) as usize] += 1;
    }
    assert!(counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
    assert!((2400..3000).contains(&counts[0]), "{counts:?}");
    // One bracket when max_resource < min_resource * eta.
    let one = hyperband(4, 10, 3);
    assert_eq!(one.max_bracket(), 0);
    assert!((0..50).all(|n| one.bracket_of(n) == 0));
}

#[test]
fn hyperband_brackets_start_at_min_resource_times_eta_powers() {
    let h = hyperband(2, 60, 3);
    assert_eq!(h.max_bracket(), 3);
    for s in 0..=3 {
        assert_eq!(h.rung_steps(s)[0], 2 * 3u32.pow(s), "bracket {s}");
    }
    assert_eq!(h.rung_steps(0), vec![2, 6, 18, 54]);
    // No rung at or after max_resource: the last bracket never stops anyone.
    assert_eq!(hyperband(2, 54, 3).rung_steps(3), Vec::<u32>::new());

    // Behaviour: a bad trial of bracket 1 passes step 2 and is cut at 6,
    // against trials of its own bracket only.
    let p = PrunerConfig::Hyperband(h.clone());
    let hr = &h;
    let in_bracket = |b: u32| (0..).filter(move |&n| hr.bracket_of(n) == b);
    let number = in_bracket(1).next().unwrap();
    let same = flat_history(in_bracket(1).skip(1).take(5), 10, 1.0);
    let other = flat_history(in_bracket(0).take(5), 10, 1.0);
    let bad = |upto: u32| curve(&(1..=upto).map(|s| (s, 9.0)).collect::<Vec<_>>());
    let d = Direction::Minimize;
    assert!(!p.should_prune_trial(number, d, 2, &bad(2), &same));
    assert!(p.should_prune_trial(number, d, 6, &bad(6), &same));
    assert!(!p.should_prune_trial(number, d, 6, &bad(6), &other));
    // Without the number it falls back to ASHA over everyone, bracket 0's rungs.
    assert!(p.should_prune(d, 2, &bad(2), &other));
}

#[test]
fn config_parses_validates_and_rejects_unknown_fields() {
    let parse = |v: serde_json::Value| serde_json::from_value::<PrunerConfig>(v);
    let p = parse(json!({"type": "asha"})).unwrap();
    assert_eq!(p, PrunerConfig::Asha(AshaPrunerConfig::default()));
    p.validate().unwrap();
    let p = parse(
        json!({"type": "asha", "min_resource": 2, "reduction_factor": 4,
        "min_early_stopping_rate": 1, "bootstrap_count": 3}),
    )
    .unwrap();
    assert_eq!(p, asha(2, 4, 1, 3));
    let back = parse(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    let p = parse(json!({"type": "hyperband", "max_resource": 81})).unwrap();
    assert_eq!(p, PrunerConfig::Hyperband(hyperband(1, 81, 3)));
    p.validate().unwrap();
    assert_eq!(
        serde_json::to_value(&p).unwrap(),
        json!({"type": "hyperband", "min_resource": 1, "max_resource": 81, "reduction_factor": 3})
    );

    let err = parse(json!({"type": "asha", "eta": 3}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("eta"), "{err}");
    let err = parse(json!({"type": "hyperband", "max_resource": 9, "bootstrap_count": 1}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bootstrap_count"), "{err}");
    let err = parse(json!({"type": "hyperband"})).unwrap_err().to_string();
    assert!(err.contains("max_resource"), "{err}");
    assert!(parse(json!({"type": "asha", "min_resource": -1})).is_err());

    let invalid = |p: PrunerConfig, needle: &str| {
        let err = p.validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    };
    invalid(
        asha(1, 1, 0, 0),
        "pruner.reduction_factor must be at least 2 (got 1)",
    );
    invalid(asha(0, 3, 0, 0), "pruner.min_resource must be at least 1");
    invalid(
        asha(1, 3, 30, 0),
        "pruner.min_early_stopping_rate is too large",
    );
    asha(1, 3, 20, 0).validate().unwrap();
    let hb = |min, max, eta| PrunerConfig::Hyperband(hyperband(min, max, eta));
    invalid(
        hb(5, 5, 3),
        "pruner.max_resource must be greater than min_resource (got 5 <= 5)",
    );
    invalid(hb(1, 9, 0), "pruner.reduction_factor");
    invalid(hb(0, 9, 3), "pruner.min_resource");
    // Unvalidated nonsense still doesn't panic.
    for p in [
        asha(0, 0, u32::MAX, 0),
        hb(0, 0, 0),
        hb(u32::MAX, 1, u32::MAX),
    ] {
        assert!(!p.should_prune_trial(7, Direction::Minimize, 1, &curve(&[(1, 1.0)]), &[]));
    }
}
