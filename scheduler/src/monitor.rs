//! The monitor: every `alerts.monitor_secs`, each live platform
//! deployment's error rate over the last `alerts.error_window_secs`, and
//! each version it serves judged for drift — its newest live features
//! (the prediction log) against the training profile its artifact carries,
//! the same report as `GET /models/{name}/drift`. Drift scores are kept
//! for `/metrics`; a drifted version or an error-rate spike raises an
//! alert ([`crate::alerts::raise`]).
//!
//! It runs beside the dispatch loop, not in it: reading thousands of log
//! records and an artifact must not delay a job's dispatch.

use crate::alerts::raise;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tracseq_core::config::AlertsConfig;
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::lifecycle::deployment::{Deployment, Target};
use tracseq_core::lifecycle::traffic::SHADOW;
use tracseq_core::monitoring::{DriftScores, FeatureScore, Raise, Severity};
use tracseq_core::paging::Page;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::predictions::{version_features, LiveFilter, PredictionFilter, PredictionRecord};
use tracseq_core::{Error, Platform, Result};
use tracseq_learn::artifact::ModelArtifact;
use tracseq_learn::drift_report::{profile_drift, JS_DRIFT, PSI_DRIFT};
use tracseq_learn::profile::DataProfile;

/// Training profiles by model version and artifact digest: read once.
#[derive(Default)]
pub struct Profiles(Mutex<HashMap<(String, u32, String), Arc<DataProfile>>>);

impl Profiles {
    async fn get(&self, p: &Platform, model: &str, version: u32) -> Result<Arc<DataProfile>> {
        let record = p.state.get_model_version(model, Some(version)).await?;
        let key = (model.to_string(), version, record.sha256.clone());
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let bytes = p
            .artifacts
            .get(&ArtifactPath::parse(&record.artifact_path)?)
            .await?;
        let sha = record.sha256.clone();
        let profile =
            tokio::task::spawn_blocking(move || ModelArtifact::profile_from_bytes(&bytes, &sha))
                .await
                .map_err(|e| Error::Internal(format!("profile reader panicked: {e}")))?
                .map_err(|e| Error::Internal(format!("model '{model}' version {version}: {e}")))?;
        let profile = Arc::new(profile);
        self.lock().insert(key, profile.clone());
        Ok(profile)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32, String), Arc<DataProfile>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The versions a live deployment answers with: its own, its A/B arms',
/// and while a canary runs the stable one's. A shadow answers nobody and
/// sees the same features as the answer it copies.
pub fn served_versions(d: &Deployment) -> BTreeSet<u32> {
    let mut versions = BTreeSet::from([d.version]);
    if let Some(t) = &d.traffic {
        versions.extend(t.split.iter().map(|a| a.version));
    }
    if d.rollout.as_ref().is_some_and(|r| r.state.running()) {
        versions.extend(d.previous.map(|p| p.version));
    }
    versions
}

/// One monitor pass over every live platform deployment. A check that
/// cannot be made (an unreadable artifact) is logged and the rest go on.
pub async fn check_all(
    p: &Platform,
    cfg: &AlertsConfig,
    profiles: &Profiles,
    now: DateTime<Utc>,
) -> Result<()> {
    for d in p.registry.live_deployments(Target::Platform).await? {
        if let Err(e) = error_rate(p, cfg, &d, now).await {
            tracing::warn!(deployment_id = %d.id, error = %e, "error-rate check failed");
        }
        // One read of the model's newest answers serves every version
        // the deployment answers with.
        let records = match live_window(p, cfg, &d.model).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(model = %d.model, error = %e, "drift window unreadable");
                continue;
            }
        };
        for version in served_versions(&d) {
            if let Err(e) = drift(p, cfg, profiles, &d.model, version, &records, now).await {
                tracing::warn!(model = %d.model, version, error = %e, "drift check failed");
            }
        }
    }
    Ok(())
}

