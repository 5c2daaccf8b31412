//! `[serving]`: what `/predict` does beside answering — the prediction log
//! and the prediction cache.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServingConfig {
    /// Write every prediction to the prediction log (`prediction_logs`),
    /// which outcomes, live metrics and the drift monitor read.
    pub log: bool,
    /// Predictions waiting for the log writer; past it new ones are dropped
    /// and counted (`tracseq_prediction_log_dropped_total`) rather than
    /// slowing `/predict`.
    pub log_queue: usize,
    /// Most records one write to the store holds.
    pub log_batch: usize,
    /// Longest a record waits for its batch to fill, in ms.
    pub log_flush_ms: u64,
    /// Days a logged prediction (and its outcome) is kept; the scheduler
    /// deletes older ones every hour. 0 keeps them forever.
    pub log_retention_days: u32,
    /// Answers each api process keeps in its in-process cache, keyed by
    /// model, version, artifact digest and the canonical features (0: no
    /// cache).
    pub cache_entries: usize,
    /// How long a cached answer is served, in ms (both tiers).
    pub cache_ttl_ms: u64,
    /// `redis://host:port/db` (or `rediss://`): the cache tier every
    /// replica shares, behind the in-process one. Empty: none. Also set by
    /// `REDIS_URL`. An outage of it degrades to no shared cache, never to
    /// failed requests.
    pub redis_url: String,
    /// The longest one Redis command may take before the request goes on
    /// without it, in ms.
    pub redis_timeout_ms: u64,
}

impl Default for ServingConfig {
    fn default() -> Self {
        ServingConfig {
            log: true,
            log_queue: 50_000,
            log_batch: 500,
            log_flush_ms: 200,
            log_retention_days: 90,
            cache_entries: 0,
            cache_ttl_ms: 300_000,
            redis_url: String::new(),
            redis_timeout_ms: 50,
        }
    }
}

/// A century: past it a cutoff date stops meaning anything.
const MAX_RETENTION_DAYS: u32 = 36_500;

impl ServingConfig {
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Invalid(format!("config key '{key}': {why}")));
        if !(1..=10_000_000).contains(&self.log_queue) {
            return bad("serving.log_queue", "must be 1 to 10000000 records");
        }
        if !(1..=10_000).contains(&self.log_batch) || self.log_batch > self.log_queue {
            return bad(
                "serving.log_batch",
                "must be 1 to 10000 records and at most serving.log_queue",
            );
        }
        if !(1..=60_000).contains(&self.log_flush_ms) {
            return bad("serving.log_flush_ms", "must be 1 to 60000");
        }
        if self.log_retention_days > MAX_RETENTION_DAYS {
            return bad(
                "serving.log_retention_days",
                "must be at most 36500 (0 keeps predictions forever)",
            );
        }
        if self.cache_entries > 10_000_000 {
            return bad("serving.cache_entries", "must be at most 10000000");
        }
        if !(1..=86_400_000).contains(&self.cache_ttl_ms) {
            return bad("serving.cache_ttl_ms", "must be 1 to 86400000 (a day)");
        }
        let url = self.redis_url.trim();
        let redis = ["redis://", "rediss://"].iter().any(|s| url.starts_with(s));
        if !url.is_empty() && !redis {
            return bad(
                "serving.redis_url",
                "must be a redis:// or rediss:// URL (or empty for no shared cache)",
            );
        }
        if !(1..=10_000).contains(&self.redis_timeout_ms) {
            return bad("serving.redis_timeout_ms", "must be 1 to 10000");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_each_bound_names_its_key() {
        ServingConfig::default().validate().unwrap();
        type Break = fn(&mut ServingConfig);
        let cases: [(&str, Break); 8] = [
            ("serving.log_queue", |c| c.log_queue = 0),
            ("serving.log_batch", |c| c.log_batch = 0),
            ("serving.log_batch", |c| c.log_batch = c.log_queue + 1),
            ("serving.log_flush_ms", |c| c.log_flush_ms = 0),
            ("serving.log_retention_days", |c| {
                c.log_retention_days = 36_501
            }),
            ("serving.cache_ttl_ms", |c| c.cache_ttl_ms = 0),
            ("serving.redis_url", |c| {
                c.redis_url = "localhost:6379".into()
            }),
            ("serving.redis_timeout_ms", |c| c.redis_timeout_ms = 0),
        ];
        for (key, break_it) in cases {
            let mut c = ServingConfig::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
