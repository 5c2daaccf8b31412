//! The "xgboost" family: XGBoost 3.4 itself, built from its bundled sources
//! (the `xgb` crate's `local_build`), with the `hist` tree method.
//!
//! Training runs round by round (`XGBoosterUpdateOneIter`), reporting the
//! validation metric every few rounds when watched, so pruning stops it
//! early. The model is read back from XGBoost's JSON into a
//! [`TreeEnsemble`], its starting margin measured against XGBoost's own
//! margins, and the whole conversion checked on the training rows.

use serde_json::Value;
use xgb::{Booster, DMatrix};

use super::boosted::{Link, TreeModel};
use super::library::{library_seed, LibraryTrainer, Reporter, VERIFY_ROWS};
use super::params::XgboostParams;
use super::step::Step;
use super::trees::from_xgboost;
use super::{FittedModel, Watch, Watched};
use crate::error::{internal, LearnError, Result};
use crate::matrix::DenseMatrix;
use crate::metrics::Metric;
use crate::task::Task;

#[derive(Debug, Clone)]
pub struct XgboostTrainer {
    pub params: XgboostParams,
    pub seed: u64,
    pub metric: Metric,
    /// XGBoost threads; 1 unless the caller owns more CPUs (see lightgbm).
    pub threads: usize,
}

/// XGBoost sums leaf values in `f32`; ours in `f64`.
const VERIFY_TOLERANCE: f64 = 1e-4;

fn matrix(x: &DenseMatrix, y: &[f64]) -> Result<DMatrix> {
    // XGBoost stores features as f32; the served model compares in f32 too.
    let data: Vec<f32> = x.data.iter().map(|&v| v as f32).collect();
    let mut m = DMatrix::from_dense(&data, x.rows).map_err(lib)?;
    let labels: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    m.set_labels(&labels).map_err(lib)?;
    Ok(m)
}

fn lib(e: xgb::XGBError) -> LearnError {
    internal(format!("XGBoost: {e}"))
}

impl XgboostTrainer {
    fn configure(&self, booster: &mut Booster, task: &Task) -> Result<()> {
        let p = &self.params;
        let objective = match task.n_classes() {
            0 => "reg:squarederror",
            2 => "binary:logistic",
            _ => "multi:softprob",
        };
        let mut settings = vec![
            ("objective", objective.to_string()),
            ("tree_method", "hist".into()),
            ("eta", p.learning_rate.to_string()),
            ("max_depth", p.max_depth.to_string()),
            ("min_child_weight", p.min_child_weight.to_string()),
            ("subsample", p.subsample.to_string()),
            ("colsample_bytree", p.colsample_bytree.to_string()),
            ("lambda", p.l2.to_string()),
            ("alpha", p.l1.to_string()),
            ("nthread", self.threads.max(1).to_string()),
            ("seed", library_seed(self.seed).to_string()),
            ("verbosity", "0".into()),
        ];
        if task.n_classes() > 2 {
            settings.push(("num_class", task.n_classes().to_string()));
        }
        for (name, value) in settings {
            booster.set_param(name, &value).map_err(lib)?;
        }
        Ok(())
    }
}

/// XGBoost's `f32` predictions of `m` as `f64`: probabilities, or with
/// `margin` the margins before the link.
fn predictions(booster: &Booster, m: &DMatrix, margin: bool) -> Result<Vec<f64>> {
    let p = if margin {
        booster.predict_margin(m)
    } else {
        booster.predict(m)
    };
    Ok(p.map_err(lib)?.into_iter().map(f64::from).collect())
}

impl LibraryTrainer for XgboostTrainer {
    const LIBRARY: &'static str = "XGBoost";

    fn train(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Option<Watch<'_>>) -> Watched {
        let link = Link::for_task(task);
        let groups = link.groups(task);
        let dtrain = matrix(x, y)?;
        let rounds = self.params.iterations;
        let mut reporter = Reporter::new(watch, x, task, self.metric, rounds)?;
        let dvalid = match reporter.rows() {
            Some((vx, vy)) => Some(matrix(vx, vy)?),
            None => None,
        };
        // Declared after the matrices so it is dropped before them: the
        // booster caches predictions keyed on the matrices it was given.
        let cached: Vec<&DMatrix> = std::iter::once(&dtrain).chain(dvalid.as_ref()).collect();
        let mut booster =
            Booster::new_with_cached_dmats(&Default::default(), &cached).map_err(lib)?;
        self.configure(&mut booster, task)?;
        for round in 1..=rounds {
            let iteration = i32::try_from(round - 1).map_err(|_| internal("too many rounds"))?;
            booster.update(&dtrain, iteration).map_err(lib)?;
            // Only called with a watch, for whose rows `dvalid` was made.
            let outputs = || match &dvalid {
                Some(dvalid) => predictions(&booster, dvalid, false),
                None => Err(internal("XGBoost has no validation rows to score")),
            };
            if reporter.after(round, round == rounds, outputs)? == Step::Stop {
                return Ok(None);
            }
        }
        let json = booster.save_buffer(false).map_err(lib)?;
        let native = String::from_utf8(json).map_err(|_| internal("XGBoost JSON is not UTF-8"))?;
        let parsed: Value = serde_json::from_str(&native)
            .map_err(|e| internal(format!("XGBoost JSON does not parse: {e}")))?;
        let mut ensemble = from_xgboost(&parsed, x.cols, groups)?;
        let margins = predictions(&booster, &dtrain, true)?;
        if margins.len() != x.rows * groups {
            return Err(internal(format!(
                "XGBoost gave {} margins for {} rows x {groups}",
                margins.len(),
                x.rows
            )));
        }
        ensemble.calibrate_base(x.row(0), &margins[..groups]);
        let check_rows = x.rows.min(VERIFY_ROWS);
        ensemble.verify(
            &x.data[..check_rows * x.cols],
            &margins[..check_rows * groups],
            VERIFY_TOLERANCE,
        )?;
        Ok(Some(FittedModel::Xgboost(TreeModel {
            link,
            ensemble,
            native,
        })))
    }
}
