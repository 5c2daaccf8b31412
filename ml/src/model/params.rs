//! Hyperparameters from the HPO sampler: parsing, defaults and the search space.
//!
//! Parameters arrive as one flat JSON object from a conditional search space,
//! so each name carries its family prefix (`linear_l2`, `gbm_max_depth`).
//! Parameters of the family not chosen are ignored, as a conditional sampler
//! may pass them along; names that belong to no family are rejected, since
//! they are almost always typos.
//!
//! Each family's hyperparameters are written once, in one table: the
//! `family_params!` blocks below, a row per parameter with its name (the
//! family's prefix and the field's name), type, default, the range parsing
//! accepts, its entry in [`default_search_space`] and a line of doc. The
//! known names, each family's `Default`, validation, the search space and
//! the fields' rendered docs all come from these tables, which are also
//! data: [`LinearParams::SPECS`], [`GbmParams::SPECS`], [`NnParams::SPECS`],
//! [`LightgbmParams::SPECS`], [`RandomForestParams::SPECS`],
//! [`XgboostParams::SPECS`], or [`specs`] by family. `family` itself
//! defaults to "gbm".
//!
//! The "nn" family trains with libtorch, so only builds with the `torch`
//! feature accept it; other builds reject it here, naming the feature, and
//! leave it out of [`default_search_space`] so a study on such a build never
//! samples a family it cannot train. (Serving an nn model needs no libtorch.)
//! The same holds for "lightgbm" and "random_forest" (feature `lightgbm`)
//! and "xgboost" (feature `xgboost`), which are on by default; their models
//! are served without the libraries.

mod spec;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use super::family::{Family, NN_AVAILABLE};
use crate::error::{invalid, Result};
use spec::family_params;
pub use spec::{Accepts, ParamSpec, Search};

/// Most boosting rounds (or forest trees) a trial may ask for.
pub const MAX_ROUNDS: usize = 5_000;

/// Most epochs one training may run (`nn_epochs`); per-epoch intermediate
/// steps are numbered below this within each fold (see `automl`).
pub const MAX_EPOCHS: usize = 1000;

/// Largest `nn_layers`; also the most hidden layers a stored model may have.
pub const NN_MAX_LAYERS: usize = 8;
/// Largest `nn_width`; also the widest hidden layer a stored model may have.
pub const NN_MAX_WIDTH: usize = 1024;

family_params! {
    /// Linear and logistic regression settings.
    pub struct LinearParams, prefix "linear_" {
        /// L2 penalty on the coefficients of standardised features.
        l2: f64 = 0.01, accepts 0.0..=1e6, search float(1e-6..=10.0, log);
    }
}

family_params! {
    /// Gradient-boosted tree settings.
    pub struct GbmParams, prefix "gbm_" {
        /// Boosting rounds.
        iterations: usize = 150, accepts 1..=MAX_ROUNDS, search int(50..=200, step 50);
        /// Shrinkage of each tree's output.
        learning_rate: f64 = 0.1, accepts 1e-4..=1.0, search float(0.01..=0.3, log);
        /// Deepest a tree may grow.
        max_depth: usize = 4, accepts 1..=16, search int(2..=5);
        /// Least hessian sum a leaf may hold.
        min_leaf_weight: f64 = 1.0, accepts 0.0..=1e6, search float(0.5..=20.0, log);
        /// L2 penalty on leaf weights.
        l2: f64 = 1.0, accepts 0.0..=1e6, search float(0.001..=10.0, log);
        /// Share of rows each tree trains on.
        subsample: f64 = 1.0, accepts 0.05..=1.0, search float(0.5..=1.0);
    }
}

