//! Tests of the nn family. Serving (weights, folding, contributions,
//! artifacts) runs in every build; training tests need the `torch` feature.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::model::test_data::{contributions_total, ok, round_trip, uniform};
use crate::model::FittedModel;

#[cfg(feature = "torch")]
mod training;

fn spec(kind: NnKind, n_features: usize, hidden: &[usize], batch_norm: bool) -> NnSpec {
    let (outputs, mean, scale) = match kind {
        NnKind::Regression => (1, 50.0, 7.5),
        NnKind::Binary => (1, 0.0, 1.0),
        NnKind::Multiclass => (4, 0.0, 1.0),
    };
    NnSpec {
        kind,
        n_features,
        hidden: hidden.to_vec(),
        batch_norm,
        batch_norm_eps: BATCH_NORM_EPS,
        outputs,
        target_mean: mean,
        target_scale: scale,
    }
}

/// A network with random weights and batch-norm statistics.
fn random_model(spec: NnSpec, seed: u64) -> NnModel {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors = expected_tensors(&spec)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let (lo, hi) = if name.ends_with("running_var") {
                (0.2, 3.0)
            } else {
                (-1.0, 1.0)
            };
            NamedTensor {
                name,
                shape,
                values: (0..n).map(|_| rng.gen_range(lo..hi)).collect(),
            }
        })
        .collect();
    ok(NnModel::new(spec, tensors))
}

/// The forward pass straight from the state dict, batch norm unfolded, as
/// PyTorch computes it in eval mode.
fn reference_outputs(m: &NnModel, x: &[f64]) -> Vec<f64> {
    let t = |name: &str| -> Vec<f64> {
        let found = m.tensors().iter().find(|t| t.name == name);
        found
            .map(|t| t.values.iter().map(|&v| f64::from(v)).collect())
            .unwrap_or_default()
    };
    let linear = |w: &[f64], b: &[f64], h: &[f64]| -> Vec<f64> {
        b.iter()
            .enumerate()
            .map(|(u, bu)| bu + (0..h.len()).map(|j| w[u * h.len() + j] * h[j]).sum::<f64>())
            .collect()
    };
    let mut h = x.to_vec();
    for i in 0..m.spec.hidden.len() {
        let mut z = linear(
            &t(&format!("hidden.{i}.weight")),
            &t(&format!("hidden.{i}.bias")),
            &h,
        );
        if m.spec.batch_norm {
            let (g, b) = (t(&format!("norm.{i}.weight")), t(&format!("norm.{i}.bias")));
            let (mean, var) = (
                t(&format!("norm.{i}.running_mean")),
                t(&format!("norm.{i}.running_var")),
            );
            for u in 0..z.len() {
                z[u] = (z[u] - mean[u]) / (var[u] + m.spec.batch_norm_eps).sqrt() * g[u] + b[u];
            }
        }
        h = z.into_iter().map(|v| v.max(0.0)).collect();
    }
    linear(&t("output.weight"), &t("output.bias"), &h)
        .into_iter()
        .map(|v| m.spec.target_mean + m.spec.target_scale * v)
        .collect()
}

#[test]
fn folded_forward_matches_the_state_dict() {
    let x = uniform(20, 5, 1);
    for (kind, bn) in [
        (NnKind::Regression, true),
        (NnKind::Binary, false),
        (NnKind::Multiclass, true),
    ] {
        let m = random_model(spec(kind, 5, &[8, 6], bn), 2);
        let mut out = vec![0.0; m.output_width()];
        for i in 0..x.rows {
            let z = reference_outputs(&m, x.row(i));
            m.predict_row(x.row(i), &mut out);
            match kind {
                NnKind::Regression => assert!((out[0] - z[0]).abs() < 1e-9),
                NnKind::Binary => {
                    assert!((out[1] - 1.0 / (1.0 + (-z[0]).exp())).abs() < 1e-12);
                    assert!((out[0] + out[1] - 1.0).abs() < 1e-12);
                }
                NnKind::Multiclass => {
                    let class = crate::metrics::argmax(&out);
                    assert_eq!(class, crate::metrics::argmax(&z));
                    assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                    // Softmax ratios are exponentiated logit differences.
                    let ratio = (out[0] / out[1]).ln();
                    assert!((ratio - (z[0] - z[1])).abs() < 1e-9);
                }
            }
        }
    }
}

#[test]
fn contributions_are_exact_integrated_gradients() {
    let x = uniform(30, 6, 3);
    for (kind, hidden) in [
        (NnKind::Regression, vec![16, 16, 8]),
        (NnKind::Binary, vec![32]),
        (NnKind::Multiclass, vec![12, 12]),
    ] {
        let model = FittedModel::Nn(random_model(spec(kind, 6, &hidden, true), 4));
        let mut c = vec![0.0; 7];
        let mut out = vec![0.0; model.output_width()];
        for i in 0..x.rows {
            let class = model.explain_row(x.row(i), &mut out, &mut c);
            let margin = model.margin_row(x.row(i), class);
            let total: f64 = c.iter().sum();
            assert!(
                (total - margin).abs() < 1e-9,
                "{kind:?}: {total} vs {margin}"
            );
            // The base value is the margin of the all-zero row.
            assert!((c[6] - model.margin_row(&[0.0; 6], class)).abs() < 1e-12);
        }
        // A zero input moves nothing along the path, so it gets nothing.
        let mut row = x.row(0).to_vec();
        row[2] = 0.0;
        model.contributions_row(&row, 0, &mut c);
        assert_eq!(c[2], 0.0);
    }
    // On a linear region (one unit, always active) IG is gradient x input.
    let mut m = random_model(spec(NnKind::Regression, 2, &[1], false), 5);
    m.tensors[0].values = vec![1.0, 2.0];
    m.tensors[1].values = vec![10.0];
    m.tensors[2].values = vec![3.0];
    m.tensors[3].values = vec![0.0];
    let m = ok(NnModel::new(m.spec.clone(), m.tensors.clone()));
    let mut c = vec![0.0; 3];
    m.contributions_row(&[0.5, -1.0], 0, &mut c);
    let s = m.spec.target_scale;
    assert!((c[0] - 3.0 * s * 0.5).abs() < 1e-12);
    assert!((c[1] + 3.0 * s * 2.0).abs() < 1e-12);
    assert!((c[2] - (m.spec.target_mean + 30.0 * s)).abs() < 1e-9);
}

