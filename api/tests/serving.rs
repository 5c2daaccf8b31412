//! Which version answers, and the swap: `ModelCache` over an in-memory
//! platform with real artifacts. A deployed version is loaded before it
//! takes traffic; one that fails its digest check is never swapped in, and
//! the previous one keeps answering.

mod common;

use common::{artifact_bytes, fixture, register};
use serde_json::json;
use tracseq_api::serving::{ModelCache, Pick};
use tracseq_core::lifecycle::deployment::{Deployment, DeploymentState};
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::DeploymentWrite;
use tracseq_core::security::Role;
use tracseq_core::{Error, Platform};

fn live(version: u32) -> Deployment {
    let mut d = common::deployment(version, None);
    d.state = DeploymentState::Live;
    d
}

async fn store(p: &Platform, inserts: Vec<Deployment>, updates: Vec<Deployment>) {
    let write = DeploymentWrite {
        inserts,
        updates,
        registry: None,
    };
    assert!(p.registry.commit_deployments(write).await.unwrap());
}

#[tokio::test]
async fn without_a_deployment_or_production_version_a_request_without_version_is_refused() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let bytes = artifact_bytes();
    register(&p, 1, &bytes, false).await;
    let cache = ModelCache::default();
    let err = cache.get(&p, "sq", Pick::Serving).await.err().unwrap();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("POST /models/deploy")),
        "{err}"
    );
    // Pinned and aliased requests need no deployment.
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Version(1))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Alias("latest"))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Alias("v1"))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    let unknown = cache
        .get(&p, "sq", Pick::Alias("champion"))
        .await
        .err()
        .unwrap();
    assert!(matches!(unknown, Error::NotFound(_)));
    assert!(matches!(
        Pick::from_request(Some(1), Some("champion")),
        Err(Error::Invalid(_))
    ));
    let long = "a".repeat(10_000);
    for bad in ["", "Champion", "a b", long.as_str()] {
        let err = Pick::from_request(None, Some(bad)).err().unwrap();
        assert!(
            matches!(&err, Error::Invalid(m) if !m.contains("aaaa") && m.contains("alias")),
            "{err}"
        );
    }
    assert_eq!(
        Pick::from_request(None, Some("v2")).unwrap(),
        Pick::Alias("v2")
    );
}

#[tokio::test]
async fn the_deployed_version_answers_and_a_version_failing_its_digest_is_never_swapped_in() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let bytes = artifact_bytes();
    register(&p, 1, &bytes, false).await;
    register(&p, 2, &bytes, false).await;
    register(&p, 3, &bytes, true).await;
    let cache = ModelCache::default();

    let mut first = live(1);
    store(&p, vec![first.clone()], vec![]).await;
    cache.refresh_deployments(&p).await.unwrap();
    let held = cache.get(&p, "sq", Pick::Serving).await.unwrap();
    assert_eq!(held.version.version, 1);
    assert_eq!(cache.deployed_versions(), vec![("sq".to_string(), 1)]);

    // Version 2 goes live: the next refresh swaps it in; a request that
    // already held version 1 still holds it.
    first.state = DeploymentState::Superseded;
    let mut second = live(2);
    store(&p, vec![second.clone()], vec![first.clone()]).await;
    cache.refresh_deployments(&p).await.unwrap();
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Serving)
            .await
            .unwrap()
            .version
            .version,
        2
    );
    assert_eq!(held.version.version, 1);

    // Version 3's artifact does not match its digest: version 2 keeps answering.
    second.revision = 0;
    second.state = DeploymentState::Superseded;
    store(&p, vec![live(3)], vec![second]).await;
    cache.refresh_deployments(&p).await.unwrap();
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Serving)
            .await
            .unwrap()
            .version
            .version,
        2
    );
    let mut metrics = String::new();
    cache.render_metrics(&mut metrics);
    assert!(
        metrics.contains("tracseq_serving_swap_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tracseq_serving_deployed_version{model=\"sq\"} 2"),
        "{metrics}"
    );
}

