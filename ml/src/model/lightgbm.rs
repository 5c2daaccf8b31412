//! The "lightgbm" (gradient boosting) and "random_forest" families, both
//! trained by LightGBM itself: random forests use its `rf` boosting mode
//! (bagged, feature-subsampled trees whose outputs are averaged).
//!
//! Training runs one boosting round at a time through `tracseq-ffi`, so a
//! watched fit reports its validation metric every few rounds (trees, for a
//! forest) and stops as soon as the pruner says so: a pruned trial costs the
//! rounds it ran, not the rounds it asked for. The trained model is read
//! back into a [`TreeEnsemble`](super::trees::TreeEnsemble) and checked against the raw scores LightGBM
//! itself gives for the exported model before it is accepted (see
//! [`super::trees`]).

use tracseq_ffi::lightgbm::{Booster, Dataset, Model};

use super::boosted::{Link, TreeModel};
use super::library::{library_seed, LibraryTrainer, Reporter, VERIFY_ROWS};
use super::params::{LightgbmParams, RandomForestParams};
use super::step::Step;
use super::trees::from_lightgbm;
use super::{FittedModel, Watch, Watched};
use crate::error::internal;
use crate::matrix::DenseMatrix;
use crate::metrics::Metric;
use crate::task::Task;

/// Which of LightGBM's boosting modes, with its settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Gbdt(LightgbmParams),
    RandomForest(RandomForestParams),
}

#[derive(Debug, Clone)]
pub struct LightgbmTrainer {
    pub mode: Mode,
    pub seed: u64,
    pub metric: Metric,
    /// LightGBM threads; the worker reserves CPUs per trial, so 1 unless
    /// the caller knows it owns more.
    pub threads: usize,
}

impl LightgbmTrainer {
    fn rounds(&self) -> usize {
        match self.mode {
            Mode::Gbdt(p) => p.iterations,
            Mode::RandomForest(p) => p.trees,
        }
    }

    /// LightGBM's parameter string for `task`.
    fn params(&self, task: &Task) -> String {
        let objective = match task.n_classes() {
            0 => "objective=regression".to_string(),
            2 => "objective=binary".to_string(),
            k => format!("objective=multiclass num_class={k}"),
        };
        let seed = library_seed(self.seed);
        let common = format!(
            "{objective} verbosity=-1 num_threads={} seed={seed} deterministic=true \
             force_row_wise=true",
            self.threads.max(1)
        );
        match self.mode {
            Mode::Gbdt(p) => format!(
                "{common} boosting=gbdt learning_rate={} num_leaves={} min_data_in_leaf={} \
                 feature_fraction={} bagging_fraction={} bagging_freq={} lambda_l2={}",
                p.learning_rate,
                p.num_leaves,
                p.min_data_in_leaf,
                p.feature_fraction,
                p.bagging_fraction,
                usize::from(p.bagging_fraction < 1.0),
                p.l2,
            ),
            Mode::RandomForest(p) => format!(
                "{common} boosting=rf num_leaves={} min_data_in_leaf={} feature_fraction={} \
                 bagging_fraction={} bagging_freq=1 extra_trees={}",
                p.num_leaves,
                p.min_data_in_leaf,
                p.feature_fraction,
                p.bagging_fraction,
                p.extra_trees,
            ),
        }
    }
}

impl LibraryTrainer for LightgbmTrainer {
    const LIBRARY: &'static str = "LightGBM";

    fn train(&self, x: &DenseMatrix, y: &[f64], task: &Task, watch: Option<Watch<'_>>) -> Watched {
        let link = Link::for_task(task);
        let groups = link.groups(task);
        let lib = |e: tracseq_ffi::lightgbm::Error| internal(e.to_string());
        // Bin boundaries come from the training rows only; the validation
        // set reuses them (`reference`), as LightGBM requires.
        let labels: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        // No feature pre-filtering: it drops features by the *dataset's*
        // min_data_in_leaf (default 20), which would silently override a
        // trial's smaller setting.
        let dataset_params = "verbosity=-1 max_bin=255 feature_pre_filter=false";
        let train = Dataset::from_rows(&x.data, x.rows, x.cols, &labels, dataset_params, None)
            .map_err(lib)?;
        let rounds = self.rounds();
        let mut reporter = Reporter::new(watch, x, task, self.metric, rounds)?;
        let valid = match reporter.rows() {
            Some((vx, vy)) => {
                let labels: Vec<f32> = vy.iter().map(|&v| v as f32).collect();
                Some(
                    Dataset::from_rows(
                        &vx.data,
                        vx.rows,
                        vx.cols,
                        &labels,
                        dataset_params,
                        Some(&train),
                    )
                    .map_err(lib)?,
                )
            }
            None => None,
        };
        let mut booster = Booster::new(train, valid, &self.params(task), groups).map_err(lib)?;
        for round in 1..=rounds {
            let finished = booster.update().map_err(lib)?;
            let last = finished || round == rounds;
            let outputs = || booster.valid_outputs().map_err(lib);
            if reporter.after(round, last, outputs)? == Step::Stop {
                return Ok(None);
            }
            if finished {
                break;
            }
        }
        let native = booster.model_string().map_err(lib)?;
        let ensemble = from_lightgbm(&native, x.cols)?;
        let check_rows = x.rows.min(VERIFY_ROWS);
        let sample = &x.data[..check_rows * x.cols];
        drop(booster);
        let reference = Model::from_string(&native)
            .and_then(|m| m.predict_raw(sample, check_rows, x.cols))
            .map_err(lib)?;
        // LightGBM's raw score of a random forest is the sum over its trees;
        // its predictions average them (`average_output`), as ours do.
        let reference: Vec<f64> = reference.iter().map(|r| r * ensemble.scale).collect();
        // Both sides add the same doubles in the same order.
        ensemble.verify(sample, &reference, 1e-9)?;
        let model = TreeModel {
            link,
            ensemble,
            native,
        };
        Ok(Some(match self.mode {
            Mode::Gbdt(_) => FittedModel::Lightgbm(model),
            Mode::RandomForest(_) => FittedModel::RandomForest(model),
        }))
    }
}
