//! The prediction cache over HTTP: a cached answer is the computed one
//! (same version, value and contributions), another version never gets it,
//! an answer without contributions never stands in for an explained one,
//! replicas share answers through Redis, and a Redis outage (a private
//! server, stopped) degrades to no shared cache, never to an error.

mod common;

use common::{artifact_bytes, fixture_with, register, Fixture};
use serde_json::{json, Value};
use std::sync::Arc;
use tracseq_api::ServingSetup;
use tracseq_backends::cache::RedisCache;
use tracseq_backends::testing::services::PrivateRedis;
use tracseq_core::config::ServingConfig;
use tracseq_core::ports::PredictionCache;
use tracseq_core::security::Role;

fn setup(entries: usize, shared: Option<Arc<dyn PredictionCache>>) -> ServingSetup {
    ServingSetup {
        config: ServingConfig {
            cache_entries: entries,
            ..Default::default()
        },
        shared_cache: shared,
    }
}

async fn predict(f: &Fixture, version: u32, seed: u64) -> Value {
    let body = json!({"model": "sq", "version": version,
                      "features": tracseq_learn::lab::example_record(seed)});
    let got = f.predict(&body).await;
    assert_eq!(got.status, 200, "{}", got.body);
    got.body
}

/// The answer without what differs per request.
fn answer(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("request_id");
    v
}

async fn metrics(f: &Fixture) -> String {
    let got = f
        .call("GET", "/metrics", Some(f.token(Role::Admin)), "")
        .await;
    assert_eq!(got.status, 200);
    got.text
}

#[tokio::test]
async fn a_cached_answer_is_the_computed_one_and_only_for_its_version() {
    let f = fixture_with(setup(100, None)).await;
    let bytes = artifact_bytes();
    register(&f.platform, 1, &bytes, false).await;
    register(&f.platform, 2, &bytes, false).await;
    let uncached = fixture_with(setup(0, None)).await;
    register(&uncached.platform, 1, &bytes, false).await;

    let computed = predict(&f, 1, 5).await;
    let cached = predict(&f, 1, 5).await;
    assert_ne!(computed["request_id"], cached["request_id"]);
    assert_eq!(
        answer(cached.clone()),
        answer(computed.clone()),
        "identical, contributions included"
    );
    assert_eq!(
        answer(predict(&uncached, 1, 5).await),
        answer(computed),
        "and identical to a server without a cache"
    );
    let v2 = predict(&f, 2, 5).await;
    assert_eq!(v2["version"], 2, "another version computes its own answer");
    let text = metrics(&f).await;
    for line in [
        "tracseq_prediction_cache_hits_total{model=\"sq\",tier=\"memory\"} 1",
        "tracseq_prediction_cache_misses_total{model=\"sq\"} 2",
        "tracseq_prediction_cache_hit_ratio{model=\"sq\"} 0.333",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[tokio::test]
async fn an_answer_without_contributions_is_cached_apart_from_the_explained_one() {
    let f = fixture_with(setup(100, None)).await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let features = tracseq_learn::lab::example_record(5);
    let ask = |explain: bool| {
        let body = json!({"model": "sq", "version": 1, "features": features, "explain": explain});
        let f = &f;
        async move {
            let got = f.predict(&body).await;
            assert_eq!(got.status, 200, "{}", got.body);
            got.body
        }
    };
    let plain = ask(false).await;
    assert!(plain.get("contributions").is_none() && plain.get("base_value").is_none());
    let quality = &plain["quality"];
    assert!(quality["category"].is_string() && quality.get("risk_factors").is_none());
    let explained = ask(true).await;
    assert_eq!(
        explained["contributions"].as_array().map(Vec::len),
        Some(18)
    );
    assert!(explained["quality"]["risk_factors"].is_array());
    let (a, b) = (plain["value"].as_f64(), explained["value"].as_f64());
    assert!(
        matches!((a, b), (Some(a), Some(b)) if (a - b).abs() < 1e-9),
        "{a:?} {b:?}"
    );
    assert_eq!(
        answer(ask(false).await),
        answer(plain),
        "the plain one, cached"
    );
    assert_eq!(
        answer(ask(true).await),
        answer(explained),
        "the explained one, cached"
    );
    let text = metrics(&f).await;
    for line in [
        "tracseq_prediction_cache_hits_total{model=\"sq\",tier=\"memory\"} 2",
        "tracseq_prediction_cache_misses_total{model=\"sq\"} 2",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_answers_through_redis_and_an_outage_only_costs_the_cache() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let shared = || -> Arc<dyn PredictionCache> {
        Arc::new(RedisCache::new(&redis.url(), std::time::Duration::from_millis(50)).unwrap())
    };
    let a = fixture_with(setup(100, Some(shared()))).await;
    register(&a.platform, 1, &artifact_bytes(), false).await;
    // b keeps nothing itself: each of its lookups asks Redis.
    let b = a.replica(setup(0, Some(shared())));

    let first = predict(&a, 1, 7).await;
    // The shared write is not awaited by the answer: b may miss at first.
    let mut from_b = Value::Null;
    for _ in 0..100 {
        from_b = predict(&b, 1, 7).await;
        if metrics(&b).await.contains("tier=\"redis\"} 1\n") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(answer(from_b), answer(first));
    let text = metrics(&b).await;
    assert!(
        text.contains("tracseq_prediction_cache_hits_total{model=\"sq\",tier=\"redis\"} 1\n"),
        "{text}"
    );

    redis.stop();
    for seed in 100..120 {
        // New records: neither tier holds them; every answer still comes.
        let got = predict(&a, 1, seed).await;
        assert_eq!(got["version"], 1);
    }
    let text = metrics(&a).await;
    let errors = text
        .lines()
        .find_map(|l| l.strip_prefix("tracseq_prediction_cache_shared_errors_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(errors >= 1, "the outage is counted: {text}");
}

/// `promtool check metrics` (the Prometheus project's own linter, from the
/// Debian `prometheus` package) over `/metrics` with every family present:
/// serving figures, the prediction log and both cache tiers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_text_passes_promtool() {
    let Ok(promtool) = which("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool (Debian package prometheus) is required under CI"
        );
        eprintln!("skipped: promtool is not installed");
        return;
    };
    let shared: Arc<dyn PredictionCache> = Arc::new(tracseq_backends::cache::MemoryCache::new());
    let f = fixture_with(setup(100, Some(shared))).await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    for seed in [1, 1, 2] {
        predict(&f, 1, seed).await;
    }
    let text = metrics(&f).await;
    assert!(text.contains("tracseq_prediction_log_written_total"));
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
