//! `StateStore`: the source of truth for jobs, experiments, trials, models and data sets.

use crate::fleet::WorkerRecord;
use crate::ids::{DatasetId, ExperimentId, JobId};
use crate::lifecycle::{on_event, Effect, Event, Rejection, RetryPolicy};
use crate::paging::Page;
use crate::types::{
    DatasetRecord, Experiment, ExperimentState, Job, JobState, ModelVersion, NewModelVersion,
    Trial, TrialOutcome,
};
use crate::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub experiment_id: Option<ExperimentId>,
    pub states: Vec<JobState>,
    pub limit: Option<u32>,
}

#[async_trait]
pub trait StateStore: Send + Sync {
    // --- jobs -----------------------------------------------------------
    async fn insert_job(&self, job: &Job) -> Result<()>;
    /// Inserts several jobs at once, all or none: the scheduler's trials of
    /// one tick and bulk submissions pay for one commit, not one each.
    async fn insert_jobs(&self, jobs: &[Job]) -> Result<()> {
        for job in jobs {
            self.insert_job(job).await?;
        }
        Ok(())
    }
    async fn get_job(&self, id: JobId) -> Result<Job>;
    /// Compare-and-set: writes `job` only if the stored version still equals
    /// `job.version`, storing it as `job.version + 1`. `Ok(false)` = lost the race.
    async fn update_job(&self, job: &Job) -> Result<bool>;
    /// Jobs matching the filter, oldest first.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;
    /// Jobs needing the scheduler's attention at `now`: held with an expired
    /// lease, running past their deadline, or failed with a due retry.
    async fn due_jobs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>>;

    // --- experiments ----------------------------------------------------
    async fn insert_experiment(&self, exp: &Experiment) -> Result<()>;
    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment>;
    /// Newest first, optionally only those in one state.
    async fn list_experiments(&self, state: Option<ExperimentState>) -> Result<Vec<Experiment>>;
    /// One page of all experiments, newest first; the cursor is an id.
    async fn page_experiments(&self, page: &Page) -> Result<Vec<Experiment>> {
        let all = self.list_experiments(None).await?;
        Ok(page.slice(all, |e| e.id.to_string(), true))
    }
    /// Writes `exp` only if the stored state is still `expected`, so a cancel
    /// and the scheduler's own progress never overwrite each other.
    async fn update_experiment(&self, exp: &Experiment, expected: ExperimentState) -> Result<bool>;