/// Raises an `error_rate` alert when the deployment's answers (not its
/// shadow's) failed at least `alerts.error_rate` of the time over the
/// window, with enough requests to say so.
pub async fn error_rate(
    p: &Platform,
    cfg: &AlertsConfig,
    d: &Deployment,
    now: DateTime<Utc>,
) -> Result<()> {
    let since = now - Duration::seconds(cfg.error_window_secs as i64);
    let filter = LiveFilter {
        model: d.model.clone(),
        since: Some(since),
        deployment: Some(d.id),
    };
    let counts = p.predictions.prediction_counts(&filter).await?;
    let answering = counts.iter().filter(|c| c.variant != SHADOW);
    let (requests, errors) = answering
        .clone()
        .fold((0, 0), |(r, e), c| (r + c.predictions, e + c.errors));
    if requests < cfg.error_min_requests {
        return Ok(());
    }
    let rate = errors as f64 / requests as f64;
    if rate < cfg.error_rate {
        return Ok(());
    }
    let variants: Vec<_> = answering
        .map(|c| {
            json!({"variant": c.variant, "version": c.version,
                        "requests": c.predictions, "errors": c.errors})
        })
        .collect();
    let summary = format!(
        "{} failed {errors} of {requests} requests ({:.1}%) in the last {} s (threshold {:.1}%)",
        d.model,
        rate * 100.0,
        cfg.error_window_secs,
        cfg.error_rate * 100.0
    );
    let detail = json!({"requests": requests, "errors": errors, "error_rate": rate,
        "threshold": cfg.error_rate, "since": since, "variants": variants});
    let alert = Raise {
        kind: AlertKind::ErrorRate,
        severity: Severity::Critical,
        model: d.model.clone(),
        version: Some(d.version),
        deployment_id: Some(d.id),
        summary,
        detail,
    };
    raise(p, cfg, alert, now).await?;
    Ok(())
}

/// The model's newest `alerts.drift_window` answered predictions (not
/// shadows' copies, not failures), newest first.
pub async fn live_window(
    p: &Platform,
    cfg: &AlertsConfig,
    model: &str,
) -> Result<Vec<PredictionRecord>> {
    let filter = PredictionFilter {
        model: Some(model.to_string()),
        since: None,
        entity_id: None,
        answered_only: true,
    };
    let page = Page {
        limit: cfg.drift_window,
        after: None,
    };
    p.predictions.list_predictions(&filter, &page).await
}

/// Scores one served version's drift over the model's live window (from
/// [`live_window`]), keeps the scores, and raises a `drift` alert when a
/// feature drifted.
pub async fn drift(
    p: &Platform,
    cfg: &AlertsConfig,
    profiles: &Profiles,
    model: &str,
    version: u32,
    records: &[PredictionRecord],
    now: DateTime<Utc>,
) -> Result<()> {
    let profile = profiles.get(p, model, version).await?;
    let parsed = version_features(records, version);
    let live: Vec<_> = parsed.iter().collect();
    let features = profile_drift(&profile, &live);
    let scores = DriftScores {
        model: model.to_string(),
        version,
        at: now,
        live_records: live.len() as u64,
        features: features
            .iter()
            .filter_map(|f| {
                let (statistic, value) = f.score()?;
                Some(FeatureScore {
                    feature: f.feature.clone(),
                    statistic: statistic.into(),
                    value,
                    drifted: f.drifted,
                })
            })
            .collect(),
    };
    p.alerts.put_drift_scores(&scores).await?;
    let drifted: Vec<_> = features.iter().filter(|f| f.drifted).collect();
    if drifted.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = drifted.iter().map(|f| f.feature.as_str()).collect();
    let summary = format!(
        "{model} v{version}: {} of {} features drifted from the training data ({}) over the newest {} live records",
        drifted.len(),
        features.len(),
        names.join(", "),
        live.len()
    );
    let detail = json!({
        "live_records": live.len(),
        "reference_rows": profile.rows,
        "thresholds": {"psi": PSI_DRIFT, "jensen_shannon": JS_DRIFT},
        "drifted": drifted,
    });
    let alert = Raise {
        kind: AlertKind::Drift,
        severity: Severity::Warning,
        model: model.to_string(),
        version: Some(version),
        deployment_id: None,
        summary,
        detail,
    };
    raise(p, cfg, alert, now).await?;
    Ok(())
}
