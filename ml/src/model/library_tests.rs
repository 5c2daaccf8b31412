//! The library-trained families (lightgbm, random_forest, xgboost): training
//! on the lab data, watched rounds and pruning, determinism, and artifacts
//! that survive a digest-checked round trip with identical predictions.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::test_data::{
    assert_tampering_is_caught, contributions_total, lab_data, ok, params, pass_fail, round_trip,
};
use super::{Family, FittedModel, ModelParams, Trainer, Watch};
use crate::automl::{evaluate, fit_final, EvalOptions, Step};
use crate::dataset::Dataset;
use crate::lab;
use crate::matrix::DenseMatrix;
use crate::metrics::{compute, Metric};
use crate::task::Task;
use crate::LearnError;

/// Small settings per family, quick in debug builds.
fn family_params(family: Family) -> Map<String, Value> {
    params(match family {
        Family::Lightgbm => json!({"family": "lightgbm", "lgbm_iterations": 60,
                                   "lgbm_num_leaves": 15, "lgbm_min_data_in_leaf": 5}),
        Family::RandomForest => json!({"family": "random_forest", "rf_trees": 40,
                                       "rf_num_leaves": 31}),
        Family::Xgboost => json!({"family": "xgboost", "xgb_iterations": 60,
                                  "xgb_max_depth": 4}),
        other => panic!("not a library family: {other:?}"),
    })
}

fn library_families() -> Vec<Family> {
    [Family::Lightgbm, Family::RandomForest, Family::Xgboost]
        .into_iter()
        .filter(|f| f.available())
        .collect()
}

/// The lab data with the delay category (four classes) as the target.
const MULTICLASS_TARGET: &str = "processing_delay_category";

#[test]
fn every_family_round_trips_through_an_artifact_with_identical_predictions() {
    let regression = lab_data(400);
    let binary = pass_fail(400);
    for family in library_families() {
        for (data, target) in [
            (&regression, lab::TARGET),
            (&binary, lab::TARGET),
            (&regression, MULTICLASS_TARGET),
        ] {
            let p = family_params(family);
            let a = ok(fit_final(
                data,
                target,
                &p,
                &EvalOptions::default(),
                BTreeMap::new(),
            ));
            assert_eq!(a.family, family);
            let mut records: Vec<Map<String, Value>> = (1..=5).map(lab::example_record).collect();
            records.push(Map::new());
            let (bytes, digest, predictions) = round_trip(&a, &records);
            for pred in &predictions {
                // Contributions explain the margin exactly.
                let total = contributions_total(pred);
                assert!(total.is_finite(), "{family:?} {target}");
                if pred.probabilities.is_none() {
                    assert!(
                        (total - pred.value).abs() < 1e-9 * (1.0 + pred.value.abs()),
                        "{family:?} {target}: {total} vs {}",
                        pred.value
                    );
                }
                if let Some(probs) = &pred.probabilities {
                    let sum: f64 = probs.values().sum();
                    assert!((sum - 1.0).abs() < 1e-9, "{family:?} {target}: {sum}");
                }
            }
            // Any change to the stored trees fails the digest check.
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let at = text
                .find("\"threshold\"")
                .map_or(bytes.len() / 2, |i| i + 13);
            assert_tampering_is_caught(&bytes, &digest, at, (b'1', b'2'));
        }
    }
}

/// The encoded lab data split into training and validation rows.
fn split(data: &Dataset, n_train: usize) -> (DenseMatrix, Vec<f64>, DenseMatrix, Vec<f64>) {
    let task = Task::Regression;
    let target = ok(crate::task::encode_target(data, lab::TARGET, &task));
    let (train, valid) = target.rows.split_at(n_train);
    let pre = ok(crate::preprocess::Preprocessor::fit(
        data,
        lab::TARGET,
        train,
    ));
    (
        ok(pre.transform(data, train)),
        target.y[..n_train].to_vec(),
        ok(pre.transform(data, valid)),
        target.y[n_train..].to_vec(),
    )
}

/// The standard deviation of the lab target: the RMSE of predicting the mean.
fn target_sd(data: &Dataset) -> f64 {
    let target = ok(crate::task::encode_target(
        data,
        lab::TARGET,
        &Task::Regression,
    ));
    let mean = target.y.iter().sum::<f64>() / target.y.len() as f64;
    (target.y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / target.y.len() as f64).sqrt()
}

fn trainer(family: Family, extra: Value) -> Box<dyn Trainer> {
    let mut p = family_params(family);
    p.extend(params(extra));
    ok(ok(ModelParams::from_map(&p)).trainer(3, Metric::Rmse, None))
}

