//! A [`Platform`] for each deployment: embedded (SQLite, a local directory,
//! an in-process queue), distributed (PostgreSQL, RabbitMQ, S3 or a shared
//! directory) and in memory (tests).

use crate::encryption::Encryption;
use crate::{MemoryQueue, MemoryStateStore, ObjectArtifactStore, SqliteStateStore};
use std::path::Path;
use std::sync::Arc;
use tracseq_core::config::{Config, EncryptionConfig};
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::{Error, Platform, Result};

/// Embedded mode: SQLite at `<dir>/state.db`, artifacts under
/// `<dir>/artifacts` (sealed with the keys `encryption` names, by default
/// `<dir>/keys/kek`), and an in-process queue. The queue starts empty on
/// every start; the scheduler re-publishes queued jobs from the store.
pub async fn embedded(
    dir: &Path,
    encryption: &EncryptionConfig,
    policy: RetryPolicy,
) -> Result<(Platform, MemoryQueue)> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
    })?;
    let state = SqliteStateStore::open(&dir.join("state.db")).await?;
    let artifacts = embedded_artifacts(dir, encryption)?;
    let queue = MemoryQueue::new();
    let platform = Platform::new(
        Arc::new(state),
        Arc::new(queue.clone()),
        Arc::new(artifacts),
        policy,
    );
    Ok((platform, queue))
}

/// The artifact store of an embedded data directory.
fn embedded_artifacts(dir: &Path, encryption: &EncryptionConfig) -> Result<ObjectArtifactStore> {
    Ok(ObjectArtifactStore::local(&dir.join("artifacts"))?
        .with_encryption(Encryption::from_config(encryption, Some(dir))?))
}

/// The artifact store a configuration names: the distributed one when
/// `distributed.artifact_url` is set, else the embedded data directory's.
/// For the command line (`tracseq-ml keys …`).
pub fn configured_artifacts(cfg: &Config) -> Result<ObjectArtifactStore> {
    if cfg.distributed.artifact_url.is_empty() {
        return embedded_artifacts(&cfg.data_dir, &cfg.encryption);
    }
    #[cfg(feature = "distributed")]
    {
        artifact_store(&cfg.distributed, &cfg.encryption)
    }
    #[cfg(not(feature = "distributed"))]
    Err(Error::Invalid(
        "an artifact URL is configured but this build has no distributed support".into(),
    ))
}

/// Everything in memory (tests), artifacts sealed under a key of their own
/// as in every deployment.
pub fn in_memory(policy: RetryPolicy) -> Platform {
    let (_, key) = crate::encryption::keys::generate_key_line().expect("system randomness");
    let keyring = crate::encryption::keys::Keyring::from_text(&key).expect("a generated key");
    Platform::new(
        Arc::new(MemoryStateStore::new()),
        Arc::new(MemoryQueue::new()),
        Arc::new(
            ObjectArtifactStore::in_memory().with_encryption(Encryption::with_keyring(keyring)),
        ),
        policy,
    )
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

/// Distributed mode: PostgreSQL, RabbitMQ and S3 (or a shared directory).
/// Every role but `Migrate` refuses a database whose schema is not
/// exactly the one this binary was built for.
#[cfg(feature = "distributed")]
pub async fn distributed(
    cfg: &tracseq_core::config::DistributedConfig,
    encryption: &EncryptionConfig,
    role: Role,
    classes: Vec<String>,
    policy: RetryPolicy,
) -> Result<Platform> {
    use crate::{AmqpOptions, AmqpQueue, PgOptions, PostgresStateStore};
    // The keys first: a role without them must not start half way.
    let artifacts = artifact_store(cfg, encryption)?;
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
    Ok(Platform::new(
        Arc::new(state),
        Arc::new(queue),
        Arc::new(artifacts),
        policy,
    ))
}

/// `s3://bucket/prefix` is S3 (with `s3_endpoint` for MinIO and friends);
/// anything else is a directory every host mounts. Either is sealed with
/// the configured keys; a distributed role has no default key.
#[cfg(feature = "distributed")]
fn artifact_store(
    cfg: &tracseq_core::config::DistributedConfig,
    encryption: &EncryptionConfig,
) -> Result<ObjectArtifactStore> {
    let encryption = Encryption::from_config(encryption, None)?;
    let store = if cfg.artifact_url.starts_with("s3://") {
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        ObjectArtifactStore::s3(&crate::object_artifacts::S3Options {
            url: cfg.artifact_url.clone(),
            endpoint: non_empty(&cfg.s3_endpoint),
            region: non_empty(&cfg.s3_region),
            access_key_id: None,
            secret_access_key: None,
        })?
    } else {
        let dir = cfg
            .artifact_url
            .strip_prefix("file://")
            .unwrap_or(&cfg.artifact_url);
        ObjectArtifactStore::local(Path::new(dir))?
    };
    Ok(store.with_encryption(encryption))
}

/// Tokens and the audit log: in PostgreSQL when `distributed` names a
/// database, else in the embedded SQLite file `<dir>/state.db`. Only the
/// api and the command line open it; a separate small pool, so the api's
/// token lookups never queue behind the state store's work.
pub async fn security_store(
    dir: &Path,
    distributed: Option<&tracseq_core::config::DistributedConfig>,
) -> Result<Arc<dyn tracseq_core::ports::SecurityStore>> {
    if let Some(cfg) = distributed.filter(|d| !d.database_url.is_empty()) {
        #[cfg(feature = "postgres")]
        {
            let pg = crate::PgOptions {
                max_connections: cfg.database_max_connections.clamp(1, 4),
                schema: (!cfg.database_schema.is_empty()).then(|| cfg.database_schema.clone()),
                application_name: "tracseq-ml security".into(),
                ..Default::default()
            };
            let store = crate::PostgresStateStore::connect(&cfg.database_url, pg).await?;
            store.check_schema().await?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = cfg;
            return Err(Error::Invalid(
                "a database URL is configured but this build has no PostgreSQL support".into(),
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Unavailable(format!("cannot create data dir {}: {e}", dir.display()))
    })?;
    Ok(Arc::new(
        SqliteStateStore::open(&dir.join("state.db")).await?,
    ))
}