#[test]
fn serde_round_trip_keeps_a_pytorch_state_dict() {
    let m = random_model(spec(NnKind::Multiclass, 4, &[5, 3], true), 6);
    let json = ok(serde_json::to_value(FittedModel::Nn(m.clone())));
    assert_eq!(json["family"], "nn");
    let encoded = json["weights_safetensors"].as_str().unwrap_or_default();
    let bytes = ok(BASE64.decode(encoded));
    let st = ok(SafeTensors::deserialize(&bytes));
    let mut names: Vec<&str> = st.names();
    names.sort_unstable();
    assert_eq!(names.len(), 14);
    assert!(names.contains(&"hidden.0.weight") && names.contains(&"norm.1.running_var"));
    let view = ok(st.tensor("hidden.0.weight"));
    assert_eq!(view.shape(), &[5, 4]);
    let back: FittedModel = ok(serde_json::from_value(json));
    let FittedModel::Nn(back) = back else {
        panic!("not nn")
    };
    assert_eq!(back, m);
}

#[test]
fn corrupt_weights_are_refused_not_panicked_on() {
    let m = random_model(spec(NnKind::Regression, 3, &[4], true), 7);
    let good = ok(serde_json::to_value(FittedModel::Nn(m.clone())));
    let decode = |v: &serde_json::Value| serde_json::from_value::<FittedModel>(v.clone());
    assert!(decode(&good).is_ok());

    let mut bad = good.clone();
    bad["weights_safetensors"] = "not base64!".into();
    assert!(decode(&bad).is_err());

    // A width that disagrees with the stored tensors.
    let mut bad = good.clone();
    bad["spec"]["hidden"] = serde_json::json!([5]);
    assert!(decode(&bad).is_err());

    // Valid safetensors holding NaN, a missing tensor, or the wrong dtype.
    let mut nan = m.tensors.clone();
    nan[0].values[0] = f32::NAN;
    assert!(NnModel::new(m.spec.clone(), nan.clone()).is_err());
    let mut short = m.tensors.clone();
    short.pop();
    assert!(NnModel::new(m.spec.clone(), short).is_err());
    let f64_bytes: Vec<u8> = m.tensors[0]
        .values
        .iter()
        .flat_map(|&v| f64::from(v).to_le_bytes())
        .collect();
    let wrong = ok(safetensors::serialize(
        vec![(
            "hidden.0.weight",
            ok(TensorView::new(Dtype::F64, vec![4, 3], &f64_bytes)),
        )],
        None,
    ));
    assert!(matches!(
        NnModel::from_safetensors(m.spec.clone(), &wrong),
        Err(LearnError::Corrupt(_))
    ));
    // Negative variance, and a regression scale of zero.
    let mut neg = m.tensors.clone();
    if let Some(t) = neg.iter_mut().find(|t| t.name == "norm.0.running_var") {
        t.values[0] = -1.0;
    }
    assert!(NnModel::new(m.spec.clone(), neg).is_err());
    let mut zero = m.spec.clone();
    zero.target_scale = 0.0;
    assert!(NnModel::new(zero, m.tensors.clone()).is_err());
}

/// Every build serves nn artifacts: built here by hand, with the lab data's
/// preprocessor, and round-tripped through bytes and the digest check.
#[test]
fn nn_artifacts_serve_without_libtorch() {
    use crate::artifact::ModelArtifact;
    use crate::dataset::{Dataset, Limits};
    use crate::lab;
    use crate::preprocess::Preprocessor;
    use crate::task::Task;

    let data = ok(Dataset::from_csv(
        lab::generate_csv(200, 1).as_bytes(),
        &Limits::default(),
    ));
    let rows: Vec<usize> = (0..data.n_rows()).collect();
    let pre = ok(Preprocessor::fit(&data, lab::TARGET, &rows));
    let model = random_model(spec(NnKind::Regression, pre.n_outputs(), &[16], true), 8);
    let artifact = ok(ModelArtifact::new(
        Task::Regression,
        lab::TARGET.to_string(),
        serde_json::Map::new(),
        pre,
        FittedModel::Nn(model),
        crate::profile::profile(&data, lab::TARGET, &rows),
        Default::default(),
    ));
    let records = [lab::example_record(1), lab::example_record(2)];
    let (_, _, predictions) = round_trip(&artifact, &records);
    for p in &predictions {
        let total = contributions_total(p);
        assert!((total - p.value).abs() < 1e-6, "{total} vs {}", p.value);
    }
}
