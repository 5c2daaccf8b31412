//! Cross-validated score and training time of one model family on a CSV,
//! on folds fixed by the caller, for comparison with the reference libraries
//! (bench/models/run.sh runs scikit-learn, LightGBM, XGBoost and PyTorch on
//! the same folds). Prints one JSON line.
//!
//! ```sh
//! eval "$(ops/native-deps.sh)"; eval "$(ops/libtorch.sh)"
//! cargo run --release -p tracseq-learn --features torch --example family_bench -- \
//!     --csv wine.csv --target target --task classification --family lightgbm \
//!     --params '{"lgbm_iterations": 200}'
//! ```
//!
//! The CSV's `__fold` column (integers 0..k) names each row's validation
//! fold and is not a feature. Scores: ROC AUC x 100 for binary tasks,
//! accuracy % for multiclass, R^2 x 100 for regression. Preprocessing is
//! fitted inside each fold on its training rows, as in a trial. Training time
//! sums the `fit` calls (preprocessing and scoring excluded), on one thread
//! for the library families (the trainers' setting), like the references.

use std::time::Instant;

use serde_json::{json, Map, Value};
use tracseq_learn::dataset::{ColumnData, Dataset, Limits};
use tracseq_learn::metrics::compute;
use tracseq_learn::model::ModelParams;
use tracseq_learn::preprocess::Preprocessor;
use tracseq_learn::task::{encode_target, infer_task};
use tracseq_learn::{Metric, Task};

struct Args {
    csv: String,
    target: String,
    task: String,
    family: String,
    params: Map<String, Value>,
    seed: u64,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        csv: String::new(),
        target: "target".into(),
        task: "auto".into(),
        family: "gbm".into(),
        params: Map::new(),
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--csv" => a.csv = value,
            "--target" => a.target = value,
            "--task" => a.task = value,
            "--family" => a.family = value,
            "--seed" => a.seed = value.parse().map_err(|e| format!("--seed: {e}"))?,
            "--params" => {
                a.params = match serde_json::from_str(&value) {
                    Ok(Value::Object(m)) => m,
                    _ => return Err("--params must be a JSON object".into()),
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.csv.is_empty() {
        return Err("--csv is required".into());
    }
    Ok(a)
}

fn run(a: Args) -> Result<Value, String> {
    let bytes = std::fs::read(&a.csv).map_err(|e| format!("{}: {e}", a.csv))?;
    let mut data = Dataset::from_csv(&bytes, &Limits::default()).map_err(|e| e.to_string())?;
    let fold_at = data
        .columns
        .iter()
        .position(|c| c.name == "__fold")
        .ok_or("the CSV has no __fold column")?;
    let fold_column = data.columns.remove(fold_at);
    let ColumnData::Numeric(folds) = fold_column.data else {
        return Err("__fold must be numeric".into());
    };
    let task = match a.task.as_str() {
        "regression" => Task::Regression,
        "classification" | "auto" => {
            let t = infer_task(&data, &a.target).map_err(|e| e.to_string())?;
            if a.task == "classification" && !t.is_classification() {
                return Err("the target does not look like classes".into());
            }
            t
        }
        other => {
            return Err(format!(
                "--task {other}: expected classification or regression"
            ))
        }
    };
    let metric = match task.n_classes() {
        0 => Metric::R2,
        2 => Metric::Auc,
        _ => Metric::Accuracy,
    };
    let encoded = encode_target(&data, &a.target, &task).map_err(|e| e.to_string())?;
    let mut params = a.params;
    params.insert("family".into(), json!(a.family));
    let model_params = ModelParams::from_map(&params).map_err(|e| e.to_string())?;
    let trainer = model_params
        .trainer(a.seed, metric, Some("cpu"))
        .map_err(|e| e.to_string())?;

    let k = folds.iter().fold(0.0f64, |m, &f| m.max(f)) as usize + 1;
    let mut scores = Vec::with_capacity(k);
    let mut train_seconds = 0.0;
    for fold in 0..k {
        let (mut train_rows, mut valid_rows, mut train_y, mut valid_y) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (&row, &y) in encoded.rows.iter().zip(&encoded.y) {
            if folds[row] as usize == fold {
                valid_rows.push(row);
                valid_y.push(y);
            } else {
                train_rows.push(row);
                train_y.push(y);
            }
        }
        // The encoding the trial pipeline gives this family (automl.rs).
        let pre = Preprocessor::fit_for(model_params.family(), &data, &a.target, &train_rows)
            .map_err(|e| e.to_string())?;
        let x_train = pre
            .transform(&data, &train_rows)
            .map_err(|e| e.to_string())?;
        let x_valid = pre
            .transform(&data, &valid_rows)
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let model = trainer
            .fit(&x_train, &train_y, &task)
            .map_err(|e| e.to_string())?;
        train_seconds += started.elapsed().as_secs_f64();
        let predictions = model.predict(&x_valid);
        let value = compute(metric, &task, &valid_y, &predictions).map_err(|e| e.to_string())?;
        scores.push(value * 100.0);
    }
    let score = scores.iter().sum::<f64>() / scores.len() as f64;
    Ok(json!({
        "family": a.family,
        "metric": match metric { Metric::R2 => "r2x100", Metric::Auc => "aucx100", _ => "accuracy%" },
        "score": score,
        "fold_scores": scores,
        "train_seconds": train_seconds,
    }))
}

fn main() {
    match parse().and_then(run) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("family_bench: {e}");
            std::process::exit(2);
        }
    }
}
