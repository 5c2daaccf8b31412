//! Model serving: which version answers a request, and the loaded,
//! digest-checked artifacts that answer it.
//!
//! A request names a version, an alias, or neither. Neither means the
//! version the model's live `platform` deployment names — never simply the
//! newest, so a training run cannot replace the model lab software relies
//! on. A model with no live deployment falls back to its production
//! version (which an approver chose); one with neither is refused with a
//! 409 saying what to do.
//!
//! Every api replica learns the deployed versions by polling the registry
//! ([`ModelCache::refresh_deployments`], every `api.deployment_poll_ms`).
//! A newly deployed version is loaded and its digest checked *before* the
//! pointer moves, so no request waits for a load or meets a broken
//! artifact; requests already holding the old model (an `Arc`) finish on
//! it. A version that fails to load is not swapped in: the replica keeps
//! serving what it served and counts the failure.

pub mod cache;
mod log;
mod stats;

pub use cache::AnswerCache;
pub use log::{LogFigures, PredictionLog};
pub use stats::{ServingFigures, ServingStats};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracseq_core::lifecycle::deployment::Target;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::registry::{check_alias_shape, ModelSlots};
use tracseq_core::types::{validate_name, ModelVersion};
use tracseq_core::{Error, Platform, Result};
use tracseq_learn::artifact::ModelArtifact;

pub struct LoadedModel {
    pub version: ModelVersion,
    pub artifact: ModelArtifact,
    /// This replica's serving figures for the version.
    pub stats: ServingStats,
}

/// Which version a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick<'a> {
    /// This version.
    Version(u32),
    /// The version an alias names (`latest` is the newest, `v<n>` is `n`).
    Alias(&'a str),
    /// The deployed version (else the production one).
    Serving,
}

