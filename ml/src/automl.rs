//! What a worker runs: cross-validated evaluation of one trial, with pruning
//! hooks, and the final fit on all rows into a [`ModelArtifact`].
//!
//! Intermediate values go to `on_step(step, value)`, and a step number means
//! the same thing in every trial that reports it, so a pruner comparing
//! trials at one step compares like with like:
//! - step `k` (0-based, below the number of folds): the mean metric over
//!   folds `0..=k`, reported by every family;
//! - step `EPOCH_STEPS * (k + 1) + e`: the metric after epoch `e` of fold
//!   `k` on that fold's own validation split (part of its training rows),
//!   reported only by families that train in epochs (nn);
//! - step `EPOCH_STEPS * (k + 1) + r`: for families that boost in rounds
//!   (lightgbm, random_forest, xgboost), the metric after round `r` (1-based)
//!   of fold `k` on fold `k`'s validation rows, every few rounds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::artifact::ModelArtifact;
use crate::cv::kfold;
use crate::dataset::Dataset;
use crate::error::{internal, invalid, LearnError, Result};
use crate::metrics::{all_metrics, compute, Metric};
use crate::model::{ModelParams, Watch};
use crate::preprocess::Preprocessor;
use crate::profile::profile;
use crate::task::{encode_target, infer_task, Task};

/// How a trial is evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Number of CV folds (at least 2; default 3).
    pub folds: usize,
    /// Seed for fold assignment and model randomness (default 0).
    pub seed: u64,
    /// Metric to optimise; `None` takes [`Metric::default_for`] the task.
    pub metric: Option<Metric>,
    /// Where the nn family trains (`cpu`, `cuda:N`); `None` = the process
    /// default (`TRACSEQ_TORCH_DEVICE`). A worker sets it from the job's
    /// placement, so a job only touches the GPU it was given.
    pub device: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            folds: 3,
            seed: 0,
            metric: None,
            device: None,
        }
    }
}

/// Epoch and round steps of fold `k` start at `EPOCH_STEPS * (k + 1)`;
/// every epoch index and round number is below it (see the module docs).
pub const EPOCH_STEPS: u32 = 10_000;

const _: () = assert!(crate::model::params::MAX_EPOCHS < EPOCH_STEPS as usize);
const _: () = assert!(crate::model::params::MAX_ROUNDS < EPOCH_STEPS as usize);

// The pruner's answer, defined with the trainers that obey it.
pub use crate::model::Step;

/// Result of evaluating one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub metric: Metric,
    /// Mean of `fold_values` (over the folds run, if pruned).
    pub value: f64,
    pub fold_values: Vec<f64>,
    /// Every applicable metric on the pooled out-of-fold predictions of the
    /// folds that ran.
    pub metrics: BTreeMap<String, f64>,
    pub pruned: bool,
    pub task: Task,
    /// Mean wall-clock time per validation row, in microseconds, to encode
    /// the rows with the fold's fitted preprocessing and predict them with
    /// its model, over the folds that finished: what serving pays per
    /// record, measured on this worker. `None` if no fold finished.
    #[serde(default)]
    pub latency_us: Option<f64>,
    /// Bytes of each fold's fitted model serialized as in the model artifact
    /// (JSON), averaged over the folds that finished. `None` if none did.
    #[serde(default)]
    pub model_bytes: Option<u64>,
}

/// Counts the bytes written to it: sizes a serialization without holding it.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Task, metric, params and usable rows shared by `evaluate` and `fit_final`.
struct Prepared {
    task: Task,
    metric: Metric,
    params: ModelParams,
    rows: Vec<usize>,
    y: Vec<f64>,
}

fn prepare(
    data: &Dataset,
    target: &str,
    params: &Map<String, Value>,
    opts: &EvalOptions,
) -> Result<Prepared> {
    let params = ModelParams::from_map(params)?;
    let task = infer_task(data, target)?;
    let metric = opts.metric.unwrap_or_else(|| Metric::default_for(&task));
    metric.check_applies(&task)?;
    let encoded = encode_target(data, target, &task)?;
    Ok(Prepared {
        task,
        metric,
        params,
        rows: encoded.rows,
        y: encoded.y,
    })
}

