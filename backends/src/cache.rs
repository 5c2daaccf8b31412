//! The prediction cache's shared tier ([`PredictionCache`]): in memory
//! here (tests, and the suite's reference), on Redis in `cache/redis.rs`.
//!
//! What the platform caches is an answer of a model version to one set of
//! features; the key names the model, version, artifact digest and the
//! features' hash, so no version's answer can be served for another.

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisCache;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracseq_core::ports::PredictionCache;
use tracseq_core::Result;

/// The shared tier in one process's memory, with the same expiry as Redis.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<String, (Instant, Bytes)>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PredictionCache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match g.get(key) {
            Some((expires, v)) if *expires > Instant::now() => Ok(Some(v.clone())),
            Some(_) => {
                g.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<()> {
        let mut g = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        g.insert(key.to_string(), (Instant::now() + ttl, value));
        Ok(())
    }
}

/// The shared tier a configuration names: Redis at `serving.redis_url`,
/// or none. The URL is checked here; the server need not be up (the tier
/// connects when first used, and serving goes on without it meanwhile).
#[cfg(feature = "redis")]
pub fn shared_tier(
    cfg: &tracseq_core::config::ServingConfig,
) -> Result<Option<std::sync::Arc<dyn PredictionCache>>> {
    let url = cfg.redis_url.trim();
    if url.is_empty() {
        return Ok(None);
    }
    let cache = RedisCache::new(url, Duration::from_millis(cfg.redis_timeout_ms))?;
    Ok(Some(std::sync::Arc::new(cache)))
}
