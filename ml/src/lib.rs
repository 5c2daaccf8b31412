//! tracseq-learn: datasets, preprocessing, models, cross-validation, metrics,
//! model artifacts and the laboratory sample-quality domain.
//!
//! The worker calls [`automl::evaluate`] for each HPO trial and
//! [`automl::fit_final`] for the final model; serving loads a
//! [`artifact::ModelArtifact`] and calls [`artifact::ModelArtifact::predict`].
//!
//! The neural-network family ([`model::nn`]) trains only in builds with the
//! `torch` feature (libtorch through tch; `eval "$(ops/libtorch.sh)"` before
//! building); every build serves nn models, in plain Rust.

pub mod artifact;
pub mod automl;
pub mod compare;
pub mod cv;
pub mod dataset;
pub mod drift;
pub mod drift_report;
mod error;
pub mod lab;
pub mod live;
pub mod matrix;
pub mod metrics;
pub mod model;
#[cfg(feature = "torch")]
pub mod nn_check;
pub mod predict;
pub mod preprocess;
pub mod profile;
pub mod schema;
pub mod task;

pub use artifact::{sha256_hex, ModelArtifact};
pub use automl::{evaluate, fit_final, EvalOptions, Evaluation, Step};
pub use dataset::{Dataset, Limits};
pub use error::{LearnError, Result};
pub use metrics::{Direction, Metric};
pub use model::default_search_space;
pub use predict::{Contribution, Prediction};
pub use task::Task;
