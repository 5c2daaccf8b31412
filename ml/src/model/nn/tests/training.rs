//! Training tests (feature `torch`): fit, early stopping, per-epoch reports,
//! pruning, artifacts and AutoML evaluation on the lab data. They pin the
//! device to the CPU so results do not depend on the host having a GPU.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::automl::{evaluate, fit_final, EvalOptions, Evaluation, Step, EPOCH_STEPS};
use crate::dataset::Dataset;
use crate::lab;
use crate::matrix::DenseMatrix;
use crate::metrics::Metric;
use crate::model::nn::train::{NnTrainer, PATIENCE};
use crate::model::nn::NnDevice;
use crate::model::test_data::{
    assert_tampering_is_caught, contributions_total, lab_data, ok, params, pass_fail, round_trip,
    targets, uniform,
};
use crate::model::{Family, NnParams};
use crate::task::Task;
use crate::LearnError;

fn trainer(params: NnParams, seed: u64, metric: Metric) -> NnTrainer {
    NnTrainer {
        params,
        seed,
        metric,
        device: NnDevice::Cpu,
        threads: 1,
        early_stopping: true,
    }
}

fn small() -> NnParams {
    NnParams {
        layers: 2,
        width: 32,
        dropout: 0.1,
        batch_norm: true,
        learning_rate: 3e-3,
        weight_decay: 1e-4,
        batch_size: 32,
        epochs: 60,
    }
}

/// nn params as the sampler would send them, small enough for debug builds.
fn nn(extra: Value) -> Map<String, Value> {
    let mut p = params(json!({"family": "nn", "nn_width": 32, "nn_epochs": 60,
                              "nn_learning_rate": 0.003, "nn_batch_size": 32}));
    p.extend(params(extra));
    p
}

fn run(data: &Dataset, target: &str, p: &Map<String, Value>) -> (Evaluation, Vec<(u32, f64)>) {
    std::env::set_var("TRACSEQ_TORCH_DEVICE", "cpu");
    let mut steps = Vec::new();
    let e = ok(evaluate(
        data,
        target,
        p,
        &EvalOptions::default(),
        &mut |step, value| {
            steps.push((step, value));
            Step::Continue
        },
    ));
    (e, steps)
}

#[test]
fn regression_fits_and_is_deterministic_for_a_seed() {
    let x = uniform(400, 3, 1);
    let y = targets(&x, |r| {
        (2.0 * r[0]).sin() * 30.0 + r[1] * r[1] * 10.0 + 100.0
    });
    let t = trainer(small(), 3, Metric::Rmse);
    let a = ok(t.train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue));
    let b = ok(t.train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue));
    assert_eq!(a.values, b.values);
    let (Some(ma), Some(mb)) = (a.model, b.model) else {
        panic!("no model")
    };
    assert_eq!(ma, mb);
    // The target's std is ~25; the best epoch must explain most of it.
    let best = a.values[a.best_epoch];
    assert!(best < 8.0, "validation rmse {best}");
    // The Rust forward pass agrees with libtorch's on the best epoch's weights.
    let model = crate::model::FittedModel::Nn(ma);
    let preds = model.predict(&x);
    assert!(preds.iter().all(|p| p.is_finite()));
    let other =
        ok(trainer(small(), 4, Metric::Rmse)
            .train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue));
    assert_ne!(
        other.values, a.values,
        "a different seed trains differently"
    );
}

#[test]
fn early_stopping_ends_a_plateau_before_the_epoch_limit() {
    // The target is noise: the validation error cannot improve for long.
    let x = uniform(300, 4, 2);
    let y = uniform(300, 1, 99).data;
    let p = NnParams {
        epochs: 500,
        ..small()
    };
    let r =
        ok(trainer(p, 1, Metric::Rmse)
            .train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue));
    assert!(r.values.len() < 500, "ran {} epochs", r.values.len());
    assert_eq!(r.values.len(), r.best_epoch + PATIENCE + 1);
    let best = r.values[r.best_epoch];
    assert!(r.values[r.best_epoch + 1..]
        .iter()
        .all(|&v| v >= best * (1.0 - 1e-4)));
}

#[test]
fn epochs_are_reported_and_a_stop_prunes_the_trial() {
    let data = lab_data(300);
    let (e, steps) = run(&data, lab::TARGET, &nn(json!({"nn_epochs": 5})));
    // Three folds, each with its epochs then its fold mean.
    let folds: Vec<u32> = steps.iter().map(|s| s.0).filter(|&s| s < 3).collect();
    assert_eq!(folds, vec![0, 1, 2]);
    for fold in 0..3u32 {
        let epochs: Vec<u32> = steps
            .iter()
            .map(|s| s.0)
            .filter(|&s| s / EPOCH_STEPS == fold + 1)
            .map(|s| s % EPOCH_STEPS)
            .collect();
        assert_eq!(epochs, (0..5).collect::<Vec<_>>(), "fold {fold}");
    }
    assert!(steps.iter().all(|s| s.1.is_finite() && s.1 > 0.0));
    assert!(!e.pruned);
    assert_eq!(e.fold_values.len(), 3);

    // Stopping at epoch 2 of the first fold prunes before any fold finishes.
    let mut seen = Vec::new();
    let e = ok(evaluate(
        &data,
        lab::TARGET,
        &nn(json!({"nn_epochs": 5})),
        &EvalOptions::default(),
        &mut |step, value| {
            seen.push((step, value));
            if step == EPOCH_STEPS + 2 {
                Step::Stop
            } else {
                Step::Continue
            }
        },
    ));
    assert!(e.pruned);
    assert!(e.fold_values.is_empty() && e.metrics.is_empty());
    assert_eq!(seen.len(), 3);
    assert_eq!(Some(e.value), seen.last().map(|s| s.1));
}

