//! Assembles the components into running processes: the embedded platform
//! (api + scheduler + workers over SQLite, a local directory and the
//! in-process queue) or one distributed role over PostgreSQL, RabbitMQ and
//! S3. Every task is spawned here, inside a named span, and stopped through
//! one cancellation token.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};
use tracseq_backends::platform::Role;
use tracseq_backends::MemoryQueue;
use tracseq_core::config::Config;
use tracseq_core::{Platform, WorkerId};
use tracseq_scheduler::spec::dataset_limits;
use tracseq_scheduler::{Reporter, Scheduler};
use tracseq_worker::{HostResources, Worker, WorkerOptions};

/// How long Ctrl-C waits for running jobs to finish.
const DRAIN: Duration = Duration::from_secs(60);

pub struct Running {
    /// Where the api listens, when this process runs it.
    pub addr: Option<SocketAddr>,
    cancel: CancellationToken,
    /// The in-process queue of embedded mode, closed last at shutdown.
    queue: Option<MemoryQueue>,
    api: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    scheduler: Option<JoinHandle<()>>,
}

/// What a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub api: bool,
    pub scheduler: bool,
    pub workers: usize,
}

impl Running {
    /// Embedded mode: everything in this process.
    pub async fn embedded(cfg: &Config, addr: SocketAddr) -> anyhow::Result<Running> {
        let key_file = cfg
            .data_dir
            .join(tracseq_backends::encryption::EMBEDDED_KEY_FILE);
        let first_key = cfg.encryption.key_file.is_none()
            && !cfg.encryption.disabled
            && std::env::var_os(tracseq_backends::encryption::keys::KEK_ENV).is_none()
            && !key_file.exists();
        let (platform, queue) = tracseq_backends::platform::embedded(
            &cfg.data_dir,
            &cfg.encryption,
            cfg.retry_policy(),
        )
        .await
        .with_context(|| format!("opening data dir {}", cfg.data_dir.display()))?;
        if first_key && key_file.exists() {
            eprintln!(
                "artifacts are encrypted at rest under the key in {} (created now): back it up \
                 apart from the data directory, which cannot be read without it",
                key_file.display()
            );
        }
        let parts = Parts {
            api: true,
            scheduler: true,
            workers: cfg.worker.count,
        };
        let security = tracseq_backends::platform::security_store(&cfg.data_dir, None).await?;
        crate::security_cli::ensure_admin_token(security.as_ref(), &cfg.data_dir).await?;
        Self::start(platform, Some(queue), Some(security), cfg, parts, addr).await
    }

    /// One distributed role, connected to the shared engines.
    pub async fn distributed(
        cfg: &Config,
        role: Role,
        addr: SocketAddr,
        workers: usize,
    ) -> anyhow::Result<Running> {
        let d = cfg.require_distributed()?;
        let mut classes = vec!["cpu".to_string(), "gpu".to_string()];
        classes.extend(cfg.worker.classes());
        let mut classes_unique = classes;
        classes_unique.sort();
        classes_unique.dedup();
        let platform = tracseq_backends::platform::distributed(
            d,
            &cfg.encryption,
            role,
            classes_unique,
            cfg.retry_policy(),
        )
        .await
        .context("connecting to PostgreSQL, RabbitMQ and the artifact store")?;
        let parts = match role {
            Role::Api => Parts {
                api: true,
                scheduler: false,
                workers: 0,
            },
            Role::Scheduler => Parts {
                api: false,
                scheduler: true,
                workers: 0,
            },
            Role::Worker => Parts {
                api: false,
                scheduler: false,
                workers,
            },
            Role::Migrate => anyhow::bail!("migrate is not a long-running role"),
        };
        // The scheduler holds the audit log too: it records the rollbacks
        // it makes on nobody's request.
        let security = if parts.api || parts.scheduler {
            let store = tracseq_backends::platform::security_store(&cfg.data_dir, Some(d)).await?;
            if parts.api && store.list_tokens().await?.is_empty() {
                tracing::warn!(
                    "no API tokens exist, so every request but /health is refused: create one with \
                     `tracseq-ml token create --name admin --role admin` (with the same DATABASE_URL)"
                );
            }
            Some(store)
        } else {
            None
        };
        Self::start(platform, None, security, cfg, parts, addr).await
    }

