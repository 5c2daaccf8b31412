//! Traffic policies over HTTP: sticky A/B arms on two replicas, a shadow
//! that hangs or fails without the caller noticing, the A/B analysis, and a
//! canary that the scheduler's controller advances or rolls back from what
//! the replicas logged.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use common::{artifact_bytes, fixture, go_live, logged, register, Fixture};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracseq_api::ServingSetup;
use tracseq_backends::MemorySecurityStore;
use tracseq_core::config::AlertsConfig;
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::lifecycle::deployment::DeploymentState;
use tracseq_core::lifecycle::traffic::{
    Arm, CanaryPlan, Gates, RolloutState, Shadow, TrafficPolicy,
};
use tracseq_core::ports::{ArtifactMeta, ArtifactPath, ArtifactStore, SecurityStore};
use tracseq_core::security::audit::AuditFilter;
use tracseq_core::security::Role;
use tracseq_core::{Platform, Result};

async fn predict(f: &Fixture, entity: Option<&str>, seed: u64) -> Value {
    let mut body = json!({"model": "sq", "features": tracseq_learn::lab::example_record(seed)});
    if let Some(e) = entity {
        body["entity_id"] = json!(e);
    }
    let got = f.predict(&body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

#[tokio::test]
async fn an_ab_split_gives_every_entity_one_variant_on_every_replica() {
    let a = fixture().await;
    let b = a.replica(ServingSetup::default());
    let bytes = artifact_bytes();
    register(&a.platform, 1, &bytes, false).await;
    register(&a.platform, 2, &bytes, false).await;
    let traffic = TrafficPolicy {
        split: vec![Arm {
            variant: "challenger".into(),
            version: 2,
            weight: 30.0,
        }],
        ..Default::default()
    };
    let d = go_live(&a.platform, 1, Some(traffic), None).await;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..100 {
        let entity = format!("S-{i:04}");
        let one = predict(&a, Some(&entity), i).await;
        let other = predict(&b, Some(&entity), i + 1000).await;
        assert_eq!(one["variant"], other["variant"], "{entity}");
        assert_eq!(one["version"], other["version"], "{entity}");
        let variant = one["variant"].as_str().unwrap().to_string();
        let want = if variant == "challenger" { 2 } else { 1 };
        assert_eq!(one["version"], want, "{one}");
        *seen.entry(variant).or_default() += 1;
        // The same replica again: the same arm.
        assert_eq!(
            predict(&a, Some(&entity), i).await["variant"],
            one["variant"]
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen["primary"] > seen["challenger"], "{seen:?}");
    // Without an entity id: an arm at random, and the answer says which.
    let anon = predict(&a, None, 7).await;
    assert!(["primary", "challenger"].contains(&anon["variant"].as_str().unwrap()));
    // Every routed answer is logged under the deployment.
    let records = logged(&a.platform, 301).await;
    assert!(records
        .iter()
        .all(|r| r.deployment_id == Some(d.id) && r.error.is_none()));
    // A pinned request is no part of the experiment.
    let pinned = a
        .call(
            "POST",
            "/predict",
            Some(a.token(Role::Predictor)),
            &json!({"model": "sq", "version": 2, "features": tracseq_learn::lab::example_record(3)})
                .to_string(),
        )
        .await;
    assert_eq!(pinned.body["variant"], "primary");
    let all = logged(&a.platform, 302).await;
    assert_eq!(all[0].deployment_id, None);
}

/// An artifact store that holds back every read of one path until its
/// gate opens (a shadow whose model takes forever to come).
struct Gated {
    inner: Arc<dyn ArtifactStore>,
    path: String,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl ArtifactStore for Gated {
    async fn put(&self, path: &ArtifactPath, bytes: Bytes) -> Result<ArtifactMeta> {
        self.inner.put(path, bytes).await
    }
    async fn get(&self, path: &ArtifactPath) -> Result<Bytes> {
        if path.to_string() == self.path {
            let _pass = self.gate.acquire().await.unwrap();
        }
        self.inner.get(path).await
    }
    async fn head(&self, path: &ArtifactPath) -> Result<ArtifactMeta> {
        self.inner.head(path).await
    }
    async fn list(&self, prefix: Option<&ArtifactPath>) -> Result<Vec<ArtifactMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, path: &ArtifactPath) -> Result<()> {
        self.inner.delete(path).await
    }
}

fn shadowed(version: u32, timeout_ms: u64) -> TrafficPolicy {
    TrafficPolicy {
        shadow: Some(Shadow {
            version,
            timeout_ms,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_shadow_that_hangs_never_holds_up_an_answer() {
    let base = fixture().await;
    let bytes = artifact_bytes();
    register(&base.platform, 1, &bytes, false).await;
    register(&base.platform, 2, &bytes, false).await;
    let gate = Arc::new(Semaphore::new(0));
    let mut platform = base.platform.clone();
    platform.artifacts = Arc::new(Gated {
        inner: base.platform.artifacts.clone(),
        path: ArtifactPath::model("sq", 2, "model.json")
            .unwrap()
            .to_string(),
        gate: gate.clone(),
    });
    let f = Fixture::over_platform(&base, platform);
    let d = go_live(&f.platform, 1, Some(shadowed(2, 60_000)), None).await;
    // Every answer arrives while the shadow's model cannot even load.
    for i in 0..20 {
        let got = predict(&f, Some(&format!("S-{i}")), i).await;
        assert_eq!(
            (got["variant"].as_str(), got["version"].as_u64()),
            (Some("primary"), Some(1))
        );
    }
    let metrics = f
        .call("GET", "/metrics", Some(f.token(Role::Admin)), "")
        .await;
    assert!(
        metrics.text.contains("tracseq_shadow_in_flight 20"),
        "{}",
        metrics.text
    );
    // Released: the copies answer and are logged beside what they shadowed.
    gate.add_permits(1_000);
    let records = logged(&f.platform, 40).await;
    let answers: BTreeMap<_, _> = records
        .iter()
        .filter(|r| r.shadow_of.is_none())
        .map(|r| (r.request_id, r))
        .collect();
    let copies: Vec<_> = records.iter().filter(|r| r.variant == "shadow").collect();
    assert_eq!((answers.len(), copies.len()), (20, 20));
    for c in copies {
        let answer = answers[&c.shadow_of.unwrap()];
        assert_eq!((c.version, c.deployment_id), (2, Some(d.id)));
        assert_eq!(
            (&c.entity_id, &c.features),
            (&answer.entity_id, &answer.features)
        );
        assert!(c.error.is_none() && c.output["value"].is_number());
    }
}

#[tokio::test]
async fn a_shadow_that_fails_or_times_out_is_logged_as_such_and_the_answer_is_untouched() {
    let base = fixture().await;
    let bytes = artifact_bytes();
    register(&base.platform, 1, &bytes, false).await;
    // Version 2's artifact does not match its digest: it can never load.
    register(&base.platform, 2, &bytes, true).await;
    register(&base.platform, 3, &bytes, false).await;
    let d = go_live(&base.platform, 1, Some(shadowed(2, 5_000)), None).await;
    for i in 0..10 {
        let got = predict(&base, Some(&format!("S-{i}")), i).await;
        assert_eq!(got["version"], 1);
    }
    let records = logged(&base.platform, 20).await;
    let failed: Vec<_> = records.iter().filter(|r| r.variant == "shadow").collect();
    assert_eq!(failed.len(), 10);
    assert!(failed
        .iter()
        .all(|r| r.error.as_ref().is_some_and(|e| e.contains("version 2")) && r.output.is_null()));
    let metrics = base
        .call("GET", "/metrics", Some(base.token(Role::Admin)), "")
        .await;
    assert!(metrics
        .text
        .contains("tracseq_shadow_requests_total{result=\"failed\"} 10"));

    // A shadow slower than its timeout: cut off, logged, never waited for.
    let gate = Arc::new(Semaphore::new(0));
    let mut platform = base.platform.clone();
    platform.artifacts = Arc::new(Gated {
        inner: base.platform.artifacts.clone(),
        path: ArtifactPath::model("sq", 3, "model.json")
            .unwrap()
            .to_string(),
        gate,
    });
    let slow = Fixture::over_platform(&base, platform);
    go_live(&slow.platform, 1, Some(shadowed(3, 50)), Some(&d)).await;
    for i in 0..5 {
        assert_eq!(predict(&slow, Some("S-slow"), i).await["version"], 1);
    }
    let records = logged(&slow.platform, 30).await;
    let timed_out = records
        .iter()
        .filter(|r| r.version == 3)
        .filter(|r| r.error.as_deref() == Some("the shadow gave no answer within 50 ms"))
        .count();
    assert_eq!(timed_out, 5);
}

async fn analysis(f: &Fixture, path: &str) -> Value {
    let got = f.call("GET", path, Some(f.token(Role::Viewer)), "").await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

#[tokio::test]
async fn the_analysis_compares_each_arm_with_primary_once_outcomes_arrive() {
    let f = fixture().await;
    let bytes = artifact_bytes();
    register(&f.platform, 1, &bytes, false).await;
    register(&f.platform, 2, &bytes, false).await;
    let traffic = TrafficPolicy {
        split: vec![Arm {
            variant: "b".into(),
            version: 2,
            weight: 50.0,
        }],
        ..Default::default()
    };
    let d = go_live(&f.platform, 1, Some(traffic), None).await;
    let sci = f.token(Role::Scientist);
    let path = format!("/deployments/{}/analysis", d.id);
    let mut ids = Vec::new();
    for i in 0..200u64 {
        let (record, measured) = tracseq_learn::lab::example_sample(i);
        let body = json!({"model": "sq", "entity_id": format!("S-{i}"), "features": record});
        let got = f.predict(&body).await;
        ids.push((
            got.body["request_id"].as_str().unwrap().to_string(),
            measured,
        ));
    }
    logged(&f.platform, 200).await;
    // Answers but no outcomes yet: the analysis says so.
    let early = analysis(&f, &path).await;
    assert_eq!(early["baseline"], "primary");
    assert_eq!(early["variants"].as_array().unwrap().len(), 2);
    let total: u64 = early["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 200);
    assert!(early["comparisons"].as_array().unwrap().is_empty());
    for (id, measured) in &ids {
        let body = json!({"request_id": id, "actual": measured});
        let got = f
            .call("POST", "/feedback", Some(sci), &body.to_string())
            .await;
        assert_eq!(got.status, 201, "{}", got.body);
    }
    let done = analysis(&f, &path).await;
    let comparisons = done["comparisons"].as_array().unwrap();
    let rmse = comparisons.iter().find(|c| c["metric"] == "rmse").unwrap();
    assert_eq!(rmse["test"], "welch_t");
    assert_eq!(rmse["baseline"], "primary");
    assert_eq!(rmse["variant"], "b@2");
    assert_eq!(rmse["enough"], true);
    let n = rmse["n_baseline"].as_u64().unwrap() + rmse["n_variant"].as_u64().unwrap();
    assert_eq!(n, 200);
    let p = rmse["p_value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{rmse}");
    assert!(rmse["statistic"].is_number() && rmse["degrees_of_freedom"].is_number());
    let accuracy_free = comparisons.iter().all(|c| c["metric"] != "accuracy");
    assert!(accuracy_free, "a regression is compared on rmse and mae");
    for v in done["variants"].as_array().unwrap() {
        assert!(v["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(v["metrics"][0]["metric"], "rmse");
    }
}

/// Drives the canary controller as the scheduler's tick would, once the
/// step's interval (1 s) has passed.
async fn check(p: &Platform, audit: &Arc<dyn SecurityStore>) {
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    tracseq_scheduler::canary::check_all(p, Some(audit), &AlertsConfig::default(), Utc::now())
        .await
        .unwrap();
}

fn canary(max_p99_ms: f64) -> TrafficPolicy {
    TrafficPolicy {
        canary: Some(CanaryPlan {
            steps: vec![20.0, 100.0],
            interval_secs: 1,
            gates: Gates {
                max_error_rate: Some(0.05),
                max_p99_ms: Some(max_p99_ms),
                metric: None,
            },
            fail_after: 2,
            min_requests: 10,
        }),
        ..Default::default()
    }
}

async fn send(f: &Fixture, from: u64, n: u64) {
    f.models.refresh_deployments(&f.platform).await.unwrap();
    for i in from..from + n {
        predict(f, Some(&format!("S-{i}")), i).await;
    }
}

#[tokio::test]
async fn a_healthy_canary_steps_up_to_everyone_and_a_slow_one_is_rolled_back() {
    let f = fixture().await;
    let audit: Arc<dyn SecurityStore> = Arc::new(MemorySecurityStore::new());
    let bytes = artifact_bytes();
    for v in 1..=3 {
        register(&f.platform, v, &bytes, false).await;
    }
    let stable = go_live(&f.platform, 1, None, None).await;
    let d = go_live(&f.platform, 2, Some(canary(60_000.0)), Some(&stable)).await;
    send(&f, 0, 200).await;
    let records = logged(&f.platform, 200).await;
    // 20% of 200 is 40, give or take 5.7: this range is 4 of those.
    let canary_share = records.iter().filter(|r| r.variant == "canary").count();
    assert!(
        (17..=63).contains(&canary_share),
        "{canary_share} of 200 at 20%"
    );
    // Not yet time: nothing moves.
    tracseq_scheduler::canary::check_all(
        &f.platform,
        Some(&audit),
        &AlertsConfig::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    let now = f.platform.registry.get_deployment(d.id).await.unwrap();
    assert!(now.rollout.as_ref().unwrap().checks.is_empty());
    check(&f.platform, &audit).await;
    let now = f.platform.registry.get_deployment(d.id).await.unwrap();
    let r = now.rollout.as_ref().unwrap();
    assert_eq!(
        (r.state, r.step, r.percent),
        (RolloutState::Progressing, 1, 100.0)
    );
    // At 100% every request goes to the canary; the last check completes it.
    send(&f, 1000, 20).await;
    let newest = logged(&f.platform, 220).await;
    assert!(newest[..20]
        .iter()
        .all(|r| r.variant == "canary" && r.version == 2));
    check(&f.platform, &audit).await;
    let done = f.platform.registry.get_deployment(d.id).await.unwrap();
    assert_eq!(
        done.rollout.as_ref().unwrap().state,
        RolloutState::Completed
    );
    send(&f, 2000, 5).await;
    assert_eq!(logged(&f.platform, 225).await[0].variant, "primary");

    // Version 3 as a canary that can never meet a p99 of a microsecond.
    let slow = go_live(&f.platform, 3, Some(canary(0.001)), Some(&done)).await;
    send(&f, 3000, 200).await;
    logged(&f.platform, 425).await;
    check(&f.platform, &audit).await;
    let once = f.platform.registry.get_deployment(slow.id).await.unwrap();
    let r = once.rollout.as_ref().unwrap();
    assert_eq!((r.state, r.failures), (RolloutState::Progressing, 1));
    assert!(
        r.checks[0].reasons[0].contains("p99 latency"),
        "{:?}",
        r.checks
    );
    send(&f, 4000, 200).await;
    logged(&f.platform, 625).await;
    check(&f.platform, &audit).await;
    let rolled = f.platform.registry.get_deployment(slow.id).await.unwrap();
    assert_eq!(rolled.state, DeploymentState::RolledBack);
    let step = rolled.history.last().unwrap();
    assert_eq!(step.by.as_ref().unwrap().name, "canary-controller");
    assert!(step
        .reason
        .as_ref()
        .unwrap()
        .contains("after 2 failed checks in a row"));
    let back = f.platform.registry.get_deployment(d.id).await.unwrap();
    assert_eq!(back.state, DeploymentState::Live);
    let slots = f.platform.registry.model_slots("sq").await.unwrap();
    assert_eq!(slots.production(), Some(2));
    let entries = audit
        .list_audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(entries
        .iter()
        .any(|e| e.entry.action == "deployments.auto_rollback"
            && e.entry.targets.contains(&slow.id.to_string())));
    // And it was raised as a critical alert about the rolled-back deployment.
    let alerts = f
        .platform
        .alerts
        .list_alerts(&Default::default(), &Default::default())
        .await
        .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert.kind, AlertKind::CanaryRollback);
    assert_eq!(
        (alert.deployment_id, alert.version),
        (Some(slow.id), Some(3))
    );
    assert!(alert.summary.contains("p99 latency"), "{}", alert.summary);
    assert_eq!(alert.detail["restored_version"], 2);
    // The replicas follow: version 2 answers everyone again.
    send(&f, 5000, 5).await;
    let latest = logged(&f.platform, 630).await;
    assert!(latest[..5].iter().all(|r| r.version == 2));
}
