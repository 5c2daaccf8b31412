//! Every job transition, expiry, duplicate result and cancel race.

use super::*;
use crate::protocol::{JobSpec, NoopPayload};
use crate::types::NewJob;
use serde_json::{json, Value};

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}
fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}
fn w(name: &str) -> WorkerId {
    WorkerId(name.into())
}
fn job(max_attempts: u32) -> Job {
    NewJob {
        spec: JobSpec::Noop(NoopPayload::default()),
        experiment_id: None,
        resource_class: "cpu".into(),
        resources: Default::default(),
        priority: 0,
        max_attempts,
        timeout_secs: 60,
    }
    .into_job(t0(), Some(0))
    .expect("a noop job encodes")
}
const P: RetryPolicy = RetryPolicy {
    backoff_base_ms: 1_000,
    backoff_max_ms: 8_000,
};

fn succeed(who: &str, attempt: u32, result: Value) -> Event {
    Event::Succeed {
        worker: w(who),
        attempt,
        result,
    }
}
fn heartbeat(who: &str, attempt: u32, lease_secs: i64) -> Event {
    Event::Heartbeat {
        worker: w(who),
        attempt,
        lease: secs(lease_secs),
    }
}
fn ev(j: &mut Job, e: Event, at: i64) -> Result<Vec<Effect>, Rejection> {
    on_event(j, e, t0() + secs(at), &P)
}
fn claim(j: &mut Job, who: &str, at: i64) {
    ev(
        j,
        Event::Claim {
            worker: w(who),
            lease: secs(10),
        },
        at,
    )
    .unwrap();
}
fn start(j: &mut Job, who: &str, at: i64) {
    let attempt = j.attempt;
    ev(
        j,
        Event::Start {
            worker: w(who),
            attempt,
            lease: secs(10),
        },
        at,
    )
    .unwrap();
}

#[test]
fn only_a_queued_job_becomes_unschedulable() {
    let mut j = job(3);
    let fx = ev(
        &mut j,
        Event::Unschedulable {
            reason: "needs 2 GPUs".into(),
        },
        1,
    )
    .unwrap();
    assert_eq!(fx, vec![Effect::Finished(JobState::Unschedulable)]);
    assert_eq!(j.last_error.as_deref(), Some("unschedulable: needs 2 GPUs"));
    assert!(j.state.is_terminal());

    let mut held = job(3);
    claim(&mut held, "a", 0);
    let err = ev(&mut held, Event::Unschedulable { reason: "x".into() }, 1).unwrap_err();
    assert!(matches!(err, Rejection::WrongState { .. }));
}

#[test]
fn claim_and_start_equals_claim_then_start() {
    let mut one = job(3);
    let mut two = one.clone();
    ev(
        &mut one,
        Event::ClaimAndStart {
            worker: w("a"),
            lease: secs(10),
            gpus: None,
        },
        5,
    )
    .unwrap();
    claim(&mut two, "a", 5);
    start(&mut two, "a", 5);
    assert_eq!(one, two);
    assert_eq!((one.state, one.attempt), (JobState::Running, 1));

    // Taken already: rejected as a claim would be, and nothing changes.
    let before = one.clone();
    let err = ev(
        &mut one,
        Event::ClaimAndStart {
            worker: w("b"),
            lease: secs(10),
            gpus: None,
        },
        6,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Rejection::WrongState {
            state: JobState::Running,
            action: "claim"
        }
    );
    assert_eq!(one, before);
}

#[test]
fn happy_path_queued_leased_running_succeeded() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    assert_eq!((j.state, j.attempt), (JobState::Leased, 1));
    assert_eq!(j.lease_expires_at, Some(t0() + secs(10)));
    start(&mut j, "a", 1);
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.deadline_at, Some(t0() + secs(61)));
    ev(&mut j, heartbeat("a", 1, 10), 5).unwrap();
    assert_eq!(j.lease_expires_at, Some(t0() + secs(15)));
    let fx = ev(&mut j, succeed("a", 1, json!(1)), 6);
    assert_eq!(fx.unwrap(), vec![Effect::Finished(JobState::Succeeded)]);
    assert_eq!(j.result, Some(json!(1)));
    assert_eq!(j.result_attempt, Some(1));
    assert_eq!(j.lease_owner, None);
    assert_eq!(j.finished_at, Some(t0() + secs(6)));
}

#[test]
fn claim_only_from_queued() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    let err = ev(
        &mut j,
        Event::Claim {
            worker: w("b"),
            lease: secs(10),
        },
        1,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Rejection::WrongState {
            state: JobState::Leased,
            action: "claim"
        }
    );
    assert_eq!(j.lease_owner, Some(w("a")));
}