    async fn start(
        platform: Platform,
        queue: Option<MemoryQueue>,
        security: Option<Arc<dyn tracseq_core::ports::SecurityStore>>,
        cfg: &Config,
        parts: Parts,
        addr: SocketAddr,
    ) -> anyhow::Result<Running> {
        // Checked before anything starts (the server itself may be down:
        // the tier connects when first used).
        let shared_cache = if parts.api {
            tracseq_backends::cache::shared_tier(&cfg.serving)?
        } else {
            None
        };
        let cancel = CancellationToken::new();
        // Wakes the scheduler at once when it shares this process; across
        // processes its tick picks the change up.
        let wake = Arc::new(Notify::new());

        let scheduler = parts.scheduler.then(|| {
            let mut scheduler = Scheduler::new(
                platform.clone(),
                Duration::from_millis(cfg.scheduler.tick_ms),
                wake.clone(),
            )
            .with_republish_after(Duration::from_secs(cfg.scheduler.republish_secs))
            .with_unschedulable_after(Duration::from_secs(cfg.scheduler.unschedulable_secs))
            .with_alerts(cfg.alerts.clone())
            .with_log_retention(cfg.serving.log_retention_days);
            if let Some(store) = &security {
                scheduler = scheduler.with_audit(store.clone());
            }
            let c = cancel.clone();
            tokio::spawn(
                async move {
                    if let Err(e) = scheduler.run(c).await {
                        error!(error = %e, "scheduler stopped");
                    }
                }
                .instrument(info_span!("scheduler")),
            )
        });

        let host = hostname();
        let pid = std::process::id();
        let mut workers = Vec::new();
        // One inventory and one set of reservations for all the worker
        // loops of this process: they share the host's GPUs.
        let resources = if parts.workers > 0 {
            let (inventory, note) = tracseq_worker::gpu::detect(cfg.worker.gpus.as_deref())
                .context("reading the GPU inventory (worker.gpus)")?;
            if let Some(note) = note {
                info!("{note}");
            }
            let slots = u32::from(cfg.worker.slots) * parts.workers as u32;
            Some(Arc::new(
                HostResources::new(WorkerId(format!("{host}-{pid}")), inventory, slots)
                    .context("the GPU inventory")?,
            ))
        } else {
            None
        };
        for i in 0..parts.workers {
            let Some(resources) = resources.clone() else {
                break;
            };
            let opts = WorkerOptions {
                id: WorkerId(format!("{host}-{pid}-w{i}")),
                resource_classes: cfg.worker.classes(),
                host: resources,
                slots: cfg.worker.slots,
                lease: Duration::from_secs(cfg.worker.lease_secs),
                heartbeat: Duration::from_millis(cfg.worker.heartbeat_ms),
                drain: DRAIN,
                dataset_limits: dataset_limits(&cfg.limits),
            };
            let reporter = Arc::new(Reporter::new(platform.clone()));
            let worker = Arc::new(Worker::new(platform.clone(), opts, wake.clone(), reporter));
            let c = cancel.clone();
            workers.push(tokio::spawn(
                async move {
                    if let Err(e) = worker.run(c).await {
                        error!(error = %e, "worker stopped");
                    }
                }
                .instrument(info_span!("worker", index = i)),
            ));
        }

        let (api, bound) = if let (true, Some(security)) = (parts.api, security) {
            let ctx = tracseq_api::ApiState::new(
                platform,
                security,
                cfg.api.clone(),
                cfg.limits.clone(),
                cfg.deploy.clone(),
                tracseq_api::ServingSetup {
                    config: cfg.serving.clone(),
                    shared_cache,
                },
                wake,
            );
            let (tx, rx) = tokio::sync::oneshot::channel();
            let c = cancel.clone();
            let handle = tokio::spawn(
                async move {
                    let shutdown = async move { c.cancelled().await };
                    if let Err(e) = tracseq_api::serve(ctx, addr, shutdown, tx).await {
                        error!(error = %e, %addr, "api server failed");
                    }
                }
                .instrument(info_span!("api")),
            );
            match rx.await {
                Ok(a) => (Some(handle), Some(a)),
                Err(_) => {
                    cancel.cancel();
                    anyhow::bail!("could not listen on {addr} (is the port in use?)");
                }
            }
        } else {
            (None, None)
        };
        Ok(Running {
            addr: bound,
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
        if let Some(s) = self.scheduler {
            let _ = s.await;
        }
        if let Some(a) = self.api {
            let _ = a.await;
        }
        if let Some(q) = self.queue {
            q.close();
        }
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
