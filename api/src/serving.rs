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
//!
//! A deployment with a traffic policy (A/B arms, a canary) routes each
//! such request to one of its versions ([`routing`]); every version it
//! names is loaded before the policy takes traffic, the same way.

pub mod cache;
mod log;
pub mod routing;
pub mod shadow;
mod stats;

pub use cache::AnswerCache;
pub use log::{LogFigures, PredictionLog};
pub use routing::{Answerer, Routed};
pub use stats::{ServingFigures, ServingStats};

use routing::RoutedSlot;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracseq_core::lifecycle::deployment::{Deployment, Target};
use tracseq_core::lifecycle::traffic;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::registry::{check_alias_shape, ModelSlots};
use tracseq_core::types::{validate_name, ModelVersion};
use tracseq_core::{Error, Platform, Result};
use tracseq_learn::artifact::ModelArtifact;

pub struct LoadedModel {
    pub version: ModelVersion,
    pub artifact: ModelArtifact,
    /// This replica's serving figures for the version, per variant it
    /// answered as (a handful: a scan beats a map).
    stats: RwLock<VariantStats>,
}

/// One version's serving figures, by the variant it answered as.
type VariantStats = Vec<(String, Arc<ServingStats>)>;

impl LoadedModel {
    pub fn new(version: ModelVersion, artifact: ModelArtifact) -> LoadedModel {
        LoadedModel {
            version,
            artifact,
            stats: RwLock::default(),
        }
    }

    /// Counts one request this version answered as `variant`.
    pub fn record(&self, variant: &str, took: Duration, ok: bool) {
        if let Some((_, s)) = read(&self.stats).iter().find(|(v, _)| v == variant) {
            s.record(took, ok);
            return;
        }
        let mut all = write(&self.stats);
        let s = match all.iter().find(|(v, _)| v == variant) {
            Some((_, s)) => s.clone(),
            None => {
                let s = Arc::new(ServingStats::default());
                all.push((variant.to_string(), s.clone()));
                s
            }
        };
        drop(all);
        s.record(took, ok);
    }

    /// The version's figures over every variant it answered as.
    pub fn figures(&self) -> ServingFigures {
        let all = read(&self.stats);
        let stats: Vec<&ServingStats> = all.iter().map(|(_, s)| s.as_ref()).collect();
        ServingStats::figures_of(&stats)
    }
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
    /// Each model's live deployment, its versions loaded: what routes a
    /// request without version or alias. Replaced whole by each refresh.
    deployed: RwLock<Arc<HashMap<String, Arc<Routed>>>>,
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
    /// The model that answers a request for `name` and `pick` (for a
    /// request routed by a traffic policy, its primary arm's or canary's:
    /// the deployment's own version).
    pub async fn get(&self, p: &Platform, name: &str, pick: Pick<'_>) -> Result<Arc<LoadedModel>> {
        if pick == Pick::Serving {
            if let Some(r) = self.deployed(p, name).await {
                if let Some(s) = r
                    .slots
                    .iter()
                    .find(|s| s.model.version.version == r.version)
                {
                    return Ok(s.model.clone());
                }
            }
        }
        Ok(self.route(p, name, pick, None).await?.model)
    }

    /// The model that answers one request for `name` and `pick`, and the
    /// traffic arm it answers as: a request without version or alias is
    /// routed by the live deployment's policy (sticky by `entity_id`).
    pub async fn route(
        &self,
        p: &Platform,
        name: &str,
        pick: Pick<'_>,
        entity_id: Option<&str>,
    ) -> Result<Answerer> {
        validate_name("model", name)?;
        let version = match pick {
            Pick::Version(v) => v,
            Pick::Alias(alias) => self.alias_version(p, name, alias).await?,
            Pick::Serving => {
                if let Some(r) = self.deployed(p, name).await {
                    return Ok(r.pick(entity_id));
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
                        if let Some(r) = read(&self.deployed).get(name).cloned() {
                            return Ok(r.pick(entity_id));
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
        Ok(Answerer::pinned(self.load(p, name, version).await?))
    }

    /// The live deployment, reading the registry first when no poller has
    /// done so lately (an api built without [`crate::serve`]'s poller).
    async fn deployed(&self, p: &Platform, name: &str) -> Option<Arc<Routed>> {
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
    pub async fn load(&self, p: &Platform, name: &str, version: u32) -> Result<Arc<LoadedModel>> {
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
        let loaded = Arc::new(LoadedModel::new(record, artifact));
        // Two first requests may both load; the first stored wins, so
        // every request counts against one set of figures.
        Ok(write(&self.loaded).entry(key).or_insert(loaded).clone())
    }

    /// Reads the live `platform` deployments and swaps in each model whose
    /// deployment (or its policy) changed, after loading every version it
    /// routes to. One refresh at a time; a caller that finds one running
    /// waits for it.
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
                .filter(|r| r.deployment == d.id && r.revision == d.revision);
            if let Some(r) = same {
                next.insert(d.model, r.clone());
                continue;
            }
            changed = true;
            match self.routed(p, &d).await {
                Ok(r) => {
                    let moved = current
                        .get(&d.model)
                        .is_none_or(|old| old.deployment != d.id || old.version != d.version);
                    if moved {
                        tracing::info!(model = %d.model, version = d.version, deployment = %d.id,
                            "serving the deployed version");
                        self.swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    next.insert(d.model, Arc::new(r));
                }
                Err(e) => {
                    tracing::error!(model = %d.model, version = d.version, deployment = %d.id,
                        error = %e, "a version of the deployment failed to load; still serving the previous one");
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

    /// A deployment's slots with their versions loaded (all or an error).
    async fn routed(&self, p: &Platform, d: &Deployment) -> Result<Routed> {
        let mut slots = Vec::new();
        for s in traffic::slots(d) {
            slots.push(RoutedSlot {
                model: self.load(p, &d.model, s.version).await?,
                variant: s.variant,
                upper: s.upper,
            });
        }
        Ok(Routed {
            deployment: d.id,
            version: d.version,
            revision: d.revision,
            slots,
            shadow: d.traffic.as_ref().and_then(|t| t.shadow.clone()),
        })
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
            .map(|(n, r)| (n.clone(), r.version))
            .collect();
        v.sort();
        v
    }

    /// This replica's figures for one version, if it has served it.
    pub fn figures(&self, name: &str, version: u32) -> Option<ServingFigures> {
        read(&self.loaded)
            .get(&(name.to_string(), version))
            .map(|m| m.figures())
    }

    /// Prometheus text for every loaded version and the swap counters.
    pub fn render_metrics(&self, out: &mut String) {
        let loaded: Vec<Arc<LoadedModel>> = read(&self.loaded).values().cloned().collect();
        let per_variant: Vec<(&LoadedModel, VariantStats)> = loaded
            .iter()
            .map(|m| (m.as_ref(), read(&m.stats).clone()))
            .collect();
        let mut rows: Vec<stats::Row<'_>> = per_variant
            .iter()
            .flat_map(|(m, variants)| {
                variants.iter().map(move |(variant, s)| stats::Row {
                    model: &m.version.name,
                    version: m.version.version,
                    variant,
                    stats: s,
                })
            })
            .collect();
        rows.sort_by(|a, b| (a.model, a.version, a.variant).cmp(&(b.model, b.version, b.variant)));
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
