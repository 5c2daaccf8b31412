//! The three backend traits. Each has a memory implementation for tests, an
//! embedded one for `tracseq-ml up`, and passes the suites in `crate::testing`.

mod artifacts;
mod queue;
mod state;

pub use artifacts::{ArtifactMeta, ArtifactPath, ArtifactStore, ByteStream, DIGEST_SUFFIX};
pub use queue::{Acker, Delivery, JobQueue, Subscription};
pub use state::{transition, transition_from, JobFilter, StateStore, TransitionOutcome};