    // --- trials ---------------------------------------------------------
    /// Atomically creates the experiment's next trial (number = trials so far)
    /// and, when given, its job (whose `trial_number` is set to match).
    /// `Conflict` when the experiment is finished (checked in the same
    /// transaction, so no trial starts after a cancel), `NotFound` when absent.
    async fn create_trial(
        &self,
        experiment: ExperimentId,
        params: Map<String, Value>,
        job: Option<Job>,
        now: DateTime<Utc>,
    ) -> Result<Trial>;
    async fn get_trial(&self, experiment: ExperimentId, number: u64) -> Result<Trial>;
    /// All trials of an experiment by number.
    async fn list_trials(&self, experiment: ExperimentId) -> Result<Vec<Trial>>;
    /// The trials numbered `from` or above and those numbered in `also`
    /// (whatever their state now), by number: what a reader holding the
    /// experiment's trials as of an earlier read must fetch again, `from`
    /// being how many it holds and `also` those that were still running.
    /// Finished trials never change, so the rest of its copy is current
    /// (see [`crate::trial_cache::TrialCache`]).
    async fn list_trials_since(
        &self,
        experiment: ExperimentId,
        from: u64,
        also: &[u64],
    ) -> Result<Vec<Trial>> {
        let mut trials = self.list_trials(experiment).await?;
        trials.retain(|t| t.number >= from || also.contains(&t.number));
        Ok(trials)
    }
    /// Records an intermediate value of a running trial (the last write per step wins).
    /// A finished trial answers `Conflict`.
    async fn record_intermediate(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<Trial>;
    /// Moves a running trial to its final state. `Ok(false)` if it had
    /// already finished: a final outcome is recorded exactly once.
    async fn finish_trial(
        &self,
        experiment: ExperimentId,
        number: u64,
        outcome: TrialOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    // --- model registry ---------------------------------------------------
    /// Registers `new.version` of a model (`Conflict` if that number is taken).
    /// If `new.job_id` already registered a version, that version is returned
    /// unchanged, so a retried train job never registers twice.
    async fn register_model_version(
        &self,
        new: NewModelVersion,
        now: DateTime<Utc>,
    ) -> Result<ModelVersion>;
    /// The next version number a model would get (for choosing an artifact path).
    async fn next_model_version(&self, name: &str) -> Result<u32>;
    async fn find_model_version_by_job(&self, job: JobId) -> Result<Option<ModelVersion>>;
    /// `version = None` means the latest version.
    async fn get_model_version(&self, name: &str, version: Option<u32>) -> Result<ModelVersion>;
    /// All versions (of one model, or of all), by name then version.
    async fn list_model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>>;
    /// Every version of one page of models, by name then version; the page
    /// counts models (names), and its cursor is a name.
    async fn page_model_versions(&self, page: &Page) -> Result<Vec<ModelVersion>> {
        let all = self.list_model_versions(None).await?;
        let mut names: Vec<String> = all.iter().map(|v| v.name.clone()).collect();
        names.dedup();
        let names = page.slice(names, String::clone, false);
        Ok(all
            .into_iter()
            .filter(|v| names.contains(&v.name))
            .collect())
    }

    // --- data sets --------------------------------------------------------
    async fn insert_dataset(&self, ds: &DatasetRecord) -> Result<()>;
    async fn get_dataset(&self, id: DatasetId) -> Result<DatasetRecord>;
    /// Newest first.
    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>>;
    /// One page of data sets, newest first; the cursor is an id.
    async fn page_datasets(&self, page: &Page) -> Result<Vec<DatasetRecord>> {
        let all = self.list_datasets().await?;
        Ok(page.slice(all, |d| d.id.to_string(), true))
    }

    // --- worker fleet -------------------------------------------------------
    /// Creates or replaces a worker's row (every heartbeat writes it whole).
    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()>;
    /// Every worker ever recorded, by id; readers judge liveness with
    /// [`WorkerRecord::status`].
    async fn list_workers(&self) -> Result<Vec<WorkerRecord>>;
    /// One page of workers, by id; the cursor is an id.
    async fn page_workers(&self, page: &Page) -> Result<Vec<WorkerRecord>> {
        let all = self.list_workers().await?;
        Ok(page.slice(all, |w| w.id.0.clone(), false))
    }
}

#[derive(Debug, Clone)]
pub enum TransitionOutcome {
    /// Stored; the caller must carry out the effects.
    Applied { job: Job, effects: Vec<Effect> },
    /// Did not apply; the job as it is now.
    Rejected { job: Job, rejection: Rejection },
}

impl TransitionOutcome {
    pub fn job(&self) -> &Job {
        match self {
            TransitionOutcome::Applied { job, .. } | TransitionOutcome::Rejected { job, .. } => job,
        }
    }
}

/// Loads the job, runs the pure state machine and stores the result with a
/// compare-and-set, re-reading on a lost race. This is the only way job state
/// changes, in every process.
pub async fn transition(
    store: &dyn StateStore,
    id: JobId,
    event: Event,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Result<TransitionOutcome> {
    for _ in 0..32 {
        let before = store.get_job(id).await?;
        let mut job = before.clone();
        match on_event(&mut job, event.clone(), now, policy) {
            Err(rejection) => {
                return Ok(TransitionOutcome::Rejected {
                    job: before,
                    rejection,
                })
            }
            Ok(effects) => {
                if job == before {
                    return Ok(TransitionOutcome::Applied { job, effects });
                }
                if store.update_job(&job).await? {
                    job.version += 1;
                    return Ok(TransitionOutcome::Applied { job, effects });
                }
            }
        }
    }
    Err(Error::Conflict(format!(
        "job {id}: too many concurrent updates"
    )))
}

/// Like [`transition`], starting from the copy of the job the caller already
/// holds, which saves a read when that copy is current (a worker moving its
/// own job along). A stale copy simply loses the compare-and-set and the
/// event is applied to a fresh read, so the outcome is the same.
pub async fn transition_from(
    store: &dyn StateStore,
    held: &Job,
    event: Event,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Result<TransitionOutcome> {
    let mut job = held.clone();
    if let Ok(effects) = on_event(&mut job, event.clone(), now, policy) {
        // Only a real change is attempted from the copy; anything else
        // (a rejection, a no-op) is decided on the stored job.
        if job != *held && store.update_job(&job).await? {
            job.version += 1;
            return Ok(TransitionOutcome::Applied { job, effects });
        }
    }
    transition(store, held.id, event, now, policy).await
}