family_params! {
    /// Multilayer perceptron settings (see [`super::nn`]).
    pub struct NnParams, prefix "nn_" {
        /// Hidden layers, each linear, then batch norm (optional), ReLU, dropout.
        layers: usize = 2, accepts 1..=NN_MAX_LAYERS, search int(1..=2);
        /// Units per hidden layer.
        width: usize = 64, accepts 1..=NN_MAX_WIDTH, search int(16..=64, log);
        /// Probability of zeroing a hidden unit while training.
        // At 1.0 every unit would be dropped and the scaling divides by zero.
        dropout: f64 = 0.1, accepts 0.0..=0.9, search float(0.0..=0.3);
        /// Batch norm in each hidden layer (needs batches of 2 rows or more).
        batch_norm: bool = true, search bools[true, false];
        /// AdamW step size.
        learning_rate: f64 = 1e-3, accepts 1e-6..=1.0, search float(1e-4..=1e-2, log);
        /// AdamW decoupled weight decay.
        weight_decay: f64 = 1e-4, accepts 0.0..=1.0, search float(1e-6..=1e-2, log);
        /// Rows per training batch.
        batch_size: usize = 64, accepts 1..=65_536, search int(64..=256, step 64);
        /// Most epochs; early stopping on a validation split usually ends sooner.
        epochs: usize = 100, accepts 1..=MAX_EPOCHS, search int(10..=40, step 10);
    }
}

impl NnParams {
    /// The rule across parameters: batch norm needs two rows per batch to
    /// estimate a variance.
    fn check(self) -> Result<NnParams> {
        if self.batch_norm && self.batch_size < 2 {
            return Err(invalid(
                "parameter 'nn_batch_size' must be at least 2 when nn_batch_norm is true",
            ));
        }
        Ok(self)
    }
}

family_params! {
    /// LightGBM gradient boosting settings (LightGBM's own parameter names
    /// and defaults).
    pub struct LightgbmParams, prefix "lgbm_" {
        /// Boosting rounds.
        iterations: usize = 200, accepts 1..=MAX_ROUNDS, search int(50..=300, step 50);
        /// Shrinkage of each tree's output.
        learning_rate: f64 = 0.1, accepts 1e-4..=1.0, search float(0.01..=0.3, log);
        /// Most leaves a tree may grow.
        num_leaves: usize = 31, accepts 2..=4_096, search int(4..=64, log);
        /// Fewest rows a leaf may hold.
        min_data_in_leaf: usize = 20, accepts 1..=100_000, search int(2..=50, log);
        // LightGBM requires both fractions in (0, 1].
        /// Share of features each tree sees.
        feature_fraction: f64 = 1.0, accepts 0.05..=1.0, search float(0.5..=1.0);
        /// Share of rows each round trains on (bagging every round when < 1).
        bagging_fraction: f64 = 1.0, accepts 0.05..=1.0, search float(0.5..=1.0);
        /// L2 penalty on leaf values.
        l2: f64 = 0.0, accepts 0.0..=1e6, search float(0.001..=10.0, log);
    }
}

family_params! {
    /// Random forest settings: LightGBM's `rf` mode, every tree on a bootstrap-
    /// like row sample and a feature sample, outputs averaged.
    pub struct RandomForestParams, prefix "rf_" {
        /// Trees in the forest.
        trees: usize = 200, accepts 1..=MAX_ROUNDS, search int(50..=300, step 50);
        /// Most leaves a tree may grow.
        num_leaves: usize = 255, accepts 2..=4_096, search int(16..=512, log);
        /// Fewest rows a leaf may hold.
        min_data_in_leaf: usize = 2, accepts 1..=100_000, search int(1..=20, log);
        /// Share of features each tree sees.
        feature_fraction: f64 = 0.7, accepts 0.05..=1.0, search float(0.3..=1.0);
        /// Share of rows each tree sees; below 1, as LightGBM's rf mode needs
        /// row sampling to decorrelate trees (at 1 every tree is alike).
        bagging_fraction: f64 = 0.632, accepts 0.05..=0.95, search float(0.5..=0.9);
        /// Extremely randomised trees: each split tests one random threshold
        /// per feature (LightGBM's `extra_trees`), so trees are cheaper and less
        /// alike than the forest's best splits; often better on small, noisy
        /// data. Absent from records written before it existed: false.
        #[serde(default)]
        extra_trees: bool = false, search bools[false, true];
    }
}

