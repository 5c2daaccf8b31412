//! The scheduler: HPO (search spaces, samplers, pruners), experiment specs
//! and operations (single- and multi-objective), jobs submitted outside experiments, and the
//! dispatch loop with lease expiry.

pub mod dispatch;
pub mod hpo;
pub mod jobs;
pub mod lifecycle;
pub mod objectives;
pub mod reporter;
pub mod service;
pub mod spec;

pub use dispatch::Scheduler;
pub use reporter::Reporter;
