//! The neural-network family through the real binary: an AutoML experiment
//! of MLP trials on the sample-quality data, its model served by
//! `/predict`, and an MLP trial pruned from the validation values it
//! reports each epoch. Needs the `torch` feature (ops/test.sh builds with it).
#![cfg(feature = "torch")]

mod common;

use common::{assert_explained_prediction, Server};
use serde_json::{json, Value};
use std::time::Duration;

/// Runs an AutoML experiment to its end on a fresh server holding 600 rows
/// of the lab data (from `seed`), predicting `quality_score`: the server,
/// the experiment's id and its final summary.
async fn run_to_end(seed: u64, mut spec: Value) -> (Server, String, Value) {
    let (server, ds) = Server::start_with_lab(600, seed).await;
    spec["dataset_id"] = ds["id"].clone();
    spec["target"] = json!("quality_score");
    let (id, _) = server.create_experiment(&spec).await;
    let done = server.wait_settled(&id, Duration::from_secs(300)).await;
    (server, id, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlp_automl_experiment_is_served_by_predict() {
    let spec = json!({
        "name": "mlp", "budget": {"trials": 4}, "parallelism": 2, "seed": 3, "cv_folds": 3,
        "model_name": "quality-mlp",
        "search_space": {
            "family": {"type": "categorical", "choices": ["nn"]},
            "nn_width": {"type": "int", "low": 8, "high": 32},
            "nn_epochs": {"type": "int", "low": 5, "high": 15},
            "nn_learning_rate": {"type": "float", "low": 0.001, "high": 0.03, "log": true}
        }
    });
    let (server, id, done) = run_to_end(21, spec).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["counts"]["total"], 4);
    assert_eq!(done["model_name"], "quality-mlp");

    // Every trial reported per-epoch validation values (steps >= 1000).
    let (_, trials) = server.get(&format!("/experiments/{id}/trials")).await;
    for t in trials.as_array().unwrap() {
        assert_eq!(t["params"]["family"], "nn", "{t}");
        let epochs = t["intermediate"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.parse::<u32>().unwrap() >= 1000)
            .count();
        assert!(epochs >= 1, "trial {} reported no epoch: {t}", t["number"]);
    }

    let (status, model) = server.get("/models/quality-mlp").await;
    assert_eq!(status, 200, "{model}");
    assert_eq!(model["versions"][0]["params"]["family"], "nn");
    let features = tracseq_learn::lab::example_record(4);
    let pred = server
        .predict(&json!({"model": "quality-mlp", "version": 1, "features": features}))
        .await;
    assert_explained_prediction(&pred);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hopeless_mlp_trial_is_pruned_from_its_epochs() {
    // Trials alternate between a learning rate that learns and one that
    // barely moves (1e-6): the median pruner, comparing each epoch's
    // validation value with finished trials at the same epoch, stops the
    // hopeless ones early.
    let spec = json!({
        "name": "mlp-prune", "budget": {"trials": 6}, "parallelism": 1, "seed": 9, "cv_folds": 2,
        "sampler": {"type": "random"},
        "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "search_space": {
            "family": {"type": "categorical", "choices": ["nn"]},
            "nn_learning_rate": {"type": "categorical", "choices": [0.03, 0.000001]},
            "nn_epochs": {"type": "categorical", "choices": [25]},
            "nn_batch_norm": {"type": "categorical", "choices": [false]},
            "nn_dropout": {"type": "categorical", "choices": [0.0]}
        }
    });
    let (server, id, done) = run_to_end(22, spec).await;
    assert_eq!(done["state"], "completed", "{done}");
    let (_, trials) = server.get(&format!("/experiments/{id}/trials")).await;
    let trials = trials.as_array().unwrap();
    let pruned: Vec<&Value> = trials.iter().filter(|t| t["state"] == "pruned").collect();
    assert!(!pruned.is_empty(), "no trial was pruned: {trials:?}");
    for t in &pruned {
        assert_eq!(t["params"]["nn_learning_rate"], 0.000001, "{t}");
        let last_step = t["intermediate"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.parse::<u32>().unwrap())
            .max()
            .unwrap();
        assert!(
            last_step >= 1000,
            "pruned at an epoch report (step {last_step}), not only after a fold: {t}"
        );
    }
    // The good configuration was never pruned.
    assert!(trials
        .iter()
        .filter(|t| t["params"]["nn_learning_rate"] == 0.03)
        .all(|t| t["state"] == "complete"));
    server.stop();
}
