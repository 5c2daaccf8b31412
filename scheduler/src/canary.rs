//! The canary controller: every tick, each live platform deployment whose
//! canary rollout is due for a check gets its figures from the prediction
//! log (what every api replica logged, so the judgement is the fleet's,
//! not one replica's), judged by the pure
//! [`tracseq_core::lifecycle::traffic::check`], and stored with one
//! compare-and-set. A rollout that failed its gates `fail_after` times in a
//! row is rolled back in the same write as the check that decided it
//! (recorded on the deployment and in the model's history), written to the
//! audit log when this scheduler holds it, and raised as a critical alert
//! (logged, recorded, sent to the webhooks).

use crate::alerts::raise;
use crate::deployments::rollback_from;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tracseq_core::config::AlertsConfig;
use tracseq_core::ids::TokenId;
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::lifecycle::deployment::{Deployment, Target};
use tracseq_core::lifecycle::traffic::{self, ArmFigures, Outcome, CANARY, STABLE};
use tracseq_core::monitoring::{Raise, Severity};
use tracseq_core::ports::{DeploymentWrite, SecurityStore};
use tracseq_core::predictions::{LiveFilter, VariantCount};
use tracseq_core::security::audit::{NewAuditEntry, Outcome as AuditOutcome};
use tracseq_core::security::Actor;
use tracseq_core::{Platform, Result};
use tracseq_learn::live::live_metrics;

/// Outcomes one check reads at most (the newest of the window).
const MAX_OUTCOMES: u32 = 100_000;

/// Who acts when the controller rolls a canary back: no token, a name that
/// says what did it.
pub fn controller() -> Actor {
    Actor {
        id: TokenId(uuid::Uuid::nil()),
        name: "canary-controller".into(),
    }
}

/// Checks every canary rollout that is due.
pub async fn check_all(
    p: &Platform,
    audit: Option<&Arc<dyn SecurityStore>>,
    alerts: &AlertsConfig,
    now: DateTime<Utc>,
) -> Result<()> {
    for d in p.registry.live_deployments(Target::Platform).await? {
        let due = d
            .rollout
            .as_ref()
            .is_some_and(|r| r.state.running() && now >= r.next_check);
        if due {
            if let Err(e) = check_one(p, audit, alerts, d.clone(), now).await {
                tracing::warn!(deployment_id = %d.id, error = %e, "canary check failed; retrying next tick");
            }
        }
    }
    Ok(())
}

fn arm(counts: &[VariantCount], variant: &str, version: u32) -> ArmFigures {
    match counts
        .iter()
        .find(|c| c.variant == variant && c.version == version)
    {
        Some(c) => ArmFigures {
            version,
            requests: c.predictions,
            errors: c.errors,
            p99_ms: c.latency_quantile_ms(0.99),
            metric: None,
            outcomes: 0,
        },
        None => ArmFigures {
            version,
            ..Default::default()
        },
    }
}

/// The figures of the canary and stable arms since the window's start.
async fn figures(p: &Platform, d: &Deployment) -> Result<Option<(ArmFigures, ArmFigures)>> {
    let (Some(r), Some(prev), Some(plan)) = (
        &d.rollout,
        d.previous,
        d.traffic.as_ref().and_then(|t| t.canary.as_ref()),
    ) else {
        return Ok(None);
    };
    let filter = LiveFilter {
        model: d.model.clone(),
        since: Some(r.window_start),
        deployment: Some(d.id),
    };
    let counts = p.predictions.prediction_counts(&filter).await?;
    let mut canary = arm(&counts, CANARY, d.version);
    let mut stable = arm(&counts, STABLE, prev.version);
    if let Some(gate) = &plan.gates.metric {
        let labelled = p
            .predictions
            .labelled_predictions(&filter, MAX_OUTCOMES)
            .await?;
        for side in [&mut canary, &mut stable] {
            let variant = if side.version == d.version {
                CANARY
            } else {
                STABLE
            };
            let pairs: Vec<_> = labelled
                .iter()
                .filter(|l| l.prediction.variant == variant)
                .map(|l| (&l.prediction.output, &l.outcome.actual))
                .collect();
            if let Some(m) = live_metrics(&pairs)
                .into_iter()
                .find(|m| m.metric == gate.name)
            {
                side.metric = m.value;
                side.outcomes = m.outcomes as u64;
            }
        }
    }
    Ok(Some((canary, stable)))
}

async fn check_one(
    p: &Platform,
    audit: Option<&Arc<dyn SecurityStore>>,
    alerts: &AlertsConfig,
    mut d: Deployment,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some((canary, stable)) = figures(p, &d).await? else {
        return Ok(());
    };
    let Some(plan) = d.traffic.as_ref().and_then(|t| t.canary.clone()) else {
        return Ok(());
    };
    let Some(rollout) = d.rollout.as_mut() else {
        return Ok(());
    };
    let Some(outcome) = traffic::check(&plan, rollout, canary, stable, now) else {
        return Ok(());
    };
    let (step, percent) = (rollout.step, rollout.percent);
    match outcome {
        Outcome::Judged(verdict) => {
            let write = DeploymentWrite {
                updates: vec![d.clone()],
                ..Default::default()
            };
            if p.registry.commit_deployments(write).await? {
                tracing::info!(deployment_id = %d.id, model = %d.model, ?verdict, step = step + 1,
                    percent, "canary checked");
            }
        }
        Outcome::RollBack { reason } => {
            let by = controller();
            let Some(done) = rollback_from(p, d, &by, Some(reason.clone()), now).await? else {
                return Ok(());
            };
            let alert = Raise {
                kind: AlertKind::CanaryRollback,
                severity: Severity::Critical,
                model: done.model.clone(),
                version: Some(done.version),
                deployment_id: Some(done.id),
                summary: format!("{} v{}: {reason}", done.model, done.version),
                detail: serde_json::json!({
                    "reason": reason,
                    "step": step + 1,
                    "percent": percent,
                    "restored_version": done.previous.map(|p| p.version),
                    "checks": done.rollout.as_ref().map(|r| &r.checks),
                }),
            };
            if let Err(e) = raise(p, alerts, alert, now).await {
                tracing::error!(deployment_id = %done.id, error = %e,
                    "ALERT: canary rolled back automatically, and the alert could not be recorded");
            }
            if let Some(store) = audit {
                let entry = NewAuditEntry {
                    at: now,
                    actor: Some(by),
                    action: "deployments.auto_rollback".into(),
                    targets: vec![
                        done.id.to_string(),
                        format!("{}@{}", done.model, done.version),
                    ],
                    outcome: AuditOutcome::Ok,
                    status: 0,
                    request_id: String::new(),
                    client: None,
                    detail: Some(reason),
                };
                if let Err(e) = store.append_audit(entry).await {
                    tracing::error!(deployment_id = %done.id, error = %e,
                        "the automatic rollback could not be written to the audit log");
                }
            }
        }
    }
    Ok(())
}