#[test]
fn automl_evaluation_on_lab_data_is_sane() {
    // Binary pass/fail: the same bar as the gbm end-to-end test.
    let (e, _) = run(&pass_fail(800), lab::TARGET, &nn(json!({})));
    assert_eq!(e.metric, Metric::Auc);
    assert!(e.value > 0.8, "auc {}", e.value);

    // Regression: well under the mean predictor, like the other families.
    let data = lab_data(1200);
    let (e, _) = run(&data, lab::TARGET, &nn(json!({"nn_layers": 1})));
    assert_eq!(e.metric, Metric::Rmse);
    assert!(
        e.metrics.get("r2").is_some_and(|r2| *r2 > 0.6),
        "{:?}",
        e.metrics
    );

    // Multiclass: better than the uniform guess ln(4) ~ 1.39.
    let (e, _) = run(&data, "processing_delay_category", &nn(json!({})));
    assert_eq!(e.metric, Metric::LogLoss);
    assert!(e.value < 0.9, "log loss {}", e.value);
}

#[test]
fn artifacts_round_trip_with_identical_predictions() {
    std::env::set_var("TRACSEQ_TORCH_DEVICE", "cpu");
    for (data, p) in [
        (lab_data(400), nn(json!({"nn_epochs": 10}))),
        (
            pass_fail(400),
            nn(json!({"nn_epochs": 10, "nn_batch_norm": false})),
        ),
    ] {
        let a = ok(fit_final(
            &data,
            lab::TARGET,
            &p,
            &EvalOptions::default(),
            BTreeMap::new(),
        ));
        assert_eq!(a.family, Family::Nn);
        let records = [lab::example_record(1), lab::example_record(2), Map::new()];
        let (bytes, digest, predictions) = round_trip(&a, &records);
        for pred in &predictions {
            let total = contributions_total(pred);
            let margin = match &pred.probabilities {
                None => pred.value,
                Some(probs) => {
                    let pass = probs.get("pass").copied().unwrap_or(0.5);
                    (pass / (1.0 - pass)).ln()
                }
            };
            assert!((total - margin).abs() < 1e-6, "{total} vs {margin}");
        }
        // Any change to the stored weights fails the digest check.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let at = text.find("weights_safetensors").unwrap_or(0) + 40;
        assert_tampering_is_caught(&bytes, &digest, at, (b'A', b'B'));
    }
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let x = uniform(40, 2, 5);
    let y = vec![1.0; 40];
    // Too few rows for a validation split.
    let tiny = DenseMatrix {
        rows: 5,
        cols: 2,
        data: vec![0.0; 10],
    };
    let r =
        trainer(small(), 1, Metric::Rmse).train(&tiny, &y[..5], &Task::Regression, &mut |_, _| {
            Step::Continue
        });
    assert!(matches!(r, Err(LearnError::Invalid(m)) if m.contains("at least 10")));
    // A learning rate that blows up is reported, named, as divergence.
    let wild: Vec<f64> = (0..40)
        .map(|i| if i % 2 == 0 { 1e30 } else { -1e30 })
        .collect();
    let p = NnParams {
        learning_rate: 1.0,
        batch_norm: false,
        dropout: 0.0,
        ..small()
    };
    match trainer(p, 1, Metric::Rmse)
        .train(&x, &wild, &Task::Regression, &mut |_, _| Step::Continue)
    {
        Ok(r) => assert!(r.values.iter().all(|v| v.is_finite())),
        Err(LearnError::Invalid(m)) => assert!(m.contains("nn_learning_rate"), "{m}"),
        Err(e) => panic!("{e}"),
    }
    // A device that is not there.
    if !tch::Cuda::is_available() {
        let t = NnTrainer {
            device: NnDevice::Cuda(0),
            ..trainer(small(), 1, Metric::Rmse)
        };
        let r = t.train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue);
        assert!(matches!(r, Err(LearnError::Invalid(m)) if m.contains("CUDA device 0")));
    }
    assert!(NnDevice::parse("gpu").is_err());
    assert_eq!(ok(NnDevice::parse("cuda:1")), NnDevice::Cuda(1));
}

#[test]
fn device_check_reports_cpu_and_says_whether_cuda_ran() {
    let v = ok(crate::nn_check::device_check(300, 1));
    assert!(v["cpu"]["holdout_rmse"]
        .as_f64()
        .is_some_and(|r| r > 0.0 && r < 15.0));
    assert_eq!(v["cpu"]["epochs"], 20);
    let cuda = v["cuda_available"].as_bool() == Some(true);
    assert_eq!(v["cuda"].is_null(), !cuda);
    assert_eq!(v["note"].is_string(), !cuda);
    assert!(crate::nn_check::device_check(10, 1).is_err());
}

/// Timing of the search space's most expensive nn trial; run with
/// `cargo test --release -p tracseq-learn --features torch -- --ignored nn_trial_timing --nocapture`.
#[test]
#[ignore]
fn nn_trial_timing() {
    let data = lab_data(2000);
    let p = params(json!({"family": "nn", "nn_layers": 2, "nn_width": 64,
        "nn_batch_size": 64, "nn_epochs": 40, "nn_dropout": 0.0}));
    let start = std::time::Instant::now();
    let (e, steps) = run(&data, lab::TARGET, &p);
    eprintln!(
        "nn 2x64, batch 64, <=40 epochs, 3 folds, 2000 rows: {:?} ({} epoch reports, rmse {:.2})",
        start.elapsed(),
        steps.len() - 3,
        e.value
    );
}
