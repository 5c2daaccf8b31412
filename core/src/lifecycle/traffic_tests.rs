use super::*;
use crate::ids::{JobId, TokenId};
use crate::lifecycle::deployment::{on_event, Event, NewDeployment, Target};
use crate::security::Actor;
use chrono::TimeZone;

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 9, minute, 0).unwrap()
}

fn arm(variant: &str, version: u32, weight: f64) -> Arm {
    Arm {
        variant: variant.into(),
        version,
        weight,
    }
}

fn plan() -> CanaryPlan {
    CanaryPlan {
        steps: vec![5.0, 25.0, 50.0, 100.0],
        interval_secs: 60,
        gates: Gates {
            max_error_rate: Some(0.01),
            max_p99_ms: Some(50.0),
            metric: Some(MetricGate {
                name: "rmse".into(),
                tolerance: 0.1,
                min_outcomes: 30,
            }),
        },
        fail_after: 2,
        min_requests: 100,
    }
}

fn split(arms: Vec<Arm>) -> TrafficPolicy {
    TrafficPolicy {
        split: arms,
        ..Default::default()
    }
}

/// A live platform deployment of `version` with `traffic`, replacing a
/// live deployment of `before` when given.
fn live_with(version: u32, traffic: TrafficPolicy, before: Option<u32>) -> Deployment {
    let mut d = Deployment::new(
        NewDeployment {
            model: "sample-quality".into(),
            version,
            target: Target::Platform,
            replicas: 1,
            resources: None,
            job_id: Some(JobId::new()),
            requested_by: Actor {
                id: TokenId::new(),
                name: "scientist".into(),
            },
            traffic: Some(traffic),
        },
        t(0),
    );
    let live = before.map(|v| Previous {
        id: DeploymentId::new(),
        version: v,
    });
    on_event(
        &mut d,
        Event::Succeeded {
            outputs: vec![],
            note: None,
            live,
        },
        t(1),
    )
    .unwrap();
    d
}

fn figures(version: u32, requests: u64, errors: u64, p99: f64) -> ArmFigures {
    ArmFigures {
        version,
        requests,
        errors,
        p99_ms: Some(p99),
        metric: None,
        outcomes: 0,
    }
}

fn healthy() -> (ArmFigures, ArmFigures) {
    (figures(2, 500, 0, 10.0), figures(1, 5000, 0, 10.0))
}

fn message(e: crate::Error) -> String {
    e.to_string()
}

#[test]
fn a_split_whose_weights_leave_nothing_for_primary_is_refused() {
    let p = split(vec![arm("b", 2, 60.0), arm("c", 3, 40.0)]);
    assert!(message(p.validate(1).unwrap_err()).contains("add up to 100%"));
    split(vec![arm("b", 2, 60.0), arm("c", 3, 39.99)])
        .validate(1)
        .unwrap();
}

#[test]
fn arms_may_not_take_reserved_names_repeat_a_name_or_the_own_version() {
    for (p, needle) in [
        (split(vec![arm("shadow", 2, 10.0)]), "reserved"),
        (split(vec![arm("b", 2, 10.0), arm("b", 3, 10.0)]), "twice"),
        (split(vec![arm("b", 1, 10.0)]), "own version"),
        (split(vec![arm("b", 2, 0.0)]), "weight"),
        (split(vec![arm("b", 2, f64::NAN)]), "weight"),
        (split(vec![arm("b c", 2, 10.0)]), "variant"),
    ] {
        let e = message(p.validate(1).unwrap_err());
        assert!(e.contains(needle), "{e}");
        assert!(
            e.contains("traffic.split[") || e.contains("traffic.split"),
            "{e}"
        );
    }
}

#[test]
fn a_shadow_of_the_own_version_or_with_no_time_to_answer_is_refused() {
    let own = TrafficPolicy {
        shadow: Some(Shadow {
            version: 1,
            timeout_ms: 100,
        }),
        ..Default::default()
    };
    assert!(message(own.validate(1).unwrap_err()).contains("traffic.shadow.version"));
    let zero = TrafficPolicy {
        shadow: Some(Shadow {
            version: 2,
            timeout_ms: 0,
        }),
        ..Default::default()
    };
    assert!(message(zero.validate(1).unwrap_err()).contains("timeout_ms"));
}

