//! Embedded mode: api + scheduler + workers in one process over SQLite, a
//! local artifact directory and the in-process queue. Every task is spawned
//! here, inside a named span, and stopped through one cancellation token.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};
use tracseq_core::backends::MemoryQueue;
use tracseq_core::config::Config;
use tracseq_core::{Platform, WorkerId};
use tracseq_scheduler::service::dataset_limits;
use tracseq_scheduler::Scheduler;
use tracseq_worker::{Worker, WorkerOptions};

pub struct Embedded {
    pub addr: SocketAddr,
    cancel: CancellationToken,
    queue: MemoryQueue,
    api: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    scheduler: JoinHandle<()>,
}

/// How long Ctrl-C waits for running jobs to finish.
const DRAIN: Duration = Duration::from_secs(60);

impl Embedded {
    pub async fn start(cfg: &Config, addr: SocketAddr) -> anyhow::Result<Embedded> {
        let (platform, queue) = Platform::embedded(&cfg.data_dir, cfg.retry_policy())
            .await
            .with_context(|| format!("opening data dir {}", cfg.data_dir.display()))?;
        let cancel = CancellationToken::new();
        let wake = Arc::new(Notify::new());

        let scheduler = Scheduler::new(
            platform.clone(),
            Duration::from_millis(cfg.scheduler.tick_ms),
            wake.clone(),
        );
        let sched_cancel = cancel.clone();
        let scheduler = tokio::spawn(
            async move {
                if let Err(e) = scheduler.run(sched_cancel).await {
                    error!(error = %e, "scheduler stopped");
                }
            }
            .instrument(info_span!("scheduler")),
        );

        let mut workers = Vec::new();
        let host = hostname();
        for i in 0..cfg.worker.count {
            let opts = WorkerOptions {
                id: WorkerId(format!("{host}-w{i}")),
                resource_class: cfg.worker.resource_class.clone(),
                slots: cfg.worker.slots,
                lease: Duration::from_secs(cfg.worker.lease_secs),
                heartbeat: Duration::from_millis(cfg.worker.heartbeat_ms),
                drain: DRAIN,
                dataset_limits: dataset_limits(&cfg.limits),
            };
            let worker = Arc::new(Worker::new(platform.clone(), opts, wake.clone()));
            let c = cancel.clone();
            let handle = tokio::spawn(
                async move {
                    if let Err(e) = worker.run(c).await {
                        error!(error = %e, "worker stopped");
                    }
                }
                .instrument(info_span!("worker", index = i)),
            );
            workers.push(handle);
        }

        let ctx = tracseq_api::ApiState::new(platform, cfg.api.clone(), cfg.limits.clone(), wake);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let api_cancel = cancel.clone();
        let api = tokio::spawn(
            async move {
                let shutdown = async move { api_cancel.cancelled().await };
                if let Err(e) = tracseq_api::serve(ctx, addr, shutdown, tx).await {
                    error!(error = %e, %addr, "api server failed");
                }
            }
            .instrument(info_span!("api")),
        );
        let addr = match rx.await {
            Ok(a) => a,
            Err(_) => {
                cancel.cancel();
                anyhow::bail!("could not listen on {addr} (is the port in use?)");
            }
        };
        Ok(Embedded {
            addr,
            cancel,
            queue,
            api,
            workers,
            scheduler,
        })
    }

    /// Stops taking work, lets running jobs finish (up to the drain timeout)
    /// and in-flight requests complete, then returns.
    pub async fn shutdown(self) {
        info!("shutting down: draining running jobs");
        self.cancel.cancel();
        for w in self.workers {
            let _ = w.await;
        }
        let _ = self.scheduler.await;
        let _ = self.api.await;
        self.queue.close();
        info!("stopped cleanly");
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".into())
}
