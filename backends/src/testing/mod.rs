//! Conformance suites (one per port) and builders, shared by every backend's
//! tests: a backend is correct when it passes the same suite as the others.

mod alerts;
mod artifacts;
mod cache;
mod deployments;
mod encryption;
mod paging;
mod predictions;
mod promotions;
mod queue;
mod registry;
mod security;
pub mod services;
mod state;

pub use alerts::{alert, alert_store_suite};
pub use artifacts::artifact_store_suite;
pub use cache::prediction_cache_suite;
pub use encryption::{encryption_suite, new_key, sealed_with};
pub use predictions::{outcome, prediction, prediction_log_suite};
pub use queue::{job_queue_suite, msg};
pub use registry::{model_version, registry_store_suite};
pub use security::{audit_entry, security_store_suite};
pub use state::state_store_suite;

pub use tracseq_core::fixtures::{new_experiment, new_job, t0};