#[test]
fn a_canary_plan_must_rise_to_100_with_a_gate_and_no_split() {
    let with = |f: &dyn Fn(&mut CanaryPlan)| {
        let mut c = plan();
        f(&mut c);
        TrafficPolicy {
            canary: Some(c),
            ..Default::default()
        }
        .validate(2)
        .map_err(message)
    };
    with(&|_| {}).unwrap();
    assert!(with(&|c| c.steps = vec![5.0, 50.0])
        .unwrap_err()
        .contains("end at 100"));
    assert!(with(&|c| c.steps = vec![50.0, 25.0, 100.0])
        .unwrap_err()
        .contains("steps[1]"));
    assert!(with(&|c| c.gates = Gates::default())
        .unwrap_err()
        .contains("at least one"));
    assert!(with(&|c| c.interval_secs = 0)
        .unwrap_err()
        .contains("interval_secs"));
    assert!(
        with(&|c| c.gates.metric.as_mut().unwrap().name = "auc".into())
            .unwrap_err()
            .contains("not a live metric")
    );
    let both = TrafficPolicy {
        split: vec![arm("b", 3, 10.0)],
        canary: Some(plan()),
        ..Default::default()
    };
    assert!(message(both.validate(2).unwrap_err()).contains("cannot run in one"));
}

#[test]
fn a_split_gives_each_arm_its_weight_of_the_buckets_and_primary_the_rest() {
    let d = live_with(1, split(vec![arm("b", 2, 20.0), arm("c", 3, 5.5)]), None);
    let s = slots(&d);
    let got: Vec<(&str, u32, u32)> = s
        .iter()
        .map(|s| (s.variant.as_str(), s.version, s.upper))
        .collect();
    assert_eq!(
        got,
        vec![("b", 2, 2000), ("c", 3, 2550), ("primary", 1, BUCKETS)]
    );
    assert_eq!(choose(&s, 0), 0);
    assert_eq!(choose(&s, 1999), 0);
    assert_eq!(choose(&s, 2000), 1);
    assert_eq!(choose(&s, 2550), 2);
    assert_eq!(choose(&s, BUCKETS - 1), 2);
}

#[test]
fn the_same_entity_always_falls_in_the_same_bucket_of_a_deployment() {
    let d = DeploymentId::new();
    assert_eq!(bucket(d, "S-0001"), bucket(d, "S-0001"));
    // Another deployment is another experiment: its assignment is its own.
    let other = DeploymentId::new();
    let moved = (0..100)
        .filter(|i| bucket(d, &format!("S-{i}")) != bucket(other, &format!("S-{i}")))
        .count();
    assert!(moved > 90, "{moved}");
}

#[test]
fn entities_spread_over_the_arms_by_their_weights() {
    let d = live_with(1, split(vec![arm("b", 2, 30.0)]), None);
    let s = slots(&d);
    let n = 20_000;
    let in_b = (0..n)
        .filter(|i| choose(&s, bucket(d.id, &format!("sample-{i}"))) == 0)
        .count();
    let share = in_b as f64 / n as f64;
    // 3 standard errors of a 30% share over 20,000 draws is 0.97%.
    assert!((share - 0.30).abs() < 0.0097 * 1.5, "{share}");
}

#[test]
fn a_canary_deployment_starts_at_its_first_step_against_the_version_it_replaces() {
    let d = live_with(
        2,
        TrafficPolicy {
            canary: Some(plan()),
            ..Default::default()
        },
        Some(1),
    );
    let r = d.rollout.as_ref().unwrap();
    assert_eq!(r.state, RolloutState::Progressing);
    assert_eq!((r.step, r.percent), (0, 5.0));
    assert_eq!(r.next_check, t(2));
    let s = slots(&d);
    assert_eq!(s[0].variant, CANARY);
    assert_eq!((s[0].version, s[0].upper), (2, 500));
    assert_eq!((s[1].variant.as_str(), s[1].version), (STABLE, 1));
}

