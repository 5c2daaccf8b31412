//! The state machines of the platform's records, each one pure function
//! from (record, event, time) to the changed record and the effects the
//! caller must carry out. No I/O and no clock reads happen here, so every
//! transition and race is unit-tested without a runtime; stores apply the
//! result with a compare-and-set, which makes each transition win once.
//!
//! - [`job`]: queued → leased → running → succeeded / failed → … (the
//!   job's functions are re-exported here, as `lifecycle::on_event`).
//! - [`experiment`]: running → finalizing → completed / failed / cancelled.
//! - [`promotion`]: a request to move a model version to a stage: pending →
//!   approved / rejected / cancelled (production needs a second identity).
//! - [`deployment`]: pending → deploying → live → superseded / rolled_back,
//!   or failed.
//! - [`traffic`]: how a live deployment shares its traffic (A/B, shadow)
//!   and a canary rollout's steps: progressing / holding → completed, or
//!   rolled back when its gates fail.
//! - [`alert`]: an alert's delivery to each webhook: pending → delivered,
//!   or retried with a backoff until it fails for good.
//!
//! The registry's own rules (one production version, aliases) are in
//! [`crate::registry`]: they are not a record's lifecycle but a function of
//! a model's slots.

pub mod alert;
pub mod deployment;
pub mod experiment;
pub mod job;
pub mod promotion;
pub mod traffic;

pub use job::{on_event, Effect, Event, Rejection, RetryPolicy};
