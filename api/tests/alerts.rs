//! The monitor and its alerts end to end: predictions through `/predict`
//! into the prediction log, the scheduler's monitor judging drift and
//! error rates over it, alerts recorded, listed (`GET /alerts`), scored in
//! `/metrics`, and delivered to real HTTP webhooks with retries and a
//! signature.

mod common;

use bytes::Bytes;
use chrono::{Duration, Utc};
use common::{artifact_bytes, fixture, go_live, logged, register, Fixture};
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracseq_core::config::{AlertsConfig, Webhook};
use tracseq_core::ids::RequestId;
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::monitoring::{DeliveryState, Raise, Severity};
use tracseq_core::predictions::{PredictionRecord, PRIMARY};
use tracseq_core::security::Role;
use tracseq_scheduler::alerts::{deliver_due, signature};
use tracseq_scheduler::monitor::{self, Profiles};
use warp::http::{HeaderMap, StatusCode};
use warp::Filter;

/// What a webhook received: headers and body of each POST.
type Hits = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// An HTTP receiver on a free port that answers 500 to its first
/// `fail_first` POSTs and 200 after.
async fn receiver(fail_first: usize) -> (String, Hits) {
    let hits: Hits = Arc::default();
    let seen = hits.clone();
    let route = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |headers: HeaderMap, body: Bytes| {
            let mut g = seen.lock().unwrap();
            g.push((headers, body));
            let status = if g.len() <= fail_first {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            warp::reply::with_status("noted", status)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}/hooks/ml"), hits)
}

/// A URL nothing listens on.
async fn nowhere() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hooks/ml")
}

/// Every recorded alert, newest first.
async fn all_alerts(f: &Fixture) -> Vec<tracseq_core::monitoring::Alert> {
    let filter = tracseq_core::monitoring::AlertFilter::default();
    let page = tracseq_core::paging::Page::default();
    f.platform.alerts.list_alerts(&filter, &page).await.unwrap()
}

fn hook(name: &str, url: &str) -> Webhook {
    Webhook {
        name: name.into(),
        url: url.into(),
        secret_env: None,
    }
}

/// A sample's features moved far from anything in training: every number
/// tripled and shifted.
fn drifted(seed: u64) -> Map<String, Value> {
    let mut r = tracseq_learn::lab::example_record(seed);
    for v in r.values_mut() {
        if let Some(x) = v.as_f64() {
            *v = json!(x * 3.0 + 50.0);
        }
    }
    r
}

/// `n` samples drawn as the training data were (the generator's CSV, its
/// own seed), as request records.
fn rows(n: usize, seed: u64) -> Vec<Map<String, Value>> {
    let csv = tracseq_learn::lab::generate_csv(n, seed);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|line| {
            header
                .iter()
                .zip(line.split(','))
                .filter(|(name, _)| **name != tracseq_learn::lab::TARGET)
                .map(|(name, cell)| {
                    let value = match cell.parse::<f64>() {
                        _ if cell == "NA" => Value::Null,
                        Ok(x) => json!(x),
                        Err(_) => json!(cell),
                    };
                    (name.to_string(), value)
                })
                .collect()
        })
        .collect()
}

