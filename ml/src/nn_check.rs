//! The nn device check: the same seeded network trained on the CPU and on
//! CUDA, for `tracseq-ml gpu-check` and the `nn_device_check` example.
//!
//! It runs the whole pipeline on the lab data (generation, target encoding,
//! a hold-out split, preprocessing, training, scoring), so it sits above the
//! model layer rather than in [`crate::model::nn`], which re-exports it.

use std::time::Instant;

use serde_json::{json, Value};

use crate::cv::kfold;
use crate::dataset::{Dataset, Limits};
use crate::error::{invalid, Result};
use crate::lab;
use crate::metrics::{compute, Metric};
use crate::model::nn::{threads_from_env, NnDevice, NnTrainer, TrainReport};
use crate::model::{FittedModel, NnParams, Step};
use crate::preprocess::Preprocessor;
use crate::task::{encode_target, infer_task};

/// Fewest and most rows [`device_check`] accepts.
const CHECK_ROWS: std::ops::RangeInclusive<usize> = 200..=200_000;
/// Fixed epoch count of the check, so both devices do the same work.
const CHECK_EPOCHS: usize = 20;

/// Trains the same seeded MLP (2 x 64, batch norm, dropout 0.1, batch 128,
/// 20 epochs, no early stopping) on `rows` rows of the lab sample-quality
/// data on the CPU and, when libtorch sees one, on CUDA device 0, and
/// returns both runs: RMSE on a held-out fifth, the best validation RMSE,
/// timings, and their differences. Without CUDA it says so and reports the
/// CPU run alone; that is not an error.
///
/// Both runs start from the same weights and see the same batches and
/// dropout masks, so the first epoch's validation values differ only by
/// float rounding (expect ~1e-5 relative); twenty epochs of training can
/// amplify that to ~1e-2 on the final RMSE, which is also what two CPUs with
/// different instruction sets show.
pub fn device_check(rows: usize, seed: u64) -> Result<Value> {
    if !CHECK_ROWS.contains(&rows) {
        return Err(invalid(format!(
            "device check rows must be in {}..={}, got {rows}",
            CHECK_ROWS.start(),
            CHECK_ROWS.end()
        )));
    }
    let data = Dataset::from_csv(lab::generate_csv(rows, seed).as_bytes(), &Limits::default())?;
    let task = infer_task(&data, lab::TARGET)?;
    let target = encode_target(&data, lab::TARGET, &task)?;
    let split = kfold(target.rows.len(), 5, seed, None)?;
    let pick = |idx: &[usize]| -> (Vec<usize>, Vec<f64>) {
        (
            idx.iter().map(|&i| target.rows[i]).collect(),
            idx.iter().map(|&i| target.y[i]).collect(),
        )
    };
    let (train_rows, train_y) = pick(&split[0].train);
    let (hold_rows, hold_y) = pick(&split[0].valid);
    let pre = Preprocessor::fit(&data, lab::TARGET, &train_rows)?;
    let x_train = pre.transform(&data, &train_rows)?;
    let x_hold = pre.transform(&data, &hold_rows)?;

    let params = NnParams {
        layers: 2,
        width: 64,
        dropout: 0.1,
        batch_norm: true,
        learning_rate: 1e-3,
        weight_decay: 1e-4,
        batch_size: 128,
        epochs: CHECK_EPOCHS,
    };
    let cuda_available = tch::Cuda::is_available();
    let run = |device: NnDevice| -> Result<(Value, f64, f64)> {
        let trainer = NnTrainer {
            params,
            seed,
            metric: Metric::Rmse,
            device,
            threads: threads_from_env()?,
            early_stopping: false,
        };
        let start = Instant::now();
        let report: TrainReport =
            trainer.train(&x_train, &train_y, &task, &mut |_, _| Step::Continue)?;
        let seconds = start.elapsed().as_secs_f64();
        let Some(model) = &report.model else {
            return Err(invalid("device check training was stopped"));
        };
        let hold = compute(
            Metric::Rmse,
            &task,
            &hold_y,
            &FittedModel::Nn(model.clone()).predict(&x_hold),
        )?;
        let first = report.values.first().copied().unwrap_or(f64::NAN);
        let epochs = report.values.len();
        let summary = json!({
            "device": report.device,
            "holdout_rmse": hold,
            "best_validation_rmse": report.values.get(report.best_epoch),
            "first_epoch_validation_rmse": first,
            "epochs": epochs,
            "train_rows": report.train_rows,
            "train_seconds": report.train_seconds,
            "validation_seconds": report.validation_seconds,
            "total_seconds": seconds,
            "train_rows_per_second":
                (report.train_rows * epochs) as f64 / report.train_seconds.max(1e-9),
        });
        Ok((summary, hold, first))
    };
    let (cpu, cpu_hold, cpu_first) = run(NnDevice::Cpu)?;
    let mut out = json!({
        "rows": rows,
        "seed": seed,
        "holdout_rows": hold_rows.len(),
        "metric": "rmse",
        "params": params,
        "cuda_available": cuda_available,
        "cuda_device_count": if cuda_available { tch::Cuda::device_count() } else { 0 },
        "cudnn_available": cuda_available && tch::Cuda::cudnn_is_available(),
        "cpu": cpu,
        "cuda": null,
    });
    if cuda_available {
        let (cuda, cuda_hold, cuda_first) = run(NnDevice::Cuda(0))?;
        out["cuda"] = cuda;
        out["holdout_rmse_difference"] = json!(cuda_hold - cpu_hold);
        out["holdout_rmse_relative_difference"] =
            json!((cuda_hold - cpu_hold).abs() / cpu_hold.abs().max(1e-12));
        out["first_epoch_relative_difference"] =
            json!((cuda_first - cpu_first).abs() / cpu_first.abs().max(1e-12));
    } else {
        out["note"] = json!(
            "libtorch sees no CUDA device in this process (CPU-only link, no driver, or \
             CUDA_VISIBLE_DEVICES empty); only the CPU ran"
        );
    }
    Ok(out)
}
