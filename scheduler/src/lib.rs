//! The scheduler: experiment specs and operations (single- and
//! multi-objective) around the HPO crate (`tracseq-hpo`: search spaces,
//! samplers, pruners), the experiment lifecycle's store side, jobs
//! submitted outside experiments, and the dispatch loop: the sweeper (leases,
//! deadlines, retries, lost wake-ups, unschedulable jobs) and the AutoML
//! driver around a pure plan; and the model registry's operations
//! (versions registered from outside, promotion requests, approvals,
//! aliases) and deployments (deploy jobs,
//! going live, rollback), with the canary controller; and the monitor
//! (drift, error rates) with the alerts it raises and delivers.

pub mod alerts;
pub mod automl;
pub mod canary;
pub mod deployments;
pub mod dispatch;
pub mod history;
pub mod jobs;
pub mod lifecycle;
pub mod monitor;
pub mod objective;
pub mod objectives;
pub mod register;
pub mod registry;
pub mod reporter;
pub mod retention;
pub mod service;
pub mod spec;
pub mod summary;
pub mod sweeper;

pub use dispatch::Scheduler;
pub use reporter::Reporter;
