//! Workers: take wake-ups from the queue, claim jobs with a lease, keep the
//! lease alive by heartbeat, run trials / final training / batch prediction,
//! upload artifacts, render deployments, and record each result once.

mod datasets;
pub mod deploy;
pub mod gpu;
pub mod host;
pub mod runner;
mod worker;

pub use datasets::DatasetCache;
pub use host::HostResources;
pub use worker::{Worker, WorkerOptions};
