//! The feature store's domain: feature definitions and their versions,
//! feature sets, the safe expression language of derived features, the
//! point-in-time rule every reader applies, the online store's write rule,
//! and the real-time computation of the lab features from raw lab events.
//!
//! Everything here is pure (no database, no network): the stores that keep
//! definitions, values and the online copy live behind ports, so the rules
//! are written once and tested on hand-made tables.

pub mod definition;
pub mod events;
pub mod expr;
pub mod offline;
pub mod online;
pub mod pit;
pub mod sets;
pub mod time;

#[cfg(test)]
mod testing;

pub use definition::{FeatureSpec, FeatureVersion, Registration, Sensitivity, Source, ValueType};
pub use sets::{FeatureSetSpec, FeatureSetVersion};
