//! The AutoML driver: each scheduler pass reconciles a running experiment's
//! finished trial jobs onto its trials, asks [`plan`] what comes next and
//! does it, until the plan says to wait; a finalizing experiment gets its
//! train job, then its final state. Every decision is in [`plan`]; this
//! file only reads the store, writes it and publishes.

pub mod plan;

use crate::dispatch::Scheduler;
use crate::lifecycle::{self, Applied};
use crate::spec::ExperimentSpec;
use chrono::{DateTime, Utc};
use plan::{Action, Finalize};
use std::sync::Arc;
use tracing::info;
use tracseq_core::lifecycle::experiment::{Effect as ExperimentEffect, Event as ExperimentEvent};
use tracseq_core::ports::JobFilter;
use tracseq_core::protocol::JobSpec;
use tracseq_core::types::{Experiment, Job, JobKind, NewJob, Trial, TrialState};
use tracseq_core::{Error, Result};

impl Scheduler {
    /// Reconciles finished trial jobs, then starts as many trials as the
    /// plan allows. The new trials' wake-ups go out together, one confirm
    /// round trip for the pass, also when planning stopped on an error.
    pub(crate) async fn advance(&self, exp: Experiment, now: DateTime<Utc>) -> Result<()> {
        let mut created = Vec::new();
        let planned = self.start_trials(exp, now, &mut created).await;
        let published = self.publish_all(&created).await;
        planned.and(published)
    }

    async fn start_trials(
        &self,
        exp: Experiment,
        now: DateTime<Utc>,
        created: &mut Vec<Job>,
    ) -> Result<()> {
        let spec = ExperimentSpec::from_value(&exp.spec)?;
        let mut trials = self.reconcile_trials(&exp, &spec, now).await?;
        let space = spec.space()?;
        let sampler = spec.sampler.build();
        loop {
            let event = match plan::plan(&spec, &exp, &trials, &space, sampler.as_ref(), now)? {
                Action::Wait => return Ok(()),
                Action::Unschedulable { reason } => ExperimentEvent::Unschedulable { reason },
                Action::TrialsDone { best, total } => ExperimentEvent::TrialsDone { best, total },
                Action::Start { number, payload } => {
                    let params = payload.params.clone();
                    let mut job = new_job(&exp, &spec, JobSpec::Trial(payload), now)?;
                    let created_trial = self
                        .platform
                        .state
                        .create_trial(exp.id, params, Some(job.clone()), now)
                        .await;
                    let trial = match created_trial {
                        // Cancelled (or finished) since this tick read it:
                        // the store refused the trial, so nothing was queued.
                        Err(Error::Conflict(why)) => {
                            info!(experiment_id = %exp.id, %why, "trial not started");
                            return Ok(());
                        }
                        other => other?,
                    };
                    debug_assert_eq!(trial.number, number, "trial numbers are dense");
                    info!(experiment_id = %exp.id, trial = trial.number, job_id = %job.id, "trial queued");
                    // The message's copy must equal the stored job exactly (a
                    // worker claims from it), and the store numbered it.
                    job.trial_number = Some(trial.number);
                    created.push(job);
                    // Read back through the cache (one query for what changed)
                    // rather than pushing onto this shared copy, which would
                    // copy it whole; dropped first so the cache updates its
                    // copy in place.
                    drop(std::mem::take(&mut trials));
                    trials = self.platform.trials(exp.id).await?;
                    continue;
                }
            };
            return match lifecycle::apply(&self.platform, &exp, event, now).await? {
                Applied::Stored(exp, effects)
                    if effects.contains(&ExperimentEffect::QueueTraining) =>
                {
                    self.finalize(*exp, now).await
                }
                _ => Ok(()),
            };
        }
    }

    /// Copies the outcome of every finished trial job onto its trial (idempotent).
    async fn reconcile_trials(
        &self,
        exp: &Experiment,
        spec: &ExperimentSpec,
        now: DateTime<Utc>,
    ) -> Result<Arc<Vec<Trial>>> {
        let trials = self.platform.trials(exp.id).await?;
        let mut changed = false;
        for t in trials.iter().filter(|t| t.state == TrialState::Running) {
            let Some(job_id) = t.job_id else { continue };
            let job = self.platform.state.get_job(job_id).await?;
            let Some(outcome) = plan::job_outcome(spec, &job) else {
                continue;
            };
            self.platform
                .state
                .finish_trial(exp.id, t.number, outcome, now)
                .await?;
            changed = true;
        }
        if changed {
            // Let go of this copy first, so the cache refreshes its own in place.
            drop(trials);
            self.platform.trials(exp.id).await
        } else {
            Ok(trials)
        }
    }

    /// Queues the final train job if there is none, and completes the
    /// experiment once it is done.
    pub(crate) async fn finalize(&self, exp: Experiment, now: DateTime<Utc>) -> Result<()> {
        let spec = ExperimentSpec::from_value(&exp.spec)?;
        let jobs = self
            .platform
            .state
            .list_jobs(&JobFilter {
                experiment_id: Some(exp.id),
                ..Default::default()
            })
            .await?;
        let train = jobs.iter().find(|j| j.kind == JobKind::Train);
        let trials = match train {
            Some(_) => Arc::default(),
            None => self.platform.trials(exp.id).await?,
        };
        match plan::finalize(&spec, &exp, train, &trials)? {
            Finalize::Wait => Ok(()),
            Finalize::QueueTraining(payload) => {
                let best_trial = payload.best_trial;
                let job = new_job(&exp, &spec, JobSpec::Train(*payload), now)?;
                self.platform.state.insert_job(&job).await?;
                self.publish(&job).await?;
                info!(experiment_id = %exp.id, job_id = %job.id, best_trial, "final train job queued");
                Ok(())
            }
            Finalize::Event(event) => {
                lifecycle::apply(&self.platform, &exp, event, now).await?;
                Ok(())
            }
        }
    }
}

/// A job of `exp` with the experiment's resources, priority, attempts and
/// timeout.
fn new_job(
    exp: &Experiment,
    spec: &ExperimentSpec,
    job: JobSpec,
    now: DateTime<Utc>,
) -> Result<Job> {
    NewJob {
        spec: job,
        experiment_id: Some(exp.id),
        resource_class: spec.resources.resource_class().into(),
        resources: spec.resources.clone(),
        priority: exp.priority,
        max_attempts: spec.max_attempts,
        timeout_secs: spec.trial_timeout_secs,
    }
    .into_job(now, None)
}
