//! The backend traits — each has a memory implementation for tests, an
//! embedded one for `tracseq-ml up`, and passes the suites in
//! `tracseq_backends::testing` — and the trial reporter a worker prunes
//! through. [`SecurityStore`] (tokens and the audit log) is its own port:
//! only the api and the command line use it, so a worker's database role
//! needs no access to what it stores. [`RegistryStore`] (stages, aliases,
//! promotions, deployments) is separate for the same reason, and so is
//! [`PredictionLogStore`] (the prediction log, which only the api writes).
//! [`PredictionCache`] is the prediction cache's shared tier (Redis).
//! [`AlertStore`] holds alerts and drift scores: the scheduler's monitor
//! writes them, the api reads them.

mod alerts;
mod artifacts;
mod cache;
mod predictions;
mod queue;
mod registry;
mod reporter;
mod security;
mod state;

pub use alerts::AlertStore;
pub use artifacts::{
    ArtifactMeta, ArtifactPath, ArtifactStore, ByteStream, DIGEST_SUFFIX, KEY_SUFFIX,
};
pub use cache::PredictionCache;
pub use predictions::PredictionLogStore;
pub use queue::{Acker, Delivery, JobQueue, Subscription};
pub use registry::{
    DeploymentFilter, DeploymentWrite, HistoryEntry, ModelTags, PromotionFilter, PromotionWrite,
    RegistryStore, RegistryWrite,
};
pub use reporter::TrialReporter;
pub use security::SecurityStore;
pub use state::{transition, transition_from, JobFilter, StateStore, TransitionOutcome};
