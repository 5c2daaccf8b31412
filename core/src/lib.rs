//! Domain types, the pure lifecycles, placement, the job protocol and the
//! ports (the three backend traits).
//!
//! Everything the scheduler, workers and api share lives here, so that the
//! embedded and distributed deployments differ only in which backend sits
//! behind [`ports::StateStore`], [`ports::JobQueue`] and [`ports::ArtifactStore`].
//! The backends themselves live in `tracseq-backends`, the one crate that
//! talks to databases, brokers and object stores.

pub mod config;
pub mod digest;
pub mod error;
#[cfg(any(test, feature = "test-util"))]
pub mod fixtures;
pub mod fleet;
pub mod ids;
pub mod lifecycle;
pub mod monitoring;
pub mod paging;
pub mod placement;
pub mod platform;
pub mod ports;
pub mod predictions;
pub mod protocol;
pub mod registry;
pub mod resources;
pub mod security;
pub mod trial_cache;
pub mod types;

pub use error::{Error, Result};
pub use ids::{DatasetId, ExperimentId, JobId, TokenId, TrialId, WorkerId};
pub use platform::Platform;
