//! The three backends bundled together, as every component receives them.

use crate::backends::{MemoryQueue, MemoryStateStore, ObjectArtifactStore, SqliteStateStore};
use crate::ids::ExperimentId;
use crate::lifecycle::RetryPolicy;
use crate::ports::{ArtifactStore, JobQueue, StateStore};
use crate::trial_cache::TrialCache;
use crate::types::Trial;
use crate::Result;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct Platform {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub policy: RetryPolicy,
    /// Decoded trials between reads; read them through [`Platform::trials`].
    pub trial_cache: Arc<TrialCache>,
}

impl Platform {
    /// All trials of an experiment by number, as `state.list_trials` would
    /// return them now, re-reading only what may have changed since this
    /// process last read them.
    pub async fn trials(&self, experiment: ExperimentId) -> Result<Arc<Vec<Trial>>> {
        self.trial_cache
            .trials(self.state.as_ref(), experiment)
            .await
    }
}

impl Platform {
    /// Embedded mode: SQLite at `<dir>/state.db`, artifacts under
    /// `<dir>/artifacts`, and an in-process queue. The queue starts empty on
    /// every start; the scheduler re-publishes queued jobs from the store.
    pub async fn embedded(dir: &Path, policy: RetryPolicy) -> Result<(Self, MemoryQueue)> {
        std::fs::create_dir_all(dir).map_err(|e| {
            crate::Error::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
        })?;
        let state = SqliteStateStore::open(&dir.join("state.db")).await?;
        let artifacts = ObjectArtifactStore::local(&dir.join("artifacts"))?;
        let queue = MemoryQueue::new();
        let platform = Platform {
            state: Arc::new(state),
            queue: Arc::new(queue.clone()),
            artifacts: Arc::new(artifacts),
            policy,
            trial_cache: Arc::default(),
        };
        Ok((platform, queue))
    }

    /// Everything in memory (tests).
    pub fn in_memory(policy: RetryPolicy) -> Self {
        Platform {
            state: Arc::new(MemoryStateStore::new()),
            queue: Arc::new(MemoryQueue::new()),
            artifacts: Arc::new(ObjectArtifactStore::in_memory()),
            policy,
            trial_cache: Arc::default(),
        }
    }
}

/// Which process is connecting (shown to operators, e.g. in `pg_stat_activity`).
#[cfg(feature = "distributed")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Scheduler,
    Worker,
    Migrate,
}

#[cfg(feature = "distributed")]
impl Platform {
    /// Distributed mode: PostgreSQL, RabbitMQ and S3 (or a shared directory).
    /// Every role but `Migrate` refuses a database whose schema is not
    /// exactly the one this binary was built for.
    pub async fn distributed(
        cfg: &crate::config::DistributedConfig,
        role: Role,
        classes: Vec<String>,
        policy: RetryPolicy,
    ) -> Result<Self> {
        use crate::backends::{AmqpOptions, AmqpQueue, PgOptions, PostgresStateStore};
        let pg = PgOptions {
            max_connections: cfg.database_max_connections,
            schema: (!cfg.database_schema.is_empty()).then(|| cfg.database_schema.clone()),
            application_name: format!("tracseq-ml {role:?}").to_lowercase(),
            ..Default::default()
        };
        let state = PostgresStateStore::connect(&cfg.database_url, pg).await?;
        if role == Role::Migrate {
            state.migrate().await?;
        } else {
            state.check_schema().await?;
        }
        let amqp = AmqpOptions {
            prefix: cfg.amqp_prefix.clone(),
            classes,
            ..Default::default()
        };
        let queue = AmqpQueue::connect(&cfg.amqp_url, amqp).await?;
        Ok(Platform {
            state: Arc::new(state),
            queue: Arc::new(queue),
            artifacts: Arc::new(artifact_store(cfg)?),
            policy,
            trial_cache: Arc::default(),
        })
    }
}

/// `s3://bucket/prefix` is S3 (with `s3_endpoint` for MinIO and friends);
/// anything else is a directory every host mounts.
#[cfg(feature = "distributed")]
pub fn artifact_store(cfg: &crate::config::DistributedConfig) -> Result<ObjectArtifactStore> {
    if cfg.artifact_url.starts_with("s3://") {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        ObjectArtifactStore::s3(&crate::backends::object_artifacts::S3Options {
            url: cfg.artifact_url.clone(),
            endpoint: non_empty(&cfg.s3_endpoint),
            region: non_empty(&cfg.s3_region),
            access_key_id: None,
            secret_access_key: None,
        })
    } else {
        let dir = cfg
            .artifact_url
            .strip_prefix("file://")
            .unwrap_or(&cfg.artifact_url);
        ObjectArtifactStore::local(Path::new(dir))
    }
}
