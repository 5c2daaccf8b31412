use super::*;
use chrono::TimeZone;
use serde_json::json;
use DeliveryState::{Delivered, Failed, Pending};

fn t(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 9, 0, second).unwrap()
}

fn retry() -> Retry {
    Retry {
        max_attempts: 3,
        base: Duration::seconds(2),
        max: Duration::seconds(3),
    }
}

fn raise(kind: AlertKind, version: Option<u32>) -> Raise {
    Raise {
        kind,
        severity: Severity::Warning,
        model: "sample-quality".into(),
        version,
        deployment_id: None,
        summary: "2 of 18 features drifted".into(),
        detail: json!({"drifted": ["sample_age_hours", "temperature_deviation"]}),
    }
}

fn alert() -> Alert {
    Alert::new(raise(AlertKind::Drift, Some(3)), ["lab", "pager"], t(0))
}

#[test]
fn a_new_alert_has_one_pending_delivery_per_webhook_due_at_once() {
    let a = alert();
    assert_eq!(a.deliveries.len(), 2);
    assert!(a
        .deliveries
        .iter()
        .all(|d| d.state == Pending && d.attempts == 0));
    assert_eq!(a.due_at(), Some(t(0)));
    assert_eq!(a.due(t(0)), vec![0, 1]);
    assert_eq!(a.key, "drift:sample-quality@3:");
}

#[test]
fn an_alert_without_webhooks_is_recorded_with_nothing_due() {
    let a = Alert::new(raise(AlertKind::Drift, Some(3)), [], t(0));
    assert!(a.deliveries.is_empty());
    assert_eq!(a.due_at(), None);
}

#[test]
fn a_successful_attempt_delivers() {
    let a = alert();
    let d = attempted(&a.deliveries[0], Ok(()), &retry(), t(1));
    assert_eq!(d.state, Delivered);
    assert_eq!(
        (d.attempts, d.delivered_at, d.next_attempt),
        (1, Some(t(1)), None)
    );
}

#[test]
fn a_failed_attempt_waits_the_backoff_then_fails_for_good_after_max_attempts() {
    let a = alert();
    let d1 = attempted(&a.deliveries[0], Err("HTTP 500".into()), &retry(), t(0));
    assert_eq!((d1.state, d1.attempts), (Pending, 1));
    assert_eq!(
        d1.next_attempt,
        Some(t(2)),
        "base wait after the first failure"
    );
    assert_eq!(d1.last_error.as_deref(), Some("HTTP 500"));
    let d2 = attempted(&d1, Err("timed out".into()), &retry(), t(2));
    assert_eq!(d2.next_attempt, Some(t(5)), "doubled to 4 s, capped at 3 s");
    let d3 = attempted(&d2, Err("connection refused".into()), &retry(), t(5));
    assert_eq!((d3.state, d3.attempts, d3.next_attempt), (Failed, 3, None));
    assert_eq!(d3.last_error.as_deref(), Some("connection refused"));
}

#[test]
fn a_retry_that_succeeds_keeps_the_count_of_attempts() {
    let a = alert();
    let d1 = attempted(&a.deliveries[0], Err("HTTP 503".into()), &retry(), t(0));
    let d2 = attempted(&d1, Ok(()), &retry(), t(2));
    assert_eq!((d2.state, d2.attempts), (Delivered, 2));
}

#[test]
fn an_attempt_on_a_finished_delivery_changes_nothing() {
    let a = alert();
    let done = attempted(&a.deliveries[0], Ok(()), &retry(), t(1));
    assert_eq!(attempted(&done, Err("late".into()), &retry(), t(2)), done);
    let failed = unconfigured(&a.deliveries[0]);
    assert_eq!(attempted(&failed, Ok(()), &retry(), t(2)), failed);
}

#[test]
fn a_delivery_to_a_webhook_no_longer_configured_fails_with_the_reason() {
    let a = alert();
    let d = unconfigured(&a.deliveries[1]);
    assert_eq!((d.state, d.attempts), (Failed, 0));
    assert!(d.last_error.unwrap().contains("'pager'"));
}

#[test]
fn only_due_pending_deliveries_are_due() {
    let mut a = alert();
    a.deliveries[0] = attempted(&a.deliveries[0], Err("HTTP 500".into()), &retry(), t(0));
    a.deliveries[1] = attempted(&a.deliveries[1], Ok(()), &retry(), t(0));
    assert_eq!(a.due(t(1)), Vec::<usize>::new());
    assert_eq!(a.due(t(2)), vec![0]);
    assert_eq!(a.due_at(), Some(t(2)));
    a.deliveries[0] = attempted(&a.deliveries[0], Ok(()), &retry(), t(2));
    assert_eq!(a.due_at(), None);
}

#[test]
fn the_backoff_never_overflows_however_many_attempts() {
    let r = Retry {
        max_attempts: u32::MAX,
        base: Duration::seconds(1),
        max: Duration::hours(1),
    };
    assert_eq!(r.backoff(1), Duration::seconds(1));
    assert_eq!(r.backoff(u32::MAX), Duration::hours(1));
}

#[test]
fn the_same_condition_raises_again_only_after_the_cooldown() {
    let a = alert();
    let hour = Duration::hours(1);
    assert!(may_raise(None, hour, t(0)));
    assert!(!may_raise(Some(&a), hour, t(59)));
    assert!(may_raise(Some(&a), hour, a.at + hour));
}

#[test]
fn keys_tell_kinds_versions_and_deployments_apart() {
    let drift = raise(AlertKind::Drift, Some(3));
    assert_ne!(drift.key(), raise(AlertKind::Drift, Some(4)).key());
    assert_ne!(drift.key(), raise(AlertKind::ErrorRate, Some(3)).key());
    let mut other = drift.clone();
    other.deployment_id = Some(DeploymentId::new());
    assert_ne!(drift.key(), other.key());
}

#[test]
fn an_alert_reads_back_from_json_unchanged() {
    let mut a = alert();
    a.deliveries[0] = attempted(&a.deliveries[0], Err("HTTP 500".into()), &retry(), t(0));
    let back: Alert = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
    assert_eq!(back, a);
    assert_eq!(serde_json::to_value(a.kind).unwrap(), json!("drift"));
}
