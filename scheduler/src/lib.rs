//! The scheduler: experiment specs and operations (single- and
//! multi-objective) around the HPO crate (`tracseq-hpo`: search spaces,
//! samplers, pruners), job payloads, and the dispatch loop with lease expiry.

pub mod dispatch;
pub mod objectives;
pub mod payload;
pub mod placement;
pub mod service;
pub mod spec;

pub use dispatch::Scheduler;
