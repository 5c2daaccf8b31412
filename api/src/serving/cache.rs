//! The prediction cache: answers of a model version to one set of
//! features, served again without running the model.
//!
//! Two tiers: a bounded LRU in each api process (`serving.cache_entries`),
//! and optionally Redis shared by every replica (`serving.redis_url`),
//! both with the same time to live. The key is the model, the version, the
//! artifact's digest and a hash of the canonical features (names sorted,
//! numbers by value), so an answer is never served for another version —
//! a new deployment starts with its own keys — and a database rebuilt with
//! the same version numbers cannot meet a stale answer in a shared Redis.
//!
//! A cached answer is the model's own: the in-process tier holds the
//! answer itself (no encoding on the request path), the shared tier its
//! exact JSON (value, probabilities, contributions, base value), encoded
//! off the request path. Redis being down makes the shared tier miss
//! (counted), never fail or hold a request: its writes are not awaited,
//! and its reads have a short deadline.

use bytes::Bytes;
use lru::LruCache;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tracseq_core::config::ServingConfig;
use tracseq_core::ports::PredictionCache;
use tracseq_learn::predict::{Explain, Prediction};

struct Entry {
    expires: Instant,
    model: Arc<str>,
    answer: Arc<Prediction>,
}

#[derive(Default)]
struct Counts {
    memory_hits: AtomicU64,
    shared_hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// One model's cache figures in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheFigures {
    pub memory_hits: u64,
    pub shared_hits: u64,
    pub misses: u64,
    /// Entries pushed out by the size bound or expired.
    pub evictions: u64,
}

