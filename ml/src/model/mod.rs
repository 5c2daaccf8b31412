//! Model families behind one [`Trainer`] trait, and the fitted [`FittedModel`].
//!
//! Models see only the encoded matrix from the preprocessor. Raw outputs are
//! the predicted value (regression) or one probability per class.
//! Contributions explain the model's *margin* in its own units: target units
//! for regression, log-odds of the positive class for binary classification,
//! and the predicted class's margin (softmax logit for linear and nn,
//! one-vs-rest log-odds for gbm) for multiclass. Contributions plus the base
//! value equal that margin.

pub mod boosted;
pub mod family;
pub mod gbm;
#[cfg(any(feature = "lightgbm", feature = "xgboost"))]
pub mod library;
#[cfg(feature = "lightgbm")]
pub mod lightgbm;
pub mod linear;
pub mod nn;
mod outputs;
pub mod params;
pub mod step;
pub mod trees;
#[cfg(feature = "xgboost")]
pub mod xgboost;

#[cfg(all(test, feature = "lightgbm", feature = "xgboost"))]
mod library_tests;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, Result};
use crate::matrix::DenseMatrix;
use crate::metrics::Metric;
use crate::task::Task;

pub use family::Family;
pub use params::{
    default_search_space, GbmParams, LightgbmParams, LinearParams, ModelParams, NnParams,
    RandomForestParams, XgboostParams,
};
pub use step::Step;

/// How a pruned search watches a training: the fold's held-out rows, which
/// a trainer may score itself on while it trains, and `report`, which hears
/// each score. The rows' metric is only *reported* (for pruning); no family
/// fits or stops early on them, so the fold's score stays an honest estimate.
pub struct Watch<'a> {
    pub x: &'a DenseMatrix,
    pub y: &'a [f64],
    /// Called with `(step, value)`; [`Step::Stop`] ends the training.
    pub report: &'a mut dyn FnMut(u32, f64) -> Step,
}

/// What a watched fit gives: the model, or `None` when a report was
/// answered with [`Step::Stop`].
pub type Watched = Result<Option<FittedModel>>;

/// Fits a model of one family on an encoded matrix.
pub trait Trainer {
    /// `y` holds regression targets or class indices (as `f64`) for `task`.
    fn fit(&self, x: &DenseMatrix, y: &[f64], task: &Task) -> Result<FittedModel>;

    /// [`Trainer::fit`] in a pruned search, reporting through
    /// `watch.report`: families that train in epochs (nn) report the metric
    /// on their own validation split after each epoch, ignoring `watch`'s
    /// rows; families that boost in rounds (lightgbm, random_forest,
    /// xgboost) report the metric on `watch`'s rows every few rounds.
    /// Families trained in one go never report.
    fn fit_watched(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Watch<'_>) -> Watched {
        let _ = watch;
        self.fit(x, y, task).map(Some)
    }
}

impl ModelParams {
    /// A trainer for these parameters; `seed` drives any randomness
    /// (row subsampling, initial weights, batches) so the same seed gives
    /// the same model. `metric` is what families that stop early watch.
    /// `device` (`cpu`, `cuda:N`) overrides the process default for "nn".
    /// Fails only for a family this build leaves out (see [`params`]).
    pub fn trainer(
        &self,
        seed: u64,
        metric: Metric,
        device: Option<&str>,
    ) -> Result<Box<dyn Trainer>> {
        match *self {
            ModelParams::Linear(params) => Ok(Box::new(linear::LinearTrainer { params })),
            ModelParams::Gbm(params) => Ok(Box::new(gbm::GbmTrainer { params, seed })),
            #[cfg(feature = "torch")]
            ModelParams::Nn(params) => {
                let mut t = nn::train::NnTrainer::new(params, seed, metric)?;
                if let Some(d) = device {
                    t.device = nn::NnDevice::parse(d)?;
                }
                Ok(Box::new(t))
            }
            #[cfg(not(feature = "torch"))]
            ModelParams::Nn(_) => {
                let _ = device;
                Err(invalid(
                    "family \"nn\" needs a build with the `torch` feature (libtorch)",
                ))
            }
            #[cfg(feature = "lightgbm")]
            ModelParams::Lightgbm(p) => Ok(Box::new(lightgbm::LightgbmTrainer {
                mode: lightgbm::Mode::Gbdt(p),
                seed,
                metric,
                threads: 1,
            })),
            #[cfg(feature = "lightgbm")]
            ModelParams::RandomForest(p) => Ok(Box::new(lightgbm::LightgbmTrainer {
                mode: lightgbm::Mode::RandomForest(p),
                seed,
                metric,
                threads: 1,
            })),
            #[cfg(feature = "xgboost")]
            ModelParams::Xgboost(params) => Ok(Box::new(xgboost::XgboostTrainer {
                params,
                seed,
                metric,
                threads: 1,
            })),
            #[allow(unreachable_patterns)]
            other => {
                let _ = metric;
                Err(invalid(format!(
                    "family \"{}\" needs a build with the `{}` feature",
                    other.family().name(),
                    other.family().feature()
                )))
            }
        }
    }
}