#[test]
fn a_canary_with_nothing_live_before_it_serves_everything_and_says_why() {
    let d = live_with(
        2,
        TrafficPolicy {
            canary: Some(plan()),
            ..Default::default()
        },
        None,
    );
    let r = d.rollout.as_ref().unwrap();
    assert_eq!(r.state, RolloutState::Completed);
    assert!(r
        .note
        .as_ref()
        .unwrap()
        .contains("no earlier live deployment"));
    assert_eq!(slots(&d).len(), 1);
    assert_eq!(slots(&d)[0].variant, PRIMARY);
}

#[test]
fn an_entity_in_the_canary_stays_in_it_as_the_canary_grows() {
    let mut d = live_with(
        2,
        TrafficPolicy {
            canary: Some(plan()),
            ..Default::default()
        },
        Some(1),
    );
    let in_canary = |d: &Deployment| -> Vec<usize> {
        let s = slots(d);
        (0..2000)
            .filter(|i| choose(&s, bucket(d.id, &format!("e{i}"))) == 0)
            .collect()
    };
    let at5 = in_canary(&d);
    let (c, s) = healthy();
    let r = d.rollout.as_mut().unwrap();
    check(&plan(), r, c, s, t(2)).unwrap();
    assert_eq!(r.percent, 25.0);
    let at25 = in_canary(&d);
    assert!(at5.iter().all(|e| at25.contains(e)));
    assert!(at25.len() > at5.len() * 3);
}

#[test]
fn nothing_is_judged_before_the_step_interval_has_passed() {
    let mut r = Rollout::start(&plan(), 2, Some(prev(1)), t(1));
    let (c, s) = healthy();
    assert_eq!(
        check(&plan(), &mut r, c, s, t(1) + Duration::seconds(59)),
        None
    );
    assert!(r.checks.is_empty());
}

fn prev(version: u32) -> Previous {
    Previous {
        id: DeploymentId::new(),
        version,
    }
}

#[test]
fn a_step_with_too_little_traffic_holds_and_keeps_counting_from_its_start() {
    let mut r = Rollout::start(&plan(), 2, Some(prev(1)), t(1));
    let out = check(
        &plan(),
        &mut r,
        figures(2, 40, 0, 5.0),
        figures(1, 800, 0, 5.0),
        t(2),
    );
    assert_eq!(out, Some(Outcome::Judged(Verdict::Hold)));
    assert_eq!(r.state, RolloutState::Holding);
    assert_eq!((r.step, r.failures), (0, 0));
    assert_eq!(r.window_start, t(1));
    assert_eq!(r.next_check, t(3));
    assert!(r.checks[0].reasons[0].contains("40 of the 100"));
    // Traffic caught up: the same window now passes.
    let (c, s) = healthy();
    check(&plan(), &mut r, c, s, t(3)).unwrap();
    assert_eq!((r.state, r.step), (RolloutState::Progressing, 1));
}

#[test]
fn passing_every_step_completes_the_rollout_at_100_percent() {
    let mut r = Rollout::start(&plan(), 2, Some(prev(1)), t(1));
    for (i, minute) in (2..=5).enumerate() {
        let (c, s) = healthy();
        assert_eq!(
            check(&plan(), &mut r, c, s, t(minute)),
            Some(Outcome::Judged(Verdict::Pass)),
            "step {i}"
        );
    }
    assert_eq!(r.state, RolloutState::Completed);
    assert_eq!(r.percent, 100.0);
    assert_eq!(r.checks.len(), 4);
    let (c, s) = healthy();
    assert_eq!(check(&plan(), &mut r, c, s, t(9)), None);
}

