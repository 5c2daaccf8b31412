//! The alert store's suite: alerts recorded once and read back exactly,
//! listings newest first with every filter, pages that walk them once,
//! the cooldown's last alert per key, due deliveries in due order, and
//! drift scores that only newer ones replace.

use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use tracseq_core::ids::{AlertId, DeploymentId};
use tracseq_core::lifecycle::alert::{attempted, AlertKind, Retry};
use tracseq_core::monitoring::{
    Alert, AlertFilter, DeliveryState, DriftScores, FeatureScore, Raise, Severity,
};
use tracseq_core::paging::Page;
use tracseq_core::ports::AlertStore;
use tracseq_core::Error;

use super::t0;

/// An alert about `model` raised at `t0 + seconds`, to the webhooks named.
pub fn alert(kind: AlertKind, model: &str, seconds: i64, webhooks: &[&str]) -> Alert {
    let raise = Raise {
        kind,
        severity: Severity::Warning,
        model: model.into(),
        version: Some(1),
        deployment_id: Some(DeploymentId::new()),
        summary: format!("{kind} on {model}"),
        detail: json!({"seconds": seconds}),
    };
    Alert::new(
        raise,
        webhooks.iter().copied(),
        t0() + Duration::seconds(seconds),
    )
}

fn retry() -> Retry {
    Retry {
        max_attempts: 2,
        base: Duration::seconds(10),
        max: Duration::seconds(10),
    }
}

pub async fn alert_store_suite(s: Arc<dyn AlertStore>) {
    an_alert_is_recorded_once_and_read_back_exactly(s.as_ref()).await;
    listings_filter_by_kind_model_and_time_newest_first(s.as_ref()).await;
    pages_walk_the_alerts_once(s.as_ref()).await;
    due_deliveries_come_in_due_order_and_leave_once_done(s.as_ref()).await;
    the_last_alert_of_a_key_is_the_newest(s.as_ref()).await;
    drift_scores_are_replaced_only_by_newer_ones(s.as_ref()).await;
}

async fn an_alert_is_recorded_once_and_read_back_exactly(s: &dyn AlertStore) {
    let a = alert(AlertKind::Drift, "once", 0, &["lab"]);
    s.record_alert(&a).await.unwrap();
    assert_eq!(s.get_alert(a.id).await.unwrap(), a);
    let again = s.record_alert(&a).await.unwrap_err();
    assert!(matches!(again, Error::Conflict(_)), "{again}");
    let missing = AlertId::new();
    let err = s.get_alert(missing).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m.contains(&missing.to_string())),
        "{err}"
    );
    let mut unknown = a.clone();
    unknown.id = missing;
    let err = s.update_deliveries(&unknown).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

async fn listings_filter_by_kind_model_and_time_newest_first(s: &dyn AlertStore) {
    let drift = alert(AlertKind::Drift, "listed", 10, &[]);
    let errors = alert(AlertKind::ErrorRate, "listed", 20, &[]);
    let other = alert(AlertKind::Drift, "listed-other", 30, &[]);
    for a in [&drift, &errors, &other] {
        s.record_alert(a).await.unwrap();
    }
    let ids = |v: Vec<Alert>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let of_model = AlertFilter {
        model: Some("listed".into()),
        ..Default::default()
    };
    let page = Page::default();
    assert_eq!(
        ids(s.list_alerts(&of_model, &page).await.unwrap()),
        vec![errors.id, drift.id]
    );
    let drifts = AlertFilter {
        kind: Some(AlertKind::Drift),
        ..of_model.clone()
    };
    assert_eq!(
        ids(s.list_alerts(&drifts, &page).await.unwrap()),
        vec![drift.id]
    );
    let recent = AlertFilter {
        since: Some(t0() + Duration::seconds(20)),
        ..of_model
    };
    assert_eq!(
        ids(s.list_alerts(&recent, &page).await.unwrap()),
        vec![errors.id]
    );
}