#[test]
fn watched_training_reports_rounds_and_stops_when_pruned() {
    let data = lab_data(600);
    let (x, y, vx, vy) = split(&data, 450);
    for family in library_families() {
        let rounds = json!({"lgbm_iterations": 100, "rf_trees": 100, "xgb_iterations": 100});
        let extra = params(rounds)
            .into_iter()
            .filter(|(k, _)| k.starts_with(family.prefix()))
            .collect();
        let t = trainer(family, Value::Object(extra));
        let watched = |report: &mut dyn FnMut(u32, f64) -> Step| {
            let watch = Watch {
                x: &vx,
                y: &vy,
                report,
            };
            ok(t.fit_watched(&x, &y, &Task::Regression, watch))
        };

        let mut reports = Vec::new();
        let model = watched(&mut |r, v| {
            reports.push((r, v));
            Step::Continue
        });
        let Some(model) = model else {
            panic!("{family:?}: unpruned training gave no model")
        };
        let steps: Vec<u32> = reports.iter().map(|r| r.0).collect();
        assert_eq!(
            steps,
            (1..=20).map(|k| k * 5).collect::<Vec<_>>(),
            "{family:?}"
        );
        // The last report is the returned model's metric on the watched rows.
        let last = reports.last().map(|r| r.1).unwrap_or(f64::NAN);
        let served = ok(compute(
            Metric::Rmse,
            &Task::Regression,
            &vy,
            &model.predict(&vx),
        ));
        assert!(
            (last - served).abs() < 1e-4 * (1.0 + served),
            "{family:?}: {last} vs {served}"
        );
        if family != Family::RandomForest {
            // Boosting improves on its first rounds.
            assert!(reports[19].1 < reports[0].1, "{family:?}: {reports:?}");
        }

        let mut calls = 0;
        let pruned = watched(&mut |_, _| {
            calls += 1;
            Step::Stop
        });
        assert!(pruned.is_none(), "{family:?}");
        assert_eq!(calls, 1, "{family:?}: pruning stops at the first report");
    }
}

#[test]
fn same_seed_same_model_and_every_family_beats_the_mean() {
    let data = lab_data(600);
    let sd = target_sd(&data);
    let opts = EvalOptions::default();
    for family in library_families() {
        let p = family_params(family);
        let e = ok(evaluate(&data, lab::TARGET, &p, &opts, &mut |_, _| {
            Step::Continue
        }));
        assert_eq!(e.metric, Metric::Rmse);
        assert!(
            e.value < 0.8 * sd,
            "{family:?}: RMSE {} vs sd {sd}",
            e.value
        );
        let again = ok(evaluate(&data, lab::TARGET, &p, &opts, &mut |_, _| {
            Step::Continue
        }));
        assert_eq!(e.fold_values, again.fold_values, "{family:?}");
        let a = ok(fit_final(&data, lab::TARGET, &p, &opts, BTreeMap::new()));
        let b = ok(fit_final(&data, lab::TARGET, &p, &opts, BTreeMap::new()));
        assert_eq!(
            serde_json::to_string(&a.model).ok(),
            serde_json::to_string(&b.model).ok(),
            "{family:?}"
        );
        assert!(matches!(
            (&a.model, family),
            (FittedModel::Lightgbm(_), Family::Lightgbm)
                | (FittedModel::RandomForest(_), Family::RandomForest)
                | (FittedModel::Xgboost(_), Family::Xgboost)
        ));
    }
}

#[test]
fn bad_library_params_name_the_parameter() {
    let cases = [
        (
            json!({"family": "lightgbm", "lgbm_num_leaves": 1}),
            "lgbm_num_leaves",
        ),
        (
            json!({"family": "lightgbm", "lgbm_feature_fraction": 0.0}),
            "lgbm_feature_fraction",
        ),
        (
            json!({"family": "random_forest", "rf_bagging_fraction": 1.0}),
            "rf_bagging_fraction",
        ),
        (
            json!({"family": "random_forest", "rf_trees": 0}),
            "rf_trees",
        ),
        (
            json!({"family": "random_forest", "rf_extra_trees": "yes"}),
            "rf_extra_trees",
        ),
        (
            json!({"family": "xgboost", "xgb_max_depth": 40}),
            "xgb_max_depth",
        ),
        (
            json!({"family": "xgboost", "xgb_subsample": "half"}),
            "xgb_subsample",
        ),
        (
            json!({"family": "xgboost", "xgb_iterations": 5001}),
            "xgb_iterations",
        ),
        (json!({"family": "forest"}), "family"),
    ];
    for (v, name) in cases {
        match ModelParams::from_map(&params(v)) {
            Err(LearnError::Invalid(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// `rf_extra_trees` reaches LightGBM: the forest of random thresholds is a
/// different model from the best-split forest, as good a predictor on the
/// lab data, and as reproducible.
#[test]
fn extra_trees_give_another_reproducible_forest() {
    if !Family::RandomForest.available() {
        return;
    }
    let data = lab_data(600);
    let sd = target_sd(&data);
    let opts = EvalOptions::default();
    let best_split = family_params(Family::RandomForest);
    let mut extra = best_split.clone();
    extra.insert("rf_extra_trees".into(), json!(true));
    let parsed = ok(ModelParams::from_map(&extra));
    assert!(
        matches!(parsed, ModelParams::RandomForest(p) if p.extra_trees),
        "{parsed:?}"
    );
    let e = ok(evaluate(&data, lab::TARGET, &extra, &opts, &mut |_, _| {
        Step::Continue
    }));
    assert!(
        e.value < 0.8 * sd,
        "extra trees: RMSE {} vs sd {sd}",
        e.value
    );
    let b = ok(evaluate(
        &data,
        lab::TARGET,
        &best_split,
        &opts,
        &mut |_, _| Step::Continue,
    ));
    assert_ne!(e.fold_values, b.fold_values, "extra_trees changed nothing");
    let a1 = ok(fit_final(
        &data,
        lab::TARGET,
        &extra,
        &opts,
        BTreeMap::new(),
    ));
    let a2 = ok(fit_final(
        &data,
        lab::TARGET,
        &extra,
        &opts,
        BTreeMap::new(),
    ));
    assert_eq!(
        serde_json::to_string(&a1.model).ok(),
        serde_json::to_string(&a2.model).ok()
    );
}
