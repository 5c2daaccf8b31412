//! Deployments' store side: creating one with its deploy job, moving it
//! along as the job runs (the scheduler's tick), and rolling back. The
//! transitions are the pure ones of
//! [`tracseq_core::lifecycle::deployment`]; here they are read, decided and
//! stored with one compare-and-set over every record a step touches (the
//! deployment going live and the one it supersedes; the one rolled back,
//! the one restored and the registry's production stage).

use crate::registry::registry_refusal;
use chrono::{DateTime, Duration, Utc};
use tracseq_core::config::DeployConfig;
use tracseq_core::ids::DeploymentId;
use tracseq_core::lifecycle::deployment::{
    self, deployable, Deployment, DeploymentState, Effect, Event, NewDeployment, Previous,
    Rejection, Target,
};
use tracseq_core::lifecycle::traffic::TrafficPolicy;
use tracseq_core::ports::{DeploymentFilter, DeploymentWrite, HistoryEntry, RegistryWrite};
use tracseq_core::protocol::{DeployPayload, DeployResult, JobSpec};
use tracseq_core::registry::{self, Change, Stage};
use tracseq_core::resources::ResourceRequest;
use tracseq_core::security::Actor;
use tracseq_core::types::{DispatchMessage, Job, JobState, NewJob};
use tracseq_core::{Error, Platform, Result};

/// Attempts of a deploy job (loading an artifact and writing a few files).
pub const DEPLOY_MAX_ATTEMPTS: u32 = 3;
/// How long one deploy attempt may run.
pub const DEPLOY_TIMEOUT_SECS: u64 = 600;
/// Most replicas one deployment may ask for.
pub const MAX_REPLICAS: u32 = 100;
/// A pending deployment whose job was never stored (the process died
/// between the two writes) fails after this long.
const ORPHAN_AFTER_SECS: i64 = 60;
const RACES: usize = 16;

