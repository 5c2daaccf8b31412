//! The scheduler's side of [`TrialReporter`]: a worker's intermediate values
//! go through the same `report` as the HTTP route, so a trial is pruned by
//! the same rule whichever side evaluates it.

use crate::service;
use async_trait::async_trait;
use tracseq_core::ports::TrialReporter;
use tracseq_core::{ExperimentId, Platform, Result};

/// Decides pruning against the state store of `platform`, in the caller's
/// process (the worker's, in a distributed deployment).
pub struct Reporter {
    platform: Platform,
}

impl Reporter {
    pub fn new(platform: Platform) -> Self {
        Reporter { platform }
    }
}

#[async_trait]
impl TrialReporter for Reporter {
    async fn report(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<bool> {
        service::report(&self.platform, experiment, number, step, value).await
    }
}