/// Reads `/predictions` (as a scientist) until it holds `n` records.
async fn logged(f: &common::Fixture, query: &str, n: usize) -> serde_json::Value {
    let sci = f.token(Role::Scientist);
    for _ in 0..300 {
        let got = f
            .call("GET", &format!("/predictions?{query}"), Some(sci), "")
            .await;
        assert_eq!(got.status, 200, "{}", got.body);
        if got.body.as_array().unwrap().len() >= n {
            return got.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{query}: fewer than {n} predictions logged");
}

#[tokio::test]
async fn every_answer_is_logged_with_its_request_id_variant_entity_and_caller() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let predictor = f.token(Role::Predictor);
    let features = tracseq_learn::lab::example_record(5);
    let one = json!({"model": "sq", "version": 1, "entity_id": "S-0001", "features": features});
    let answer = f
        .call("POST", "/predict", Some(predictor), &one.to_string())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["variant"], "primary");
    let request_id = answer.body["request_id"].as_str().unwrap().to_string();

    let batch = json!({"model": "sq", "version": 1, "entity_ids": ["S-0002", "S-0003"],
                       "records": [tracseq_learn::lab::example_record(6), tracseq_learn::lab::example_record(7)]});
    let answers = f
        .call(
            "POST",
            "/batch_predict",
            Some(predictor),
            &batch.to_string(),
        )
        .await;
    assert_eq!(answers.status, 200, "{}", answers.body);
    let batch_ids: Vec<&str> = answers.body["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(batch_ids.len(), 2);

    let all = logged(&f, "model=sq", 3).await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["request_id"], batch_ids[1], "newest first");
    let first = &all[2];
    assert_eq!(first["request_id"], request_id.as_str());
    assert_eq!(
        (
            &first["version"],
            &first["variant"],
            &first["entity_id"],
            &first["caller"]
        ),
        (
            &json!(1),
            &json!("primary"),
            &json!("S-0001"),
            &json!("predictor")
        )
    );
    assert_eq!(first["features"], json!(features));
    assert_eq!(first["output"]["value"], answer.body["value"]);
    assert!(first["latency_us"].as_u64().unwrap() > 0);

    let by_entity = logged(&f, "entity_id=S-0002", 1).await;
    assert_eq!(by_entity[0]["request_id"], batch_ids[0]);
    let page = f
        .call(
            "GET",
            "/predictions?model=sq&limit=2",
            Some(f.token(Role::Scientist)),
            "",
        )
        .await;
    assert_eq!(page.body.as_array().unwrap().len(), 2);
    let link = page.headers["link"].to_str().unwrap();
    assert!(
        link.starts_with("</predictions?model=sq&limit=2&after="),
        "{link}"
    );

    // Features are lab data: a predictor may predict but not read the log.
    let denied = f.call("GET", "/predictions", Some(predictor), "").await;
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn bad_entity_ids_and_features_are_refused_by_name_and_nothing_is_logged() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let predictor = f.token(Role::Predictor);
    let features = tracseq_learn::lab::example_record(5);
    let cases = [
        (
            "/predict",
            json!({"model": "sq", "version": 1, "entity_id": "", "features": features}),
            "entity_id",
        ),
        (
            "/predict",
            json!({"model": "sq", "version": 1, "entity_id": "a\u{7}b", "features": features}),
            "entity_id",
        ),
        (
            "/predict",
            json!({"model": "sq", "version": 1, "features": [1.0, 2.0]}),
            "features must be an object",
        ),
        (
            "/predict",
            json!({"model": "sq", "version": 1, "features": {"sample_age_hours": [1]}}),
            "sample_age_hours",
        ),
        (
            "/batch_predict",
            json!({"model": "sq", "version": 1, "entity_ids": ["S-1"], "records": [features, features]}),
            "entity_ids",
        ),
        (
            "/batch_predict",
            json!({"model": "sq", "version": 1, "entity_ids": ["S-1", "x".repeat(129)], "records": [features, features]}),
            "entity_ids[1]",
        ),
    ];
    for (path, body, named) in cases {
        let got = f
            .call("POST", path, Some(predictor), &body.to_string())
            .await;
        assert_eq!(got.status, 400, "{path} {body}: {}", got.body);
        let detail = got.body.to_string();
        assert!(detail.contains(named), "{named}: {detail}");
    }
    let sci = f.token(Role::Scientist);
    for bad in [
        "since=yesterday",
        "after=nope",
        "limit=0",
        "entity_id=",
        "color=red",
    ] {
        let got = f
            .call("GET", &format!("/predictions?{bad}"), Some(sci), "")
            .await;
        assert_eq!(got.status, 400, "{bad}: {}", got.body);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let none = f.call("GET", "/predictions", Some(sci), "").await;
    assert_eq!(none.body, json!([]));
}
