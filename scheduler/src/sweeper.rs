//! The sweeper: what a scheduler pass does for jobs whatever experiment
//! they belong to. It moves jobs whose lease, deadline or retry time has
//! passed (the job lifecycle decides how), publishes again the wake-ups of
//! jobs that stayed queued too long, and marks unschedulable the queued jobs
//! that no live worker could ever hold.

use crate::dispatch::Scheduler;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use tracing::{debug, warn};
use tracseq_core::fleet::{WorkerRecord, WorkerStatus};
use tracseq_core::lifecycle::{Effect, Event};
use tracseq_core::placement::{self, Fleet};
use tracseq_core::ports::{transition, TransitionOutcome};
use tracseq_core::types::{Job, JobState};
use tracseq_core::{JobId, Result};

impl Scheduler {
    /// Re-publishes jobs that stayed queued long after their last wake-up:
    /// the store is the truth and a message may have been lost (a publish
    /// that failed after the job was stored, a broker that lost it).
    pub(crate) async fn republish_stale(&self, queued: &[Job]) -> Result<()> {
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
    pub(crate) async fn mark_unschedulable(
        &self,
        queued: &[Job],
        now: DateTime<Utc>,
    ) -> Result<()> {
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

    pub(crate) async fn sweep_due_jobs(&self, now: DateTime<Utc>) -> Result<()> {
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
