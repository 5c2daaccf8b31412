//! The deployment state machine: a model version going out to a target,
//! living there, and being replaced or rolled back, as one pure function.
//!
//! ```text
//! pending ──Started (the deploy job runs)──> deploying ──Succeeded──> live
//!    └──────────────Failed (job failed, dead or cancelled)──────┘ → failed
//! live ──Superseded (another deployment of the model went live)──> superseded
//! live ──RollBack (back to the deployment it replaced)──> rolled_back
//! superseded ──Restore (the live one after it was rolled back)──> live
//! ```
//!
//! A deployment belongs to one (model, target) pair; at most one of each
//! pair is live. Going live names the deployment it replaces as
//! `previous`, which is what a rollback returns to: the caller stores the
//! rolled-back record, the restored one and (on the platform target) the
//! registry stage change in one write, without a new approval, because that
//! version was approved when it went live the first time. A rollback with
//! nothing before it is refused, not guessed.
//!
//! Which versions may be deployed at all is [`deployable`]: never an
//! archived one, and to the platform target (what `/predict` serves) only
//! the production version, so an unreviewed version never reaches lab
//! software by a deploy.

use super::traffic::{Rollout, RolloutState, TrafficPolicy};
use crate::ids::{DeploymentId, JobId};
use crate::registry::Stage;
use crate::security::Actor;
use crate::types::str_enum;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    /// Recorded; its deploy job is queued.
    Pending,
    /// The deploy job runs: loading and checking the artifact, rendering.
    Deploying,
    /// Serving (platform) or current (rendered targets).
    Live,
    /// Another deployment of the same model and target went live after it.
    Superseded,
    /// Replaced by the deployment before it, on request.
    RolledBack,
    /// The deploy job ended without a live deployment.
    Failed,
}
str_enum!(DeploymentState {
    Pending => "pending", Deploying => "deploying", Live => "live",
    Superseded => "superseded", RolledBack => "rolled_back", Failed => "failed",
});

/// Where a deployment goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every api replica serves it for the model's name (hot swap).
    Platform,
    /// A Dockerfile and build context for a serving image.
    Docker,
    /// Deployment, Service and HorizontalPodAutoscaler manifests.
    Kubernetes,
    /// CreateModel, CreateEndpointConfig and CreateEndpoint request bodies.
    Sagemaker,
}
str_enum!(Target {
    Platform => "platform", Docker => "docker", Kubernetes => "kubernetes", Sagemaker => "sagemaker",
});

/// The deployment a live one replaced: what a rollback returns to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    pub id: DeploymentId,
    pub version: u32,
}

/// One step of a deployment's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub from: Option<DeploymentState>,
    pub to: DeploymentState,
    pub at: DateTime<Utc>,
    /// Who asked, where a person did (a rollback); absent for the job's own steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: DeploymentId,
    pub model: String,
    pub version: u32,
    pub target: Target,
    pub replicas: u32,
    /// The serving resources asked for (rendered into the target's files).
    pub resources: Option<crate::resources::ResourceRequest>,
    pub state: DeploymentState,
    pub job_id: Option<JobId>,
    pub requested_by: Actor,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub previous: Option<Previous>,
    /// What the deploy job produced: artifact paths of rendered files.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// What the platform did not do, e.g. that rendered files were not
    /// applied because it holds no credentials for the target.
    pub note: Option<String>,
    pub error: Option<String>,
    pub history: Vec<Step>,
    /// How the deployment shares its traffic (platform target only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficPolicy>,
    /// A canary rollout's progress, from the moment it went live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// Compare-and-set key, bumped by every stored change.
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The deploy job began.
    Started,
    /// The deploy job finished: the artifact loaded and its digest matched,
    /// the target's files were rendered. `live` is the deployment of the
    /// same model and target live now, which this one replaces.
    Succeeded {
        outputs: Vec<String>,
        note: Option<String>,
        live: Option<Previous>,
    },
    /// The deploy job failed for good, died or was cancelled.
    Failed { error: String },
    /// Another deployment of the same model and target went live.
    Superseded { by: DeploymentId },
    /// A person asks to return to the deployment this one replaced.
    RollBack { by: Actor, reason: Option<String> },
    /// The deployment after this one was rolled back to it.
    Restore {
        by: Actor,
        from: DeploymentId,
        reason: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Move this deployment (live until now) to superseded, in the same write.
    Supersede(DeploymentId),
    /// Move this superseded deployment back to live, in the same write.
    Restore(Previous),
    /// Platform target: the registry's production stage follows what is
    /// served: `version` back to production, the rolled-back one archived.
    RestoreProduction {
        version: u32,
    },
    /// Every api replica must now serve this version for the model.
    Serve {
        version: u32,
    },
    Finished(DeploymentState),
}

/// Why an event or a deploy does not apply; nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("deployment is {state}, cannot {action}")]
    WrongState {
        state: DeploymentState,
        action: &'static str,
    },
    #[error("deployment of '{model}' version {version} replaced no earlier deployment: there is nothing to roll back to")]
    NothingToRollBackTo { model: String, version: u32 },
    #[error("version {version} of '{model}' is {stage}: {why}")]
    NotDeployable {
        model: String,
        version: u32,
        stage: Stage,
        why: &'static str,
    },
}

