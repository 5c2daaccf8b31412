//! End to end on the real binary in embedded mode: upload, AutoML over HTTP,
//! predict, batch predict, restart, and find everything again.

mod common;

use common::{assert_explained_prediction, Server};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automl_predict_restart_and_find_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;

    let ds = server.upload_lab(600, 11).await;
    assert_eq!(ds["rows"], 600);
    let ds_id = ds["id"].as_str().unwrap().to_string();

    let spec = json!({
        "name": "e2e", "dataset_id": ds_id, "target": "quality_score",
        "budget": {"trials": 6}, "parallelism": 2, "seed": 5, "cv_folds": 3,
        "model_name": "quality"
    });
    let (id, exp) = server.create_experiment(&spec).await;
    assert_eq!(exp["spec"]["metric"], "rmse");

    let done = server.wait_settled(&id, Duration::from_secs(180)).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["counts"]["total"], 6, "exactly the planned trials");
    assert_eq!(done["counts"]["running"], 0);
    assert_eq!(done["model_name"], "quality");
    assert_eq!(done["model_version"], 1);
    let best = done["best_trial"]["value"].as_f64().unwrap();
    assert!(best.is_finite() && best > 0.0);

    // Field selection on trials.
    let (status, trials) = server
        .get(&format!(
            "/experiments/{id}/trials?fields=number,state,value&sort=value"
        ))
        .await;
    assert_eq!(status, 200);
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 6);
    assert!(trials.iter().all(|t| t.as_object().unwrap().len() == 3));
    assert_eq!(trials[0]["value"].as_f64(), Some(best), "sorted best first");

    // The registry and the served model.
    let (status, model) = server.get("/models/quality").await;
    assert_eq!(status, 200);
    assert_eq!(model["versions"][0]["version"], 1);
    assert!(model["versions"][0]["metrics"]["rmse"].as_f64().is_some());
    assert_eq!(
        model["versions"][0]["owner"]["name"], "admin",
        "the model is its experiment's owner's: {model}"
    );
    // Artifacts: listed with digests, downloadable, digest as registered.
    let sha = model["versions"][0]["sha256"].as_str().unwrap().to_string();
    let (status, listing) = server.get("/artifacts?prefix=models/quality").await;
    assert_eq!(status, 200, "{listing}");
    let items = listing["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["path"], "models/quality/1/model.json");
    assert_eq!(items[0]["sha256"], sha.as_str());
    let (_, trials_listing) = server
        .get(&format!("/artifacts?prefix=experiments/{id}/trials"))
        .await;
    assert_eq!(
        trials_listing["items"].as_array().unwrap().len(),
        6,
        "one result per trial"
    );
    let resp = server
        .http
        .get(format!(
            "{}/artifacts/models/quality/1/model.json",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-checksum-sha256"].to_str().unwrap(), sha);
    let body = resp.bytes().await.unwrap();
    assert_eq!(tracseq_learn::artifact::sha256_hex(&body), sha);
    let (status, _) = server.get("/artifacts/models/quality/9/model.json").await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/artifacts/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(status, 400);

    let features = Value::Object(tracseq_learn::lab::example_record(3));
    let pred = server
        .predict(&json!({"model": "quality", "alias": "latest", "features": features}))
        .await;
    assert_explained_prediction(&pred);
    let score = pred["value"].as_f64().unwrap();

    // Batch prediction: inline records, and a data set as a job.
    let (status, batch) = server
        .post_json(
            "/batch_predict",
            &json!({"model": "quality", "version": 1, "records": [features, features]}),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(batch["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(batch["predictions"][0]["value"].as_f64(), Some(score));
    let (status, job) = server
        .post_json(
            "/batch_predict",
            &json!({"model": "quality", "version": 1, "dataset_id": ds_id}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    let job = server
        .wait_for(&format!("/jobs/{job_id}"), Duration::from_secs(60), |j| {
            j["state"] == "succeeded" || j["state"] == "dead"
        })
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["result"]["rows"], 600);

    // Restart on the same data dir: everything is still there and served.
    server.stop();
    let server = Server::start(dir.path(), &[]).await;
    let (status, again) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(again["state"], "completed");
    assert_eq!(again["counts"]["total"], 6);
    assert_eq!(again["best_trial"]["value"].as_f64(), Some(best));
    let (_, list) = server.get("/experiments").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, ds_again) = server.get(&format!("/datasets/{ds_id}")).await;
    assert_eq!(ds_again["sha256"], ds["sha256"]);
    let pred2 = server
        .predict(&json!({"model": "quality", "version": 1, "features": features}))
        .await;
    assert_eq!(
        pred2["value"].as_f64(),
        Some(score),
        "same model, same answer after restart"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_experiment_stops_its_trials() {
    let (server, ds) = Server::start_with_lab(400, 2).await;
    let spec = json!({"name": "long", "dataset_id": ds["id"], "target": "quality_score", "budget": {"trials": 500}});
    let (id, _) = server.create_experiment(&spec).await;
    server
        .wait_for(
            &format!("/experiments/{id}"),
            Duration::from_secs(60),
            |b| b["counts"]["complete"].as_u64() >= Some(1),
        )
        .await;
    let (status, cancelled) = server
        .post_json(&format!("/experiments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, after) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(after["state"], "cancelled");
    assert_eq!(after["counts"]["running"], 0);
    let total = after["counts"]["total"].as_u64().unwrap();
    assert!(total < 500);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, later) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(
        later["counts"]["total"].as_u64().unwrap(),
        total,
        "no trial started after cancel"
    );
    let (status, again) = server
        .post_json(&format!("/experiments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    server.stop();
}
