//! Safe wrappers over the C APIs the model families need and their Rust
//! bindings do not expose.
//!
//! The workspace forbids `unsafe`; this crate is the single exception, so
//! every foreign call is here, small and reviewed in one place. It holds
//! LightGBM's training loop: the `lightgbm3` crate trains in one call, while
//! pruning needs a hook after every boosting round (report the validation
//! metric, stop when the pruner says so).

pub mod lightgbm;
