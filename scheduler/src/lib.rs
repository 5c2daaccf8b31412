//! The scheduler: HPO (search spaces, samplers, pruners), experiment specs
//! and operations, job payloads, and the dispatch loop with lease expiry.

pub mod dispatch;
pub mod hpo;
pub mod payload;
pub mod placement;
pub mod service;
pub mod spec;

pub use dispatch::Scheduler;
