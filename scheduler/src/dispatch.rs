//! The scheduler loop: keeps every AutoML experiment's trials topped up,
//! turns finished jobs into trial outcomes, runs the final train job, and
//! sweeps expired leases, deadlines and due retries. The loop itself is thin:
//! wait, read the store, call pure code, write, publish.

use crate::history::{history, no_improvement_stop, pending_between, sampling_bound, time_is_up};
use crate::lifecycle::{self, Applied};
use crate::objectives;
use crate::service;
use crate::spec::ExperimentSpec;
use crate::summary::best_trial;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use tracseq_core::fleet::{WorkerRecord, WorkerStatus};
use tracseq_core::lifecycle::experiment::{Effect as ExperimentEffect, Event as ExperimentEvent};
use tracseq_core::lifecycle::{Effect, Event};
use tracseq_core::placement::{self, Fleet};
use tracseq_core::ports::{transition, JobFilter, TransitionOutcome};
use tracseq_core::protocol::{JobSpec, TrainPayload, TrainResult, TrialPayload, TrialResult};
use tracseq_core::types::{
    DispatchMessage, Experiment, ExperimentKind, ExperimentState, Job, JobKind, JobState, NewJob,
    Trial, TrialOutcome, TrialState,
};
use tracseq_core::{JobId, Platform, Result};

pub struct Scheduler {
    platform: Platform,
    tick: Duration,
    republish_after: Duration,
    /// When this process last published each queued job's wake-up.
    published: Mutex<HashMap<JobId, Instant>>,
    unschedulable_after: Duration,
    /// Queued jobs no live worker could hold, and since when.
    unplaceable: Mutex<HashMap<JobId, Instant>>,
    /// Poked by workers and the api when something changed, so the loop
    /// reacts at once instead of at the next tick.
    wake: Arc<Notify>,
}

impl Scheduler {
    pub fn new(platform: Platform, tick: Duration, wake: Arc<Notify>) -> Self {
        Scheduler {
            platform,
            tick,
            republish_after: Duration::from_secs(30),
            published: Mutex::new(HashMap::new()),
            unschedulable_after: Duration::from_secs(30),
            unplaceable: Mutex::new(HashMap::new()),
            wake,
        }
    }

    /// How long a job may stay queued after its last wake-up before it is
    /// published again.
    pub fn with_republish_after(mut self, after: Duration) -> Self {
        self.republish_after = after;
        self
    }

    /// How long a queued job must stay beyond every live worker before it
    /// is marked unschedulable.
    pub fn with_unschedulable_after(mut self, after: Duration) -> Self {
        self.unschedulable_after = after;
        self
    }

