//! The worker loop: subscribe, claim with a lease, ack, heartbeat, run,
//! record the outcome; on shutdown, drain what is running.

use crate::datasets::DatasetCache;
use crate::runner::{Outcome, Runner};
use chrono::Utc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn, Instrument};
use tracseq_core::lifecycle::Event;
use tracseq_core::ports::{transition, transition_from, Delivery, TransitionOutcome};
use tracseq_core::types::Job;
use tracseq_core::{Error, Platform, Result, WorkerId};
use tracseq_learn::dataset::Limits;

#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub id: WorkerId,
    pub resource_class: String,
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
}

impl Worker {
    pub fn new(platform: Platform, opts: WorkerOptions, wake: Arc<Notify>) -> Self {
        let datasets = Arc::new(DatasetCache::new(opts.dataset_limits, 8));
        let runner = Arc::new(Runner {
            platform: platform.clone(),
            datasets,
        });
        Worker {
            platform,
            opts,
            runner,
            wake,
        }
    }

    pub fn id(&self) -> &WorkerId {
        &self.opts.id
    }

    /// Consumes until `cancel`, then drains running jobs.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) -> Result<()> {
        info!(worker = %self.opts.id, class = %self.opts.resource_class, slots = self.opts.slots, "worker started");
        let slots = Arc::new(Semaphore::new(self.opts.slots as usize));
        let mut sub = self
            .platform
            .queue
            .subscribe(&self.opts.resource_class, self.opts.slots)
            .await?;
        let mut running = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = slots.clone().acquire_owned() => p.map_err(|_| Error::Internal("slot semaphore closed".into()))?,
            };
            let next = tokio::select! {
                _ = cancel.cancelled() => break,
                d = sub.next() => d,
            };
            match next {
                Ok(Some(delivery)) => {
                    backoff = Duration::from_millis(100);
                    let me = self.clone();
                    let span = info_span!("job", job_id = %delivery.message.job_id, worker = %self.opts.id);
                    running.spawn(
                        async move {
                            me.handle(delivery).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "queue receive failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            while running.try_join_next().is_some() {}
        }
        drop(sub);
        info!(worker = %self.opts.id, in_flight = running.len(), "worker draining");
        let drained = tokio::time::timeout(self.opts.drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(worker = %self.opts.id, "drain timed out; abandoning running jobs to lease expiry");
            running.abort_all();
        }
        info!(worker = %self.opts.id, "worker stopped");
        Ok(())
    }

    async fn handle(&self, delivery: Delivery) {
        let job_id = delivery.message.job_id;
        let lease =
            chrono::Duration::from_std(self.opts.lease).unwrap_or(chrono::Duration::seconds(30));
        let claim = Event::Claim {
            worker: self.opts.id.clone(),
            lease,
        };
        let job = match transition(
            self.platform.state.as_ref(),
            job_id,
            claim,
            Utc::now(),
            &self.platform.policy,
        )
        .await
        {
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
        let start = Event::Start {
            worker: self.opts.id.clone(),
            attempt,
            lease,
        };
        let job = match transition_from(
            self.platform.state.as_ref(),
            &job,
            start,
            Utc::now(),
            &self.platform.policy,
        )
        .await
        {
            Ok(TransitionOutcome::Applied { job, .. }) => job,
            other => {
                warn!(
                    ?other,
                    "could not start a claimed job; its lease will expire"
                );
                return;
            }
        };
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
        heartbeat.abort();
        self.record(&job, outcome).await;
        self.wake.notify_one();
    }

    fn spawn_heartbeat(
        &self,
        job: &Job,
        lease: chrono::Duration,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<()> {
        let platform = self.platform.clone();
        let (id, worker, attempt, every) = (
            job.id,
            self.opts.id.clone(),
            job.attempt,
            self.opts.heartbeat,
        );
        tokio::spawn(
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
        )
    }

    /// Records the outcome, retrying while the store is unavailable: a
    /// finished job's result must not be lost to a transient error.
    async fn record(&self, job: &Job, outcome: Outcome) {
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
