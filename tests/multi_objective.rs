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

/// Whether losses `a` dominate losses `b` (smaller is better).
fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The losses of `objective`'s values `[score, cost]`: score is maximised.
fn score_cost_losses(values: &Value) -> Vec<f64> {
    let v = floats(values);
    vec![-v[0], v[1]]
}

/// Checks the `pareto_front` of an experiment's summary, comparing points
/// by `losses` of their values: there is one, no point dominates another, the points come
/// best first by the first objective, and the best trial is the head.
fn assert_front(summary: &Value, losses: impl Fn(&Value) -> Vec<f64>) -> &[Value] {
    let front = summary["pareto_front"].as_array().unwrap();
    assert!(!front.is_empty(), "{summary}");
    let all: Vec<Vec<f64>> = front.iter().map(|f| losses(&f["values"])).collect();
    for (a, la) in front.iter().zip(&all) {
        for (b, lb) in front.iter().zip(&all) {
            assert!(!dominates(lb, la), "{b} dominates {a}");
        }
    }
    assert!(
        all.windows(2).all(|w| w[0][0] <= w[1][0]),
        "not sorted best first: {all:?}"
    );
    assert_eq!(summary["best_trial"]["number"], front[0]["number"]);
    front
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_objective_ask_tell_returns_a_non_dominated_front() {
    let server = Server::start_fresh(&[]).await;
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
    let (id, exp) = server.create_experiment(&body).await;
    assert_eq!(exp["spec"]["sampler"]["type"], "nsga2");
    for i in 0..48 {
        let asked = server.ask(&id).await;
        let n = asked["number"].as_u64().unwrap();
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
                let (s, problem) = server.tell(&id, n, &bad).await;
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
            .tell(&id, n, &json!({"values": objective(&asked["params"])}))
            .await;
        assert_eq!(s, 200, "{told}");
        assert_eq!(told["values"].as_array().unwrap().len(), 2);
        assert_eq!(told["value"], told["values"][0]);
    }

    let (s, summary) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(s, 200);
    // No point dominates another; sorted by the first objective, best
    // (largest score) first; the best trial is the front's head.
    let front = assert_front(&summary, score_cost_losses);
    assert!(front.len() >= 3, "{summary}");
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
        let v = score_cost_losses(&t["values"]);
        assert!(
            front
                .iter()
                .any(|f| dominates(&score_cost_losses(&f["values"]), &v)),
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
    let (server, ds) = Server::start_with_lab(400, 5).await;
    let ds_id = &ds["id"];
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
    let (id, exp) = server.create_experiment(&spec).await;
    assert_eq!(exp["spec"]["metric"], "rmse");
    assert_eq!(exp["spec"]["pruner"]["type"], "none");
    let done = server.wait_settled(&id, Duration::from_secs(300)).await;
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
    // All three objectives are minimised. The registered model is the best
    // by the metric, which heads the front.
    assert_front(&done, floats);
    server.stop();
}
