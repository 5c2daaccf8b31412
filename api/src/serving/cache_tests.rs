use super::*;
use async_trait::async_trait;
use serde_json::json;
use tracseq_backends::cache::MemoryCache;
use tracseq_core::{Error, Result};

fn answer(value: f64) -> Arc<Prediction> {
    Arc::new(Prediction {
        value,
        label: None,
        probabilities: None,
        contributions: Vec::new(),
        base_value: Some(0.0),
    })
}

fn features(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn config(entries: usize, ttl_ms: u64) -> ServingConfig {
    ServingConfig {
        cache_entries: entries,
        cache_ttl_ms: ttl_ms,
        ..Default::default()
    }
}

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn the_key_is_canonical_in_names_and_numbers_but_names_the_version_digest_and_explanation() {
    let a = features(json!({"rin": 7, "site": "north", "age": 1.5}));
    let b = features(json!({"age": 1.5, "site": "north", "rin": 7.0}));
    assert_eq!(
        key("sq", 1, DIGEST, &a, Explain::Yes),
        key("sq", 1, DIGEST, &b, Explain::Yes)
    );
    assert!(key("sq", 1, DIGEST, &a, Explain::Yes).starts_with("sq@1/0123456789abcdef/"));
    let other_digest = DIGEST.replace('0', "f");
    for different in [
        key("sq", 2, DIGEST, &a, Explain::Yes),
        key("sq", 1, &other_digest, &a, Explain::Yes),
        key("sq2", 1, DIGEST, &a, Explain::Yes),
        key(
            "sq",
            1,
            DIGEST,
            &features(json!({"rin": 7, "site": "south", "age": 1.5})),
            Explain::Yes,
        ),
        key(
            "sq",
            1,
            DIGEST,
            &features(json!({"rin": null, "site": "north", "age": 1.5})),
            Explain::Yes,
        ),
        // An answer without contributions is never served for one with.
        key("sq", 1, DIGEST, &a, Explain::No),
    ] {
        assert_ne!(different, key("sq", 1, DIGEST, &a, Explain::Yes));
    }
    // Names and texts carry their lengths: no two records share a stream.
    assert_ne!(
        key("m", 1, DIGEST, &features(json!({"ab": "c"})), Explain::Yes),
        key("m", 1, DIGEST, &features(json!({"a": "bc"})), Explain::Yes)
    );
}

#[tokio::test]
async fn the_size_bound_evicts_the_least_recently_used_and_counts_it() {
    let c = AnswerCache::new(&config(2, 60_000), None);
    assert!(c.enabled());
    c.put("m", "k1".into(), answer(1.0));
    c.put("m", "k2".into(), answer(2.0));
    assert!(
        c.get("m", "k1").await.is_some(),
        "k1 is now the most recent"
    );
    c.put("n", "k3".into(), answer(3.0));
    assert_eq!(c.get("m", "k2").await, None, "k2 was pushed out");
    assert_eq!(c.get("m", "k1").await, Some(answer(1.0)));
    let f = c.figures("m");
    assert_eq!((f.memory_hits, f.misses, f.evictions), (2, 1, 1));
    assert_eq!(c.figures("n").evictions, 0);
    let mut text = String::new();
    c.render_metrics(&mut text);
    for line in [
        "tracseq_prediction_cache_hits_total{model=\"m\",tier=\"memory\"} 2",
        "tracseq_prediction_cache_misses_total{model=\"m\"} 1",
        "tracseq_prediction_cache_evictions_total{model=\"m\"} 1",
        "tracseq_prediction_cache_entries 2",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

#[tokio::test]
async fn an_expired_answer_is_a_miss_and_an_eviction() {
    let c = AnswerCache::new(&config(10, 30), None);
    c.put("m", "k".into(), answer(9.0));
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(c.get("m", "k").await, None);
    let f = c.figures("m");
    assert_eq!((f.misses, f.evictions), (1, 1));
}

#[tokio::test]
async fn replicas_share_answers_through_the_shared_tier() {
    let shared: Arc<dyn PredictionCache> = Arc::new(MemoryCache::new());
    let a = AnswerCache::new(&config(10, 60_000), Some(shared.clone()));
    let b = AnswerCache::new(&config(10, 60_000), Some(shared));
    a.put("m", "k".into(), answer(9.0));
    let mut got = None;
    for _ in 0..100 {
        // The shared write is not awaited by put.
        got = b.get("m", "k").await;
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(got, Some(answer(9.0)));
    assert_eq!(b.figures("m").shared_hits, 1);
    assert!(b.get("m", "k").await.is_some());
    assert_eq!(
        b.figures("m").memory_hits,
        1,
        "kept locally after a shared hit"
    );
}

struct Down;

#[async_trait]
impl PredictionCache for Down {
    async fn get(&self, _: &str) -> Result<Option<Bytes>> {
        Err(Error::Unavailable("redis is down".into()))
    }
    async fn put(&self, _: &str, _: Bytes, _: Duration) -> Result<()> {
        Err(Error::Unavailable("redis is down".into()))
    }
}

#[tokio::test]
async fn a_shared_tier_that_is_down_is_a_counted_miss_never_an_error() {
    let c = AnswerCache::new(&config(0, 60_000), Some(Arc::new(Down)));
    assert!(c.enabled(), "shared tier only");
    assert_eq!(c.get("m", "k").await, None);
    c.put("m", "k".into(), answer(9.0));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.figures("m").misses, 1);
    let mut text = String::new();
    c.render_metrics(&mut text);
    assert!(
        text.contains("tracseq_prediction_cache_shared_errors_total 2"),
        "{text}"
    );
}

#[test]
fn no_entries_and_no_redis_means_no_cache() {
    assert!(!AnswerCache::new(&config(0, 60_000), None).enabled());
}