/// Whether a version in `stage` may be deployed to `target`.
pub fn deployable(
    model: &str,
    version: u32,
    stage: Stage,
    target: Target,
) -> Result<(), Rejection> {
    let why = match (stage, target) {
        (Stage::Archived, _) => "an archived version is not deployed; promote it again first",
        (Stage::Production, _) => return Ok(()),
        (Stage::Staging, Target::Platform) => {
            "the platform serves only the production version; request its promotion (an approver decides)"
        }
        (Stage::Staging, _) => return Ok(()),
        (Stage::None, _) => "promote it to staging or production first",
    };
    Err(Rejection::NotDeployable {
        model: model.to_string(),
        version,
        stage,
        why,
    })
}

/// What a new deployment is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDeployment {
    pub model: String,
    pub version: u32,
    pub target: Target,
    pub replicas: u32,
    pub resources: Option<crate::resources::ResourceRequest>,
    pub job_id: Option<JobId>,
    pub requested_by: Actor,
    pub traffic: Option<TrafficPolicy>,
}

impl Deployment {
    /// A pending deployment, its first history step recorded.
    pub fn new(new: NewDeployment, now: DateTime<Utc>) -> Deployment {
        Deployment {
            id: DeploymentId::new(),
            model: new.model,
            version: new.version,
            target: new.target,
            replicas: new.replicas,
            resources: new.resources,
            state: DeploymentState::Pending,
            job_id: new.job_id,
            history: vec![Step {
                from: None,
                to: DeploymentState::Pending,
                at: now,
                by: Some(new.requested_by.clone()),
                reason: None,
            }],
            requested_by: new.requested_by,
            created_at: now,
            updated_at: now,
            previous: None,
            outputs: Vec::new(),
            note: None,
            error: None,
            traffic: new.traffic.filter(|t| !t.is_empty()),
            rollout: None,
            revision: 0,
        }
    }
}

/// Applies `event` to `d` at time `now`. On `Err` the deployment is unchanged.
pub fn on_event(
    d: &mut Deployment,
    event: Event,
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, Rejection> {
    use DeploymentState::{Deploying, Failed, Live, Pending, RolledBack, Superseded};
    let mut effects = Vec::new();
    match event {
        Event::Started => {
            require(d, &[Pending], "start")?;
            step(d, Deploying, now, None, None);
        }
        Event::Succeeded {
            outputs,
            note,
            live,
        } => {
            require(d, &[Pending, Deploying], "go live")?;
            d.outputs = outputs;
            d.note = note;
            // Redeploying the live deployment's own version still records
            // a new live deployment; rolling back from it returns to the
            // one before.
            let live = live.filter(|p| p.id != d.id);
            if let Some(old) = live {
                d.previous = Some(old);
                effects.push(Effect::Supersede(old.id));
            }
            if let Some(plan) = d.traffic.as_ref().and_then(|t| t.canary.as_ref()) {
                d.rollout = Some(Rollout::start(plan, d.version, live, now));
            }
            if d.target == Target::Platform {
                effects.push(Effect::Serve { version: d.version });
            }
            step(d, Live, now, None, None);
        }
        Event::Failed { error } => {
            require(d, &[Pending, Deploying], "fail")?;
            d.error = Some(error.clone());
            step(d, Failed, now, None, Some(error));
            effects.push(Effect::Finished(Failed));
        }
        Event::Superseded { by } => {
            require(d, &[Live], "be superseded")?;
            step(
                d,
                Superseded,
                now,
                None,
                Some(format!("deployment {by} went live")),
            );
            effects.push(Effect::Finished(Superseded));
        }
        Event::RollBack { by, reason } => {
            require(d, &[Live], "be rolled back")?;
            let Some(previous) = d.previous else {
                return Err(Rejection::NothingToRollBackTo {
                    model: d.model.clone(),
                    version: d.version,
                });
            };
            effects.push(Effect::Restore(previous));
            if d.target == Target::Platform {
                effects.push(Effect::RestoreProduction {
                    version: previous.version,
                });
                effects.push(Effect::Serve {
                    version: previous.version,
                });
            }
            if let Some(r) = d.rollout.as_mut().filter(|r| r.state.running()) {
                r.state = RolloutState::RolledBack;
            }
            step(d, RolledBack, now, Some(by), reason);
            effects.push(Effect::Finished(RolledBack));
        }
        Event::Restore { by, from, reason } => {
            require(d, &[Superseded], "be restored")?;
            let reason = reason
                .map(|r| format!("rolled back from deployment {from}: {r}"))
                .or_else(|| Some(format!("rolled back from deployment {from}")));
            step(d, Live, now, Some(by), reason);
        }
    }
    Ok(effects)
}

fn step(
    d: &mut Deployment,
    to: DeploymentState,
    now: DateTime<Utc>,
    by: Option<Actor>,
    reason: Option<String>,
) {
    d.history.push(Step {
        from: Some(d.state),
        to,
        at: now,
        by,
        reason,
    });
    d.state = to;
    d.updated_at = now;
}

fn require(
    d: &Deployment,
    allowed: &[DeploymentState],
    action: &'static str,
) -> Result<(), Rejection> {
    if allowed.contains(&d.state) {
        Ok(())
    } else {
        Err(Rejection::WrongState {
            state: d.state,
            action,
        })
    }
}

#[cfg(test)]
#[path = "deployment_tests.rs"]
mod tests;
