//! The three backend traits — each has a memory implementation for tests, an
//! embedded one for `tracseq-ml up`, and passes the suites in
//! `crate::testing` — and the trial reporter a worker prunes through.

mod artifacts;
mod queue;
mod reporter;
mod state;

pub use artifacts::{ArtifactMeta, ArtifactPath, ArtifactStore, ByteStream, DIGEST_SUFFIX};
pub use queue::{Acker, Delivery, JobQueue, Subscription};
pub use reporter::TrialReporter;
pub use state::{transition, transition_from, JobFilter, StateStore, TransitionOutcome};
