//! The job state machine: every job transition, as one pure function.
//!
//! `on_event` takes the job, an event and the current time and returns the
//! effects the caller must carry out (publish a wake-up, notify the scheduler).
//! No I/O and no clock reads happen here, so every transition, lease expiry,
//! duplicate result and cancel race is unit-tested without a runtime. Stores
//! apply the outcome with a compare-and-set on [`Job::version`], which is what
//! makes a claim or a result win exactly once across processes.

use crate::fleet::GpuAssignment;
use crate::ids::WorkerId;
use crate::types::{Job, JobState};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// Retry policy shared by every job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff after the given (1-based) failed attempt.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let ms = self
            .backoff_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.backoff_max_ms);
        Duration::milliseconds(ms as i64)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A worker took the wake-up message and wants the job.
    Claim {
        worker: WorkerId,
        lease: Duration,
    },
    /// Claim and Start as one step, for a worker that begins a job the
    /// moment it takes it: one store write instead of two, and the `leased`
    /// state is never stored.
    ClaimAndStart {
        worker: WorkerId,
        lease: Duration,
        /// The devices the worker's placement gave this attempt.
        gpus: Option<GpuAssignment>,
    },
    /// The claiming worker begins executing.
    Start {
        worker: WorkerId,
        attempt: u32,
        lease: Duration,
    },
    /// The holder is alive; extend its lease.
    Heartbeat {
        worker: WorkerId,
        attempt: u32,
        lease: Duration,
    },
    Succeed {
        worker: WorkerId,
        attempt: u32,
        result: Value,
    },
    /// A trial stopped early by the pruner: a normal, final outcome.
    Prune {
        worker: WorkerId,
        attempt: u32,
        result: Value,
    },
    Fail {
        worker: WorkerId,
        attempt: u32,
        error: String,
        retryable: bool,
    },
    /// The scheduler saw the lease run out.
    ExpireLease,
    /// The scheduler saw a running attempt pass its deadline.
    TimeOut,
    /// The backoff after a failure is over.
    RetryDue,
    Cancel {
        reason: String,
    },
    /// The scheduler found that no worker in the fleet could ever hold the
    /// queued job.
    Unschedulable {
        reason: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Publish a wake-up message for the job.
    Publish,
    /// The job reached a terminal state.
    Finished(JobState),
    /// The attempt failed and will be retried at the given time.
    RetryAt(DateTime<Utc>),
}

/// Why an event does not apply. Callers treat these as "ignored" or as a
/// conflict; none of them changes the job.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("job is {state}, cannot {action}")]
    WrongState {
        state: JobState,
        action: &'static str,
    },
    #[error("job is held by another worker")]
    NotOwner,
    #[error("attempt {got} is stale; the job is on attempt {current}")]
    StaleAttempt { got: u32, current: u32 },
    #[error("not due yet")]
    NotDue,
}

