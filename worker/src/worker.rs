//! The worker loop: subscribe, claim with a lease, ack, heartbeat, run,
//! record the outcome; on shutdown, drain what is running.

use crate::datasets::DatasetCache;
use crate::host::HostResources;
use crate::runner::{Outcome, Runner};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};
use tracseq_core::fleet::{RunningJob, WorkerRecord};
use tracseq_core::lifecycle::Event;
use tracseq_core::placement::Refusal;
use tracseq_core::ports::{
    transition, transition_from, Delivery, TransitionOutcome, TrialReporter,
};
use tracseq_core::types::{Job, JobState};
use tracseq_core::{Error, JobId, Platform, Result, WorkerId};
use tracseq_learn::dataset::Limits;

/// How long a wake-up for a job that does not fit here right now waits
/// before it goes back to the queue, so that a busy worker does not spin
/// on it and another worker (or this one, later) can take it.
const REQUEUE_DELAY: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct WorkerOptions {
    pub id: WorkerId,
    /// Queues consumed, e.g. `["gpu", "cpu"]`; empty = automatic: `gpu`
    /// and `cpu` on a host with GPUs, `cpu` elsewhere.
    pub resource_classes: Vec<String>,
    /// What the host offers and holds, shared by the worker loops of one
    /// process.
    pub host: Arc<HostResources>,
    pub slots: u16,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// How long shutdown waits for running jobs before abandoning them
    /// (their leases then expire and they run again elsewhere).
    pub drain: Duration,
    pub dataset_limits: Limits,
}

pub struct Worker {
    platform: Platform,
    opts: WorkerOptions,
    runner: Arc<Runner>,
    /// Pokes the scheduler when a job finishes.
    wake: Arc<Notify>,
    /// Jobs running now, for the fleet record.
    running: Mutex<BTreeMap<JobId, RunningJob>>,
    started_at: DateTime<Utc>,
}

impl Worker {
    /// A worker over `platform`; its trials report intermediate values to
    /// `reporter`, which decides pruning (the scheduler's, in the process
    /// wiring).
    pub fn new(
        platform: Platform,
        opts: WorkerOptions,
        wake: Arc<Notify>,
        reporter: Arc<dyn TrialReporter>,
    ) -> Self {
        let datasets = Arc::new(DatasetCache::new(opts.dataset_limits, 8));
        let runner = Arc::new(Runner {
            platform: platform.clone(),
            datasets,
            reporter,
        });
        Worker {
            platform,
            opts,
            runner,
            wake,
            running: Mutex::new(BTreeMap::new()),
            started_at: Utc::now(),
        }
    }

    pub fn id(&self) -> &WorkerId {
        &self.opts.id
    }