#[test]
fn only_the_holder_may_start_heartbeat_or_finish() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    let before = j.clone();
    assert_eq!(
        ev(
            &mut j,
            Event::Start {
                worker: w("b"),
                attempt: 1,
                lease: secs(1)
            },
            1
        ),
        Err(Rejection::NotOwner)
    );
    assert_eq!(
        ev(&mut j, heartbeat("b", 1, 1), 1),
        Err(Rejection::NotOwner)
    );
    assert_eq!(
        ev(&mut j, succeed("b", 1, json!(0)), 1),
        Err(Rejection::NotOwner)
    );
    assert_eq!(
        ev(
            &mut j,
            Event::Fail {
                worker: w("a"),
                attempt: 7,
                error: "x".into(),
                retryable: true
            },
            1
        ),
        Err(Rejection::StaleAttempt { got: 7, current: 1 })
    );
    assert_eq!(j, before, "rejected events leave the job untouched");
}

#[test]
fn start_requires_leased() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    let err = ev(
        &mut j,
        Event::Start {
            worker: w("a"),
            attempt: 1,
            lease: secs(1),
        },
        1,
    );
    assert!(matches!(err, Err(Rejection::WrongState { .. })));
}

#[test]
fn duplicate_result_is_recorded_once() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    let ok = succeed("a", 1, json!({"v": 1}));
    assert_eq!(ev(&mut j, ok.clone(), 1).unwrap().len(), 1);
    let snapshot = j.clone();
    // Same attempt again: accepted, no effect, nothing rewritten.
    let dup = succeed("a", 1, json!({"v": 2}));
    assert_eq!(ev(&mut j, dup, 2).unwrap(), vec![]);
    assert_eq!(j.result, snapshot.result);
    assert_eq!(j.finished_at, snapshot.finished_at);
}

#[test]
fn late_result_from_an_expired_attempt_is_ignored() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    // Worker a goes silent; the lease runs out.
    assert_eq!(ev(&mut j, Event::ExpireLease, 5), Err(Rejection::NotDue));
    let fx = ev(&mut j, Event::ExpireLease, 10).unwrap();
    assert_eq!(fx, vec![Effect::RetryAt(t0() + secs(11))]);
    assert_eq!(j.state, JobState::Failed);
    assert!(j.last_error.as_deref().unwrap().contains("lease expired"));
    // a's result arrives while the retry waits: a no longer holds the job.
    let late = succeed("a", 1, json!(1));
    assert!(ev(&mut j, late.clone(), 10).is_err());
    ev(&mut j, Event::RetryDue, 11).unwrap();
    claim(&mut j, "b", 11);
    start(&mut j, "b", 11);
    assert_eq!(j.attempt, 2);
    // ... or after b has taken over: stale attempt.
    assert_eq!(
        ev(&mut j, late, 12),
        Err(Rejection::StaleAttempt { got: 1, current: 2 })
    );
    ev(&mut j, succeed("b", 2, json!(2)), 13).unwrap();
    assert_eq!(
        (j.result_attempt, j.result.clone()),
        (Some(2), Some(json!(2)))
    );
}

#[test]
fn retries_back_off_exponentially_then_die_with_the_last_error() {
    let mut j = job(3);
    let mut at = 0;
    for attempt in 1..=3u32 {
        claim(&mut j, "a", at);
        start(&mut j, "a", at);
        let fail = Event::Fail {
            worker: w("a"),
            attempt,
            error: format!("boom {attempt}"),
            retryable: true,
        };
        let fx = ev(&mut j, fail, at).unwrap();
        if attempt < 3 {
            let wait = 1i64 << (attempt - 1);
            assert_eq!(fx, vec![Effect::RetryAt(t0() + secs(at + wait))]);
            assert_eq!(
                ev(&mut j, Event::RetryDue, at + wait - 1),
                Err(Rejection::NotDue)
            );
            assert_eq!(
                ev(&mut j, Event::RetryDue, at + wait).unwrap(),
                vec![Effect::Publish]
            );
            at += wait;
        } else {
            assert_eq!(fx, vec![Effect::Finished(JobState::Dead)]);
        }
    }
    assert_eq!(j.state, JobState::Dead);
    assert_eq!(j.last_error.as_deref(), Some("boom 3"));
    assert!(j.finished_at.is_some());
}

#[test]
fn non_retryable_failure_is_dead_at_once() {
    let mut j = job(5);
    claim(&mut j, "a", 0);
    let fail = Event::Fail {
        worker: w("a"),
        attempt: 1,
        error: "bad params".into(),
        retryable: false,
    };
    assert_eq!(
        ev(&mut j, fail.clone(), 0).unwrap(),
        vec![Effect::Finished(JobState::Dead)]
    );
    assert!(ev(&mut j, fail, 1).is_err(), "dead is final");
}