/// Cross-validates `params` on `data`. The preprocessor is fitted inside each
/// fold on that fold's training rows. After each fold, `on_step(fold, mean
/// so far)` may return [`Step::Stop`] to prune the trial; so may each
/// epoch's report (see the module docs for step numbers). A trial pruned
/// inside its first fold has no fold value; its `value` is then the last
/// value it reported, as Optuna records for pruned trials.
pub fn evaluate(
    data: &Dataset,
    target: &str,
    params: &Map<String, Value>,
    opts: &EvalOptions,
    on_step: &mut dyn FnMut(u32, f64) -> Step,
) -> Result<Evaluation> {
    let p = prepare(data, target, params, opts)?;
    let classes: Option<Vec<usize>> = p
        .task
        .is_classification()
        .then(|| p.y.iter().map(|&c| c as usize).collect());
    let folds = kfold(p.rows.len(), opts.folds, opts.seed, classes.as_deref())?;
    let width = p.task.output_width();
    let trainer = p
        .params
        .trainer(opts.seed, p.metric, opts.device.as_deref())?;

    let mut fold_values = Vec::with_capacity(folds.len());
    let mut oof_y = Vec::with_capacity(p.rows.len());
    let mut oof_pred = Vec::with_capacity(p.rows.len() * width);
    let mut pruned = false;
    let mut last_reported: Option<f64> = None;
    // Prediction time and rows over the finished folds, and their models' sizes.
    let mut predict_time = std::time::Duration::ZERO;
    let mut predicted_rows = 0usize;
    let mut model_sizes: Vec<u64> = Vec::with_capacity(folds.len());
    for (index, fold) in folds.iter().enumerate() {
        let train_rows: Vec<usize> = fold.train.iter().map(|&i| p.rows[i]).collect();
        let valid_rows: Vec<usize> = fold.valid.iter().map(|&i| p.rows[i]).collect();
        let train_y: Vec<f64> = fold.train.iter().map(|&i| p.y[i]).collect();
        let valid_y: Vec<f64> = fold.valid.iter().map(|&i| p.y[i]).collect();

        let pre = Preprocessor::fit_for(p.params.family(), data, target, &train_rows)?;
        let x_train = pre.transform(data, &train_rows)?;
        let encode_start = std::time::Instant::now();
        let x_valid = pre.transform(data, &valid_rows)?;
        let encode_time = encode_start.elapsed();
        let fold_step = u32::try_from(index + 1)
            .ok()
            .and_then(|k| k.checked_mul(EPOCH_STEPS))
            .ok_or_else(|| internal("fold index overflows the step numbers"))?;
        let mut on_epoch = |epoch: u32, value: f64| {
            last_reported = Some(value);
            on_step(fold_step + epoch, value)
        };
        let watch = Watch {
            x: &x_valid,
            y: &valid_y,
            report: &mut on_epoch,
        };
        let Some(model) = trainer.fit_watched(&x_train, &train_y, &p.task, watch)? else {
            pruned = true;
            break;
        };
        let predict_start = std::time::Instant::now();
        let predictions = model.predict(&x_valid);
        predict_time += encode_time + predict_start.elapsed();
        predicted_rows += valid_rows.len();
        let mut size = ByteCounter(0);
        serde_json::to_writer(&mut size, &model)
            .map_err(|e| internal(format!("model does not serialize: {e}")))?;
        model_sizes.push(size.0);
        let value = compute(p.metric, &p.task, &valid_y, &predictions).map_err(|e| match e {
            LearnError::Invalid(m) => invalid(format!("fold {index}: {m}; try fewer folds")),
            other => other,
        })?;
        fold_values.push(value);
        oof_y.extend(valid_y);
        oof_pred.extend(predictions);

        let mean = fold_values.iter().sum::<f64>() / fold_values.len() as f64;
        let step = u32::try_from(index).map_err(|_| internal("fold index overflows u32"))?;
        if on_step(step, mean) == Step::Stop {
            pruned = true;
            break;
        }
    }
    let value = if fold_values.is_empty() {
        last_reported.ok_or_else(|| internal("trial stopped before reporting a value"))?
    } else {
        fold_values.iter().sum::<f64>() / fold_values.len() as f64
    };
    Ok(Evaluation {
        metric: p.metric,
        value,
        fold_values,
        // Metrics of no rows would be NaN, which JSON cannot carry.
        metrics: if oof_y.is_empty() {
            BTreeMap::new()
        } else {
            all_metrics(&p.task, &oof_y, &oof_pred)
        },
        pruned,
        task: p.task,
        latency_us: (predicted_rows > 0)
            .then(|| predict_time.as_secs_f64() * 1e6 / predicted_rows as f64),
        model_bytes: (!model_sizes.is_empty())
            .then(|| model_sizes.iter().sum::<u64>() / model_sizes.len() as u64),
    })
}

