//! Multi-objective experiments over HTTP on the real binary: a 2-objective
//! ask/tell study whose `pareto_front` must be non-dominated and complete,
//! the 4xx answers for bad specs and tells, and an AutoML study trading the
//! CV metric against the latency and model size the workers measure.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::time::Duration;

/// Maximise `score`, minimise `cost`: they pull x in opposite directions.
fn objective(p: &Value) -> Vec<f64> {
    let x = p["x"].as_f64().unwrap();
    let y = p["y"].as_f64().unwrap();
    let bonus = if p["kind"] == "b" { 0.5 } else { 0.0 };
    vec![
        1.0 - (x - 1.0).powi(2) - y * y + bonus,
        x * x + (y - 0.5).powi(2) + bonus,
    ]
}

/// Whether `a` dominates `b`, both given as `[maximised, minimised]`.
fn dominates(a: &[f64], b: &[f64]) -> bool {
    let (la, lb) = ([-a[0], a[1]], [-b[0], b[1]]);
    la.iter().zip(&lb).all(|(x, y)| x <= y) && la.iter().zip(&lb).any(|(x, y)| x < y)
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objective_ask_tell_returns_a_non_dominated_front() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let space = json!({
        "x": {"type": "float", "low": -2, "high": 3},
        "y": {"type": "float", "low": -2, "high": 2},
        "kind": {"type": "categorical", "choices": ["a", "b"]}
    });
    // Bad specs: 400 naming the field.
    let objectives = json!([{"name": "score", "direction": "maximize"}, {"name": "cost", "direction": "minimize"}]);
    for (extra, needle) in [
        (
            json!({"objectives": [{"name": "score", "direction": "maximize"}]}),
            "objectives must list 2 to 4",
        ),
        (
            json!({"objectives": [{"name": "a", "direction": "up"}, {"name": "b", "direction": "minimize"}]}),
            "objectives[0].direction",
        ),
        (
            json!({"objectives": [{"name": "a", "direction": "minimize"}, {"name": "a", "direction": "minimize"}]}),
            "objectives[1].name 'a' repeats",
        ),
        (
            json!({"objectives": objectives, "pruner": {"type": "median"}}),
            "pruning needs a single objective",
        ),
        (
            json!({"objectives": objectives, "sampler": {"type": "tpe"}}),
            "optimises a single objective",
        ),
        (
            json!({"objectives": objectives, "sampler": {"type": "nsga2", "crossover_prob": 2}}),
            "sampler.crossover_prob",
        ),
    ] {
        let mut body = json!({"name": "bad", "search_space": space, "budget": {"trials": 5}});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, problem) = server.post_json("/experiments", &body).await;
        assert_eq!(s, 400, "{body}: {problem}");
        assert_eq!(problem["error"], "invalid");
        let message = problem["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }

    let body = json!({"name": "trade-off", "search_space": space, "seed": 11, "budget": {"trials": 48},
                      "objectives": objectives, "sampler": {"type": "nsga2", "population_size": 12}});
    let (s, exp) = server.post_json("/experiments", &body).await;
    assert_eq!(s, 201, "{exp}");
    assert_eq!(exp["spec"]["sampler"]["type"], "nsga2");
    let id = exp["id"].as_str().unwrap().to_string();
    for i in 0..48 {
        let (s, asked) = server
            .post_json(&format!("/experiments/{id}/ask"), &json!({}))
            .await;
        assert_eq!(s, 201, "{asked}");
        let n = asked["number"].as_u64().unwrap();
        let tell = format!("/experiments/{id}/trials/{n}/tell");
        if i == 0 {
            // Bad tells are refused with the field named, and change nothing.
            for (bad, needle) in [
                (
                    json!({"value": 1.0}),
                    "value is for single-objective experiments",
                ),
                (
                    json!({"values": [1.0]}),
                    "values must hold one number per objective",
                ),
                (json!({"values": [1.0, "x"]}), "values[1] must be a number"),
                (json!({"values": 1.0}), "values must be a list of numbers"),
                (
                    json!({"state": "failed", "values": [1.0, 2.0]}),
                    "a failed trial has no values",
                ),
                (json!({}), "values is required"),
            ] {
                let (s, problem) = server.post_json(&tell, &bad).await;
                assert_eq!(s, 400, "{bad}: {problem}");
                assert!(
                    problem["message"].as_str().unwrap().contains(needle),
                    "{problem}"
                );
            }
            let (_, trial) = server
                .get(&format!("/experiments/{id}/trials?state=running"))
                .await;
            assert_eq!(trial[0]["number"], n, "still running after the bad tells");
        }
        let (s, told) = server
            .post_json(&tell, &json!({"values": objective(&asked["params"])}))
            .await;
        assert_eq!(s, 200, "{told}");
        assert_eq!(told["values"].as_array().unwrap().len(), 2);
        assert_eq!(told["value"], told["values"][0]);
    }

    let (s, summary) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(s, 200);
    let front = summary["pareto_front"].as_array().unwrap();
    assert!(front.len() >= 3, "{summary}");
    for a in front {
        for b in front {
            assert!(
                !dominates(&floats(&b["values"]), &floats(&a["values"])),
                "{b} dominates {a}"
            );
        }
    }
    // Sorted by the first objective, best (largest score) first; the best
    // trial is the front's head.
    let scores: Vec<f64> = front
        .iter()
        .map(|f| f["values"][0].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(summary["best_trial"]["number"], front[0]["number"]);
    // Every complete trial off the front is dominated by a front point.
    let (_, trials) = server
        .get(&format!(
            "/experiments/{id}/trials?state=complete&fields=number,values"
        ))
        .await;
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 48);
    let on_front: Vec<&Value> = front.iter().map(|f| &f["number"]).collect();
    for t in trials.iter().filter(|t| !on_front.contains(&&t["number"])) {
        let v = floats(&t["values"]);
        assert!(
            front.iter().any(|f| dominates(&floats(&f["values"]), &v)),
            "trial {t} is neither on the front nor dominated"
        );
    }
    // Listings leave the front out.
    let (_, list) = server.get("/experiments").await;
    assert!(list[0].get("pareto_front").is_none());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automl_trades_the_metric_against_measured_latency_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let csv = tracseq_learn::lab::generate_csv(400, 5);
    let (s, ds) = server
        .post_raw("/datasets?name=lab", csv.into_bytes(), "text/csv")
        .await;
    assert_eq!(s, 201, "{ds}");
    let ds_id = ds["id"].as_str().unwrap().to_string();
    let bad = json!({"name": "mo-bad", "dataset_id": ds_id, "target": "quality_score", "budget": {"trials": 4},
                     "objectives": [{"name": "auc"}, {"name": "latency_us"}]});
    let (s, problem) = server.post_json("/experiments", &bad).await;
    assert_eq!(s, 400, "{problem}");
    assert!(
        problem["message"]
            .as_str()
            .unwrap()
            .contains("objectives[0].name"),
        "{problem}"
    );

    let spec = json!({
        "name": "mo", "dataset_id": ds_id, "target": "quality_score",
        "objectives": [{"name": "rmse"}, {"name": "latency_us"}, {"name": "model_bytes"}],
        "search_space": {
            "family": {"type": "categorical", "choices": ["linear", "gbm"]},
            "gbm_iterations": {"type": "int", "low": 10, "high": 200, "when": {"family": ["gbm"]}},
            "gbm_max_depth": {"type": "int", "low": 1, "high": 6, "when": {"family": ["gbm"]}}
        },
        "budget": {"trials": 6}, "parallelism": 2, "seed": 3, "model_name": "mo-quality"
    });
    let (s, exp) = server.post_json("/experiments", &spec).await;
    assert_eq!(s, 201, "{exp}");
    assert_eq!(exp["spec"]["metric"], "rmse");
    assert_eq!(exp["spec"]["pruner"]["type"], "none");
    let id = exp["id"].as_str().unwrap().to_string();
    let done = server
        .wait_for(
            &format!("/experiments/{id}"),
            Duration::from_secs(300),
            |b| b["state"] != "running" && b["state"] != "finalizing",
        )
        .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["model_version"], 1);
    let (_, trials) = server
        .get(&format!("/experiments/{id}/trials?state=complete"))
        .await;
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 6, "{trials:?}");
    for t in trials {
        let v = floats(&t["values"]);
        assert_eq!(v.len(), 3, "{t}");
        assert_eq!(v[0], t["value"].as_f64().unwrap(), "the metric first");
        assert!(v[1] > 0.0 && v[2] >= 1.0, "measured latency and size: {t}");
        assert_eq!(t["detail"]["latency_us"].as_f64(), Some(v[1]));
        assert_eq!(t["detail"]["model_bytes"].as_f64(), Some(v[2]));
    }
    let front = done["pareto_front"].as_array().unwrap();
    assert!(!front.is_empty(), "{done}");
    let loss = |v: &Value| floats(v); // all three objectives are minimised
    for a in front {
        for b in front {
            let (la, lb) = (loss(&a["values"]), loss(&b["values"]));
            let dominated =
                la.iter().zip(&lb).all(|(x, y)| y <= x) && la.iter().zip(&lb).any(|(x, y)| y < x);
            assert!(!dominated, "{b} dominates {a}");
        }
    }
    // The registered model is the best by the metric, which heads the front.
    assert_eq!(done["best_trial"]["number"], front[0]["number"]);
    server.stop();
}
