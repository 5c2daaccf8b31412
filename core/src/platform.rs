//! The three backends bundled together, as every component receives them.
//!
//! Which backends: `tracseq_backends::platform` builds a `Platform` for each
//! deployment (embedded, distributed, in memory for tests).

use crate::ids::ExperimentId;
use crate::lifecycle::RetryPolicy;
use crate::ports::{
    AlertStore, ArtifactStore, JobQueue, PredictionLogStore, RegistryStore, StateStore,
};
use crate::trial_cache::TrialCache;
use crate::types::Trial;
use crate::Result;
use std::sync::Arc;

#[derive(Clone)]
pub struct Platform {
    pub state: Arc<dyn StateStore>,
    /// Stages, aliases, promotions and deployments: the same database as
    /// `state`, behind its own port.
    pub registry: Arc<dyn RegistryStore>,
    /// The prediction log: the same database again, its own port.
    pub predictions: Arc<dyn PredictionLogStore>,
    /// Alerts and drift scores: the same database, its own port.
    pub alerts: Arc<dyn AlertStore>,
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
    /// The backends with the retry policy of this deployment and an empty
    /// trial cache; `store` is the state store, the registry and the
    /// prediction log, and alerts.
    pub fn new<S: StateStore + RegistryStore + PredictionLogStore + AlertStore + 'static>(
        store: Arc<S>,
        queue: Arc<dyn JobQueue>,
        artifacts: Arc<dyn ArtifactStore>,
        policy: RetryPolicy,
    ) -> Self {
        Platform {
            state: store.clone(),
            registry: store.clone(),
            predictions: store.clone(),
            alerts: store,
            queue,
            artifacts,
            policy,
            trial_cache: Arc::default(),
        }
    }
}