family_params! {
    /// XGBoost settings (XGBoost's names: eta, lambda, alpha).
    pub struct XgboostParams, prefix "xgb_" {
        /// Boosting rounds.
        iterations: usize = 200, accepts 1..=MAX_ROUNDS, search int(50..=300, step 50);
        /// Shrinkage of each tree's output (eta).
        learning_rate: f64 = 0.1, accepts 1e-4..=1.0, search float(0.01..=0.3, log);
        /// Deepest a tree may grow.
        max_depth: usize = 6, accepts 1..=16, search int(2..=8);
        /// Least hessian sum a child may hold.
        min_child_weight: f64 = 1.0, accepts 0.0..=1e6, search float(0.5..=20.0, log);
        /// Share of rows each tree trains on.
        subsample: f64 = 1.0, accepts 0.05..=1.0, search float(0.5..=1.0);
        /// Share of features each tree sees.
        colsample_bytree: f64 = 1.0, accepts 0.05..=1.0, search float(0.5..=1.0);
        /// L2 penalty on leaf weights (lambda).
        l2: f64 = 1.0, accepts 0.0..=1e6, search float(0.001..=10.0, log);
        /// L1 penalty on leaf weights (alpha).
        l1: f64 = 0.0, accepts 0.0..=1e6, search float(0.001..=1.0, log);
    }
}

/// A family's table.
pub fn specs(family: Family) -> &'static [ParamSpec] {
    match family {
        Family::Linear => LinearParams::SPECS,
        Family::Gbm => GbmParams::SPECS,
        Family::Nn => NnParams::SPECS,
        Family::Lightgbm => LightgbmParams::SPECS,
        Family::RandomForest => RandomForestParams::SPECS,
        Family::Xgboost => XgboostParams::SPECS,
    }
}

/// Every name [`ModelParams::from_map`] knows, in every build: `family`,
/// then each family's table in [`Family::ALL`] order. (A family this build
/// cannot train keeps its names, so a typo check never hides the real error.)
pub fn known_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("family").chain(
        Family::ALL
            .into_iter()
            .flat_map(|f| specs(f).iter().map(|spec| spec.name)),
    )
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

impl ModelParams {
    /// Parses sampler output; see the module docs for names and defaults.
    pub fn from_map(params: &Map<String, Value>) -> Result<ModelParams> {
        if let Some(unknown) = params
            .keys()
            .find(|k| !known_names().any(|name| name == k.as_str()))
        {
            return Err(invalid(format!(
                "unknown parameter '{unknown}'; expected one of {}",
                known_names().collect::<Vec<_>>().join(", ")
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
            Family::Linear => ModelParams::Linear(LinearParams::from_map(params)?),
            Family::Gbm => ModelParams::Gbm(GbmParams::from_map(params)?),
            Family::Nn => ModelParams::Nn(NnParams::from_map(params)?.check()?),
            Family::Lightgbm => ModelParams::Lightgbm(LightgbmParams::from_map(params)?),
            Family::RandomForest => {
                ModelParams::RandomForest(RandomForestParams::from_map(params)?)
            }
            Family::Xgboost => ModelParams::Xgboost(XgboostParams::from_map(params)?),
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
/// family this build can train, each with its own conditional parameters
/// (the `search` column of the family's table, `when` that family).
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
    let families: Vec<Family> = Family::ALL.into_iter().filter(|f| f.available()).collect();
    let mut space = Map::new();
    space.insert(
        "family".into(),
        json!({"type": "categorical", "choices": families.iter().map(|f| f.name()).collect::<Vec<_>>()}),
    );
    for family in families {
        for spec in specs(family) {
            let mut entry = spec.search.to_json();
            entry["when"] = json!({"family": [family.name()]});
            space.insert(spec.name.into(), entry);
        }
    }
    Value::Object(space)
}