#[test]
fn duplicate_failure_delivery_is_ignored() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    let fail = Event::Fail {
        worker: w("a"),
        attempt: 1,
        error: "x".into(),
        retryable: true,
    };
    ev(&mut j, fail.clone(), 0).unwrap();
    let snapshot = j.clone();
    assert_eq!(ev(&mut j, fail, 0).unwrap(), vec![]);
    assert_eq!(j.retry_at, snapshot.retry_at);
}

#[test]
fn timeout_only_for_running_past_deadline() {
    let mut j = job(1);
    claim(&mut j, "a", 0);
    assert!(matches!(
        ev(&mut j, Event::TimeOut, 100),
        Err(Rejection::WrongState { .. })
    ));
    start(&mut j, "a", 0);
    assert_eq!(ev(&mut j, Event::TimeOut, 59), Err(Rejection::NotDue));
    assert_eq!(
        ev(&mut j, Event::TimeOut, 60).unwrap(),
        vec![Effect::Finished(JobState::Dead)]
    );
    assert_eq!(j.last_error.as_deref(), Some("timed out after 60 s"));
}

#[test]
fn lease_expiry_of_a_leased_but_unstarted_job() {
    let mut j = job(2);
    claim(&mut j, "a", 0);
    ev(&mut j, Event::ExpireLease, 10).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.lease_owner, None);
}

#[test]
fn heartbeat_keeps_the_lease_from_expiring() {
    let mut j = job(2);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    ev(&mut j, heartbeat("a", 1, 10), 8).unwrap();
    assert_eq!(ev(&mut j, Event::ExpireLease, 10), Err(Rejection::NotDue));
}

#[test]
fn cancel_from_every_live_state_and_not_from_terminal() {
    for setup in 0..4 {
        let mut j = job(3);
        if setup >= 1 {
            claim(&mut j, "a", 0);
        }
        if setup >= 2 {
            start(&mut j, "a", 0);
        }
        if setup >= 3 {
            let f = Event::Fail {
                worker: w("a"),
                attempt: 1,
                error: "x".into(),
                retryable: true,
            };
            ev(&mut j, f, 0).unwrap();
        }
        let fx = ev(
            &mut j,
            Event::Cancel {
                reason: "user".into(),
            },
            1,
        )
        .unwrap();
        assert_eq!(fx, vec![Effect::Finished(JobState::Cancelled)]);
        assert_eq!(
            (j.state, j.lease_owner.clone(), j.retry_at),
            (JobState::Cancelled, None, None)
        );
        assert!(ev(
            &mut j,
            Event::Cancel {
                reason: "again".into()
            },
            2
        )
        .is_err());
        assert!(ev(&mut j, Event::RetryDue, 100).is_err());
    }
}

#[test]
fn cancel_race_result_after_cancel_is_rejected() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    ev(
        &mut j,
        Event::Cancel {
            reason: "user".into(),
        },
        1,
    )
    .unwrap();
    let late = succeed("a", 1, json!(1));
    assert_eq!(
        ev(&mut j, late, 2),
        Err(Rejection::WrongState {
            state: JobState::Cancelled,
            action: "record a result"
        })
    );
    let hb = heartbeat("a", 1, 1);
    assert!(
        ev(&mut j, hb, 2).is_err(),
        "the worker learns to stop from its heartbeat"
    );
    assert_eq!(j.result, None);
}

#[test]
fn cancel_race_result_before_cancel_wins() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    ev(&mut j, succeed("a", 1, json!(1)), 1).unwrap();
    assert!(ev(
        &mut j,
        Event::Cancel {
            reason: "user".into()
        },
        2
    )
    .is_err());
    assert_eq!(j.state, JobState::Succeeded);
}

#[test]
fn prune_is_final_and_keeps_the_partial_result() {
    let mut j = job(3);
    claim(&mut j, "a", 0);
    start(&mut j, "a", 0);
    let fx = ev(
        &mut j,
        Event::Prune {
            worker: w("a"),
            attempt: 1,
            result: json!({"step": 2}),
        },
        1,
    );
    assert_eq!(fx.unwrap(), vec![Effect::Finished(JobState::Pruned)]);
    assert!(j.state.is_terminal());
}

#[test]
fn backoff_is_capped() {
    let p = RetryPolicy {
        backoff_base_ms: 500,
        backoff_max_ms: 3_000,
    };
    assert_eq!(p.backoff(1), Duration::milliseconds(500));
    assert_eq!(p.backoff(3), Duration::milliseconds(2_000));
    assert_eq!(p.backoff(4), Duration::milliseconds(3_000));
    assert_eq!(p.backoff(u32::MAX), Duration::milliseconds(3_000));
}