async fn send(f: &Fixture, records: impl Iterator<Item = Map<String, Value>>) -> usize {
    let mut n = 0;
    for features in records {
        let got = f
            .predict(&json!({"model": "sq", "features": features}))
            .await;
        assert_eq!(got.status, 200, "{}", got.body);
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_drifted_version_raises_one_alert_that_is_listed_and_scored_in_metrics() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    go_live(&f.platform, 1, None, None).await;
    f.models.refresh_deployments(&f.platform).await.unwrap();
    let n = send(&f, (0..150).map(drifted)).await;
    logged(&f.platform, n).await;

    let cfg = AlertsConfig::default();
    let profiles = Profiles::default();
    monitor::check_all(&f.platform, &cfg, &profiles, Utc::now())
        .await
        .unwrap();
    // A second pass within the cooldown finds the same drift and stays quiet.
    monitor::check_all(&f.platform, &cfg, &profiles, Utc::now())
        .await
        .unwrap();

    let viewer = f.token(Role::Viewer);
    let listed = f.call("GET", "/alerts", Some(viewer), "").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let alerts = listed.body.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{}", listed.body);
    let alert = &alerts[0];
    assert_eq!(
        (alert["kind"].as_str(), alert["version"].as_u64()),
        (Some("drift"), Some(1))
    );
    assert_eq!(alert["severity"], "warning");
    let drifted = alert["detail"]["drifted"].as_array().unwrap();
    assert!(!drifted.is_empty());
    for feature in drifted {
        // Every judgement shows its sample sizes beside its effect size.
        assert!(feature["n_live"].as_u64().unwrap() >= 100, "{feature}");
        assert!(feature["n_reference"].as_u64().unwrap() > 0, "{feature}");
    }
    let id = alert["id"].as_str().unwrap();
    let one = f
        .call("GET", &format!("/alerts/{id}"), Some(viewer), "")
        .await;
    assert_eq!(one.body, *alert);
    let none = f
        .call("GET", "/alerts?kind=error_rate", Some(viewer), "")
        .await;
    assert_eq!(none.body, json!([]));
    let bad = f.call("GET", "/alerts?kind=flood", Some(viewer), "").await;
    assert_eq!(bad.status, 400, "{}", bad.body);

    let metrics = f.call("GET", "/metrics", Some(viewer), "").await;
    let drifted_line = metrics
        .text
        .lines()
        .find(|l| l.starts_with("tracseq_drift_features_drifted{model=\"sq\",version=\"1\"}"))
        .unwrap_or_else(|| panic!("{}", metrics.text));
    let count: usize = drifted_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(count, drifted.len());
    assert!(metrics
        .text
        .contains("tracseq_drift_score{model=\"sq\",version=\"1\",feature="));
}

#[tokio::test]
async fn features_like_the_training_data_are_scored_without_an_alert() {
    let f = fixture().await;
    // Trained on 2,000 rows: a profile of a few hundred is itself too
    // noisy to say that live data look like it.
    let bytes = Bytes::from(tracseq_learn::lab::example_artifact_bytes(2_000, 9).unwrap());
    register(&f.platform, 1, &bytes, false).await;
    go_live(&f.platform, 1, None, None).await;
    f.models.refresh_deployments(&f.platform).await.unwrap();
    let n = send(&f, rows(400, 77).into_iter()).await;
    logged(&f.platform, n).await;
    let cfg = AlertsConfig::default();
    monitor::check_all(&f.platform, &cfg, &Profiles::default(), Utc::now())
        .await
        .unwrap();
    let scores = f.platform.alerts.drift_scores().await.unwrap();
    assert_eq!(scores.len(), 1);
    assert_eq!(scores[0].live_records, 400);
    assert!(!scores[0].features.is_empty());
    let over: Vec<_> = scores[0].features.iter().filter(|s| s.drifted).collect();
    let report = f
        .call("GET", "/models/sq/drift", Some(f.token(Role::Viewer)), "")
        .await;
    assert!(over.is_empty(), "{over:?} {}", report.body);
    let alerts = all_alerts(&f).await;
    assert!(alerts.is_empty(), "{alerts:?}");
}

/// `n` logged answers of a deployment, `failed` of them failures.
fn records(
    d: &tracseq_core::lifecycle::deployment::Deployment,
    n: usize,
    failed: usize,
) -> Vec<PredictionRecord> {
    (0..n)
        .map(|i| PredictionRecord {
            request_id: RequestId::new(),
            at: Utc::now(),
            model: "sq".into(),
            version: d.version,
            variant: PRIMARY.into(),
            entity_id: None,
            features: Map::new().into(),
            output: if i < failed {
                Value::Null
            } else {
                json!({"value": 1.0})
            },
            latency_us: 300,
            caller: None,
            deployment_id: Some(d.id),
            shadow_of: None,
            error: (i < failed).then(|| "model 'sq' version 1: cannot load".to_string()),
        })
        .collect()
}

#[tokio::test]
async fn an_error_rate_spike_raises_a_critical_alert_and_too_few_requests_do_not() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let d = go_live(&f.platform, 1, None, None).await;
    let cfg = AlertsConfig {
        error_rate: 0.05,
        error_min_requests: 100,
        ..Default::default()
    };
    // 60 requests, all failed: too few to judge.
    f.platform
        .predictions
        .append_predictions(&records(&d, 60, 60))
        .await
        .unwrap();
    monitor::error_rate(&f.platform, &cfg, &d, Utc::now())
        .await
        .unwrap();
    assert!(all_alerts(&f).await.is_empty());
    // 60 more, none failed: 60 of 120 is a spike.
    f.platform
        .predictions
        .append_predictions(&records(&d, 60, 0))
        .await
        .unwrap();
    monitor::error_rate(&f.platform, &cfg, &d, Utc::now())
        .await
        .unwrap();
    let alerts = all_alerts(&f).await;
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        (a.kind, a.severity),
        (AlertKind::ErrorRate, Severity::Critical)
    );
    assert_eq!(a.deployment_id, Some(d.id));
    assert_eq!(
        (a.detail["requests"].as_u64(), a.detail["errors"].as_u64()),
        (Some(120), Some(60))
    );
    assert!(a.summary.contains("60 of 120"), "{}", a.summary);
}

