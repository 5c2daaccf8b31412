//! The hot swap under load: two api replicas over PostgreSQL serve
//! `/predict` without a version while a deploy and a rollback move the
//! model between versions. No request may fail, and every answer names the
//! version that gave it; each replica ends up serving the rolled-back-to
//! version. (Latency during the swap is measured in `bench/hot-swap.sh`;
//! tests assert no timings.)
//!
//! Needs PostgreSQL, RabbitMQ and an S3 server; with `CI` set a missing one
//! fails the test, otherwise it is skipped.

mod common;

use common::distributed::Env;
use common::{free_port, Api};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Asks `api` for production of `version` and has the approver approve.
async fn release(admin: &Api, approver: &Api, version: u64) {
    let ask = admin
        .post_ok(
            "/models/promote",
            json!({"name": "dist", "version": version, "stage": "production", "reason": "swap test"})
                .to_string()
                .into_bytes(),
            "application/json",
        )
        .await;
    let id = ask["id"].as_str().unwrap();
    let (status, done) = approver
        .post_json(&format!("/promotions/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 200, "{done}");
}

/// Deploys `version`; answers the deployment id once it is live.
async fn deploy(admin: &Api, version: u64) -> String {
    let (status, d) = admin
        .post_json(
            "/models/deploy",
            &json!({"name": "dist", "version": version}),
        )
        .await;
    assert_eq!(status, 202, "{d}");
    let id = d["deployment"]["id"].as_str().unwrap().to_string();
    let live = admin
        .wait_for(
            &format!("/deployments/{id}"),
            Duration::from_secs(60),
            |d| d["state"] == "live" || d["state"] == "failed",
        )
        .await;
    assert_eq!(live["state"], "live", "{live}");
    id
}

/// Waits until every replica answers unpinned requests from `version`.
async fn until_all_serve(replicas: &[Api], body: &Value, version: u64) {
    for api in replicas {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, p) = api.post_json("/predict", body).await;
            assert_eq!(status, 200, "{p}");
            if p["version"] == version {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} still serves {}",
                api.base,
                p["version"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Default)]
struct Tally {
    answers: u64,
    failures: Vec<String>,
    by_version: std::collections::BTreeMap<u64, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_swap_versions_under_load_and_no_request_fails() {
    let Some(mut env) = Env::new() else { return };
    env.start().await;
    let admin_token = env.api.token.clone().unwrap();
    let port2 = free_port();
    env.spawn("api2", &["api", "--port", &port2.to_string()]);
    let second = Api::with_token(format!("http://127.0.0.1:{port2}"), &admin_token);
    second.wait_healthy(Duration::from_secs(60)).await;

    let ds = env.api.upload_lab(300, 17).await;
    let ds_id = ds["id"].as_str().unwrap().to_string();
    let exp = env.experiment(&ds_id, 3, 1).await;
    assert_eq!(env.wait_done(&exp, 180).await["state"], "completed");
    let exp = env.experiment(&ds_id, 3, 2).await;
    assert_eq!(env.wait_done(&exp, 180).await["state"], "completed");

    let (status, t) = env
        .api
        .post_json(
            "/tokens",
            &json!({"name": "swap-approver", "role": "approver"}),
        )
        .await;
    assert_eq!(status, 201, "{t}");
    let approver = Api::with_token(env.api.base.clone(), t["token"].as_str().unwrap());
    release(&env.api, &approver, 1).await;
    deploy(&env.api, 1).await;
    let body = json!({"model": "dist", "features": tracseq_learn::lab::example_record(5)});
    let replicas = [
        Api::with_token(env.api.base.clone(), &admin_token),
        Api::with_token(second.base.clone(), &admin_token),
    ];
    until_all_serve(&replicas, &body, 1).await;

    // Load on both replicas while version 2 is deployed and rolled back.
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..8 {
        let api = Api::with_token(replicas[i % 2].base.clone(), &admin_token);
        let (stop, body) = (stop.clone(), body.clone());
        load.push(tokio::spawn(async move {
            let mut t = Tally::default();
            while !stop.load(Ordering::Relaxed) {
                let r = api
                    .http
                    .post(format!("{}/predict", api.base))
                    .json(&body)
                    .send()
                    .await;
                t.answers += 1;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or_default();
                        match v["version"].as_u64() {
                            Some(n) => *t.by_version.entry(n).or_default() += 1,
                            None => t.failures.push(format!("no version in {v}")),
                        }
                    }
                    Ok(r) => t.failures.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => t.failures.push(e.to_string()),
                }
            }
            t
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    release(&env.api, &approver, 2).await;
    let deployed = deploy(&env.api, 2).await;
    until_all_serve(&replicas, &body, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, rolled) = env
        .api
        .post_json(
            &format!("/deployments/{deployed}/rollback"),
            &json!({"reason": "swap test"}),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    until_all_serve(&replicas, &body, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for h in load {
        let t = h.await.unwrap();
        total.answers += t.answers;
        total.failures.extend(t.failures);
        for (v, n) in t.by_version {
            *total.by_version.entry(v).or_default() += n;
        }
    }
    eprintln!(
        "hot swap: {} answers by version {:?}",
        total.answers, total.by_version
    );
    assert!(
        total.failures.is_empty(),
        "{} failed: {:?}",
        total.failures.len(),
        &total.failures[..total.failures.len().min(5)]
    );
    assert_eq!(
        total.by_version.keys().copied().collect::<Vec<_>>(),
        vec![1, 2],
        "both versions answered, and no other"
    );
    for api in &replicas {
        let text = api
            .http
            .get(format!("{}/metrics", api.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("tracseq_serving_deployed_version{model=\"dist\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tracseq_serving_swap_failures_total 0"),
            "{text}"
        );
    }
    env.cleanup().await;
}
