//! Hyperparameters from the HPO sampler: parsing, defaults and the search space.
//!
//! Parameters arrive as one flat JSON object from a conditional search space,
//! so each name carries its family prefix (`linear_l2`, `gbm_max_depth`).
//! Parameters of the family not chosen are ignored, as a conditional sampler
//! may pass them along; names that belong to no family are rejected, since
//! they are almost always typos.
//!
//! Defaults (used when a parameter is absent):
//! `family` = "gbm"; `linear_l2` = 0.01; `gbm_iterations` = 150,
//! `gbm_learning_rate` = 0.1, `gbm_max_depth` = 4, `gbm_min_leaf_weight` = 1.0,
//! `gbm_l2` = 1.0, `gbm_subsample` = 1.0; `nn_layers` = 2, `nn_width` = 64,
//! `nn_dropout` = 0.1, `nn_batch_norm` = true, `nn_learning_rate` = 0.001,
//! `nn_weight_decay` = 0.0001, `nn_batch_size` = 64, `nn_epochs` = 100;
//! `lgbm_iterations` = 200, `lgbm_learning_rate` = 0.1, `lgbm_num_leaves` = 31,
//! `lgbm_min_data_in_leaf` = 20, `lgbm_feature_fraction` = 1.0,
//! `lgbm_bagging_fraction` = 1.0, `lgbm_l2` = 0.0 (LightGBM's defaults);
//! `rf_trees` = 200, `rf_num_leaves` = 255, `rf_min_data_in_leaf` = 2,
//! `rf_feature_fraction` = 0.7, `rf_bagging_fraction` = 0.632,
//! `rf_extra_trees` = false;
//! `xgb_iterations` = 200, `xgb_learning_rate` = 0.1, `xgb_max_depth` = 6,
//! `xgb_min_child_weight` = 1.0, `xgb_subsample` = 1.0,
//! `xgb_colsample_bytree` = 1.0, `xgb_l2` = 1.0, `xgb_l1` = 0.0.
//!
//! The "nn" family trains with libtorch, so only builds with the `torch`
//! feature accept it; other builds reject it here, naming the feature, and
//! leave it out of [`default_search_space`] so a study on such a build never
//! samples a family it cannot train. (Serving an nn model needs no libtorch.)
//! The same holds for "lightgbm" and "random_forest" (feature `lightgbm`)
//! and "xgboost" (feature `xgboost`), which are on by default; their models
//! are served without the libraries.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use super::family::{Family, NN_AVAILABLE};
use crate::error::{invalid, Result};

/// Linear and logistic regression settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// L2 penalty on the coefficients of standardised features.
    pub l2: f64,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams { l2: 0.01 }
    }
}

/// Gradient-boosted tree settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GbmParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_leaf_weight: f64,
    pub l2: f64,
    pub subsample: f64,
}

impl Default for GbmParams {
    fn default() -> Self {
        GbmParams {
            iterations: 150,
            learning_rate: 0.1,
            max_depth: 4,
            min_leaf_weight: 1.0,
            l2: 1.0,
            subsample: 1.0,
        }
    }
}

/// Most boosting rounds (or forest trees) a trial may ask for.
pub const MAX_ROUNDS: usize = 5_000;

/// Most epochs one training may run (`nn_epochs`); per-epoch intermediate
/// steps are numbered below this within each fold (see `automl`).
pub const MAX_EPOCHS: usize = 1000;

/// LightGBM gradient boosting settings (LightGBM's own parameter names).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LightgbmParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub num_leaves: usize,
    pub min_data_in_leaf: usize,
    /// Share of features each tree sees.
    pub feature_fraction: f64,
    /// Share of rows each round trains on (bagging every round when < 1).
    pub bagging_fraction: f64,
    pub l2: f64,
}

impl Default for LightgbmParams {
    fn default() -> Self {
        LightgbmParams {
            iterations: 200,
            learning_rate: 0.1,
            num_leaves: 31,
            min_data_in_leaf: 20,
            feature_fraction: 1.0,
            bagging_fraction: 1.0,
            l2: 0.0,
        }
    }
}

