//! The three backends bundled together, as every component receives them.

use crate::backends::{MemoryQueue, MemoryStateStore, ObjectArtifactStore, SqliteStateStore};
use crate::lifecycle::RetryPolicy;
use crate::ports::{ArtifactStore, JobQueue, StateStore};
use crate::Result;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
pub struct Platform {
    pub state: Arc<dyn StateStore>,
    pub queue: Arc<dyn JobQueue>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub policy: RetryPolicy,
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
        }
    }
}