    /// Runs until cancelled. Starts by re-publishing every queued job: the
    /// store is the truth, queue messages may have been lost with a process.
    pub async fn run(&self, cancel: CancellationToken) -> Result<()> {
        self.republish_queued().await?;
        loop {
            if let Err(e) = self.tick(Utc::now()).await {
                warn!(error = %e, "scheduler tick failed; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.tick) => {}
            }
        }
    }

    pub async fn republish_queued(&self) -> Result<()> {
        let queued = self.queued_jobs().await?;
        self.publish_all(&queued).await?;
        if !queued.is_empty() {
            info!(count = queued.len(), "re-published queued jobs");
        }
        Ok(())
    }

    async fn queued_jobs(&self) -> Result<Vec<Job>> {
        let filter = JobFilter {
            states: vec![JobState::Queued],
            ..Default::default()
        };
        self.platform.state.list_jobs(&filter).await
    }

    async fn publish(&self, job: &Job) -> Result<()> {
        self.platform
            .queue
            .publish(&job.resource_class, &DispatchMessage::for_job(job))
            .await?;
        self.lock_published().insert(job.id, Instant::now());
        Ok(())
    }

    /// Publishes jobs' wake-ups in one batch per resource class.
    async fn publish_all(&self, jobs: &[Job]) -> Result<()> {
        let mut by_class: BTreeMap<&str, Vec<DispatchMessage>> = BTreeMap::new();
        for job in jobs {
            by_class
                .entry(job.resource_class.as_str())
                .or_default()
                .push(DispatchMessage::for_job(job));
        }
        for (class, msgs) in by_class {
            self.platform.queue.publish_batch(class, &msgs).await?;
            let now = Instant::now();
            let mut published = self.lock_published();
            for m in &msgs {
                published.insert(m.job_id, now);
            }
        }
        Ok(())
    }

    fn lock_published(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Instant>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-publishes jobs that stayed queued long after their last wake-up:
    /// the store is the truth and a message may have been lost (a publish
    /// that failed after the job was stored, a broker that lost it).
    async fn republish_stale(&self, queued: &[Job]) -> Result<()> {
        let now = Instant::now();
        let mut stale = Vec::new();
        {
            let mut published = self.lock_published();
            let live: HashSet<JobId> = queued.iter().map(|j| j.id).collect();
            published.retain(|id, _| live.contains(id));
            for job in queued {
                // A job someone else published (the api, another scheduler)
                // gets a full interval before this one steps in.
                let last = *published.entry(job.id).or_insert(now);
                if now.duration_since(last) >= self.republish_after {
                    stale.push(job.clone());
                }
            }
        }
        for job in &stale {
            warn!(job_id = %job.id, "job still queued; publishing its wake-up again");
        }
        self.publish_all(&stale).await
    }

    /// Marks queued jobs that no live worker could ever hold, once that has
    /// lasted `unschedulable_after`. With no live worker at all nothing is
    /// judged: the fleet may be starting.
    async fn mark_unschedulable(&self, queued: &[Job], now: DateTime<Utc>) -> Result<()> {
        if queued.is_empty() {
            self.lock_unplaceable().clear();
            return Ok(());
        }
        let workers: Vec<WorkerRecord> = self
            .platform
            .state
            .list_workers()
            .await?
            .into_iter()
            .filter(|w| w.status(now) == WorkerStatus::Alive)
            .collect();
        if workers.is_empty() {
            return Ok(());
        }
        let mut fleets: BTreeMap<&str, Fleet> = BTreeMap::new();
        let mut verdicts = Vec::new();
        for job in queued {
            let class = job.resource_class.as_str();
            let fleet = fleets
                .entry(class)
                .or_insert_with(|| fleet_for(&workers, class));
            let verdict = if fleet.is_empty() {
                Err(format!(
                    "no live worker takes {class} jobs ({} live worker{} on other queues)",
                    workers.len(),
                    if workers.len() == 1 { "" } else { "s" }
                ))
            } else {
                placement::schedulable(fleet, &job.resources)
            };
            verdicts.push((job.id, verdict));
        }
        let clock = Instant::now();
        let mut due = Vec::new();
        {
            let mut seen = self.lock_unplaceable();
            let live: HashSet<JobId> = queued.iter().map(|j| j.id).collect();
            seen.retain(|id, _| live.contains(id));
            for (id, verdict) in verdicts {
                match verdict {
                    Ok(()) => {
                        seen.remove(&id);
                    }
                    Err(reason) => {
                        let since = *seen.entry(id).or_insert(clock);
                        if clock.duration_since(since) >= self.unschedulable_after {
                            due.push((id, reason));
                        }
                    }
                }
            }
        }
        for (id, reason) in due {
            let event = Event::Unschedulable {
                reason: reason.clone(),
            };
            let out = transition(
                self.platform.state.as_ref(),
                id,
                event,
                now,
                &self.platform.policy,
            )
            .await?;
            if let TransitionOutcome::Applied { .. } = out {
                warn!(job_id = %id, %reason, "job is unschedulable");
                self.lock_unplaceable().remove(&id);
            }
        }
        Ok(())
    }

    fn lock_unplaceable(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Instant>> {
        self.unplaceable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass; `now` is passed in so tests can drive time.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<()> {
        self.sweep_due_jobs(now).await?;
        let queued = self.queued_jobs().await?;
        self.republish_stale(&queued).await?;
        self.mark_unschedulable(&queued, now).await?;
        for exp in self
            .platform
            .state
            .list_experiments(Some(ExperimentState::Running))
            .await?
        {
            if exp.kind == ExperimentKind::Automl {
                self.advance(exp, now).await?;
            }
        }
        for exp in self
            .platform
            .state
            .list_experiments(Some(ExperimentState::Finalizing))
            .await?
        {
            self.finalize(exp, now).await?;
        }
        for exp in self
            .platform
            .state
            .list_experiments(Some(ExperimentState::Cancelled))
            .await?
        {
            // Finishes a cancel that was interrupted between its two writes.
            service::cancel_jobs(&self.platform, exp.id, now).await?;
        }
        Ok(())
    }

    async fn sweep_due_jobs(&self, now: DateTime<Utc>) -> Result<()> {
        for job in self.platform.state.due_jobs(now, 500).await? {
            let event = match job.state {
                JobState::Failed => Event::RetryDue,
                JobState::Running if job.deadline_at.is_some_and(|d| d <= now) => Event::TimeOut,
                _ => Event::ExpireLease,
            };
            let out = transition(
                self.platform.state.as_ref(),
                job.id,
                event.clone(),
                now,
                &self.platform.policy,
            )
            .await?;
            if let TransitionOutcome::Applied { job, effects } = out {
                debug!(job_id = %job.id, ?event, state = %job.state, "swept job");
                self.apply(&job, &effects).await?;
            }
        }
        Ok(())
    }

    async fn apply(&self, job: &Job, effects: &[Effect]) -> Result<()> {
        for e in effects {
            if *e == Effect::Publish {
                self.publish(job).await?;
            }
        }
        Ok(())
    }

    /// Reconciles finished trial jobs, then starts as many trials as the
    /// budget, the parallelism and the deterministic-history rule allow.
    /// The new trials' wake-ups go out together, one confirm round trip
    /// for the tick, also when planning stopped on an error.
    async fn advance(&self, exp: Experiment, now: DateTime<Utc>) -> Result<()> {
        let mut created = Vec::new();
        let planned = self.plan_trials(exp, now, &mut created).await;
        let published = self.publish_all(&created).await;
        planned.and(published)
    }

    async fn plan_trials(
        &self,
        exp: Experiment,
        now: DateTime<Utc>,
        created_jobs: &mut Vec<Job>,
    ) -> Result<()> {
        let spec = ExperimentSpec::from_value(&exp.spec)?;
        let mut trials = self.reconcile_trials(&exp, now).await?;
        // Every trial asks for the same resources: when the fleet cannot
        // hold one, it cannot hold the next either. Stop with the reason
        // instead of queueing the whole budget to the same end.
        if let Some(reason) = trials.iter().find_map(unschedulable_reason) {
            lifecycle::apply(
                &self.platform,
                &exp,
                ExperimentEvent::Unschedulable { reason },
                now,
            )
            .await?;
            return Ok(());
        }
        let space = spec.space()?;
        let sampler = spec.sampler.build();
        loop {
            let running = trials
                .iter()
                .filter(|t| t.state == TrialState::Running)
                .count() as u32;
            let created = trials.len() as u64;
            // A spent trial budget, the time budget and a stalled best value
            // all end the experiment the same way: finalize once nothing runs.
            let budget_left = spec.budget.trials.is_none_or(|b| created < b)
                && !time_is_up(&spec, &exp, now)
                && no_improvement_stop(&spec, &trials).is_none();
            if !budget_left {
                if running == 0 {
                    return self.begin_finalize(exp, &spec, &trials, now).await;
                }
                return Ok(());
            }
            if running >= spec.parallelism {
                return Ok(());
            }
            let number = created;
            let bound = sampling_bound(&spec, sampler.as_ref(), number);
            if trials
                .iter()
                .any(|t| t.number < bound && t.state == TrialState::Running)
            {
                // Wait for the trials this one must learn from.
                return Ok(());
            }
            // Trials bound..number run in parallel with this one: the
            // sampler knows their params (constant liar, a generation's
            // positions) but never their results, whatever the timing.
            let params = match objectives::suggest(&spec, &space, &trials, Some(bound), number)? {
                Some(params) => params,
                None => sampler.sample_with_pending(
                    &space,
                    &history(&trials, Some(bound)),
                    &pending_between(&trials, bound, number),
                    spec.direction,
                    number,
                ),
            };
            let payload = TrialPayload {
                experiment_id: exp.id,
                dataset_id: spec.dataset_id.ok_or_else(|| missing("dataset_id"))?,
                target: spec.target.clone().ok_or_else(|| missing("target"))?,
                params: params.clone(),
                folds: spec.cv_folds,
                seed: spec.seed,
                metric: spec.metric.clone().ok_or_else(|| missing("metric"))?,
            };
            let job = self.new_job(&exp, &spec, JobSpec::Trial(payload), now)?;
            let trial = self
                .platform
                .state
                .create_trial(exp.id, params, Some(job.clone()), now)
                .await?;
            info!(experiment_id = %exp.id, trial = trial.number, job_id = %job.id, "trial queued");
            // The message's copy must equal the stored job exactly (a worker
            // claims from it), and the store numbered it.
            let mut job = job;
            job.trial_number = Some(trial.number);
            created_jobs.push(job);
            // Read back through the cache (one query for what changed)
            // rather than pushing onto this shared copy, which would copy
            // it whole; dropped first so the cache updates its copy in place.
            drop(std::mem::take(&mut trials));
            trials = self.platform.trials(exp.id).await?;
            debug_assert!(trials.iter().any(|t| t.id == trial.id));
        }
    }

    fn new_job(
        &self,
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

    /// Copies the outcome of every finished trial job onto its trial (idempotent).
    async fn reconcile_trials(
        &self,
        exp: &Experiment,
        now: DateTime<Utc>,
    ) -> Result<Arc<Vec<Trial>>> {
        let spec = ExperimentSpec::from_value(&exp.spec)?;
        let trials = self.platform.trials(exp.id).await?;
        let mut changed = false;
        for t in trials.iter().filter(|t| t.state == TrialState::Running) {
            let Some(job_id) = t.job_id else { continue };
            let job = self.platform.state.get_job(job_id).await?;
            let outcome = match job.state {
                JobState::Succeeded | JobState::Pruned => {
                    match job
                        .result
                        .clone()
                        .map(serde_json::from_value::<TrialResult>)
                    {
                        Some(Ok(r)) => trial_outcome(&spec, job.state, r),
                        _ => TrialOutcome::new(
                            TrialState::Failed,
                            None,
                            Some(json!({"error": "job result unreadable"})),
                        ),
                    }
                }
                // The job's final state goes with the error, so the
                // experiment can tell an unschedulable trial from a failed one.
                JobState::Dead | JobState::Cancelled | JobState::Unschedulable => {
                    TrialOutcome::new(
                        TrialState::Failed,
                        None,
                        Some(json!({"error": job.last_error, "job_state": job.state})),
                    )
                }
                _ => continue,
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

    async fn begin_finalize(
        &self,
        exp: Experiment,
        spec: &ExperimentSpec,
        trials: &[Trial],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let event = ExperimentEvent::TrialsDone {
            best: best_trial(spec, trials).map(|b| b.number),
            total: trials.len() as u64,
        };
        match lifecycle::apply(&self.platform, &exp, event, now).await? {
            Applied::Stored(exp, effects) if effects.contains(&ExperimentEffect::QueueTraining) => {
                self.finalize(exp, now).await
            }
            _ => Ok(()),
        }
    }

    /// Ensures the final train job exists, and completes the experiment when it is done.
    async fn finalize(&self, exp: Experiment, now: DateTime<Utc>) -> Result<()> {
        let spec = ExperimentSpec::from_value(&exp.spec)?;
        let jobs = self
            .platform
            .state
            .list_jobs(&JobFilter {
                experiment_id: Some(exp.id),
                ..Default::default()
            })
            .await?;
        let train = jobs.into_iter().find(|j| j.kind == JobKind::Train);
        let Some(train) = train else {
            let trials = self.platform.trials(exp.id).await?;
            let Some(best) = best_trial(&spec, &trials) else {
                return Ok(());
            };
            let cv_metrics = trials
                .iter()
                .find(|t| t.number == best.number)
                .and_then(|t| t.detail.clone())
                .and_then(|d| serde_json::from_value::<TrialResult>(d).ok())
                .map(|r| r.metrics)
                .unwrap_or_default();
            let payload = TrainPayload {
                experiment_id: exp.id,
                dataset_id: spec.dataset_id.ok_or_else(|| missing("dataset_id"))?,
                target: spec.target.clone().ok_or_else(|| missing("target"))?,
                params: best.params,
                folds: spec.cv_folds,
                seed: spec.seed,
                metric: spec.metric.clone().ok_or_else(|| missing("metric"))?,
                model_name: spec
                    .model_name
                    .clone()
                    .ok_or_else(|| missing("model_name"))?,
                cv_metrics,
                best_trial: best.number,
            };
            let job = self.new_job(&exp, &spec, JobSpec::Train(payload), now)?;
            self.platform.state.insert_job(&job).await?;
            self.publish(&job).await?;
            info!(experiment_id = %exp.id, job_id = %job.id, best_trial = best.number, "final train job queued");
            return Ok(());
        };
        let event = match train.state {
            JobState::Succeeded => {
                let result: TrainResult =
                    serde_json::from_value(train.result.clone().unwrap_or_default())?;
                ExperimentEvent::Trained {
                    model_name: result.model_name,
                    version: result.version,
                }
            }
            JobState::Dead | JobState::Cancelled | JobState::Pruned | JobState::Unschedulable => {
                ExperimentEvent::TrainingFailed {
                    error: train.last_error.unwrap_or_default(),
                }
            }
            _ => return Ok(()),
        };
        lifecycle::apply(&self.platform, &exp, event, now).await?;
        Ok(())
    }
}

/// A finished trial job's result as its trial's outcome. In a
/// multi-objective experiment a complete trial needs every objective's value;
/// a result without one (a worker that does not measure it) fails the trial
/// with the reason, since the sampler and the front cannot place it.
fn trial_outcome(spec: &ExperimentSpec, job_state: JobState, r: TrialResult) -> TrialOutcome {
    let state = if job_state == JobState::Pruned {
        TrialState::Pruned
    } else {
        TrialState::Complete
    };
    let values = match (&spec.objectives, state) {
        (Some(objectives), TrialState::Complete) => {
            match objectives::automl_values(objectives, &r) {
                Ok(values) => Some(values),
                Err(reason) => {
                    let mut detail = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
                    if let Some(obj) = detail.as_object_mut() {
                        obj.insert("error".into(), json!(reason));
                    }
                    return TrialOutcome::new(TrialState::Failed, None, Some(detail));
                }
            }
        }
        _ => None,
    };
    TrialOutcome::new(state, Some(r.value), serde_json::to_value(&r).ok()).with_values(values)
}

fn missing(field: &str) -> tracseq_core::Error {
    tracseq_core::Error::Internal(format!("AutoML experiment spec lacks {field}"))
}

/// A trial that failed because its job was unschedulable, and why.
fn unschedulable_reason(t: &Trial) -> Option<String> {
    if t.state != TrialState::Failed {
        return None;
    }
    let detail = t.detail.as_ref()?;
    let job_state = JobState::deserialize(detail.get("job_state")?).ok()?;
    if job_state != JobState::Unschedulable {
        return None;
    }
    let error = detail.get("error").and_then(|e| e.as_str()).unwrap_or("");
    Some(format!("trial {} is {error}", t.number))
}

/// The live workers that consume `class`, as placement sees them.
fn fleet_for(workers: &[WorkerRecord], class: &str) -> Fleet {
    let mut fleet = Fleet::new();
    for w in workers
        .iter()
        .filter(|w| w.resource_classes.iter().any(|c| c == class))
    {
        // A report placement cannot reason about is left out, not fatal.
        if let Err(e) = fleet.set_worker(w.id.clone(), w.capacity.clone()) {
            warn!(worker = %w.id, error = %e, "ignoring an unreadable worker capacity");
        }
    }
    fleet
}