async fn pages_walk_the_alerts_once(s: &dyn AlertStore) {
    let mut raised = Vec::new();
    for i in 0..7 {
        let a = alert(AlertKind::ErrorRate, "paged", i, &[]);
        s.record_alert(&a).await.unwrap();
        raised.push(a.id);
    }
    raised.reverse();
    let filter = AlertFilter {
        model: Some("paged".into()),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = Page { limit: 3, after };
        let got = s.list_alerts(&filter, &page).await.unwrap();
        if got.is_empty() {
            break;
        }
        after = got.last().map(|a| a.id.to_string());
        seen.extend(got.into_iter().map(|a| a.id));
    }
    assert_eq!(seen, raised);
    let bad = Page {
        limit: 3,
        after: Some("not-an-id".into()),
    };
    let err = s.list_alerts(&filter, &bad).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
}

async fn due_deliveries_come_in_due_order_and_leave_once_done(s: &dyn AlertStore) {
    let later = alert(AlertKind::Drift, "due", 1_000, &["lab"]);
    let sooner = alert(AlertKind::Drift, "due", 900, &["lab", "pager"]);
    let quiet = alert(AlertKind::Drift, "due", 800, &[]);
    for a in [&later, &sooner, &quiet] {
        s.record_alert(a).await.unwrap();
    }
    let at = |secs| t0() + Duration::seconds(secs);
    let due_ids = |v: Vec<Alert>| {
        v.into_iter()
            .filter(|a| a.model == "due")
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(due_ids(s.due_alerts(at(899), 100).await.unwrap()), vec![]);
    assert_eq!(
        due_ids(s.due_alerts(at(1_000), 100).await.unwrap()),
        vec![sooner.id, later.id]
    );

    // One delivery fails (due again in 10 s), the other succeeds.
    let mut tried = sooner.clone();
    tried.deliveries[0] = attempted(
        &tried.deliveries[0],
        Err("HTTP 500".into()),
        &retry(),
        at(1_000),
    );
    tried.deliveries[1] = attempted(&tried.deliveries[1], Ok(()), &retry(), at(1_000));
    s.update_deliveries(&tried).await.unwrap();
    assert_eq!(s.get_alert(sooner.id).await.unwrap(), tried);
    assert_eq!(
        due_ids(s.due_alerts(at(1_005), 100).await.unwrap()),
        vec![later.id]
    );
    assert_eq!(
        due_ids(s.due_alerts(at(1_010), 100).await.unwrap()),
        vec![later.id, sooner.id]
    );
    // The second failure is the last attempt: nothing of it is due again.
    tried.deliveries[0] = attempted(
        &tried.deliveries[0],
        Err("HTTP 500".into()),
        &retry(),
        at(1_010),
    );
    assert_eq!(tried.deliveries[0].state, DeliveryState::Failed);
    s.update_deliveries(&tried).await.unwrap();
    assert_eq!(
        due_ids(s.due_alerts(at(9_999), 100).await.unwrap()),
        vec![later.id]
    );
    assert_eq!(s.due_alerts(at(9_999), 0).await.unwrap(), vec![]);
}

async fn the_last_alert_of_a_key_is_the_newest(s: &dyn AlertStore) {
    let first = alert(AlertKind::CanaryRollback, "keyed", 0, &[]);
    let mut second = alert(AlertKind::CanaryRollback, "keyed", 60, &[]);
    second.key = first.key.clone();
    s.record_alert(&first).await.unwrap();
    s.record_alert(&second).await.unwrap();
    let last = s.last_alert(&first.key).await.unwrap().unwrap();
    assert_eq!(last.id, second.id);
    assert_eq!(s.last_alert("never:raised@:").await.unwrap(), None);
}

async fn drift_scores_are_replaced_only_by_newer_ones(s: &dyn AlertStore) {
    let scores = |version, seconds, psi| DriftScores {
        model: "scored".into(),
        version,
        at: t0() + Duration::seconds(seconds),
        live_records: 500,
        features: vec![FeatureScore {
            feature: "x".into(),
            statistic: "psi".into(),
            value: psi,
            drifted: psi >= 0.2,
        }],
    };
    s.put_drift_scores(&scores(1, 10, 0.05)).await.unwrap();
    s.put_drift_scores(&scores(2, 10, 0.30)).await.unwrap();
    s.put_drift_scores(&scores(1, 20, 0.25)).await.unwrap();
    s.put_drift_scores(&scores(1, 15, 0.01)).await.unwrap();
    let stored: Vec<_> = s
        .drift_scores()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.model == "scored")
        .collect();
    assert_eq!(stored, vec![scores(1, 20, 0.25), scores(2, 10, 0.30)]);
}