#[tokio::test]
async fn deliveries_are_retried_until_the_webhook_answers_and_a_dead_one_fails_for_good() {
    let f = fixture().await;
    let (url, hits) = receiver(2).await;
    std::env::set_var("TRACSEQ_TEST_ALERT_SECRET", "s3cret");
    let cfg = AlertsConfig {
        webhooks: vec![
            Webhook {
                secret_env: Some("TRACSEQ_TEST_ALERT_SECRET".into()),
                ..hook("lab", &url)
            },
            hook("pager", &nowhere().await),
        ],
        max_attempts: 3,
        retry_base_ms: 1_000,
        retry_max_ms: 1_000,
        timeout_ms: 2_000,
        ..Default::default()
    };
    let raise = Raise {
        kind: AlertKind::Drift,
        severity: Severity::Warning,
        model: "sq".into(),
        version: Some(1),
        deployment_id: None,
        summary: "sq v1: 2 of 18 features drifted".into(),
        detail: json!({"drifted": ["a", "b"]}),
    };
    let t0 = Utc::now();
    let alert = tracseq_scheduler::alerts::raise(&f.platform, &cfg, raise, t0)
        .await
        .unwrap()
        .unwrap();
    let client = tracseq_scheduler::alerts::client(&cfg).unwrap();
    let at = |s| t0 + Duration::seconds(s);
    assert_eq!(
        deliver_due(&f.platform, &cfg, &client, at(0))
            .await
            .unwrap(),
        2
    );
    // Nothing is due before the backoff has passed.
    assert_eq!(
        deliver_due(&f.platform, &cfg, &client, at(0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        deliver_due(&f.platform, &cfg, &client, at(1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        deliver_due(&f.platform, &cfg, &client, at(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        deliver_due(&f.platform, &cfg, &client, at(60))
            .await
            .unwrap(),
        0
    );

    let stored = f.platform.alerts.get_alert(alert.id).await.unwrap();
    let lab = &stored.deliveries[0];
    assert_eq!((lab.state, lab.attempts), (DeliveryState::Delivered, 3));
    let pager = &stored.deliveries[1];
    assert_eq!((pager.state, pager.attempts), (DeliveryState::Failed, 3));
    assert!(
        pager
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("no answer"),
        "{pager:?}"
    );
    assert!(
        !pager.last_error.as_deref().unwrap().contains("127.0.0.1"),
        "a reason never repeats the URL: {pager:?}"
    );

    let hits = hits.lock().unwrap();
    assert_eq!(hits.len(), 3);
    for (i, (headers, body)) in hits.iter().enumerate() {
        let sent: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(sent["id"], json!(alert.id));
        assert_eq!(sent["attempt"], json!(i + 1));
        assert_eq!(sent["summary"], "sq v1: 2 of 18 features drifted");
        assert!(sent.get("deliveries").is_none());
        assert_eq!(headers["x-tracseq-alert-id"], alert.id.to_string().as_str());
        assert_eq!(
            headers["x-tracseq-signature"],
            signature(b"s3cret", body).as_str()
        );
    }
}

#[tokio::test]
async fn the_scheduler_finds_drift_on_its_own_and_posts_the_alert() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    go_live(&f.platform, 1, None, None).await;
    f.models.refresh_deployments(&f.platform).await.unwrap();
    let n = send(&f, (0..120).map(drifted)).await;
    logged(&f.platform, n).await;

    let (url, hits) = receiver(0).await;
    let cfg = AlertsConfig {
        webhooks: vec![hook("lab", &url)],
        monitor_secs: 1,
        ..Default::default()
    };
    let scheduler = tracseq_scheduler::Scheduler::new(
        f.platform.clone(),
        std::time::Duration::from_millis(100),
        Arc::default(),
    )
    .with_alerts(cfg);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let running = tokio::spawn(async move { scheduler.run(stop).await });
    let mut posted = None;
    for _ in 0..100 {
        if let Some((_, body)) = hits.lock().unwrap().first() {
            posted = Some(serde_json::from_slice::<Value>(body).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cancel.cancel();
    running.await.unwrap().unwrap();
    let posted = posted.expect("the drift alert reached the webhook within 10 s");
    assert_eq!(
        (posted["kind"].as_str(), posted["model"].as_str()),
        (Some("drift"), Some("sq"))
    );
    let stored = all_alerts(&f).await;
    assert_eq!(stored[0].deliveries[0].state, DeliveryState::Delivered);
}
