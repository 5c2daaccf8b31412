//! In-memory `StateStore` for tests: the same semantics as SQL, behind one
//! mutex (which also guards the registry records of `crate::registry`).

use crate::error::{model_not_found, trial_not_found, version_taken};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use tracseq_core::fleet::WorkerRecord;
use tracseq_core::ids::{DatasetId, ExperimentId, JobId, WorkerId};
use tracseq_core::ports::{JobFilter, StateStore};
use tracseq_core::types::{
    DatasetRecord, Experiment, ExperimentState, Job, ModelVersion, NewModelVersion, Trial,
    TrialOutcome,
};
use tracseq_core::{Error, Result};

#[derive(Default)]
pub struct MemoryStateStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
pub(crate) struct Inner {
    jobs: HashMap<JobId, Job>,
    experiments: HashMap<ExperimentId, Experiment>,
    trials: BTreeMap<(ExperimentId, u64), Trial>,
    pub(crate) models: BTreeMap<(String, u32), ModelVersion>,
    datasets: BTreeMap<DatasetId, DatasetRecord>,
    workers: BTreeMap<WorkerId, WorkerRecord>,
    /// Stages, aliases, promotions and deployments (`crate::registry`).
    pub(crate) registry: crate::registry::MemoryRegistry,
    /// The prediction log by request id (`crate::predictions`).
    pub(crate) predictions:
        BTreeMap<tracseq_core::ids::RequestId, tracseq_core::predictions::PredictionRecord>,
    /// Their outcomes by request id.
    pub(crate) outcomes: BTreeMap<tracseq_core::ids::RequestId, tracseq_core::predictions::Outcome>,
    /// The shadows' copies of each answer, by the answer's request id.
    pub(crate) shadows: BTreeMap<tracseq_core::ids::RequestId, Vec<tracseq_core::ids::RequestId>>,
    /// Alerts by id and drift scores by model version (`crate::alerts`).
    pub(crate) alerts: BTreeMap<tracseq_core::ids::AlertId, tracseq_core::monitoring::Alert>,
    pub(crate) drift: BTreeMap<(String, u32), tracseq_core::monitoring::DriftScores>,
}