/// Which version to deploy: exactly one way of naming it.
#[derive(Clone, Debug, PartialEq)]
pub enum Which {
    Version(u32),
    Alias(String),
    Stage(Stage),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeployRequest {
    pub model: String,
    pub which: Which,
    pub target: Target,
    pub replicas: u32,
    pub resources: Option<ResourceRequest>,
    /// How the deployment shares traffic (platform target only).
    pub traffic: Option<TrafficPolicy>,
}

/// Checks a traffic policy against the registry: the platform target,
/// every version it names registered and reviewed (staging or
/// production), and for a canary a live deployment to take traffic from.
async fn check_traffic(
    p: &Platform,
    model: &str,
    version: u32,
    target: Target,
    traffic: &TrafficPolicy,
    slots: &registry::ModelSlots,
) -> Result<()> {
    if target != Target::Platform {
        return Err(Error::Invalid(format!(
            "traffic: only the platform target shares traffic between versions, not {target}"
        )));
    }
    traffic.validate(version)?;
    for v in traffic.versions() {
        match slots.stage_of(v) {
            None => {
                return Err(Error::NotFound(format!(
                    "traffic: model '{model}' has no version {v}"
                )))
            }
            Some(Stage::Staging | Stage::Production) => {}
            Some(stage) => {
                return Err(Error::Conflict(format!(
                    "traffic: version {v} of '{model}' is {stage}; a version that takes live traffic must be in staging or production"
                )))
            }
        }
    }
    if traffic.canary.is_some() {
        let live = p.registry.live_deployments(Target::Platform).await?;
        match live.iter().find(|d| d.model == model) {
            None => {
                return Err(Error::Conflict(format!(
                    "traffic.canary: model '{model}' has no live platform deployment for the canary to take traffic from; deploy version {version} without a canary"
                )))
            }
            Some(d) if d.version == version => {
                return Err(Error::Conflict(format!(
                    "traffic.canary: version {version} is already the live version of '{model}'"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Resolves the version, checks it may go to the target, and stores a
/// pending deployment and its queued deploy job.
pub async fn deploy(
    p: &Platform,
    req: DeployRequest,
    settings: &DeployConfig,
    by: &Actor,
    now: DateTime<Utc>,
) -> Result<(Deployment, Job)> {
    if req.replicas == 0 || req.replicas > MAX_REPLICAS {
        return Err(Error::Invalid(format!(
            "replicas must be 1 to {MAX_REPLICAS}, got {}",
            req.replicas
        )));
    }
    if let Some(r) = &req.resources {
        r.validate()?;
    }
    let slots = p.registry.model_slots(&req.model).await?;
    let version = match &req.which {
        Which::Version(v) => *v,
        Which::Alias(a) => *slots
            .aliases
            .get(a)
            .ok_or_else(|| Error::NotFound(format!("model '{}' has no alias '{a}'", req.model)))?,
        Which::Stage(stage) => {
            let mut in_stage = slots.stages.iter().filter(|(_, s)| *s == stage);
            match (in_stage.next(), in_stage.next()) {
                (Some((v, _)), None) => *v,
                (None, _) => {
                    return Err(Error::NotFound(format!(
                        "model '{}' has no version in {stage}",
                        req.model
                    )))
                }
                (Some(_), Some(_)) => {
                    return Err(Error::Invalid(format!(
                    "model '{}' has several versions in {stage}; name one with version or alias",
                    req.model
                )))
                }
            }
        }
    };
    let stage = slots.stage_of(version).ok_or_else(|| {
        Error::NotFound(format!("model '{}' has no version {version}", req.model))
    })?;
    deployable(&req.model, version, stage, req.target).map_err(refusal)?;
    if let Some(t) = &req.traffic {
        check_traffic(p, &req.model, version, req.target, t, &slots).await?;
    }
    let mv = p.state.get_model_version(&req.model, Some(version)).await?;
    let id = DeploymentId::new();
    let payload = DeployPayload {
        deployment_id: id,
        model: req.model.clone(),
        version,
        family: mv.family.clone(),
        target: req.target,
        artifact_path: mv.artifact_path.clone(),
        sha256: mv.sha256.clone(),
        replicas: req.replicas,
        resources: req.resources.clone(),
        base_image: settings.image.clone(),
        registry: (!settings.registry.is_empty()).then(|| settings.registry.clone()),
        sagemaker_role_arn: (!settings.sagemaker_role_arn.is_empty())
            .then(|| settings.sagemaker_role_arn.clone()),
    };
    // Loading an artifact needs no special resources, whatever the model
    // will ask for where it serves.
    let resources = ResourceRequest::default();
    let job = NewJob {
        spec: JobSpec::Deploy(payload),
        experiment_id: None,
        resource_class: resources.resource_class().into(),
        resources,
        priority: 10,
        max_attempts: DEPLOY_MAX_ATTEMPTS,
        timeout_secs: DEPLOY_TIMEOUT_SECS,
    }
    .into_job(now, None)?;
    let mut d = Deployment::new(
        NewDeployment {
            model: req.model,
            version,
            target: req.target,
            replicas: req.replicas,
            resources: req.resources,
            job_id: Some(job.id),
            requested_by: by.clone(),
            traffic: req.traffic,
        },
        now,
    );
    d.id = id;
    // The deployment first: if the job never lands, the tick fails the
    // deployment as orphaned; the other order could run a deploy job for a
    // deployment that does not exist.
    let write = DeploymentWrite {
        inserts: vec![d.clone()],
        ..Default::default()
    };
    if !p.registry.commit_deployments(write).await? {
        return Err(Error::Conflict(format!("deployment {id} exists")));
    }
    p.state.insert_job(&job).await?;
    p.queue
        .publish(&job.resource_class, &DispatchMessage::for_job(&job))
        .await?;
    Ok((d, job))
}

/// Moves every pending or deploying deployment along with its job.
pub async fn advance(p: &Platform, now: DateTime<Utc>) -> Result<()> {
    for state in [DeploymentState::Pending, DeploymentState::Deploying] {
        let filter = DeploymentFilter {
            state: Some(state),
            ..Default::default()
        };
        for d in p.registry.list_deployments(&filter).await? {
            if let Err(e) = advance_one(p, d.id, now).await {
                tracing::warn!(deployment_id = %d.id, error = %e, "deployment did not advance");
            }
        }
    }
    Ok(())
}

/// The event a deployment's job says has happened, if any.
async fn job_event(p: &Platform, d: &Deployment, now: DateTime<Utc>) -> Result<Option<Event>> {
    let Some(job_id) = d.job_id else {
        return Ok(Some(Event::Failed {
            error: "the deployment has no deploy job".into(),
        }));
    };
    let job = match p.state.get_job(job_id).await {
        Ok(job) => job,
        Err(Error::NotFound(_)) if now - d.created_at > Duration::seconds(ORPHAN_AFTER_SECS) => {
            return Ok(Some(Event::Failed {
                error: format!("its deploy job {job_id} was never stored"),
            }))
        }
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(match job.state {
        JobState::Succeeded => {
            let result: DeployResult =
                serde_json::from_value(job.result.clone().unwrap_or_default()).map_err(|e| {
                    Error::Internal(format!("deploy job {job_id}: unreadable result: {e}"))
                })?;
            let live = p
                .registry
                .list_deployments(&DeploymentFilter {
                    model: Some(d.model.clone()),
                    target: Some(d.target),
                    state: Some(DeploymentState::Live),
                    limit: None,
                })
                .await?
                .into_iter()
                .find(|l| l.id != d.id)
                .map(|l| Previous {
                    id: l.id,
                    version: l.version,
                });
            Some(Event::Succeeded {
                outputs: result.outputs,
                note: result.note,
                live,
            })
        }
        JobState::Dead | JobState::Cancelled | JobState::Unschedulable | JobState::Pruned => {
            Some(Event::Failed {
                error: job
                    .last_error
                    .clone()
                    .unwrap_or_else(|| format!("deploy job {job_id} is {}", job.state)),
            })
        }
        JobState::Leased | JobState::Running if d.state == DeploymentState::Pending => {
            Some(Event::Started)
        }
        _ => None,
    })
}

async fn advance_one(p: &Platform, id: DeploymentId, now: DateTime<Utc>) -> Result<()> {
    for _ in 0..RACES {
        let mut d = p.registry.get_deployment(id).await?;
        if !matches!(
            d.state,
            DeploymentState::Pending | DeploymentState::Deploying
        ) {
            return Ok(());
        }
        let Some(event) = job_event(p, &d, now).await? else {
            return Ok(());
        };
        let effects = deployment::on_event(&mut d, event, now).map_err(refusal)?;
        let mut updates = vec![d.clone()];
        for effect in &effects {
            if let Effect::Supersede(old) = effect {
                let mut old = p.registry.get_deployment(*old).await?;
                deployment::on_event(&mut old, Event::Superseded { by: d.id }, now)
                    .map_err(refusal)?;
                updates.push(old);
            }
        }
        let write = DeploymentWrite {
            updates,
            ..Default::default()
        };
        if p.registry.commit_deployments(write).await? {
            tracing::info!(deployment_id = %id, state = %d.state, model = %d.model, version = d.version, "deployment moved");
            return Ok(());
        }
    }
    Err(Error::Conflict(format!(
        "deployment {id}: too many concurrent changes"
    )))
}

/// Returns a live deployment to the one it replaced, in one write with the
/// registry's production stage on the platform target. No approval: the
/// version going back was approved when it went live.
pub async fn rollback(
    p: &Platform,
    id: DeploymentId,
    by: &Actor,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Deployment> {
    for _ in 0..RACES {
        let d = p.registry.get_deployment(id).await?;
        if let Some(done) = rollback_from(p, d, by, reason.clone(), now).await? {
            return Ok(done);
        }
    }
    Err(Error::Conflict(format!(
        "deployment {id}: too many concurrent changes; try again"
    )))
}

/// Rolls `d` (as read, at its revision) back in one compare-and-set write;
/// `None` when another write changed it first.
pub(crate) async fn rollback_from(
    p: &Platform,
    mut d: Deployment,
    by: &Actor,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<Deployment>> {
    let effects = deployment::on_event(
        &mut d,
        Event::RollBack {
            by: by.clone(),
            reason: reason.clone(),
        },
        now,
    )
    .map_err(refusal)?;
    let mut updates = vec![d.clone()];
    let mut registry_write = None;
    for effect in &effects {
        match effect {
            Effect::Restore(previous) => {
                let mut prev = p.registry.get_deployment(previous.id).await?;
                deployment::on_event(
                    &mut prev,
                    Event::Restore {
                        by: by.clone(),
                        from: d.id,
                        reason: reason.clone(),
                    },
                    now,
                )
                .map_err(refusal)?;
                updates.push(prev);
            }
            Effect::RestoreProduction { version } => {
                let mut slots = p.registry.model_slots(&d.model).await?;
                let change = Change::SetStage {
                    version: *version,
                    stage: Stage::Production,
                    archive_previous: true,
                    expect_production: None,
                };
                let moved = registry::apply(&mut slots, change).map_err(registry_refusal)?;
                let history = moved
                    .into_iter()
                    .map(|change| HistoryEntry {
                        seq: 0,
                        model: d.model.clone(),
                        at: now,
                        change,
                        requested_by: Some(by.clone()),
                        approved_by: None,
                        promotion_id: None,
                        deployment_id: Some(d.id),
                        reason: Some(match &reason {
                            Some(r) => format!("rollback of deployment {}: {r}", d.id),
                            None => format!("rollback of deployment {}", d.id),
                        }),
                    })
                    .collect();
                registry_write = Some(RegistryWrite {
                    slots,
                    history,
                    promotion: None,
                });
            }
            _ => {}
        }
    }
    let write = DeploymentWrite {
        inserts: Vec::new(),
        updates,
        registry: registry_write,
    };
    Ok(p.registry.commit_deployments(write).await?.then_some(d))
}

/// A deployment refusal as the error kind the api answers with.
pub fn refusal(r: Rejection) -> Error {
    Error::Conflict(r.to_string())
}

#[cfg(test)]
#[path = "deployments_tests.rs"]
mod tests;