/// Random forest settings: LightGBM's `rf` mode, every tree on a bootstrap-
/// like row sample and a feature sample, outputs averaged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomForestParams {
    pub trees: usize,
    pub num_leaves: usize,
    pub min_data_in_leaf: usize,
    pub feature_fraction: f64,
    /// Below 1: LightGBM's rf mode needs row sampling to decorrelate trees.
    pub bagging_fraction: f64,
    /// Extremely randomised trees: each split tests one random threshold
    /// per feature (LightGBM's `extra_trees`), so trees are cheaper and less
    /// alike than the forest's best splits; often better on small, noisy
    /// data. Absent from records written before it existed: false.
    #[serde(default)]
    pub extra_trees: bool,
}

impl Default for RandomForestParams {
    fn default() -> Self {
        RandomForestParams {
            trees: 200,
            num_leaves: 255,
            min_data_in_leaf: 2,
            feature_fraction: 0.7,
            bagging_fraction: 0.632,
            extra_trees: false,
        }
    }
}

/// XGBoost settings (XGBoost's names: eta, lambda, alpha).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct XgboostParams {
    pub iterations: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_child_weight: f64,
    pub subsample: f64,
    pub colsample_bytree: f64,
    pub l2: f64,
    pub l1: f64,
}

impl Default for XgboostParams {
    fn default() -> Self {
        XgboostParams {
            iterations: 200,
            learning_rate: 0.1,
            max_depth: 6,
            min_child_weight: 1.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            l2: 1.0,
            l1: 0.0,
        }
    }
}

/// Largest `nn_layers`; also the most hidden layers a stored model may have.
pub const NN_MAX_LAYERS: usize = 8;
/// Largest `nn_width`; also the widest hidden layer a stored model may have.
pub const NN_MAX_WIDTH: usize = 1024;

/// Multilayer perceptron settings (see [`super::nn`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NnParams {
    /// Hidden layers, each linear, then batch norm (optional), ReLU, dropout.
    pub layers: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Probability of zeroing a hidden unit while training.
    pub dropout: f64,
    pub batch_norm: bool,
    /// AdamW step size.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    pub batch_size: usize,
    /// Most epochs; early stopping on a validation split usually ends sooner.
    pub epochs: usize,
}

impl Default for NnParams {
    fn default() -> Self {
        NnParams {
            layers: 2,
            width: 64,
            dropout: 0.1,
            batch_norm: true,
            learning_rate: 1e-3,
            weight_decay: 1e-4,
            batch_size: 64,
            epochs: 100,
        }
    }
}

/// Parsed, validated hyperparameters of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ModelParams {
    Linear(LinearParams),
    Gbm(GbmParams),
    Nn(NnParams),
    Lightgbm(LightgbmParams),
    #[serde(rename = "random_forest")]
    RandomForest(RandomForestParams),
    Xgboost(XgboostParams),
}

const KNOWN: [&str; 37] = [
    "family",
    "linear_l2",
    "gbm_iterations",
    "gbm_learning_rate",
    "gbm_max_depth",
    "gbm_min_leaf_weight",
    "gbm_l2",
    "gbm_subsample",
    "nn_layers",
    "nn_width",
    "nn_dropout",
    "nn_batch_norm",
    "nn_learning_rate",
    "nn_weight_decay",
    "nn_batch_size",
    "nn_epochs",
    "lgbm_iterations",
    "lgbm_learning_rate",
    "lgbm_num_leaves",
    "lgbm_min_data_in_leaf",
    "lgbm_feature_fraction",
    "lgbm_bagging_fraction",
    "lgbm_l2",
    "rf_trees",
    "rf_num_leaves",
    "rf_min_data_in_leaf",
    "rf_feature_fraction",
    "rf_bagging_fraction",
    "rf_extra_trees",
    "xgb_iterations",
    "xgb_learning_rate",
    "xgb_max_depth",
    "xgb_min_child_weight",
    "xgb_subsample",
    "xgb_colsample_bytree",
    "xgb_l2",
    "xgb_l1",
];

fn float(
    params: &Map<String, Value>,
    name: &str,
    default: f64,
    low: f64,
    high: f64,
) -> Result<f64> {
    let Some(v) = params.get(name) else {
        return Ok(default);
    };
    let x = v
        .as_f64()
        .ok_or_else(|| invalid(format!("parameter '{name}' must be a number, got {v}")))?;
    if !(x.is_finite() && x >= low && x <= high) {
        return Err(invalid(format!(
            "parameter '{name}' = {x} is out of range [{low}, {high}]"
        )));
    }
    Ok(x)
}