/// Fits preprocessing and the model on every row with a target and packs
/// them, with the training profile and the CV metrics, into an artifact.
pub fn fit_final(
    data: &Dataset,
    target: &str,
    params: &Map<String, Value>,
    opts: &EvalOptions,
    cv_metrics: BTreeMap<String, f64>,
) -> Result<ModelArtifact> {
    let p = prepare(data, target, params, opts)?;
    let pre = Preprocessor::fit_for(p.params.family(), data, target, &p.rows)?;
    let x = pre.transform(data, &p.rows)?;
    let model = p
        .params
        .trainer(opts.seed, p.metric, opts.device.as_deref())?
        .fit(&x, &p.y, &p.task)?;
    ModelArtifact::new(
        p.task,
        target.to_string(),
        params.clone(),
        pre,
        model,
        profile(data, target, &p.rows),
        cv_metrics,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab;
    use crate::model::test_data::{contributions_total, lab_data, params, pass_fail};
    use serde_json::json;

    /// `data`'s quality score cross-validated with the parameters `p`, in
    /// the default options.
    fn run(data: &Dataset, p: Value) -> Evaluation {
        let opts = EvalOptions::default();
        match evaluate(data, lab::TARGET, &params(p), &opts, &mut |_, _| {
            Step::Continue
        }) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        }
    }

    /// `data`'s final model of the quality score with the parameters `p`, in
    /// the default options and without CV metrics.
    fn fit(data: &Dataset, p: Value) -> ModelArtifact {
        let opts = EvalOptions::default();
        match fit_final(data, lab::TARGET, &params(p), &opts, BTreeMap::new()) {
            Ok(a) => a,
            Err(e) => panic!("fit_final failed: {e}"),
        }
    }

    /// The mean time of one call of `f`, over 10,000 calls.
    fn per_call(mut f: impl FnMut()) -> std::time::Duration {
        let start = std::time::Instant::now();
        for _ in 0..10_000 {
            f();
        }
        start.elapsed() / 10_000
    }

    /// RMSE of always predicting the mean (the target's population std).
    fn baseline_rmse(data: &Dataset) -> f64 {
        let Some(crate::dataset::ColumnData::Numeric(y)) =
            data.column(lab::TARGET).map(|c| &c.data)
        else {
            panic!("numeric target");
        };
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / y.len() as f64).sqrt()
    }

    #[test]
    fn evaluate_on_lab_data_beats_the_mean_and_is_deterministic() {
        let data = lab_data(1500);
        let baseline = baseline_rmse(&data);
        for p in [
            json!({"family": "linear", "linear_l2": 0.01}),
            json!({"family": "gbm", "gbm_iterations": 150, "gbm_subsample": 0.8}),
        ] {
            let a = run(&data, p.clone());
            assert_eq!(a.metric, Metric::Rmse);
            assert_eq!(a.task, Task::Regression);
            assert_eq!(a.fold_values.len(), 3);
            assert!(!a.pruned);
            assert!(
                a.value < 0.6 * baseline,
                "{p:?}: rmse {} vs mean-baseline {baseline}",
                a.value
            );
            assert!(
                a.metrics.get("r2").is_some_and(|r2| *r2 > 0.6),
                "{:?}",
                a.metrics
            );
            // Everything but the measured prediction time repeats exactly.
            let mut again = run(&data, p);
            assert!(again.latency_us.is_some_and(|l| l > 0.0), "{again:?}");
            again.latency_us = a.latency_us;
            assert_eq!(a, again);
        }
    }

    #[test]
    fn evaluate_measures_prediction_latency_and_model_size() {
        let data = lab_data(600);
        let linear = run(&data, json!({"family": "linear"}));
        let small = run(
            &data,
            json!({"family": "gbm", "gbm_iterations": 20, "gbm_max_depth": 2}),
        );
        let large_params = json!({"family": "gbm", "gbm_iterations": 300, "gbm_max_depth": 6});
        let large = run(&data, large_params.clone());
        for e in [&linear, &small, &large] {
            let latency = e.latency_us.unwrap_or_default();
            // Positive, and far below a second per row.
            assert!(latency > 0.0 && latency < 1e6, "{e:?}");
        }
        // The size is the model's own serialization: a linear model over
        // the encoded features is small, and more and deeper trees are bigger.
        let (l, s, g) = (
            linear.model_bytes.unwrap_or_default(),
            small.model_bytes.unwrap_or_default(),
            large.model_bytes.unwrap_or_default(),
        );
        assert!(
            l > 0 && l < s && s * 5 < g,
            "linear {l}, gbm small {s}, gbm large {g}"
        );
        // It is the model part of the final artifact, within the fold-to-fold
        // spread of tree shapes.
        let artifact = fit(&data, large_params);
        let in_artifact = serde_json::to_vec(&artifact.model)
            .unwrap_or_default()
            .len() as f64;
        let ratio = g as f64 / in_artifact;
        assert!(
            (0.5..2.0).contains(&ratio),
            "folds {g} vs artifact {in_artifact}"
        );
        // More work per row costs more time per row.
        assert!(
            large.latency_us > linear.latency_us,
            "large gbm {:?} vs linear {:?}",
            large.latency_us,
            linear.latency_us
        );
    }

    #[test]
    fn gbm_beats_linear_on_lab_data() {
        let data = lab_data(2000);
        let linear = run(&data, json!({"family": "linear"}));
        let gbm = run(
            &data,
            json!({"family": "gbm", "gbm_iterations": 300, "gbm_learning_rate": 0.05, "gbm_max_depth": 3}),
        );
        assert!(
            gbm.value < linear.value,
            "gbm {} vs linear {}",
            gbm.value,
            linear.value
        );
    }

    #[test]
    fn stop_prunes_after_the_first_fold() {
        let data = lab_data(300);
        let mut steps = Vec::new();
        let e = evaluate(
            &data,
            lab::TARGET,
            &params(json!({"family": "linear"})),
            &EvalOptions {
                folds: 4,
                seed: 1,
                metric: Some(Metric::Mae),
                device: None,
            },
            &mut |step, mean| {
                steps.push((step, mean));
                Step::Stop
            },
        );
        let Ok(e) = e else { panic!("{e:?}") };
        assert!(e.pruned);
        assert_eq!(e.fold_values.len(), 1);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0], (0, e.value));
        assert_eq!(e.metric, Metric::Mae);
    }

    #[test]
    fn classification_end_to_end() {
        // The score as a pass/fail label, to exercise binary classification.
        let data = pass_fail(600);
        let gbm = json!({"family": "gbm", "gbm_iterations": 100});
        let e = run(&data, gbm.clone());
        let p = params(gbm);
        assert_eq!(e.metric, Metric::Auc);
        assert!(e.value > 0.8, "{}", e.value);
        let bad = evaluate(
            &data,
            lab::TARGET,
            &p,
            &EvalOptions {
                metric: Some(Metric::Rmse),
                ..EvalOptions::default()
            },
            &mut |_, _| Step::Continue,
        );
        assert!(matches!(bad, Err(crate::LearnError::Invalid(m)) if m.contains("rmse")));
        let Ok(artifact) = fit_final(
            &data,
            lab::TARGET,
            &p,
            &EvalOptions::default(),
            e.metrics.clone(),
        ) else {
            panic!("fit_final failed");
        };
        let Ok(out) = artifact.predict(&[lab::example_record(3)]) else {
            panic!("predict failed")
        };
        let probs = out[0].probabilities.clone().unwrap_or_default();
        assert_eq!(probs.len(), 2);
        assert!((probs.values().sum::<f64>() - 1.0).abs() < 1e-9);
        let label = out[0].label.clone().unwrap_or_default();
        assert_eq!(probs.get(&label).copied(), Some(out[0].value));
        // Contributions explain the positive class ("pass") log-odds.
        let total = contributions_total(&out[0]);
        let pass = probs.get("pass").copied().unwrap_or(0.0);
        assert!((total - (pass / (1.0 - pass)).ln()).abs() < 1e-6);
    }

    #[test]
    fn multiclass_target_defaults_to_log_loss() {
        let data = lab_data(400);
        for family in ["linear", "gbm"] {
            let p = params(json!({"family": family, "gbm_iterations": 50}));
            let e = match evaluate(
                &data,
                "processing_delay_category",
                &p,
                &EvalOptions::default(),
                &mut |_, _| Step::Continue,
            ) {
                Ok(e) => e,
                Err(e) => panic!("{family}: {e}"),
            };
            assert_eq!(e.metric, Metric::LogLoss);
            assert_eq!(e.task.n_classes(), 4);
            // Better than the uniform guess, ln(4) ~ 1.39: the delay hours are a feature.
            assert!(e.value < 0.9, "{family}: {}", e.value);
            assert!(e.metrics.contains_key("auc") && e.metrics.contains_key("f1"));
        }
    }

    /// Timing check for the search space's most expensive trial; run with
    /// `cargo test --release -p tracseq-learn -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn most_expensive_trial_timing() {
        let data = lab_data(2000);
        let p = json!({"family": "gbm", "gbm_iterations": 200, "gbm_max_depth": 5,
                       "gbm_min_leaf_weight": 0.5, "gbm_learning_rate": 0.3});
        let start = std::time::Instant::now();
        let e = run(&data, p.clone());
        eprintln!(
            "gbm 200x5, 3 folds, 2000 rows: {:?} (rmse {:.2})",
            start.elapsed(),
            e.value
        );
        let start = std::time::Instant::now();
        let e = run(&data, json!({"family": "linear", "linear_l2": 1e-6}));
        eprintln!(
            "linear, 3 folds, 2000 rows: {:?} (rmse {:.2})",
            start.elapsed(),
            e.value
        );
        let artifact = fit(&data, p);
        let record = [lab::example_record(1)];
        let predict = per_call(|| assert!(artifact.predict(&record).is_ok()));
        eprintln!("gbm 200x5 single-record predict: {predict:?}");
        let x = vec![0.1; artifact.model.n_features()];
        let mut out = vec![0.0; 1];
        let mut c = vec![0.0; x.len() + 1];
        let predict_row = per_call(|| artifact.model.predict_row(&x, &mut out));
        eprintln!("  predict_row: {predict_row:?}");
        let contributions = per_call(|| artifact.model.contributions_row(&x, 0, &mut c));
        eprintln!("  contributions_row: {contributions:?}");
        let lin = fit(&data, json!({"family": "linear"}));
        let predict = per_call(|| assert!(lin.predict(&record).is_ok()));
        eprintln!("linear single-record predict: {predict:?}");
        for (iters, depth) in [(100, 3), (200, 5)] {
            let p = json!({"family": "gbm", "gbm_iterations": iters, "gbm_max_depth": depth,
                           "gbm_min_leaf_weight": 0.5});
            let start = std::time::Instant::now();
            let _ = run(&data, p);
            eprintln!("gbm {iters}x{depth}: {:?}", start.elapsed());
        }
    }
}