/// A trained model of any family.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum FittedModel {
    Linear(linear::LinearModel),
    Gbm(gbm::GbmModel),
    Nn(nn::NnModel),
    Lightgbm(boosted::TreeModel),
    #[serde(rename = "random_forest")]
    RandomForest(boosted::TreeModel),
    Xgboost(boosted::TreeModel),
}

/// `$call` on the family's model inside a [`FittedModel`], bound to `$m`:
/// the one place that lists which model type each variant holds.
macro_rules! on_model {
    ($model:expr, $m:ident => $call:expr) => {
        match $model {
            FittedModel::Linear($m) => $call,
            FittedModel::Gbm($m) => $call,
            FittedModel::Nn($m) => $call,
            FittedModel::Lightgbm($m)
            | FittedModel::RandomForest($m)
            | FittedModel::Xgboost($m) => $call,
        }
    };
}

impl FittedModel {
    pub fn family(&self) -> Family {
        match self {
            FittedModel::Linear(_) => Family::Linear,
            FittedModel::Gbm(_) => Family::Gbm,
            FittedModel::Nn(_) => Family::Nn,
            FittedModel::Lightgbm(_) => Family::Lightgbm,
            FittedModel::RandomForest(_) => Family::RandomForest,
            FittedModel::Xgboost(_) => Family::Xgboost,
        }
    }

    /// Number of encoded input columns the model expects.
    pub fn n_features(&self) -> usize {
        on_model!(self, m => m.n_features())
    }

    /// Width of one raw output: 1 for regression, else the number of classes.
    pub fn output_width(&self) -> usize {
        on_model!(self, m => m.output_width())
    }

    /// Checks the shape invariants prediction relies on, for models decoded
    /// from storage; returns what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match self {
            FittedModel::Linear(m) => m.validate(),
            FittedModel::Lightgbm(m) | FittedModel::RandomForest(m) | FittedModel::Xgboost(m) => {
                m.validate()
            }
            // Boosters and networks are checked while decoding (see `gbm`, `nn`).
            FittedModel::Gbm(_) | FittedModel::Nn(_) => Ok(()),
        }
    }

    /// Raw output for one encoded row into `out` (`output_width` long).
    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        on_model!(self, m => m.predict_row(x, out))
    }

    /// Raw outputs for every row, row-major.
    pub fn predict(&self, x: &DenseMatrix) -> Vec<f64> {
        let width = self.output_width();
        let mut out = vec![0.0; x.rows * width];
        for (i, chunk) in out.chunks_mut(width).enumerate() {
            self.predict_row(x.row(i), chunk);
        }
        out
    }

    /// The class whose margin contributions explain: the positive class for
    /// binary, the most probable class for multiclass, 0 for regression.
    pub fn explained_class(&self, output: &[f64]) -> usize {
        match output.len() {
            0 | 1 => 0,
            2 => 1,
            _ => crate::metrics::argmax(output),
        }
    }

    /// Per-column contributions to the margin of `class` for one encoded
    /// row. `out` has `n_features + 1` slots; the last receives the base
    /// value, so `out.iter().sum()` is the margin.
    pub fn contributions_row(&self, x: &[f64], class: usize, out: &mut [f64]) {
        out.fill(0.0);
        on_model!(self, m => m.contributions_row(x, class, out))
    }

    /// Raw output and the explained class's contributions for one row, in
    /// one pass where the family allows it (for boosted trees the
    /// contribution walk already yields the margin, halving serving cost).
    /// Returns the explained class (see [`FittedModel::explained_class`]).
    pub fn explain_row(&self, x: &[f64], output: &mut [f64], contributions: &mut [f64]) -> usize {
        match self {
            FittedModel::Gbm(m) if m.kind != gbm::GbmKind::OneVsRest => {
                contributions.fill(0.0);
                m.contributions_row(x, 0, contributions);
                m.output_from_margin(contributions.iter().sum(), output);
                self.explained_class(output)
            }
            _ => {
                self.predict_row(x, output);
                let class = self.explained_class(output);
                self.contributions_row(x, class, contributions);
                class
            }
        }
    }

    /// The margin of `class` that contributions add up to.
    pub fn margin_row(&self, x: &[f64], class: usize) -> f64 {
        on_model!(self, m => m.margin_row(x, class))
    }
}

/// Checks shapes shared by every trainer, so families can index freely.
pub(crate) fn check_training_data(x: &DenseMatrix, y: &[f64], task: &Task) -> Result<()> {
    if x.rows == 0 || x.cols == 0 {
        return Err(invalid("training data is empty"));
    }
    if x.data.len() != x.rows * x.cols || y.len() != x.rows {
        return Err(invalid(format!(
            "training data shape mismatch: {} rows, {} targets",
            x.rows,
            y.len()
        )));
    }
    if let Some(v) = x.data.iter().find(|v| !v.is_finite()) {
        return Err(invalid(format!("encoded training data contains {v}")));
    }
    let k = task.n_classes();
    for (i, &t) in y.iter().enumerate() {
        let ok = if k == 0 {
            t.is_finite()
        } else {
            t >= 0.0 && t.fract() == 0.0 && (t as usize) < k
        };
        if !ok {
            return Err(invalid(format!("target {i} has invalid value {t}")));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_data;