impl MemoryStateStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation below is complete before it can panic, so a poisoned
        // lock never guards a half-written record.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn insert_job(&self, job: &Job) -> Result<()> {
        let mut g = self.lock();
        if g.jobs.contains_key(&job.id) {
            return Err(Error::Conflict(format!("job {} already exists", job.id)));
        }
        g.jobs.insert(job.id, job.clone());
        Ok(())
    }

    async fn insert_jobs(&self, jobs: &[Job]) -> Result<()> {
        let mut g = self.lock();
        // All or none: check every id (against the store and the batch)
        // before inserting any.
        let mut seen = std::collections::HashSet::new();
        for job in jobs {
            if g.jobs.contains_key(&job.id) || !seen.insert(job.id) {
                return Err(Error::Conflict(format!("job {} already exists", job.id)));
            }
        }
        for job in jobs {
            g.jobs.insert(job.id, job.clone());
        }
        Ok(())
    }

    async fn get_job(&self, id: JobId) -> Result<Job> {
        self.lock()
            .jobs
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("job {id}")))
    }

    async fn update_job(&self, job: &Job) -> Result<bool> {
        let mut g = self.lock();
        let stored = g
            .jobs
            .get_mut(&job.id)
            .ok_or_else(|| Error::not_found(format!("job {}", job.id)))?;
        if stored.version != job.version {
            return Ok(false);
        }
        *stored = job.clone();
        stored.version += 1;
        Ok(true)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let g = self.lock();
        let mut jobs: Vec<Job> = g
            .jobs
            .values()
            .filter(|j| filter.experiment_id.is_none() || j.experiment_id == filter.experiment_id)
            .filter(|j| filter.states.is_empty() || filter.states.contains(&j.state))
            .cloned()
            .collect();
        jobs.sort_by_key(|j| (j.created_at, j.id));
        if let Some(limit) = filter.limit {
            jobs.truncate(limit as usize);
        }
        Ok(jobs)
    }

    async fn due_jobs(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Job>> {
        let g = self.lock();
        let mut jobs: Vec<Job> = g
            .jobs
            .values()
            .filter(|j| is_due(j, now))
            .cloned()
            .collect();
        jobs.sort_by_key(|j| (j.created_at, j.id));
        jobs.truncate(limit as usize);
        Ok(jobs)
    }

    async fn insert_experiment(&self, exp: &Experiment) -> Result<()> {
        let mut g = self.lock();
        if g.experiments.contains_key(&exp.id) {
            return Err(Error::Conflict(format!(
                "experiment {} already exists",
                exp.id
            )));
        }
        g.experiments.insert(exp.id, exp.clone());
        Ok(())
    }

    async fn get_experiment(&self, id: ExperimentId) -> Result<Experiment> {
        self.lock()
            .experiments
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("experiment {id}")))
    }

    async fn list_experiments(&self, state: Option<ExperimentState>) -> Result<Vec<Experiment>> {
        let g = self.lock();
        let mut out: Vec<Experiment> = g
            .experiments
            .values()
            .filter(|e| state.is_none_or(|s| e.state == s))
            .cloned()
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(out)
    }

    async fn update_experiment(&self, exp: &Experiment, expected: ExperimentState) -> Result<bool> {
        let mut g = self.lock();
        let stored = g
            .experiments
            .get_mut(&exp.id)
            .ok_or_else(|| Error::not_found(format!("experiment {}", exp.id)))?;
        if stored.state != expected {
            return Ok(false);
        }
        *stored = exp.clone();
        Ok(true)
    }

    async fn create_trial(
        &self,
        experiment: ExperimentId,
        params: Map<String, Value>,
        job: Option<Job>,
        now: DateTime<Utc>,
    ) -> Result<Trial> {
        let mut g = self.lock();
        let Some(exp) = g.experiments.get(&experiment) else {
            return Err(Error::not_found(format!("experiment {experiment}")));
        };
        exp.state.check_accepts_trials(experiment)?;
        let number = g
            .trials
            .range((experiment, 0)..=(experiment, u64::MAX))
            .count() as u64;
        let trial = Trial::new_running(experiment, number, params, job.as_ref().map(|j| j.id), now);
        if let Some(mut job) = job {
            if g.jobs.contains_key(&job.id) {
                return Err(Error::Conflict(format!("job {} already exists", job.id)));
            }
            job.trial_number = Some(number);
            g.jobs.insert(job.id, job);
        }
        g.trials.insert((experiment, number), trial.clone());
        Ok(trial)
    }

    async fn get_trial(&self, experiment: ExperimentId, number: u64) -> Result<Trial> {
        self.lock()
            .trials
            .get(&(experiment, number))
            .cloned()
            .ok_or_else(|| trial_not_found(experiment, number))
    }

    async fn list_trials(&self, experiment: ExperimentId) -> Result<Vec<Trial>> {
        let g = self.lock();
        Ok(g.trials
            .range((experiment, 0)..=(experiment, u64::MAX))
            .map(|(_, t)| t.clone())
            .collect())
    }

    async fn list_trials_since(
        &self,
        experiment: ExperimentId,
        from: u64,
        also: &[u64],
    ) -> Result<Vec<Trial>> {
        let g = self.lock();
        let get = |n: u64| g.trials.get(&(experiment, n)).cloned();
        let mut trials: Vec<Trial> = also
            .iter()
            .filter(|&&n| n < from)
            .filter_map(|&n| get(n))
            .collect();
        trials.sort_by_key(|t| t.number);
        trials.dedup_by_key(|t| t.number);
        trials.extend(
            g.trials
                .range((experiment, from)..=(experiment, u64::MAX))
                .map(|(_, t)| t.clone()),
        );
        Ok(trials)
    }

    async fn record_intermediate(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<Trial> {
        let mut g = self.lock();
        let t = g
            .trials
            .get_mut(&(experiment, number))
            .ok_or_else(|| trial_not_found(experiment, number))?;
        t.record_intermediate(step, value)?;
        Ok(t.clone())
    }

    async fn finish_trial(
        &self,
        experiment: ExperimentId,
        number: u64,
        outcome: TrialOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut g = self.lock();
        let t = g
            .trials
            .get_mut(&(experiment, number))
            .ok_or_else(|| trial_not_found(experiment, number))?;
        Ok(t.finish(&outcome, now))
    }

    async fn register_model_version(
        &self,
        new: NewModelVersion,
        now: DateTime<Utc>,
    ) -> Result<ModelVersion> {
        let mut g = self.lock();
        if let Some(job) = new.job_id {
            if let Some(v) = g.models.values().find(|v| v.job_id == Some(job)) {
                return Ok(v.clone());
            }
        }
        let key = (new.name.clone(), new.version);
        if g.models.contains_key(&key) {
            return Err(version_taken(&new.name, new.version));
        }
        let mut new = new;
        let tags = std::mem::take(&mut new.tags);
        let mv = new.into_version(now);
        g.models.insert(key, mv.clone());
        if !tags.is_empty() {
            g.registry
                .tags
                .insert((mv.name.clone(), Some(mv.version)), tags);
        }
        Ok(mv)
    }

    async fn next_model_version(&self, name: &str) -> Result<u32> {
        Ok(next_version(&self.lock().models, name))
    }

    async fn find_model_version_by_job(&self, job: JobId) -> Result<Option<ModelVersion>> {
        Ok(self
            .lock()
            .models
            .values()
            .find(|v| v.job_id == Some(job))
            .cloned())
    }

    async fn get_model_version(&self, name: &str, version: Option<u32>) -> Result<ModelVersion> {
        let g = self.lock();
        let found = match version {
            Some(v) => g.models.get(&(name.to_string(), v)).cloned(),
            None => g
                .models
                .values()
                .filter(|m| m.name == name)
                .max_by_key(|m| m.version)
                .cloned(),
        };
        found.ok_or_else(|| model_not_found(name, version))
    }

    async fn list_model_versions(&self, name: Option<&str>) -> Result<Vec<ModelVersion>> {
        let g = self.lock();
        Ok(g.models
            .values()
            .filter(|m| name.is_none_or(|n| m.name == n))
            .cloned()
            .collect())
    }

    async fn insert_dataset(&self, ds: &DatasetRecord) -> Result<()> {
        let mut g = self.lock();
        if g.datasets.contains_key(&ds.id) {
            return Err(Error::Conflict(format!("dataset {} already exists", ds.id)));
        }
        g.datasets.insert(ds.id, ds.clone());
        Ok(())
    }

    async fn get_dataset(&self, id: DatasetId) -> Result<DatasetRecord> {
        self.lock()
            .datasets
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("dataset {id}")))
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        let mut out: Vec<DatasetRecord> = self.lock().datasets.values().cloned().collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.id));
        Ok(out)
    }

    async fn upsert_worker(&self, worker: &WorkerRecord) -> Result<()> {
        self.lock()
            .workers
            .insert(worker.id.clone(), worker.clone());
        Ok(())
    }

    async fn list_workers(&self) -> Result<Vec<WorkerRecord>> {
        Ok(self.lock().workers.values().cloned().collect())
    }
}

fn next_version(models: &BTreeMap<(String, u32), ModelVersion>, name: &str) -> u32 {
    models
        .keys()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0)
        + 1
}

/// The due-ness rule shared by every backend's `due_jobs` (SQL backends
/// express the same predicate in their WHERE clause).
pub fn is_due(j: &Job, now: DateTime<Utc>) -> bool {
    use tracseq_core::types::JobState::*;
    match j.state {
        Leased | Running => {
            j.lease_expires_at.is_some_and(|t| t <= now) || j.deadline_at.is_some_and(|t| t <= now)
        }
        Failed => j.retry_at.is_some_and(|t| t <= now),
        _ => false,
    }
}