pub struct AnswerCache {
    local: Option<Mutex<LruCache<String, Entry>>>,
    ttl: Duration,
    shared: Option<Arc<dyn PredictionCache>>,
    counts: RwLock<BTreeMap<String, Arc<Counts>>>,
    shared_errors: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds one feature value to the key's hash: numbers by value (1 and 1.0
/// are one number), texts with their length, so no two records share a
/// byte stream.
fn hash_value(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update([0u8]),
        Value::Bool(b) => h.update([1u8, u8::from(*b)]),
        Value::Number(n) => {
            h.update([2u8]);
            h.update(n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes());
        }
        Value::String(s) => {
            h.update([3u8]);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        // Refused before prediction (check_record); hashed as text anyway.
        other => {
            let text = other.to_string();
            h.update([4u8]);
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
    }
}

/// The cache key of `features` answered by `version` of `model`, whose
/// artifact has the SHA-256 `digest`, with or without its contributions
/// (`x` or `p` after the digest).
pub fn key(
    model: &str,
    version: u32,
    digest: &str,
    features: &Map<String, Value>,
    explain: Explain,
) -> String {
    let mut names: Vec<&String> = features.keys().collect();
    names.sort_unstable();
    let mut h = Sha256::new();
    for name in names {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        hash_value(&mut h, &features[name]);
    }
    let digest = &digest[..digest.len().min(16)];
    let answer = match explain {
        Explain::Yes => 'x',
        Explain::No => 'p',
    };
    let mut out = format!("{model}@{version}/{digest}/{answer}");
    for b in &h.finalize()[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl AnswerCache {
    pub fn new(cfg: &ServingConfig, shared: Option<Arc<dyn PredictionCache>>) -> AnswerCache {
        AnswerCache {
            local: NonZeroUsize::new(cfg.cache_entries).map(|n| Mutex::new(LruCache::new(n))),
            ttl: Duration::from_millis(cfg.cache_ttl_ms),
            shared,
            counts: RwLock::default(),
            shared_errors: Arc::default(),
        }
    }

    /// Whether answers are cached at all.
    pub fn enabled(&self) -> bool {
        self.local.is_some() || self.shared.is_some()
    }

    fn counts(&self, model: &str) -> Arc<Counts> {
        if let Some(c) = self
            .counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
        {
            return c.clone();
        }
        let mut g = self.counts.write().unwrap_or_else(|e| e.into_inner());
        g.entry(model.to_string()).or_default().clone()
    }

    /// The cached answer under `key` (of `model`), from this process or
    /// the shared tier; a miss is counted. A shared entry that does not
    /// decode (not written by this code) is a miss.
    pub async fn get(&self, model: &str, key: &str) -> Option<Arc<Prediction>> {
        let counts = self.counts(model);
        if let Some(local) = &self.local {
            let mut g = lock(local);
            match g.get(key) {
                Some(e) if e.expires > Instant::now() => {
                    counts.memory_hits.fetch_add(1, Ordering::Relaxed);
                    return Some(e.answer.clone());
                }
                Some(_) => {
                    g.pop(key);
                    counts.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
        if let Some(shared) = &self.shared {
            match shared.get(key).await {
                Ok(Some(bytes)) => {
                    if let Ok(p) = serde_json::from_slice::<Prediction>(&bytes) {
                        counts.shared_hits.fetch_add(1, Ordering::Relaxed);
                        let answer = Arc::new(p);
                        self.keep_local(model, key, answer.clone());
                        return Some(answer);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.shared_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "shared prediction cache unavailable; serving without it");
                }
            }
        }
        counts.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keeps a computed answer in both tiers (the shared tier's encoding
    /// and write happen off the request path).
    pub fn put(&self, model: &str, key: String, answer: Arc<Prediction>) {
        if let Some(shared) = &self.shared {
            let (shared, errors, ttl) = (shared.clone(), self.shared_errors.clone(), self.ttl);
            let (k, a) = (key.clone(), answer.clone());
            tokio::spawn(async move {
                let Ok(bytes) = serde_json::to_vec(a.as_ref()) else {
                    return;
                };
                if shared.put(&k, Bytes::from(bytes), ttl).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        self.keep_local(model, &key, answer);
    }

    fn keep_local(&self, model: &str, key: &str, answer: Arc<Prediction>) {
        let Some(local) = &self.local else { return };
        let entry = Entry {
            expires: Instant::now() + self.ttl,
            model: Arc::from(model),
            answer,
        };
        let pushed_out = lock(local).push(key.to_string(), entry);
        if let Some((old_key, old)) = pushed_out {
            // `push` also returns the entry it replaced under the same key.
            if old_key != key {
                self.counts(&old.model)
                    .evictions
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn figures(&self, model: &str) -> CacheFigures {
        let c = self.counts(model);
        CacheFigures {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            shared_hits: c.shared_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
        }
    }

    /// Prometheus text: hits per tier, misses, evictions and the hit ratio
    /// per model; entries held; shared-tier errors.
    pub fn render_metrics(&self, out: &mut String) {
        if !self.enabled() {
            return;
        }
        let models: Vec<String> = self
            .counts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let figures: Vec<(String, CacheFigures)> = models
            .into_iter()
            .map(|m| (m.clone(), self.figures(&m)))
            .collect();
        out.push_str(
            "# HELP tracseq_prediction_cache_hits_total Answers served from the prediction cache, by tier.\n\
             # TYPE tracseq_prediction_cache_hits_total counter\n",
        );
        for (m, f) in &figures {
            out.push_str(&format!(
                "tracseq_prediction_cache_hits_total{{model=\"{m}\",tier=\"memory\"}} {}\n\
                 tracseq_prediction_cache_hits_total{{model=\"{m}\",tier=\"redis\"}} {}\n",
                f.memory_hits, f.shared_hits
            ));
        }
        let mut family =
            |name: &str, help: &str, kind: &str, value: &dyn Fn(&CacheFigures) -> String| {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
                for (m, f) in &figures {
                    out.push_str(&format!("{name}{{model=\"{m}\"}} {}\n", value(f)));
                }
            };
        family(
            "tracseq_prediction_cache_misses_total",
            "Predictions the cache did not hold (computed, then cached).",
            "counter",
            &|f| f.misses.to_string(),
        );
        family(
            "tracseq_prediction_cache_evictions_total",
            "Cached answers pushed out by the size bound or expired.",
            "counter",
            &|f| f.evictions.to_string(),
        );
        family(
            "tracseq_prediction_cache_hit_ratio",
            "Hits over lookups since this process started.",
            "gauge",
            &|f| {
                let hits = f.memory_hits + f.shared_hits;
                let all = hits + f.misses;
                if all == 0 {
                    "0".into()
                } else {
                    format!("{}", hits as f64 / all as f64)
                }
            },
        );
        let entries = self.local.as_ref().map_or(0, |l| lock(l).len());
        out.push_str(&format!(
            "# HELP tracseq_prediction_cache_entries Answers held in this process's cache.\n\
             # TYPE tracseq_prediction_cache_entries gauge\n\
             tracseq_prediction_cache_entries {entries}\n\
             # HELP tracseq_prediction_cache_shared_errors_total Shared-tier (Redis) reads and writes that failed; served without it.\n\
             # TYPE tracseq_prediction_cache_shared_errors_total counter\n\
             tracseq_prediction_cache_shared_errors_total {}\n",
            self.shared_errors.load(Ordering::Relaxed)
        ));
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
