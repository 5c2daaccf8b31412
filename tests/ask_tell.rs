//! Ask/tell over HTTP: an external objective optimised by the platform;
//! TPE, Nelder–Mead and particle swarm beating random search on it at an
//! equal budget; parallel clients handed spread-out points.

mod common;

use common::Server;
use serde_json::{json, Value};

/// A shifted sphere with a log-scaled parameter and a categorical branch:
/// the minimum 0 is at x=1.5, y=-2, lr=0.01 with kind="b".
fn objective(p: &Value) -> f64 {
    let x = p["x"].as_f64().unwrap();
    let y = p["y"].as_f64().unwrap();
    let lr = p["lr"].as_f64().unwrap();
    let penalty = if p["kind"] == "b" { 0.0 } else { 2.0 };
    (x - 1.5).powi(2) + (y + 2.0).powi(2) + (lr.log10() + 2.0).powi(2) + penalty
}

fn space() -> Value {
    json!({
        "x": {"type": "float", "low": -5, "high": 5},
        "y": {"type": "float", "low": -5, "high": 5},
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "log": true},
        "kind": {"type": "categorical", "choices": ["a", "b", "c"]}
    })
}

async fn create(server: &Server, name: String, sampler: Value, trials: u64) -> String {
    let body = json!({"name": name, "search_space": space(), "direction": "minimize",
                      "sampler": sampler, "budget": {"trials": trials}});
    server.create_experiment(&body).await.0
}

/// Reports `value` at `step` of trial `n`: whether the trial should stop.
async fn report(server: &Server, id: &str, n: u64, step: u64, value: f64) -> bool {
    let (s, r) = server
        .post_json(
            &format!("/experiments/{id}/trials/{n}/report"),
            &json!({"step": step, "value": value}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    r["should_prune"].as_bool().expect("should_prune")
}

async fn best_of(server: &Server, sampler: &str, seed: u64, trials: u64) -> f64 {
    let id = create(
        server,
        format!("{sampler}-{seed}"),
        json!({"type": sampler, "seed": seed}),
        trials,
    )
    .await;
    let mut best = f64::INFINITY;
    for _ in 0..trials {
        let asked = server.ask(&id).await;
        assert!(asked["trial_id"].is_string());
        let value = objective(&asked["params"]);
        best = best.min(value);
        let n = asked["number"].as_u64().unwrap();
        let (s, told) = server.tell(&id, n, &json!({"value": value})).await;
        assert_eq!(s, 200, "{told}");
    }
    let (s, over) = server
        .post_json(&format!("/experiments/{id}/ask"), &json!({}))
        .await;
    assert_eq!(s, 409, "budget spent: {over}");
    let (_, summary) = server.get(&format!("/experiments/{id}")).await;
    assert_eq!(summary["best_trial"]["value"].as_f64(), Some(best));
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpe_beats_random_at_equal_budget() {
    let server = Server::start_fresh(&[]).await;
    let seeds = [1u64, 2, 3, 4, 5];
    let (mut tpe, mut random, mut wins) = (0.0, 0.0, 0);
    for seed in seeds {
        let t = best_of(&server, "tpe", seed, 50).await;
        let r = best_of(&server, "random", seed, 50).await;
        tpe += t;
        random += r;
        wins += usize::from(t < r);
    }
    let n = seeds.len() as f64;
    assert!(
        tpe / n < random / n,
        "mean best: tpe {} vs random {}",
        tpe / n,
        random / n
    );
    assert!(
        wins * 2 > seeds.len(),
        "tpe won on {wins} of {} seeds",
        seeds.len()
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argmin_samplers_beat_random_at_equal_budget() {
    let server = Server::start_fresh(&[]).await;
    let seeds = [1u64, 2, 3];
    let mut random = 0.0;
    for seed in seeds {
        random += best_of(&server, "random", seed, 60).await;
    }
    for sampler in ["nelder_mead", "particle_swarm"] {
        let mut total = 0.0;
        for seed in seeds {
            total += best_of(&server, sampler, seed, 60).await;
        }
        assert!(
            total < random,
            "mean best: {sampler} {} vs random {}",
            total / 3.0,
            random / 3.0
        );
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_clients_get_distinct_points() {
    let server = Server::start_fresh(&[]).await;
    // Three clients ask before any tells: the running trials are pending
    // for the next asks, so a particle swarm hands out its generation's
    // positions one each, and the fourth ask (the generation still
    // running) explores instead of repeating one.
    let id = create(
        &server,
        "swarm".into(),
        json!({"type": "particle_swarm", "population": 3, "seed": 4}),
        10,
    )
    .await;
    let mut asked = Vec::new();
    for _ in 0..4 {
        asked.push(server.ask(&id).await["params"].clone());
    }
    for (i, a) in asked.iter().enumerate() {
        for b in &asked[i + 1..] {
            assert_ne!((&a["x"], &a["y"], &a["lr"]), (&b["x"], &b["y"], &b["lr"]));
        }
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_prunes_and_tell_is_recorded_once() {
    let server = Server::start_fresh(&[]).await;
    let body = json!({"name": "curves", "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                      "pruner": {"type": "median", "n_startup_trials": 2}, "budget": {"trials": 10}});
    let (id, _) = server.create_experiment(&body).await;
    // Two good curves finish first.
    for _ in 0..2 {
        let n = server.ask(&id).await["number"].as_u64().unwrap();
        for step in 0..3 {
            assert!(!report(&server, &id, n, step, 1.0).await);
        }
        let (s, t) = server.tell(&id, n, &json!({"value": 1.0})).await;
        assert_eq!(s, 200, "{t}");
    }
    // A much worse curve is told to stop.
    let n = server.ask(&id).await["number"].as_u64().unwrap();
    assert!(report(&server, &id, n, 0, 9.0).await);
    let (s, t) = server.tell(&id, n, &json!({"state": "pruned"})).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["state"], "pruned");
    assert_eq!(
        t["value"], 9.0,
        "a pruned trial keeps its last reported value"
    );
    // Telling again is a conflict, not a second record.
    let (s, again) = server.tell(&id, n, &json!({"value": 0.5})).await;
    assert_eq!(s, 409, "{again}");
    // Bad tells: refused, and the trial can still be told.
    let n = server.ask(&id).await["number"].as_u64().unwrap();
    for (trial, body, status) in [
        (n, json!({}), 400),
        (n, json!({"state": "failed", "value": 1.0}), 400),
        (n, json!({"value": "1"}), 400),
        (99, json!({"value": 1.0}), 404),
    ] {
        let (s, problem) = server.tell(&id, trial, &body).await;
        assert_eq!(s, status, "{body}: {problem}");
    }
    let (s, t) = server.tell(&id, n, &json!({"state": "failed"})).await;
    assert_eq!((s, t["state"].clone()), (200, json!("failed")));
    server.stop();
}
