//! The model lifecycle end to end on the real binary in embedded mode, with
//! its real worker running the deploy jobs: AutoML registers version 1; a
//! scientist asks for production and an approver (a second token) approves;
//! the deploy job makes it live and `/predict` without a version answers
//! from it. A version registered from outside goes the same way, then a
//! rollback in one call brings version 1 back.

mod common;

use common::{Api, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `/predict` without version or alias, until it answers from `version`.
async fn until_serving(api: &Api, features: &Value, version: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, pred) = api
            .post_json("/predict", &json!({"model": "sq", "features": features}))
            .await;
        assert_eq!(status, 200, "{pred}");
        if pred["version"] == version {
            return pred;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {} instead of {version}",
            pred["version"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests production for `version` as `sci` and has `approver` approve.
async fn to_production(sci: &Api, approver: &Api, version: u64) {
    let (status, req) = sci
        .post_json(
            "/models/promote",
            &json!({"name": "sq", "version": version, "stage": "production",
                    "reason": "review passed", "gates": [{"type": "threshold", "metric": "rmse", "value": 1000}]}),
        )
        .await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["state"], "pending");
    let id = req["id"].as_str().unwrap();
    let (status, own) = sci
        .post_json(&format!("/promotions/{id}/approve"), &json!({}))
        .await;
    assert_eq!(status, 403, "a scientist cannot approve: {own}");
    let (status, done) = approver
        .post_json(
            &format!("/promotions/{id}/approve"),
            &json!({"reason": "ok"}),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "approved");
}

/// Deploys `version` to the platform and waits for the deployment to go live.
async fn deploy(sci: &Api, version: u64) -> String {
    let (status, d) = sci
        .post_json("/models/deploy", &json!({"name": "sq", "version": version}))
        .await;
    assert_eq!(status, 202, "{d}");
    let id = d["deployment"]["id"].as_str().unwrap().to_string();
    let live = sci
        .wait_for(
            &format!("/deployments/{id}"),
            Duration::from_secs(60),
            |d| ["live", "failed"].contains(&d["state"].as_str().unwrap_or("")),
        )
        .await;
    assert_eq!(live["state"], "live", "{live}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_goes_from_automl_through_approval_to_serving_and_back_by_rollback() {
    let server = Server::start_fresh(&[]).await;
    let ds = server.upload_lab(400, 21).await;
    let spec = json!({"name": "sq-run", "dataset_id": ds["id"], "target": "quality_score",
                      "budget": {"trials": 3}, "parallelism": 2, "seed": 3, "model_name": "sq"});
    let (exp, _) = server.create_experiment(&spec).await;
    let done = server.wait_settled(&exp, Duration::from_secs(180)).await;
    assert_eq!(done["state"], "completed", "{done}");
    let token = |role: &'static str| {
        let server = &server;
        async move {
            let (status, t) = server
                .post_json(
                    "/tokens",
                    &json!({"name": format!("e2e-{role}"), "role": role}),
                )
                .await;
            assert_eq!(status, 201, "{t}");
            Api::with_token(server.base.clone(), t["token"].as_str().unwrap())
        }
    };
    let sci = token("scientist").await;
    let approver = token("approver").await;
    let features = Value::Object(tracseq_learn::lab::example_record(3));

    // A new version is not served by default: nothing is deployed yet.
    let (status, refused) = sci
        .post_json("/predict", &json!({"model": "sq", "features": features}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("deploy"),
        "{refused}"
    );
    let pinned = sci
        .predict(&json!({"model": "sq", "alias": "latest", "features": features}))
        .await;
    assert_eq!(pinned["version"], 1);

    to_production(&sci, &approver, 1).await;
    let first = deploy(&sci, 1).await;
    let v1 = until_serving(&sci, &features, 1).await;

    // Version 2 from outside: version 1's artifact, registered with its digest.
    let (_, model) = sci.get("/models/sq").await;
    let sha = model["versions"][0]["sha256"].as_str().unwrap().to_string();
    let (status, reg) = sci
        .post_json(
            "/models/register",
            &json!({"name": "sq", "artifact_path": "models/sq/1/model.json", "sha256": sha,
                    "description": "refit by the core facility", "tags": {"origin": "core"},
                    "lineage": {"dataset_id": ds["id"], "feature_set_version": "lab@1"}}),
        )
        .await;
    assert_eq!(status, 201, "{reg}");
    assert_eq!(
        (reg["version"].as_u64(), reg["stage"].as_str()),
        (Some(2), Some("none"))
    );
    let (status, bad) = sci
        .post_json(
            "/models/register",
            &json!({"name": "sq", "artifact_path": "models/sq/1/model.json", "sha256": "0".repeat(64)}),
        )
        .await;
    assert_eq!(status, 400, "a digest mismatch is refused: {bad}");

    to_production(&sci, &approver, 2).await;
    let second = deploy(&sci, 2).await;
    let v2 = until_serving(&sci, &features, 2).await;
    assert_eq!(v2["value"], v1["value"], "the same artifact answers alike");
    let (_, first_now) = sci.get(&format!("/deployments/{first}")).await;
    assert_eq!(first_now["state"], "superseded");

    // Rollback: one call, no approval, version 1 serves again.
    let (status, rolled) = sci
        .post_json(
            &format!("/deployments/{second}/rollback"),
            &json!({"reason": "drift"}),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["state"], "rolled_back");
    until_serving(&sci, &features, 1).await;
    let (_, model) = sci.get("/models/sq").await;
    assert_eq!(model["production"], 1, "{model}");
    assert_eq!(model["deployed"]["platform"]["version"], 1, "{model}");
    assert_eq!(model["versions"][1]["tags"]["origin"], "core", "{model}");
    assert_eq!(
        model["versions"][1]["lineage"]["feature_set_version"],
        "lab@1"
    );

    // The version's figures: training, its trial's folds, and serving here.
    let (status, m) = sci.get("/models/sq/versions/1/metrics").await;
    assert_eq!(status, 200, "{m}");
    assert!(m["training"]["rmse"].as_f64().is_some(), "{m}");
    assert!(!m["cross_validation"]["fold_values"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(
        m["serving"]["replica"]["requests"].as_u64().unwrap() >= 2,
        "{m}"
    );
    assert_eq!(m["serving"]["serves_unpinned_requests_here"], true);

    // Rolling back the deployment that has nothing before it: a clear 409.
    let (status, nothing) = sci
        .post_json(&format!("/deployments/{first}/rollback"), &json!({}))
        .await;
    assert_eq!(status, 409, "{nothing}");

    let (_, history) = sci.get("/models/sq/history").await;
    let moves = history["entries"].as_array().unwrap();
    assert!(
        moves
            .iter()
            .any(|h| h["approved_by"]["name"] == "e2e-approver"),
        "{history}"
    );
    server.stop();
}
