//! The scheduler: HPO (search spaces, samplers, pruners), experiment specs
//! and operations (single- and multi-objective), job payloads, and the
//! dispatch loop with lease expiry.

pub mod dispatch;
pub mod hpo;
pub mod objectives;
pub mod payload;
pub mod placement;
pub mod service;
pub mod spec;

pub use dispatch::Scheduler;
