//! The scheduler loop: wait for a wake-up or the tick, then one pass over
//! the store. A pass sweeps jobs ([`crate::sweeper`]: expired leases,
//! deadlines, due retries, lost wake-ups, unschedulable jobs), advances
//! every running AutoML experiment and finalizes the finalizing ones
//! ([`crate::automl`]), finishes interrupted cancels, moves deployments
//! along with their deploy jobs ([`crate::deployments`]) and checks canary
//! rollouts ([`crate::canary`]). The loop itself
//! is thin: wait, read the store, call pure code, write, publish. Beside it
//! runs the monitor task: alert deliveries every second, and every
//! `alerts.monitor_secs` the drift and error-rate checks
//! ([`crate::monitor`], [`crate::alerts`]); and the prediction log's
//! retention, hourly ([`crate::retention`]).

use crate::service;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracseq_core::config::AlertsConfig;
use tracseq_core::ports::{JobFilter, SecurityStore};
use tracseq_core::types::{DispatchMessage, ExperimentKind, ExperimentState, Job, JobState};
use tracseq_core::{JobId, Platform, Result};

pub struct Scheduler {
    pub(crate) platform: Platform,
    pub(crate) tick: Duration,
    pub(crate) republish_after: Duration,
    /// When this process last published each queued job's wake-up.
    pub(crate) published: Mutex<HashMap<JobId, Instant>>,
    pub(crate) unschedulable_after: Duration,
    /// Queued jobs no live worker could hold, and since when.
    pub(crate) unplaceable: Mutex<HashMap<JobId, Instant>>,
    /// Poked by workers and the api when something changed, so the loop
    /// reacts at once instead of at the next tick.
    pub(crate) wake: Arc<Notify>,
    /// Where what the scheduler does on nobody's request (a canary's
    /// automatic rollback) is audited, when this process holds the log.
    pub(crate) audit: Option<Arc<dyn SecurityStore>>,
    /// The monitor's settings and where alerts go.
    pub(crate) alerts: AlertsConfig,
    /// Days the prediction log keeps a prediction (0: forever).
    pub(crate) log_retention_days: u32,
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
            audit: None,
            alerts: AlertsConfig::default(),
            log_retention_days: 0,
        }
    }

    /// Deletes logged predictions older than `days` days, hourly
    /// ([`crate::retention`]); 0 keeps them all.
    pub fn with_log_retention(mut self, days: u32) -> Self {
        self.log_retention_days = days;
        self
    }

    /// Runs the monitor and delivers alerts as `alerts` says.
    pub fn with_alerts(mut self, alerts: AlertsConfig) -> Self {
        self.alerts = alerts;
        self
    }

    /// Audits the scheduler's own actions (automatic rollbacks) in `store`.
    pub fn with_audit(mut self, store: Arc<dyn SecurityStore>) -> Self {
        self.audit = Some(store);
        self
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
        let monitor = tokio::spawn(monitor_loop(
            self.platform.clone(),
            self.alerts.clone(),
            cancel.clone(),
        ));
        let _stop_monitor = AbortOnDrop(monitor);
        let retention = tokio::spawn(crate::retention::retention_loop(
            self.platform.clone(),
            self.log_retention_days,
            cancel.clone(),
        ));
        let _stop_retention = AbortOnDrop(retention);
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

    pub(crate) async fn publish(&self, job: &Job) -> Result<()> {
        self.platform
            .queue
            .publish(&job.resource_class, &DispatchMessage::for_job(job))
            .await?;
        self.lock_published().insert(job.id, Instant::now());
        Ok(())
    }

    /// Publishes jobs' wake-ups in one batch per resource class.
    pub(crate) async fn publish_all(&self, jobs: &[Job]) -> Result<()> {
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

    pub(crate) fn lock_published(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Instant>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass; `now` is passed in so tests can drive time.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<()> {
        self.sweep_due_jobs(now).await?;
        let queued = self.queued_jobs().await?;
        self.republish_stale(&queued).await?;
        self.mark_unschedulable(&queued, now).await?;
        let state = self.platform.state.as_ref();
        for exp in state
            .list_experiments(Some(ExperimentState::Running))
            .await?
        {
            if exp.kind == ExperimentKind::Automl {
                self.advance(exp, now).await?;
            }
        }
        for exp in state
            .list_experiments(Some(ExperimentState::Finalizing))
            .await?
        {
            self.finalize(exp, now).await?;
        }
        for exp in state
            .list_experiments(Some(ExperimentState::Cancelled))
            .await?
        {
            // Finishes a cancel that was interrupted between its two writes.
            service::cancel_jobs(&self.platform, exp.id, now).await?;
        }
        crate::deployments::advance(&self.platform, now).await?;
        crate::canary::check_all(&self.platform, self.audit.as_ref(), &self.alerts, now).await?;
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often due alert deliveries are looked for.
const DELIVERY_EVERY: Duration = Duration::from_secs(1);

/// The monitor task: delivers due alerts every second and runs the
/// monitor's checks every `alerts.monitor_secs` (never, at 0).
async fn monitor_loop(p: Platform, cfg: AlertsConfig, cancel: CancellationToken) {
    let client = match crate::alerts::client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "no alert deliveries: the webhook client cannot be built");
            return;
        }
    };
    let profiles = crate::monitor::Profiles::default();
    let every = chrono::Duration::seconds(cfg.monitor_secs as i64);
    let mut next_check = Utc::now() + every;
    loop {
        let now = Utc::now();
        if cfg.monitor_secs > 0 && now >= next_check {
            next_check = now + every;
            if let Err(e) = crate::monitor::check_all(&p, &cfg, &profiles, now).await {
                warn!(error = %e, "monitor pass failed; retrying at the next");
            }
        }
        if let Err(e) = crate::alerts::deliver_due(&p, &cfg, &client, Utc::now()).await {
            warn!(error = %e, "alert delivery pass failed; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(DELIVERY_EVERY) => {}
        }
    }
}