fn int(
    params: &Map<String, Value>,
    name: &str,
    default: usize,
    low: usize,
    high: usize,
) -> Result<usize> {
    let Some(v) = params.get(name) else {
        return Ok(default);
    };
    // Samplers that work in floats send 200.0 for 200; accept whole numbers.
    let x = v
        .as_f64()
        .filter(|x| x.fract() == 0.0)
        .ok_or_else(|| invalid(format!("parameter '{name}' must be an integer, got {v}")))?;
    if !(x >= low as f64 && x <= high as f64) {
        return Err(invalid(format!(
            "parameter '{name}' = {x} is out of range [{low}, {high}]"
        )));
    }
    Ok(x as usize)
}

fn boolean(params: &Map<String, Value>, name: &str, default: bool) -> Result<bool> {
    match params.get(name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(invalid(format!(
            "parameter '{name}' must be true or false, got {v}"
        ))),
    }
}

fn nn_params(params: &Map<String, Value>) -> Result<NnParams> {
    let d = NnParams::default();
    let p = NnParams {
        layers: int(params, "nn_layers", d.layers, 1, NN_MAX_LAYERS)?,
        width: int(params, "nn_width", d.width, 1, NN_MAX_WIDTH)?,
        // At 1.0 every unit would be dropped and the scaling divides by zero.
        dropout: float(params, "nn_dropout", d.dropout, 0.0, 0.9)?,
        batch_norm: boolean(params, "nn_batch_norm", d.batch_norm)?,
        learning_rate: float(params, "nn_learning_rate", d.learning_rate, 1e-6, 1.0)?,
        weight_decay: float(params, "nn_weight_decay", d.weight_decay, 0.0, 1.0)?,
        batch_size: int(params, "nn_batch_size", d.batch_size, 1, 65_536)?,
        epochs: int(params, "nn_epochs", d.epochs, 1, MAX_EPOCHS)?,
    };
    // Batch norm needs two rows per batch to estimate a variance.
    if p.batch_norm && p.batch_size < 2 {
        return Err(invalid(
            "parameter 'nn_batch_size' must be at least 2 when nn_batch_norm is true",
        ));
    }
    Ok(p)
}

fn lightgbm_params(params: &Map<String, Value>) -> Result<LightgbmParams> {
    let d = LightgbmParams::default();
    Ok(LightgbmParams {
        iterations: int(params, "lgbm_iterations", d.iterations, 1, MAX_ROUNDS)?,
        learning_rate: float(params, "lgbm_learning_rate", d.learning_rate, 1e-4, 1.0)?,
        num_leaves: int(params, "lgbm_num_leaves", d.num_leaves, 2, 4_096)?,
        min_data_in_leaf: int(
            params,
            "lgbm_min_data_in_leaf",
            d.min_data_in_leaf,
            1,
            100_000,
        )?,
        // LightGBM requires both fractions in (0, 1].
        feature_fraction: float(
            params,
            "lgbm_feature_fraction",
            d.feature_fraction,
            0.05,
            1.0,
        )?,
        bagging_fraction: float(
            params,
            "lgbm_bagging_fraction",
            d.bagging_fraction,
            0.05,
            1.0,
        )?,
        l2: float(params, "lgbm_l2", d.l2, 0.0, 1e6)?,
    })
}

fn random_forest_params(params: &Map<String, Value>) -> Result<RandomForestParams> {
    let d = RandomForestParams::default();
    Ok(RandomForestParams {
        trees: int(params, "rf_trees", d.trees, 1, MAX_ROUNDS)?,
        num_leaves: int(params, "rf_num_leaves", d.num_leaves, 2, 4_096)?,
        min_data_in_leaf: int(
            params,
            "rf_min_data_in_leaf",
            d.min_data_in_leaf,
            1,
            100_000,
        )?,
        feature_fraction: float(params, "rf_feature_fraction", d.feature_fraction, 0.05, 1.0)?,
        // LightGBM's rf mode refuses bagging_fraction = 1 (every tree alike).
        bagging_fraction: float(
            params,
            "rf_bagging_fraction",
            d.bagging_fraction,
            0.05,
            0.95,
        )?,
        extra_trees: boolean(params, "rf_extra_trees", d.extra_trees)?,
    })
}

