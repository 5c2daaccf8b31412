//! The scheduler and worker loops in process on the memory backends, all
//! stopped together by the fleet's cancellation token.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::Platform;
use tracseq_scheduler::{Reporter, Scheduler};
use tracseq_worker::{Worker, WorkerOptions};

/// Quick retries, so that a failing job's attempts finish in a test's time.
pub const POLICY: RetryPolicy = RetryPolicy {
    backoff_base_ms: 50,
    backoff_max_ms: 200,
};

pub struct Fleet {
    pub platform: Platform,
    pub cancel: CancellationToken,
    /// Shared by the scheduler and the workers, as in one process.
    pub wake: Arc<Notify>,
    /// The loops `stop` waits for.
    pub tasks: Vec<JoinHandle<()>>,
}

impl Default for Fleet {
    fn default() -> Fleet {
        Fleet {
            platform: tracseq_backends::platform::in_memory(POLICY),
            cancel: CancellationToken::new(),
            wake: Arc::new(Notify::new()),
            tasks: Vec::new(),
        }
    }
}

impl Fleet {
    pub fn new() -> Fleet {
        Fleet::default()
    }

    /// A scheduler on the fleet's platform, ticking every 50 ms.
    pub fn scheduler(&self) -> Scheduler {
        Scheduler::new(
            self.platform.clone(),
            Duration::from_millis(50),
            self.wake.clone(),
        )
    }

    /// Runs `scheduler` until the fleet stops.
    pub fn run_scheduler(&mut self, scheduler: Scheduler) {
        let c = self.cancel.clone();
        self.tasks.push(tokio::spawn(async move {
            scheduler.run(c).await.unwrap();
        }));
    }

    /// Starts a worker loop: the worker, its task, and a token that stops
    /// it alone (it also stops with the fleet).
    pub fn spawn_worker(
        &self,
        opts: WorkerOptions,
    ) -> (Arc<Worker>, JoinHandle<()>, CancellationToken) {
        let reporter = Arc::new(Reporter::new(self.platform.clone()));
        let w = Arc::new(Worker::new(
            self.platform.clone(),
            opts,
            self.wake.clone(),
            reporter,
        ));
        let stop = self.cancel.child_token();
        let (run, c) = (w.clone(), stop.clone());
        let task = tokio::spawn(async move {
            run.run(c).await.unwrap();
        });
        (w, task, stop)
    }

    /// Cancels every loop and waits for the ones in `tasks` to end cleanly.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}
