//! The dispatch path alone: noop jobs inserted and published by hand (no
//! scheduler) on the memory backends, run by two workers.

use chrono::Utc;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::JobFilter;
use tracseq_core::ports::TrialReporter;
use tracseq_core::protocol::{JobSpec, NoopPayload};
use tracseq_core::types::{DispatchMessage, JobState, NewJob};
use tracseq_core::{ExperimentId, Result, WorkerId};
use tracseq_worker::{HostResources, Worker, WorkerOptions};

const N: usize = 50;

/// Noop jobs report nothing; a trial reaching this would be a bug.
struct NoTrials;

#[async_trait::async_trait]
impl TrialReporter for NoTrials {
    async fn report(&self, _: ExperimentId, _: u64, _: u32, _: f64) -> Result<bool> {
        panic!("a noop job reported a trial value")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noop_jobs_all_succeed_on_first_attempt() {
    let platform = tracseq_backends::platform::in_memory(RetryPolicy {
        backoff_base_ms: 50,
        backoff_max_ms: 200,
    });
    let cancel = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let mut workers = Vec::new();
    for name in ["a", "b"] {
        let opts = WorkerOptions {
            id: WorkerId(name.into()),
            resource_classes: vec!["cpu".into()],
            host: Arc::new(HostResources::cpu_only(WorkerId(name.into()), 2)),
            slots: 2,
            lease: Duration::from_secs(10),
            heartbeat: Duration::from_millis(2500),
            drain: Duration::from_secs(5),
            dataset_limits: Default::default(),
        };
        let w = Arc::new(Worker::new(
            platform.clone(),
            opts,
            wake.clone(),
            Arc::new(NoTrials),
        ));
        let c = cancel.clone();
        workers.push(tokio::spawn(async move { w.run(c).await }));
    }

    let mut ids = Vec::new();
    for _ in 0..N {
        let job = NewJob {
            spec: JobSpec::Noop(NoopPayload::default()),
            experiment_id: None,
            resource_class: "cpu".into(),
            resources: Default::default(),
            priority: 0,
            max_attempts: 1,
            timeout_secs: 30,
        }
        .into_job(Utc::now(), None)
        .unwrap();
        platform.state.insert_job(&job).await.unwrap();
        platform
            .queue
            .publish(&job.resource_class, &DispatchMessage::for_job(&job))
            .await
            .unwrap();
        ids.push(job.id);
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let pending = JobFilter {
        states: vec![
            JobState::Queued,
            JobState::Leased,
            JobState::Running,
            JobState::Failed,
        ],
        ..Default::default()
    };
    loop {
        let left = platform.state.list_jobs(&pending).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} jobs unfinished after 30 s: {:?}",
            left.len(),
            left.first()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for id in ids {
        let job = platform.state.get_job(id).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.result_attempt, Some(1), "{job:?}");
        assert_eq!(
            job.result,
            Some(json!({"noop": true, "slept_ms": 0})),
            "{job:?}"
        );
    }

    cancel.cancel();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}