/// Applies `event` to `job` at time `now`. On `Err` the job is unchanged.
/// `Ok(vec![])` means accepted with nothing to do (for example a duplicate
/// delivery of a result that is already recorded).
pub fn on_event(
    job: &mut Job,
    event: Event,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Result<Vec<Effect>, Rejection> {
    // A result delivered twice (a retried request, a redelivered message) is
    // accepted and ignored: recorded once, nothing rewritten.
    match &event {
        Event::Succeed { attempt, .. } | Event::Prune { attempt, .. }
            if job.result_attempt == Some(*attempt)
                && job.state == finished_state(&event).unwrap_or(job.state) =>
        {
            return Ok(vec![]);
        }
        _ => {}
    }
    let effects = match event {
        Event::Claim { worker, lease } => {
            require(job, &[JobState::Queued], "claim")?;
            job.state = JobState::Leased;
            job.attempt += 1;
            job.lease_owner = Some(worker);
            job.lease_expires_at = Some(now + lease);
            job.retry_at = None;
            vec![]
        }
        Event::ClaimAndStart {
            worker,
            lease,
            gpus,
        } => {
            // Both steps on a copy, so a rejection leaves `job` unchanged.
            let mut next = job.clone();
            let mut effects = on_event(
                &mut next,
                Event::Claim {
                    worker: worker.clone(),
                    lease,
                },
                now,
                policy,
            )?;
            let attempt = next.attempt;
            effects.extend(on_event(
                &mut next,
                Event::Start {
                    worker,
                    attempt,
                    lease,
                },
                now,
                policy,
            )?);
            next.gpus = gpus;
            *job = next;
            effects
        }
        Event::Start {
            worker,
            attempt,
            lease,
        } => {
            check_holder(job, &worker, attempt)?;
            require(job, &[JobState::Leased], "start")?;
            job.state = JobState::Running;
            job.started_at = Some(now);
            job.lease_expires_at = Some(now + lease);
            job.deadline_at = Some(now + Duration::seconds(job.timeout_secs as i64));
            vec![]
        }
        Event::Heartbeat {
            worker,
            attempt,
            lease,
        } => {
            require(job, &[JobState::Leased, JobState::Running], "heartbeat")?;
            check_holder(job, &worker, attempt)?;
            job.lease_expires_at = Some(now + lease);
            vec![]
        }
        Event::Succeed {
            worker,
            attempt,
            result,
        } => finish(job, &worker, attempt, JobState::Succeeded, result, now)?,
        Event::Prune {
            worker,
            attempt,
            result,
        } => finish(job, &worker, attempt, JobState::Pruned, result, now)?,
        Event::Fail {
            worker,
            attempt,
            error,
            retryable,
        } => {
            if job.state == JobState::Failed && job.attempt == attempt {
                // A second delivery of the same failure: already handled.
                return Ok(vec![]);
            }
            require(job, &[JobState::Leased, JobState::Running], "fail")?;
            check_holder(job, &worker, attempt)?;
            fail(job, error, retryable, now, policy)
        }
        Event::ExpireLease => {
            require(
                job,
                &[JobState::Leased, JobState::Running],
                "expire a lease",
            )?;
            match job.lease_expires_at {
                Some(at) if at <= now => {}
                _ => return Err(Rejection::NotDue),
            }
            let owner = job
                .lease_owner
                .as_ref()
                .map(|w| w.0.clone())
                .unwrap_or_default();
            let msg = format!("lease expired: worker '{owner}' stopped renewing it");
            fail(job, msg, true, now, policy)
        }
        Event::TimeOut => {
            require(job, &[JobState::Running], "time out")?;
            due(job.deadline_at, now)?;
            let msg = format!("timed out after {} s", job.timeout_secs);
            fail(job, msg, true, now, policy)
        }
        Event::RetryDue => {
            require(job, &[JobState::Failed], "retry")?;
            due(job.retry_at, now)?;
            job.state = JobState::Queued;
            job.retry_at = None;
            vec![Effect::Publish]
        }
        Event::Cancel { reason } => {
            if job.state.is_terminal() {
                return Err(Rejection::WrongState {
                    state: job.state,
                    action: "cancel",
                });
            }
            job.state = JobState::Cancelled;
            job.last_error = Some(reason);
            release(job);
            job.retry_at = None;
            job.finished_at = Some(now);
            vec![Effect::Finished(JobState::Cancelled)]
        }
        Event::Unschedulable { reason } => {
            // Only a waiting job: one a worker already holds evidently fits.
            require(job, &[JobState::Queued], "mark unschedulable")?;
            job.state = JobState::Unschedulable;
            job.last_error = Some(format!("unschedulable: {reason}"));
            job.finished_at = Some(now);
            vec![Effect::Finished(JobState::Unschedulable)]
        }
    };
    job.updated_at = now;
    Ok(effects)
}

fn finished_state(event: &Event) -> Option<JobState> {
    match event {
        Event::Succeed { .. } => Some(JobState::Succeeded),
        Event::Prune { .. } => Some(JobState::Pruned),
        _ => None,
    }
}

/// A deadline or retry time that has come by `now`; anything else is
/// [`Rejection::NotDue`] (a sweeper acting on a stale read).
fn due(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), Rejection> {
    match at {
        Some(at) if at <= now => Ok(()),
        _ => Err(Rejection::NotDue),
    }
}

fn require(job: &Job, allowed: &[JobState], action: &'static str) -> Result<(), Rejection> {
    if allowed.contains(&job.state) {
        Ok(())
    } else {
        Err(Rejection::WrongState {
            state: job.state,
            action,
        })
    }
}

fn check_holder(job: &Job, worker: &WorkerId, attempt: u32) -> Result<(), Rejection> {
    if attempt != job.attempt {
        return Err(Rejection::StaleAttempt {
            got: attempt,
            current: job.attempt,
        });
    }
    if job.lease_owner.as_ref() != Some(worker) {
        return Err(Rejection::NotOwner);
    }
    Ok(())
}

fn release(job: &mut Job) {
    job.lease_owner = None;
    job.lease_expires_at = None;
    job.deadline_at = None;
}

fn finish(
    job: &mut Job,
    worker: &WorkerId,
    attempt: u32,
    state: JobState,
    result: Value,
    now: DateTime<Utc>,
) -> Result<Vec<Effect>, Rejection> {
    if job.state.is_held() {
        check_holder(job, worker, attempt)?;
    } else if attempt != job.attempt {
        return Err(Rejection::StaleAttempt {
            got: attempt,
            current: job.attempt,
        });
    } else {
        return Err(Rejection::WrongState {
            state: job.state,
            action: "record a result",
        });
    }
    job.state = state;
    job.result = Some(result);
    job.result_attempt = Some(attempt);
    job.finished_at = Some(now);
    release(job);
    Ok(vec![Effect::Finished(state)])
}

fn fail(
    job: &mut Job,
    error: String,
    retryable: bool,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
) -> Vec<Effect> {
    job.last_error = Some(error);
    release(job);
    if retryable && job.attempt < job.max_attempts {
        let at = now + policy.backoff(job.attempt);
        job.state = JobState::Failed;
        job.retry_at = Some(at);
        vec![Effect::RetryAt(at)]
    } else {
        job.state = JobState::Dead;
        job.finished_at = Some(now);
        vec![Effect::Finished(JobState::Dead)]
    }
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
