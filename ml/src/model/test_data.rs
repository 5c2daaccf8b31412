//! What the crate's tests share: data to train on, and the checks every
//! family's models must pass (contributions that explain the margin,
//! artifacts that survive a digest-checked round trip).

use std::fmt::Debug;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value};

use super::FittedModel;
use crate::artifact::{sha256_hex, ModelArtifact};
use crate::dataset::{ColumnData, Dataset, Limits};
use crate::lab;
use crate::matrix::DenseMatrix;
use crate::predict::Prediction;
use crate::LearnError;

/// The value of `r`, or a panic with its error.
pub fn ok<T, E: Debug>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e:?}"),
    }
}

/// Parameters (or a record) as the sampler sends them, from a JSON object.
pub fn params(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// `n` rows of the synthetic lab data (regression on the quality score).
pub fn lab_data(n: usize) -> Dataset {
    match Dataset::from_csv(lab::generate_csv(n, 7).as_bytes(), &Limits::default()) {
        Ok(d) => d,
        Err(e) => panic!("lab data: {e}"),
    }
}

/// The lab data with the score turned into a pass/fail label.
pub fn pass_fail(n: usize) -> Dataset {
    let mut data = lab_data(n);
    for c in &mut data.columns {
        if c.name == lab::TARGET {
            if let ColumnData::Numeric(v) = &c.data {
                c.data = ColumnData::Categorical(
                    v.iter()
                        .map(|s| Some(if *s >= 70.0 { "pass" } else { "fail" }.to_string()))
                        .collect(),
                );
            }
        }
    }
    data
}

/// `n` rows of `p` standard-uniform features in [-2, 2].
pub fn uniform(n: usize, p: usize, seed: u64) -> DenseMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data = (0..n * p).map(|_| rng.gen_range(-2.0..2.0)).collect();
    DenseMatrix {
        rows: n,
        cols: p,
        data,
    }
}

/// A target for each row of `x`, as `f` gives it.
pub fn targets(x: &DenseMatrix, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..x.rows).map(|i| f(x.row(i))).collect()
}

/// Asserts, within `tol`, that the contributions `model` gives for `row`
/// (base value included) add up to the margin they explain: the prediction
/// for regression, the positive class's log-odds for binary, the explained
/// class's margin for multiclass.
pub fn assert_explains(model: &FittedModel, row: &[f64], tol: f64) {
    let mut out = vec![0.0; model.output_width()];
    model.predict_row(row, &mut out);
    let class = model.explained_class(&out);
    let mut c = vec![0.0; model.n_features() + 1];
    model.contributions_row(row, class, &mut c);
    let margin = match out.len() {
        1 => out[0],
        2 => (out[1] / out[0]).ln(),
        _ => model.margin_row(row, class),
    };
    let total: f64 = c.iter().sum();
    assert!((total - margin).abs() < tol, "{total} vs {margin}");
}

/// What a prediction's contributions add up to, its base value included.
pub fn contributions_total(p: &Prediction) -> f64 {
    p.base_value.unwrap_or(f64::NAN) + p.contributions.iter().map(|c| c.contribution).sum::<f64>()
}

/// `artifact` written to bytes and read back through the digest check:
/// the bytes, their digest, and the predictions for `records`, which the
/// copy read back must give identically.
pub fn round_trip(
    artifact: &ModelArtifact,
    records: &[Map<String, Value>],
) -> (Vec<u8>, String, Vec<Prediction>) {
    let bytes = artifact.to_bytes();
    let digest = sha256_hex(&bytes);
    let back = ok(ModelArtifact::from_bytes(&bytes, &digest));
    assert_eq!(back.family, artifact.family);
    let predictions = ok(artifact.predict(records));
    assert_eq!(
        predictions,
        ok(back.predict(records)),
        "{:?}",
        artifact.family
    );
    (bytes, digest, predictions)
}

/// Asserts that the digest check refuses `bytes` as corrupt once the byte
/// at `at` is changed: to `a`, or to `b` where it is `a`.
// Used by the tests of the families that need a feature.
#[cfg_attr(
    not(any(feature = "torch", all(feature = "lightgbm", feature = "xgboost"))),
    allow(dead_code)
)]
pub fn assert_tampering_is_caught(bytes: &[u8], digest: &str, at: usize, (a, b): (u8, u8)) {
    let mut tampered = bytes.to_vec();
    tampered[at] = if tampered[at] == a { b } else { a };
    assert!(matches!(
        ModelArtifact::from_bytes(&tampered, digest),
        Err(LearnError::Corrupt(_))
    ));
}
