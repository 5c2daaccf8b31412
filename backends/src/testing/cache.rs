//! The prediction cache's shared tier: values come back exactly, a newer
//! value replaces an older one, and nothing outlives its time to live.

use bytes::Bytes;
use std::time::Duration;
use tracseq_core::ports::PredictionCache;

/// Runs the suite under keys starting with `prefix` (unique per run, so
/// runs sharing one server never meet).
pub async fn prediction_cache_suite(c: &dyn PredictionCache, prefix: &str) {
    let key = |k: &str| format!("{prefix}{k}");
    assert_eq!(c.get(&key("absent")).await.unwrap(), None);

    let value = Bytes::from((0..=255u8).cycle().take(10_000).collect::<Vec<u8>>());
    c.put(&key("a"), value.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        c.get(&key("a")).await.unwrap(),
        Some(value),
        "every byte back"
    );

    c.put(
        &key("a"),
        Bytes::from_static(b"newer"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(
        c.get(&key("a")).await.unwrap(),
        Some(Bytes::from_static(b"newer"))
    );

    c.put(
        &key("short"),
        Bytes::from_static(b"x"),
        Duration::from_millis(150),
    )
    .await
    .unwrap();
    assert!(c.get(&key("short")).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.get(&key("short")).await.unwrap(), None, "expired");
    assert!(c.get(&key("a")).await.unwrap().is_some(), "others stay");
}
