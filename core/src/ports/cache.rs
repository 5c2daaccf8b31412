use crate::Result;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// The shared tier of the prediction cache: answers by key, each kept for
/// a time to live, shared by every api replica (Redis). Each replica's own
/// in-process tier sits in front of it. A tier that is down answers
/// `Unavailable` quickly; callers then serve without it.
#[async_trait]
pub trait PredictionCache: Send + Sync {
    /// The value stored under `key`, unless absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// Stores `value` under `key` for `ttl`, replacing any value there.
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()>;
}
