//! Golden snapshots of the hyperparameter contract: the default search space,
//! each family's defaults and the messages for bad input. The scheduler
//! stores search spaces and the worker parses what samplers send, so any
//! change here changes stored studies; update the goldens only on purpose.
//!
//! The goldens hold every family, as a build with `torch`, `lightgbm` and
//! `xgboost` sees them; other builds check the same goldens less the
//! families they cannot train. `TRACSEQ_BLESS=1` on a full build rewrites
//! them from the code.

use std::path::PathBuf;

use serde_json::{json, Map, Value};
use tracseq_learn::model::{
    default_search_space, Family, GbmParams, LightgbmParams, LinearParams, ModelParams, NnParams,
    RandomForestParams, XgboostParams,
};
use tracseq_learn::LearnError;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn all_available() -> bool {
    Family::ALL.into_iter().all(Family::available)
}

/// The golden text, rewritten from `full` first when blessing a full build.
fn golden(name: &str, full: impl FnOnce() -> String) -> String {
    let path = golden_path(name);
    if std::env::var_os("TRACSEQ_BLESS").is_some() && all_available() {
        if let Err(e) = std::fs::write(&path, full()) {
            panic!("writing {}: {e}", path.display());
        }
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

fn pretty(v: &Value) -> String {
    match serde_json::to_string_pretty(v) {
        Ok(s) => s + "\n",
        Err(e) => panic!("{e}"),
    }
}

fn parse(v: Value) -> Result<ModelParams, LearnError> {
    match v {
        Value::Object(m) => ModelParams::from_map(&m),
        other => panic!("not an object: {other}"),
    }
}

fn available_names() -> Vec<&'static str> {
    Family::ALL
        .into_iter()
        .filter(|f| f.available())
        .map(Family::name)
        .collect()
}

/// The golden space less the families this build cannot train.
fn for_this_build(full: &Value) -> Value {
    let Some(full) = full.as_object() else {
        panic!("golden space is an object")
    };
    let mut space = Map::new();
    for (name, spec) in full {
        if name == "family" {
            space.insert(
                name.clone(),
                json!({"type": "categorical", "choices": available_names()}),
            );
            continue;
        }
        let family = spec["when"]["family"][0].as_str().unwrap_or_default();
        if available_names().contains(&family) {
            space.insert(name.clone(), spec.clone());
        }
    }
    Value::Object(space)
}

#[test]
fn default_search_space_matches_golden() {
    let golden = golden("search_space.json", || pretty(&default_search_space()));
    let full: Value = match serde_json::from_str(&golden) {
        Ok(v) => v,
        Err(e) => panic!("golden search space: {e}"),
    };
    // The exact text on a full build; the same entries, less the families
    // left out, on any other.
    if all_available() {
        assert_eq!(pretty(&default_search_space()), golden);
    }
    assert_eq!(
        pretty(&default_search_space()),
        pretty(&for_this_build(&full))
    );
    assert_eq!(
        serde_json::to_string(&default_search_space()).ok(),
        serde_json::to_string(&for_this_build(&full)).ok()
    );
}

fn defaults_of(family: Family) -> ModelParams {
    match family {
        Family::Linear => ModelParams::Linear(LinearParams::default()),
        Family::Gbm => ModelParams::Gbm(GbmParams::default()),
        Family::Nn => ModelParams::Nn(NnParams::default()),
        Family::Lightgbm => ModelParams::Lightgbm(LightgbmParams::default()),
        Family::RandomForest => ModelParams::RandomForest(RandomForestParams::default()),
        Family::Xgboost => ModelParams::Xgboost(XgboostParams::default()),
    }
}

fn json_of(p: &ModelParams) -> Value {
    match serde_json::to_value(p) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn family_defaults_match_golden() {
    let all: Map<String, Value> = Family::ALL
        .into_iter()
        .map(|f| (f.name().to_string(), json_of(&defaults_of(f))))
        .collect();
    let golden = golden("param_defaults.json", || {
        pretty(&Value::Object(all.clone()))
    });
    assert_eq!(pretty(&Value::Object(all)), golden);

    let parsed_default = parse(json!({}));
    assert_eq!(
        parsed_default.ok().as_ref().map(json_of),
        Some(json_of(&defaults_of(Family::Gbm)))
    );
    for family in Family::ALL {
        let parsed = parse(json!({"family": family.name()}));
        if family.available() {
            assert_eq!(
                parsed.ok().as_ref().map(json_of),
                Some(json_of(&defaults_of(family))),
                "{family:?}"
            );
        } else {
            let feature = match family {
                Family::Nn => "torch",
                Family::Lightgbm | Family::RandomForest => "lightgbm",
                _ => "xgboost",
            };
            let expected = format!(
                "family \"{}\" needs a build with the `{feature}` feature; this build has \
                 none, so choose one of {}",
                family.name(),
                available_names().join(", ")
            );
            match parsed {
                Err(LearnError::Invalid(m)) => assert_eq!(m, expected),
                other => panic!("{family:?}: {other:?}"),
            }
        }
    }
}

const KNOWN_LIST: &str = "family, linear_l2, gbm_iterations, gbm_learning_rate, \
    gbm_max_depth, gbm_min_leaf_weight, gbm_l2, gbm_subsample, nn_layers, nn_width, \
    nn_dropout, nn_batch_norm, nn_learning_rate, nn_weight_decay, nn_batch_size, nn_epochs, \
    lgbm_iterations, lgbm_learning_rate, lgbm_num_leaves, lgbm_min_data_in_leaf, \
    lgbm_feature_fraction, lgbm_bagging_fraction, lgbm_l2, rf_trees, rf_num_leaves, \
    rf_min_data_in_leaf, rf_feature_fraction, rf_bagging_fraction, rf_extra_trees, \
    xgb_iterations, xgb_learning_rate, xgb_max_depth, xgb_min_child_weight, xgb_subsample, \
    xgb_colsample_bytree, xgb_l2, xgb_l1";

#[test]
fn invalid_params_give_golden_messages() {
    let families = "\"linear\", \"gbm\", \"nn\", \"lightgbm\", \"random_forest\", \"xgboost\"";
    // Checked on every build: linear and gbm always train, and names are
    // checked before the family.
    let mut cases: Vec<(Value, String)> = vec![
        (
            json!({"family": "gbm", "gbm_depth": 3}),
            format!("unknown parameter 'gbm_depth'; expected one of {KNOWN_LIST}"),
        ),
        (
            json!({"family": "nn", "lgbm_leaves": 3}),
            format!("unknown parameter 'lgbm_leaves'; expected one of {KNOWN_LIST}"),
        ),
        (
            json!({"family": "forest"}),
            format!("parameter 'family' must be one of {families}, got \"forest\""),
        ),
        (
            json!({"family": 3}),
            format!("parameter 'family' must be one of {families}, got 3"),
        ),
        (
            json!({"family": "linear", "linear_l2": -1.0}),
            "parameter 'linear_l2' = -1 is out of range [0, 1000000]".into(),
        ),
        (
            json!({"family": "linear", "linear_l2": "big"}),
            "parameter 'linear_l2' must be a number, got \"big\"".into(),
        ),
        (
            json!({"family": "gbm", "gbm_max_depth": 2.5}),
            "parameter 'gbm_max_depth' must be an integer, got 2.5".into(),
        ),
        (
            json!({"family": "gbm", "gbm_max_depth": 17}),
            "parameter 'gbm_max_depth' = 17 is out of range [1, 16]".into(),
        ),
        (
            json!({"family": "gbm", "gbm_iterations": 1e9}),
            "parameter 'gbm_iterations' = 1000000000 is out of range [1, 5000]".into(),
        ),
        (
            json!({"family": "gbm", "gbm_iterations": -3}),
            "parameter 'gbm_iterations' = -3 is out of range [1, 5000]".into(),
        ),
        (
            json!({"family": "gbm", "gbm_subsample": 0.0}),
            "parameter 'gbm_subsample' = 0 is out of range [0.05, 1]".into(),
        ),
        (
            json!({"family": "gbm", "gbm_learning_rate": null}),
            "parameter 'gbm_learning_rate' must be a number, got null".into(),
        ),
    ];
    if Family::Nn.available() {
        cases.extend([
            (
                json!({"family": "nn", "nn_batch_norm": "yes"}),
                "parameter 'nn_batch_norm' must be true or false, got \"yes\"".to_string(),
            ),
            (
                json!({"family": "nn", "nn_dropout": 1.0}),
                "parameter 'nn_dropout' = 1 is out of range [0, 0.9]".into(),
            ),
            (
                json!({"family": "nn", "nn_width": 4096}),
                "parameter 'nn_width' = 4096 is out of range [1, 1024]".into(),
            ),
            (
                json!({"family": "nn", "nn_epochs": 1001}),
                "parameter 'nn_epochs' = 1001 is out of range [1, 1000]".into(),
            ),
            (
                json!({"family": "nn", "nn_learning_rate": 0.0}),
                "parameter 'nn_learning_rate' = 0 is out of range [0.000001, 1]".into(),
            ),
            (
                json!({"family": "nn", "nn_batch_size": 1}),
                "parameter 'nn_batch_size' must be at least 2 when nn_batch_norm is true".into(),
            ),
        ]);
    }
    if Family::RandomForest.available() {
        cases.extend([
            (
                json!({"family": "random_forest", "rf_extra_trees": 1}),
                "parameter 'rf_extra_trees' must be true or false, got 1".to_string(),
            ),
            (
                json!({"family": "random_forest", "rf_bagging_fraction": 1.0}),
                "parameter 'rf_bagging_fraction' = 1 is out of range [0.05, 0.95]".into(),
            ),
            (
                json!({"family": "lightgbm", "lgbm_num_leaves": 1}),
                "parameter 'lgbm_num_leaves' = 1 is out of range [2, 4096]".into(),
            ),
        ]);
    }
    if Family::Xgboost.available() {
        cases.push((
            json!({"family": "xgboost", "xgb_l1": 2e6}),
            "parameter 'xgb_l1' = 2000000 is out of range [0, 1000000]".into(),
        ));
    }
    for (input, expected) in cases {
        match parse(input.clone()) {
            Err(LearnError::Invalid(m)) => assert_eq!(m, expected, "{input}"),
            other => panic!("{input}: {other:?}"),
        }
    }
    // The parameters of a family not chosen are checked for their names
    // only, not their values.
    assert!(parse(json!({"family": "linear", "gbm_max_depth": 99})).is_ok());
}
