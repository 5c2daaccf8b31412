//! The prediction cache's Redis tier against the shared suite (on the
//! machine's Redis), and what an outage does (on a private server the test
//! stops): answers `Unavailable` within its deadline, never hangs, and
//! serves again once the server is back.

use crate::cache::{MemoryCache, RedisCache};
use crate::testing::prediction_cache_suite;
use crate::testing::services::{service_unavailable, test_redis_url, PrivateRedis};
use bytes::Bytes;
use std::time::{Duration, Instant};
use tracseq_core::ports::PredictionCache;
use tracseq_core::Error;

#[tokio::test]
async fn memory_prediction_cache_conforms() {
    prediction_cache_suite(&MemoryCache::new(), "").await;
}

#[tokio::test]
async fn redis_prediction_cache_conforms() {
    let url = test_redis_url();
    let cache = RedisCache::new(&url, Duration::from_millis(500)).unwrap();
    if let Err(e) = cache.get("probe").await {
        service_unavailable("Redis", &url, &e);
        return;
    }
    let run = uuid::Uuid::now_v7();
    prediction_cache_suite(&cache, &format!("conformance:{run}:")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_fast_and_the_tier_recovers() {
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let timeout = Duration::from_millis(50);
    let cache = RedisCache::new(&server.url(), timeout).unwrap();
    let ttl = Duration::from_secs(60);
    cache.put("k", Bytes::from_static(b"v"), ttl).await.unwrap();
    assert!(cache.get("k").await.unwrap().is_some());

    server.stop();
    // Each call ends (no hang: the guard is far above the 50 ms deadline)
    // with Unavailable; after the first failure the tier pauses and does
    // not even try the server.
    let guard = Duration::from_secs(10);
    let first = tokio::time::timeout(guard, cache.get("k")).await.unwrap();
    assert!(matches!(first, Err(Error::Unavailable(_))), "{first:?}");
    let failures = cache.failures();
    assert!(failures >= 1);
    let mut paused = 0;
    for _ in 0..20 {
        let got = tokio::time::timeout(guard, cache.get("k")).await.unwrap();
        match got {
            Err(Error::Unavailable(m)) if m.contains("paused") => paused += 1,
            Err(Error::Unavailable(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(paused > 0, "after a failure the tier pauses");
    assert!(
        cache.failures() < failures + 20,
        "paused calls do not ask the server"
    );

    server.resume().unwrap();
    // Past the pause, the next command reconnects (the data is gone: the
    // private server keeps nothing on disk).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.put("k", Bytes::from_static(b"again"), ttl).await {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the tier did not recover: {e}"),
        }
    }
    assert_eq!(
        cache.get("k").await.unwrap(),
        Some(Bytes::from_static(b"again"))
    );
}

#[test]
fn a_bad_url_is_refused_by_name() {
    let err = RedisCache::new("redis://[::1", Duration::from_millis(50))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("serving.redis_url"), "{err}");
}
