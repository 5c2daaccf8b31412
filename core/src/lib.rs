//! Domain types, ports (the three backend traits) and their embedded backends.
//!
//! Everything the scheduler, workers and api share lives here, so that the
//! embedded and distributed deployments differ only in which backend sits
//! behind [`ports::StateStore`], [`ports::JobQueue`] and [`ports::ArtifactStore`].

pub mod backends;
pub mod config;
pub mod error;
pub mod fleet;
pub mod ids;
pub mod lifecycle;
pub mod placement;
pub mod platform;
pub mod ports;
pub mod protocol;
pub mod resources;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod trial_cache;
pub mod types;

pub use error::{Error, Result};
pub use ids::{DatasetId, ExperimentId, JobId, TrialId, WorkerId};
pub use platform::Platform;
