//! How a worker reports a trial's intermediate values and learns whether to
//! stop it early (prune).
//!
//! The pruning decision needs the experiment's pruner and its trials'
//! history, which the scheduler crate owns, while the worker sits below the
//! scheduler and must not import it. The worker sees only this trait; the
//! process wiring (`src/embedded.rs`, the `worker` role) hands it the
//! scheduler's implementation, which decides in the worker's own process
//! against the shared state store.

use crate::ids::ExperimentId;
use crate::Result;
use async_trait::async_trait;

#[async_trait]
pub trait TrialReporter: Send + Sync {
    /// Records `value` at `step` of trial `number` of experiment `experiment`
    /// and says whether the trial should stop now. A trial that already
    /// finished (its experiment was cancelled) is a
    /// [`crate::Error::Conflict`]; a value that is not finite is
    /// [`crate::Error::Invalid`].
    async fn report(
        &self,
        experiment: ExperimentId,
        number: u64,
        step: u32,
        value: f64,
    ) -> Result<bool>;
}