#[test]
fn a_failed_gate_counts_and_a_pass_resets_the_count() {
    let mut r = Rollout::start(&plan(), 2, Some(prev(1)), t(1));
    let slow = figures(2, 500, 0, 80.0);
    let out = check(
        &plan(),
        &mut r,
        slow.clone(),
        figures(1, 5000, 0, 9.0),
        t(2),
    );
    assert_eq!(out, Some(Outcome::Judged(Verdict::Fail)));
    assert_eq!((r.failures, r.step), (1, 0));
    assert!(r.checks[0].reasons[0].contains("p99 latency 80.00 ms is above 50 ms"));
    let (c, s) = healthy();
    check(&plan(), &mut r, c, s, t(3)).unwrap();
    assert_eq!((r.failures, r.step), (0, 1));
}

#[test]
fn failing_fail_after_checks_in_a_row_rolls_back_with_the_reason() {
    let mut r = Rollout::start(&plan(), 2, Some(prev(1)), t(1));
    let erroring = figures(2, 500, 25, 9.0);
    check(
        &plan(),
        &mut r,
        erroring.clone(),
        figures(1, 9000, 0, 9.0),
        t(2),
    )
    .unwrap();
    let out = check(&plan(), &mut r, erroring, figures(1, 9000, 0, 9.0), t(3)).unwrap();
    let Outcome::RollBack { reason } = out else {
        panic!("{out:?}")
    };
    assert!(
        reason.contains("after 2 failed checks in a row"),
        "{reason}"
    );
    assert!(
        reason.contains("error rate 0.0500 is above 0.01"),
        "{reason}"
    );
    assert_eq!(r.state, RolloutState::RolledBack);
    assert!(!r.state.running());
}

#[test]
fn the_metric_gate_waits_for_enough_outcomes_on_both_sides() {
    let mut c = figures(2, 500, 0, 9.0);
    let mut s = figures(1, 5000, 0, 9.0);
    c.metric = Some(9.0);
    s.metric = Some(3.0);
    c.outcomes = 29;
    s.outcomes = 400;
    let (v, reasons) = judge(&plan(), &c, &s);
    assert_eq!(v, Verdict::Pass);
    assert!(reasons[0].contains("not enough outcomes yet (canary 29, stable 400"));
    c.outcomes = 30;
    let (v, reasons) = judge(&plan(), &c, &s);
    assert_eq!(v, Verdict::Fail);
    assert!(reasons[0].contains("rmse 9.0000 is worse than stable's 3.0000"));
    // Within the tolerance (10%) passes.
    c.metric = Some(3.29);
    assert_eq!(judge(&plan(), &c, &s).0, Verdict::Pass);
}

#[test]
fn for_accuracy_lower_is_worse() {
    let mut p = plan();
    p.gates.metric.as_mut().unwrap().name = "accuracy".into();
    let mut c = figures(2, 500, 0, 9.0);
    let mut s = figures(1, 5000, 0, 9.0);
    (c.outcomes, s.outcomes) = (100, 100);
    (c.metric, s.metric) = (Some(0.95), Some(0.90));
    assert_eq!(judge(&p, &c, &s).0, Verdict::Pass);
    (c.metric, s.metric) = (Some(0.70), Some(0.90));
    assert_eq!(judge(&p, &c, &s).0, Verdict::Fail);
}

#[test]
fn a_manual_rollback_during_a_canary_ends_the_rollout() {
    let mut d = live_with(
        2,
        TrafficPolicy {
            canary: Some(plan()),
            ..Default::default()
        },
        Some(1),
    );
    on_event(
        &mut d,
        Event::RollBack {
            by: Actor {
                id: TokenId::new(),
                name: "approver".into(),
            },
            reason: None,
        },
        t(3),
    )
    .unwrap();
    assert_eq!(d.rollout.unwrap().state, RolloutState::RolledBack);
}

#[test]
fn only_the_newest_checks_are_kept() {
    let mut p = plan();
    p.min_requests = 1_000_000;
    let mut r = Rollout::start(&p, 2, Some(prev(1)), t(0));
    for i in 0..(MAX_CHECKS_KEPT + 5) {
        let (c, s) = healthy();
        let at = t(0) + Duration::minutes(i as i64 + 1);
        check(&p, &mut r, c, s, at).unwrap();
    }
    assert_eq!(r.checks.len(), MAX_CHECKS_KEPT);
    assert_eq!(r.checks[0].at, t(0) + Duration::minutes(6));
}