impl<'a> Pick<'a> {
    /// From a request's optional `version` and `alias`: at most one.
    pub fn from_request(version: Option<u32>, alias: Option<&'a str>) -> Result<Pick<'a>> {
        match (version, alias) {
            (Some(_), Some(_)) => Err(Error::Invalid(
                "give at most one of version and alias".into(),
            )),
            (Some(v), None) => Ok(Pick::Version(v)),
            (None, Some(a)) => {
                // Checked before the alias is looked up or quoted back
                // (`latest` and `v<n>` are asked for here, not set).
                check_alias_shape(a).map_err(|e| Error::Invalid(e.to_string()))?;
                Ok(Pick::Alias(a))
            }
            (None, None) => Ok(Pick::Serving),
        }
    }
}

/// How long a model's aliases and stages are reused: alias moves and
/// promotions made through another replica reach this one within it.
const SLOTS_TTL: Duration = Duration::from_secs(1);

/// Before a request without version or alias is refused, the deployments
/// are read again unless they were read this recently.
const REFUSAL_RECHECK: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct ModelCache {
    loaded: RwLock<HashMap<(String, u32), Arc<LoadedModel>>>,
    /// Each model's deployed version, loaded: what a request without
    /// version or alias gets. Replaced whole by each refresh.
    deployed: RwLock<Arc<HashMap<String, Arc<LoadedModel>>>>,
    /// When `deployed` was last read from the registry.
    refreshed: RwLock<Option<Instant>>,
    refreshing: tokio::sync::Mutex<()>,
    slots: RwLock<HashMap<String, (Arc<ModelSlots>, Instant)>>,
    swaps: AtomicU64,
    swap_failures: AtomicU64,
    /// The poller's interval in ms (0: no poller runs).
    poll_ms: AtomicU64,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl ModelCache {
    /// The model that answers a request for `name` and `pick`.
    pub async fn get(&self, p: &Platform, name: &str, pick: Pick<'_>) -> Result<Arc<LoadedModel>> {
        validate_name("model", name)?;
        let version = match pick {
            Pick::Version(v) => v,
            Pick::Alias(alias) => self.alias_version(p, name, alias).await?,
            Pick::Serving => {
                if let Some(m) = self.deployed(p, name).await {
                    return Ok(m);
                }
                match self.slots(p, name).await?.production() {
                    Some(v) => v,
                    None => {
                        // This replica's view may be older than a deploy or
                        // a promotion that just happened: look again before
                        // refusing (at most one refresh per REFUSAL_RECHECK).
                        let last = *read(&self.refreshed);
                        if last.is_none_or(|at| at.elapsed() > REFUSAL_RECHECK) {
                            if let Err(e) = self.refresh_deployments(p).await {
                                tracing::warn!(error = %e, "reading the live deployments failed");
                            }
                        }
                        if let Some(m) = read(&self.deployed).get(name).cloned() {
                            return Ok(m);
                        }
                        write(&self.slots).remove(name);
                        self.slots(p, name).await?.production().ok_or_else(|| {
                            Error::Conflict(format!(
                                "model '{name}' has no deployed or production version: name a \
                                 \"version\" or an \"alias\", or promote one and deploy it \
                                 (POST /models/promote, POST /models/deploy)"
                            ))
                        })?
                    }
                }
            }
        };
        self.load(p, name, version).await
    }

    /// The deployed model, reading the registry first when no poller has
    /// done so lately (an api built without [`crate::serve`]'s poller).
    async fn deployed(&self, p: &Platform, name: &str) -> Option<Arc<LoadedModel>> {
        // A running poller keeps the view fresh; only a view three polls
        // old (a poller that stalled, or none) is read on the request path.
        let poll = Duration::from_millis(self.poll_ms.load(Ordering::Relaxed));
        let limit = (3 * poll).max(2 * SLOTS_TTL);
        let stale = read(&self.refreshed).is_none_or(|at| at.elapsed() > limit);
        if stale {
            if let Err(e) = self.refresh_deployments(p).await {
                tracing::warn!(error = %e, "reading the live deployments failed");
            }
        }
        read(&self.deployed).get(name).cloned()
    }

    async fn alias_version(&self, p: &Platform, name: &str, alias: &str) -> Result<u32> {
        if alias == "latest" {
            return Ok(p.state.get_model_version(name, None).await?.version);
        }
        if let Some(n) = alias.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()) {
            return Ok(n);
        }
        let slots = self.slots(p, name).await?;
        slots.aliases.get(alias).copied().ok_or_else(|| {
            let known: Vec<&str> = slots.aliases.keys().map(String::as_str).collect();
            Error::NotFound(format!(
                "model '{name}' has no alias '{alias}' (its aliases: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    async fn slots(&self, p: &Platform, name: &str) -> Result<Arc<ModelSlots>> {
        if let Some((s, at)) = read(&self.slots).get(name) {
            if at.elapsed() < SLOTS_TTL {
                return Ok(s.clone());
            }
        }
        let s = Arc::new(p.registry.model_slots(name).await?);
        write(&self.slots).insert(name.to_string(), (s.clone(), Instant::now()));
        Ok(s)
    }

    /// The loaded model of one version, loading and digest-checking it on
    /// first use.
    async fn load(&self, p: &Platform, name: &str, version: u32) -> Result<Arc<LoadedModel>> {
        let key = (name.to_string(), version);
        if let Some(m) = read(&self.loaded).get(&key) {
            return Ok(m.clone());
        }
        let record = p.state.get_model_version(name, Some(version)).await?;
        let bytes = p
            .artifacts
            .get(&ArtifactPath::parse(&record.artifact_path)?)
            .await?;
        let sha = record.sha256.clone();
        let artifact = tokio::task::spawn_blocking(move || ModelArtifact::from_bytes(&bytes, &sha))
            .await
            .map_err(|e| Error::Internal(format!("model loader panicked: {e}")))?
            .map_err(|e| Error::Internal(format!("model '{name}' version {version}: {e}")))?;
        let loaded = Arc::new(LoadedModel {
            version: record,
            artifact,
            stats: ServingStats::default(),
        });
        // Two first requests may both load; the first stored wins, so
        // every request counts against one set of figures.
        Ok(write(&self.loaded).entry(key).or_insert(loaded).clone())
    }

    /// Reads the live `platform` deployments and swaps in each model whose
    /// deployed version changed, after loading it. One refresh at a time;
    /// a caller that finds one running waits for it.
    pub async fn refresh_deployments(&self, p: &Platform) -> Result<()> {
        let _one = self.refreshing.lock().await;
        // Stamped first: a registry that cannot be read is retried at the
        // next poll, not by every request until then.
        *write(&self.refreshed) = Some(Instant::now());
        let live = p.registry.live_deployments(Target::Platform).await?;
        let current = read(&self.deployed).clone();
        let mut next = HashMap::with_capacity(live.len());
        let mut changed = current.len() != live.len();
        for d in live {
            let same = current
                .get(&d.model)
                .filter(|m| m.version.version == d.version);
            if let Some(m) = same {
                next.insert(d.model, m.clone());
                continue;
            }
            changed = true;
            match self.load(p, &d.model, d.version).await {
                Ok(m) => {
                    tracing::info!(model = %d.model, version = d.version, deployment = %d.id,
                        "serving the deployed version");
                    self.swaps.fetch_add(1, Ordering::Relaxed);
                    next.insert(d.model, m);
                }
                Err(e) => {
                    tracing::error!(model = %d.model, version = d.version, deployment = %d.id,
                        error = %e, "the deployed version failed to load; still serving the previous one");
                    self.swap_failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(old) = current.get(&d.model) {
                        next.insert(d.model, old.clone());
                    }
                }
            }
        }
        if changed {
            *write(&self.deployed) = Arc::new(next);
        }
        Ok(())
    }

    /// Polls the live deployments every `every` until `stop` resolves.
    pub async fn poll_deployments(
        self: Arc<Self>,
        p: Platform,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        self.poll_ms.store(
            u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.refresh_deployments(&p).await {
                        tracing::warn!(error = %e, "reading the live deployments failed; serving what was deployed");
                    }
                }
                _ = &mut stop => break,
            }
        }
        self.poll_ms.store(0, Ordering::Relaxed);
    }

    /// The deployed version of each model this replica serves, by name.
    pub fn deployed_versions(&self) -> Vec<(String, u32)> {
        let mut v: Vec<_> = read(&self.deployed)
            .iter()
            .map(|(n, m)| (n.clone(), m.version.version))
            .collect();
        v.sort();
        v
    }

    /// This replica's figures for one version, if it has served it.
    pub fn figures(&self, name: &str, version: u32) -> Option<ServingFigures> {
        read(&self.loaded)
            .get(&(name.to_string(), version))
            .map(|m| m.stats.figures())
    }

    /// Prometheus text for every loaded version and the swap counters.
    pub fn render_metrics(&self, out: &mut String) {
        let loaded: Vec<Arc<LoadedModel>> = read(&self.loaded).values().cloned().collect();
        let mut rows: Vec<(String, u32, &ServingStats)> = loaded
            .iter()
            .map(|m| (m.version.name.clone(), m.version.version, &m.stats))
            .collect();
        rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        stats::render(&rows, out);
        let deployed = self.deployed_versions();
        out.push_str(
            "# HELP tracseq_serving_deployed_version The version this api replica serves for a model without version or alias.\n\
             # TYPE tracseq_serving_deployed_version gauge\n",
        );
        for (name, version) in deployed {
            out.push_str(&format!(
                "tracseq_serving_deployed_version{{model=\"{name}\"}} {version}\n"
            ));
        }
        out.push_str(&format!(
            "# HELP tracseq_serving_swaps_total Deployed versions this replica swapped in.\n\
             # TYPE tracseq_serving_swaps_total counter\n\
             tracseq_serving_swaps_total {}\n\
             # HELP tracseq_serving_swap_failures_total Deployed versions that failed to load here (the previous one kept serving).\n\
             # TYPE tracseq_serving_swap_failures_total counter\n\
             tracseq_serving_swap_failures_total {}\n",
            self.swaps.load(Ordering::Relaxed),
            self.swap_failures.load(Ordering::Relaxed)
        ));
    }
}