fn xgboost_params(params: &Map<String, Value>) -> Result<XgboostParams> {
    let d = XgboostParams::default();
    Ok(XgboostParams {
        iterations: int(params, "xgb_iterations", d.iterations, 1, MAX_ROUNDS)?,
        learning_rate: float(params, "xgb_learning_rate", d.learning_rate, 1e-4, 1.0)?,
        max_depth: int(params, "xgb_max_depth", d.max_depth, 1, 16)?,
        min_child_weight: float(params, "xgb_min_child_weight", d.min_child_weight, 0.0, 1e6)?,
        subsample: float(params, "xgb_subsample", d.subsample, 0.05, 1.0)?,
        colsample_bytree: float(
            params,
            "xgb_colsample_bytree",
            d.colsample_bytree,
            0.05,
            1.0,
        )?,
        l2: float(params, "xgb_l2", d.l2, 0.0, 1e6)?,
        l1: float(params, "xgb_l1", d.l1, 0.0, 1e6)?,
    })
}

impl ModelParams {
    /// Parses sampler output; see the module docs for names and defaults.
    pub fn from_map(params: &Map<String, Value>) -> Result<ModelParams> {
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown parameter '{unknown}'; expected one of {}",
                KNOWN.join(", ")
            )));
        }
        let names = || {
            Family::ALL
                .iter()
                .map(|f| format!("\"{}\"", f.name()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let family =
            match params.get("family") {
                None => Family::Gbm,
                Some(Value::String(s)) => Family::ALL
                    .into_iter()
                    .find(|f| f.name() == s)
                    .ok_or_else(|| {
                        invalid(format!(
                            "parameter 'family' must be one of {}, got \"{s}\"",
                            names()
                        ))
                    })?,
                Some(other) => {
                    return Err(invalid(format!(
                        "parameter 'family' must be one of {}, got {other}",
                        names()
                    )))
                }
            };
        if !family.available() {
            let available: Vec<&str> = Family::ALL
                .into_iter()
                .filter(|f| f.available())
                .map(Family::name)
                .collect();
            return Err(invalid(format!(
                "family \"{}\" needs a build with the `{}` feature; this build has none, \
                 so choose one of {}",
                family.name(),
                family.feature(),
                available.join(", ")
            )));
        }
        Ok(match family {
            Family::Linear => ModelParams::Linear(LinearParams {
                l2: float(params, "linear_l2", LinearParams::default().l2, 0.0, 1e6)?,
            }),
            Family::Gbm => {
                let d = GbmParams::default();
                ModelParams::Gbm(GbmParams {
                    iterations: int(params, "gbm_iterations", d.iterations, 1, 5_000)?,
                    learning_rate: float(params, "gbm_learning_rate", d.learning_rate, 1e-4, 1.0)?,
                    max_depth: int(params, "gbm_max_depth", d.max_depth, 1, 16)?,
                    min_leaf_weight: float(
                        params,
                        "gbm_min_leaf_weight",
                        d.min_leaf_weight,
                        0.0,
                        1e6,
                    )?,
                    l2: float(params, "gbm_l2", d.l2, 0.0, 1e6)?,
                    subsample: float(params, "gbm_subsample", d.subsample, 0.05, 1.0)?,
                })
            }
            Family::Nn => ModelParams::Nn(nn_params(params)?),
            Family::Lightgbm => ModelParams::Lightgbm(lightgbm_params(params)?),
            Family::RandomForest => ModelParams::RandomForest(random_forest_params(params)?),
            Family::Xgboost => ModelParams::Xgboost(xgboost_params(params)?),
        })
    }

    pub fn family(&self) -> Family {
        match self {
            ModelParams::Linear(_) => Family::Linear,
            ModelParams::Gbm(_) => Family::Gbm,
            ModelParams::Nn(_) => Family::Nn,
            ModelParams::Lightgbm(_) => Family::Lightgbm,
            ModelParams::RandomForest(_) => Family::RandomForest,
            ModelParams::Xgboost(_) => Family::Xgboost,
        }
    }
}

/// The search space the scheduler samples trials from: `family` over every
/// family this build can train, each with its own conditional parameters.
///
/// Ranges keep one trial (3-fold CV, ~2,000 rows x ~25 encoded columns)
/// around a second on one core: at most 200 trees of depth 5 for gbm
/// (~0.6 s on a shared 2-core build box, ~0.2 s for a typical draw), at
/// most 300 rounds for the library families (LightGBM's 300 trees of 64
/// leaves take ~0.3 s there, XGBoost's of depth 8 ~0.5 s). The nn ranges are
/// small for the same reason: the costliest draw (2 x 64, batch 64, 40
/// epochs) takes ~1.0 s on that box (`nn_trial_timing` in the nn tests), and
/// early stopping ends many draws before `nn_epochs`.
pub fn default_search_space() -> Value {
    let when = |f: Family| json!({"family": [f.name()]});
    let per_family = |f: Family| -> Value {
        match f {
            Family::Linear => json!({
                "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true},
            }),
            Family::Gbm => json!({
                "gbm_iterations": {"type": "int", "low": 50, "high": 200, "step": 50},
                "gbm_learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
                "gbm_max_depth": {"type": "int", "low": 2, "high": 5},
                "gbm_min_leaf_weight": {"type": "float", "low": 0.5, "high": 20.0, "log": true},
                "gbm_l2": {"type": "float", "low": 0.001, "high": 10.0, "log": true},
                "gbm_subsample": {"type": "float", "low": 0.5, "high": 1.0},
            }),
            Family::Nn => json!({
                "nn_layers": {"type": "int", "low": 1, "high": 2},
                "nn_width": {"type": "int", "low": 16, "high": 64, "log": true},
                "nn_dropout": {"type": "float", "low": 0.0, "high": 0.3},
                "nn_batch_norm": {"type": "categorical", "choices": [true, false]},
                "nn_learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true},
                "nn_weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": true},
                "nn_batch_size": {"type": "int", "low": 64, "high": 256, "step": 64},
                "nn_epochs": {"type": "int", "low": 10, "high": 40, "step": 10},
            }),
            Family::Lightgbm => json!({
                "lgbm_iterations": {"type": "int", "low": 50, "high": 300, "step": 50},
                "lgbm_learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
                "lgbm_num_leaves": {"type": "int", "low": 4, "high": 64, "log": true},
                "lgbm_min_data_in_leaf": {"type": "int", "low": 2, "high": 50, "log": true},
                "lgbm_feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
                "lgbm_bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0},
                "lgbm_l2": {"type": "float", "low": 0.001, "high": 10.0, "log": true},
            }),
            Family::RandomForest => json!({
                "rf_trees": {"type": "int", "low": 50, "high": 300, "step": 50},
                "rf_num_leaves": {"type": "int", "low": 16, "high": 512, "log": true},
                "rf_min_data_in_leaf": {"type": "int", "low": 1, "high": 20, "log": true},
                "rf_feature_fraction": {"type": "float", "low": 0.3, "high": 1.0},
                "rf_bagging_fraction": {"type": "float", "low": 0.5, "high": 0.9},
                "rf_extra_trees": {"type": "categorical", "choices": [false, true]},
            }),
            Family::Xgboost => json!({
                "xgb_iterations": {"type": "int", "low": 50, "high": 300, "step": 50},
                "xgb_learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true},
                "xgb_max_depth": {"type": "int", "low": 2, "high": 8},
                "xgb_min_child_weight": {"type": "float", "low": 0.5, "high": 20.0, "log": true},
                "xgb_subsample": {"type": "float", "low": 0.5, "high": 1.0},
                "xgb_colsample_bytree": {"type": "float", "low": 0.5, "high": 1.0},
                "xgb_l2": {"type": "float", "low": 0.001, "high": 10.0, "log": true},
                "xgb_l1": {"type": "float", "low": 0.001, "high": 1.0, "log": true},
            }),
        }
    };
    let families: Vec<Family> = Family::ALL.into_iter().filter(|f| f.available()).collect();
    let mut space = Map::new();
    space.insert(
        "family".into(),
        json!({"type": "categorical", "choices": families.iter().map(|f| f.name()).collect::<Vec<_>>()}),
    );
    for family in families {
        if let Value::Object(params) = per_family(family) {
            for (name, mut spec) in params {
                spec["when"] = when(family);
                space.insert(name, spec);
            }
        }
    }
    Value::Object(space)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LearnError;

    fn parse(v: Value) -> Result<ModelParams> {
        match v {
            Value::Object(m) => ModelParams::from_map(&m),
            _ => Err(invalid("not an object")),
        }
    }

    #[test]
    fn parses_both_families_with_defaults() {
        assert_eq!(
            parse(json!({"family": "linear", "linear_l2": 0.5})).ok(),
            Some(ModelParams::Linear(LinearParams { l2: 0.5 }))
        );
        let p = parse(
            json!({"family": "gbm", "gbm_iterations": 200.0, "gbm_max_depth": 3, "linear_l2": 1.0}),
        );
        let Ok(ModelParams::Gbm(g)) = p else {
            panic!("{p:?}")
        };
        assert_eq!(g.iterations, 200);
        assert_eq!(g.max_depth, 3);
        assert_eq!(g.learning_rate, GbmParams::default().learning_rate);
        assert_eq!(parse(json!({})).ok().map(|p| p.family()), Some(Family::Gbm));
    }

    #[test]
    fn bad_params_name_the_parameter() {
        let cases = [
            (json!({"family": "forest"}), "family"),
            (
                json!({"family": "gbm", "gbm_max_depth": 2.5}),
                "gbm_max_depth",
            ),
            (
                json!({"family": "gbm", "gbm_subsample": 0.0}),
                "gbm_subsample",
            ),
            (json!({"family": "linear", "linear_l2": "big"}), "linear_l2"),
            (json!({"family": "linear", "linear_l2": -1.0}), "linear_l2"),
            (json!({"family": "gbm", "gbm_depth": 3}), "gbm_depth"),
        ];
        for (v, name) in cases {
            match parse(v) {
                Err(LearnError::Invalid(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn search_space_covers_every_known_parameter_and_parses_at_bounds() {
        let space = default_search_space();
        let Some(space) = space.as_object() else {
            panic!("space is an object")
        };
        for name in KNOWN.iter().filter(|n| **n != "family") {
            // Every family's parameters are known to every build (so a typo
            // check never hides the real error) but sampled only where the
            // family can train.
            let Some(family) = Family::ALL
                .into_iter()
                .find(|f| name.starts_with(f.prefix()))
            else {
                panic!("{name} has no family prefix")
            };
            assert_eq!(space.contains_key(*name), family.available(), "{name}");
        }
        for family in Family::ALL.into_iter().filter(|f| f.available()) {
            for bound in ["low", "high"] {
                let mut m = Map::new();
                m.insert("family".into(), json!(family.name()));
                let prefix = family.prefix();
                for (name, spec) in space.iter().filter(|(n, _)| n.starts_with(prefix)) {
                    let value = match spec.get(bound) {
                        Some(v) => v.clone(),
                        None => spec["choices"][0].clone(),
                    };
                    m.insert(name.clone(), value);
                }
                let parsed = ModelParams::from_map(&m);
                assert!(parsed.is_ok(), "{family:?} {bound}: {parsed:?}");
            }
        }
    }

    #[test]
    fn nn_params_parse_or_name_the_missing_feature() {
        let p = parse(json!({"family": "nn", "nn_width": 32, "nn_batch_norm": false}));
        if NN_AVAILABLE {
            let Ok(ModelParams::Nn(nn)) = p else {
                panic!("{p:?}")
            };
            assert_eq!(nn.width, 32);
            assert!(!nn.batch_norm);
            assert_eq!(nn.layers, NnParams::default().layers);
            let cases = [
                (json!({"family": "nn", "nn_dropout": 1.0}), "nn_dropout"),
                (
                    json!({"family": "nn", "nn_batch_norm": "yes"}),
                    "nn_batch_norm",
                ),
                (json!({"family": "nn", "nn_layers": 0}), "nn_layers"),
                (json!({"family": "nn", "nn_width": 4096}), "nn_width"),
                (
                    json!({"family": "nn", "nn_learning_rate": 0.0}),
                    "nn_learning_rate",
                ),
                (json!({"family": "nn", "nn_epochs": 1.5}), "nn_epochs"),
                (json!({"family": "nn", "nn_batch_size": 1}), "nn_batch_size"),
                (
                    json!({"family": "nn", "nn_weight_decay": -0.1}),
                    "nn_weight_decay",
                ),
            ];
            for (v, name) in cases {
                match parse(v) {
                    Err(LearnError::Invalid(m)) => assert!(m.contains(name), "{m}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
            // Without batch norm a batch of one row is fine.
            assert!(
                parse(json!({"family": "nn", "nn_batch_size": 1, "nn_batch_norm": false})).is_ok()
            );
        } else {
            match p {
                Err(LearnError::Invalid(m)) => assert!(m.contains("`torch` feature"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
