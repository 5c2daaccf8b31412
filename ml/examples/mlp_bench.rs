//! MLP training throughput of the nn family's trainer (Rust, libtorch through
//! tch), for comparison with the same network in PyTorch
//! (bench/mlp/mlp_torch.py, same flags). Prints one JSON line.
//!
//! ```sh
//! eval "$(ops/libtorch.sh)"
//! cargo run --release -p tracseq-learn --features torch --example mlp_bench -- \
//!     --device cpu --rows 50000 --epochs 5 --batch 256
//! ```
//!
//! Data: `features` columns uniform in [-1, 1]; the target is
//! `sum_j sin((j % 5 + 1) * x_j)` plus noise. A fifth of the rows validate
//! after each epoch (as in training proper); throughput counts training rows
//! only, and the first epoch (allocator and kernel warm-up) is reported but
//! left out of the median.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use tracseq_learn::automl::Step;
use tracseq_learn::matrix::DenseMatrix;
use tracseq_learn::model::nn::{NnDevice, NnTrainer};
use tracseq_learn::model::NnParams;
use tracseq_learn::{Metric, Task};

struct Args {
    device: String,
    rows: usize,
    epochs: usize,
    batch: usize,
    width: usize,
    layers: usize,
    features: usize,
    dropout: f64,
    threads: usize,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        device: "cpu".into(),
        rows: 50_000,
        epochs: 5,
        batch: 256,
        width: 128,
        layers: 2,
        features: 32,
        dropout: 0.1,
        threads: 1,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--device" => a.device = value,
            "--rows" => a.rows = value.parse().map_err(|e| bad(&e))?,
            "--epochs" => a.epochs = value.parse().map_err(|e| bad(&e))?,
            "--batch" => a.batch = value.parse().map_err(|e| bad(&e))?,
            "--width" => a.width = value.parse().map_err(|e| bad(&e))?,
            "--layers" => a.layers = value.parse().map_err(|e| bad(&e))?,
            "--features" => a.features = value.parse().map_err(|e| bad(&e))?,
            "--dropout" => a.dropout = value.parse().map_err(|e| bad(&e))?,
            "--threads" => a.threads = value.parse().map_err(|e| bad(&e))?,
            "--seed" => a.seed = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

fn main() -> Result<(), String> {
    let a = parse()?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let data: Vec<f64> = (0..a.rows * a.features)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let x = DenseMatrix {
        rows: a.rows,
        cols: a.features,
        data,
    };
    let y: Vec<f64> = (0..a.rows)
        .map(|i| {
            let signal: f64 = x
                .row(i)
                .iter()
                .enumerate()
                .map(|(j, v)| (((j % 5) + 1) as f64 * v).sin())
                .sum();
            signal + 0.1 * rng.gen_range(-1.0..1.0)
        })
        .collect();
    let trainer = NnTrainer {
        params: NnParams {
            layers: a.layers,
            width: a.width,
            dropout: a.dropout,
            batch_norm: true,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            batch_size: a.batch,
            epochs: a.epochs,
        },
        seed: a.seed,
        metric: Metric::Rmse,
        device: NnDevice::parse(&a.device).map_err(|e| e.to_string())?,
        threads: a.threads,
        early_stopping: false,
    };
    let r = trainer
        .train(&x, &y, &Task::Regression, &mut |_, _| Step::Continue)
        .map_err(|e| e.to_string())?;
    let rates: Vec<f64> = r
        .epoch_seconds
        .iter()
        .map(|s| r.train_rows as f64 / s)
        .collect();
    let mut steady = rates.get(1..).unwrap_or(&rates).to_vec();
    println!(
        "{}",
        json!({
            "impl": "rust-tch",
            "device": r.device,
            "rows": a.rows,
            "train_rows": r.train_rows,
            "epochs": r.epoch_seconds.len(),
            "batch": a.batch,
            "width": a.width,
            "layers": a.layers,
            "features": a.features,
            "dropout": a.dropout,
            "threads": a.threads,
            "epoch_rows_per_second": rates,
            "median_rows_per_second": median(&mut steady),
            "train_seconds": r.train_seconds,
            "validation_seconds": r.validation_seconds,
            "final_validation_rmse": r.values.last(),
        })
    );
    Ok(())
}