    /// The queues this worker consumes.
    pub fn classes(&self) -> Vec<String> {
        if !self.opts.resource_classes.is_empty() {
            return self.opts.resource_classes.clone();
        }
        if self.opts.host.has_gpus() {
            vec!["gpu".into(), "cpu".into()]
        } else {
            vec!["cpu".into()]
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, RunningJob>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This worker's row in the fleet table, with a fresh GPU snapshot.
    fn record(&self, stopped: bool) -> WorkerRecord {
        let capacity = self
            .opts
            .host
            .refresh()
            .unwrap_or_else(|_| self.opts.host.capacity());
        WorkerRecord {
            id: self.opts.id.clone(),
            resource_classes: self.classes(),
            slots: self.opts.slots,
            capacity,
            inventory: self.opts.host.inventory_name().to_string(),
            running: self.lock_running().values().cloned().collect(),
            started_at: self.started_at,
            last_heartbeat_at: Utc::now(),
            heartbeat_ms: self.opts.heartbeat.as_millis() as u64,
            stopped,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    async fn report(&self, stopped: bool) {
        if let Err(e) = self
            .platform
            .state
            .upsert_worker(&self.record(stopped))
            .await
        {
            warn!(error = %e, "could not record this worker's heartbeat");
        }
    }

    /// Consumes until `cancel`, then drains running jobs.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) -> Result<()> {
        let classes = self.classes();
        info!(worker = %self.opts.id, ?classes, slots = self.opts.slots, inventory = self.opts.host.inventory_name(), "worker started");
        self.report(false).await;
        let slots = Arc::new(Semaphore::new(self.opts.slots as usize));
        // One subscription per class, merged: a GPU host also takes CPU work.
        let (tx, mut deliveries) = mpsc::channel::<Delivery>(1);
        let mut feeds = JoinSet::new();
        for class in &classes {
            let sub = self
                .platform
                .queue
                .subscribe(class, self.opts.slots)
                .await?;
            feeds.spawn(feed(sub, tx.clone(), class.clone()));
        }
        drop(tx);
        let beat = {
            let me = self.clone();
            let every = self.opts.heartbeat;
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    me.report(false).await;
                }
            }))
        };
        let mut running = JoinSet::new();
        loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = slots.clone().acquire_owned() => p.map_err(|_| Error::Internal("slot semaphore closed".into()))?,
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                d = deliveries.recv() => d,
            };
            let Some(delivery) = next else { break };
            let me = self.clone();
            let span = info_span!("job", job_id = %delivery.message.job_id, worker = %self.opts.id);
            running.spawn(
                async move {
                    me.handle(delivery).await;
                    drop(permit);
                }
                .instrument(span),
            );
            while running.try_join_next().is_some() {}
        }
        // Unsettled deliveries go back to their queues with the subscriptions.
        feeds.abort_all();
        drop(deliveries);
        info!(worker = %self.opts.id, in_flight = running.len(), "worker draining");
        let drained = tokio::time::timeout(self.opts.drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(worker = %self.opts.id, "drain timed out; abandoning running jobs to lease expiry");
            running.abort_all();
            while running.join_next().await.is_some() {}
            // Aborted jobs never reached their own clean-up.
            for job in std::mem::take(&mut *self.lock_running()).into_keys() {
                self.opts.host.release(&job);
            }
        }
        drop(beat);
        self.report(true).await;
        info!(worker = %self.opts.id, "worker stopped");
        Ok(())
    }

    async fn handle(&self, delivery: Delivery) {
        let job_id = delivery.message.job_id;
        let lease =
            chrono::Duration::from_std(self.opts.lease).unwrap_or(chrono::Duration::seconds(30));
        let store = self.platform.state.as_ref();
        let policy = &self.platform.policy;
        // The job copy the message carries saves a read; without one (a
        // large payload) the store is read.
        let held = match delivery.message.snapshot() {
            Some(job) => job.clone(),
            None => match store.get_job(job_id).await {
                Ok(job) => job,
                Err(Error::NotFound(_)) => {
                    warn!("wake-up for an unknown job; dead-lettered");
                    settle(delivery.nack(false).await);
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "reading the job failed; message requeued");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    settle(delivery.nack(true).await);
                    return;
                }
            },
        };
        if held.state != JobState::Queued {
            // A stale or duplicate wake-up: the store says there is nothing to do.
            debug!(state = %held.state, "wake-up for a job that is not queued; dropped");
            settle(delivery.ack().await);
            return;
        }
        // Reserve what the job asks for before claiming it, so a claim is
        // only ever made by a worker that can hold the job.
        let gpus = match self.opts.host.reserve(job_id, &held.resources) {
            Ok(a) => a,
            Err(refusal) => {
                // Busy here, or too big for this host: another worker (or
                // this one after a release) takes it. Whether any worker of
                // the fleet ever could is the scheduler's call.
                let why = match &refusal {
                    Refusal::Busy(_) => "busy",
                    _ => "does not fit this host",
                };
                // The copy may be stale: a job that is no longer waiting
                // (taken elsewhere, cancelled, marked unschedulable) must
                // not circle through the queue forever.
                if let Ok(current) = store.get_job(job_id).await {
                    if current.state != JobState::Queued {
                        debug!(state = %current.state, "job not placed here and no longer queued; dropped");
                        settle(delivery.ack().await);
                        return;
                    }
                }
                debug!(%refusal, why, "job not placed here; message requeued");
                tokio::time::sleep(REQUEUE_DELAY).await;
                settle(delivery.nack(true).await);
                return;
            }
        };
        // Claim and start in one write (no read at all when the copy is current).
        let take = Event::ClaimAndStart {
            worker: self.opts.id.clone(),
            lease,
            gpus: (!gpus.devices.is_empty()).then(|| gpus.clone()),
        };
        let taken = if delivery.message.snapshot().is_some() {
            transition_from(store, &held, take, Utc::now(), policy).await
        } else {
            transition(store, job_id, take, Utc::now(), policy).await
        };
        if !matches!(taken, Ok(TransitionOutcome::Applied { .. })) {
            self.opts.host.release(&job_id);
        }
        let job = match taken {
            Ok(TransitionOutcome::Applied { job, .. }) => job,
            Ok(TransitionOutcome::Rejected { job, rejection }) => {
                // A stale or duplicate wake-up: the store says there is nothing to do.
                debug!(state = %job.state, %rejection, "wake-up for a job that is not queued; dropped");
                settle(delivery.ack().await);
                return;
            }
            Err(Error::NotFound(_)) => {
                warn!("wake-up for an unknown job; dead-lettered");
                settle(delivery.nack(false).await);
                return;
            }
            Err(e) => {
                warn!(error = %e, "claim failed; message requeued");
                tokio::time::sleep(Duration::from_millis(200)).await;
                settle(delivery.nack(true).await);
                return;
            }
        };
        // Claimed: the lease now protects the job, the message has done its work.
        settle(delivery.ack().await);
        let attempt = job.attempt;
        self.lock_running().insert(
            job.id,
            RunningJob {
                job_id: job.id,
                kind: job.kind,
                attempt,
                resources: job.resources.clone(),
                gpus: gpus.clone(),
                started_at: Utc::now(),
            },
        );
        info!(kind = %job.kind, attempt, trial = ?job.trial_number, "job started");
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = self.spawn_heartbeat(&job, lease, stop.clone());
        let timeout = Duration::from_secs(job.timeout_secs);
        let outcome = match tokio::time::timeout(timeout, self.runner.run(&job, stop.clone())).await
        {
            Ok(o) => o,
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                Outcome::Failed {
                    error: format!("timed out after {} s", job.timeout_secs),
                    retryable: true,
                }
            }
        };
        drop(heartbeat);
        self.settle_outcome(&job, outcome).await;
        self.lock_running().remove(&job.id);
        self.opts.host.release(&job.id);
        self.wake.notify_one();
    }

    fn spawn_heartbeat(
        &self,
        job: &Job,
        lease: chrono::Duration,
        stop: Arc<AtomicBool>,
    ) -> AbortOnDrop {
        let platform = self.platform.clone();
        let (id, worker, attempt, every) = (
            job.id,
            self.opts.id.clone(),
            job.attempt,
            self.opts.heartbeat,
        );
        AbortOnDrop(tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    let ev = Event::Heartbeat { worker: worker.clone(), attempt, lease };
                    match transition(platform.state.as_ref(), id, ev, Utc::now(), &platform.policy).await {
                        Ok(TransitionOutcome::Applied { .. }) => {}
                        Ok(TransitionOutcome::Rejected { job, rejection }) => {
                            // Cancelled, or the lease was lost: stop working on it.
                            info!(state = %job.state, %rejection, "heartbeat rejected; stopping the job");
                            stop.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => warn!(error = %e, "heartbeat failed; will retry"),
                    }
                }
            }
            .instrument(info_span!("heartbeat", job_id = %job.id)),
        ))
    }

    /// Records the outcome, retrying while the store is unavailable: a
    /// finished job's result must not be lost to a transient error.
    async fn settle_outcome(&self, job: &Job, outcome: Outcome) {
        let worker = self.opts.id.clone();
        let attempt = job.attempt;
        let event = match outcome {
            Outcome::Succeeded(result) => Event::Succeed {
                worker,
                attempt,
                result,
            },
            Outcome::Pruned(result) => Event::Prune {
                worker,
                attempt,
                result,
            },
            Outcome::Failed { error, retryable } => {
                warn!(%error, retryable, "job attempt failed");
                Event::Fail {
                    worker,
                    attempt,
                    error,
                    retryable,
                }
            }
        };
        let mut wait = Duration::from_millis(100);
        for _ in 0..10 {
            match transition_from(
                self.platform.state.as_ref(),
                job,
                event.clone(),
                Utc::now(),
                &self.platform.policy,
            )
            .await
            {
                Ok(TransitionOutcome::Applied { job, .. }) => {
                    info!(state = %job.state, "job settled");
                    return;
                }
                Ok(TransitionOutcome::Rejected { job, rejection }) => {
                    info!(state = %job.state, %rejection, "outcome ignored (lease lost, cancelled or duplicate)");
                    return;
                }
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, "recording the outcome failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    error!(error = %e, "recording the outcome failed");
                    return;
                }
            }
        }
        error!("gave up recording the outcome; the lease will expire and the job will run again");
    }
}

fn settle(r: Result<()>) {
    if let Err(e) = r {
        warn!(error = %e, "settling a queue delivery failed");
    }
}

/// Forwards one subscription's deliveries into the worker's merged stream,
/// riding out receive errors (the queue reconnects underneath).
async fn feed(
    mut sub: Box<dyn tracseq_core::ports::Subscription>,
    tx: mpsc::Sender<Delivery>,
    class: String,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match sub.next().await {
            Ok(Some(d)) => {
                backoff = Duration::from_millis(100);
                if tx.send(d).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, %class, "queue receive failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// A background task that ends with its owner: if a job's (or the
/// worker's) future is dropped or aborted, its heartbeat must stop too, or
/// it would keep a lease alive for work nobody is doing.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
