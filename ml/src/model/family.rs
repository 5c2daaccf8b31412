//! The model families, and which of them this build can train.
//!
//! A leaf module: preprocessing (which scales features only for some
//! families), the hyperparameter tables and the trainers all name families,
//! so the type sits below all of them.

use serde::{Deserialize, Serialize};

/// A model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Linear,
    Gbm,
    Nn,
    Lightgbm,
    #[serde(rename = "random_forest")]
    RandomForest,
    Xgboost,
}

/// Whether this build can train the "nn" family (it has libtorch).
pub const NN_AVAILABLE: bool = cfg!(feature = "torch");

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Linear,
        Family::Gbm,
        Family::Nn,
        Family::Lightgbm,
        Family::RandomForest,
        Family::Xgboost,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Linear => "linear",
            Family::Gbm => "gbm",
            Family::Nn => "nn",
            Family::Lightgbm => "lightgbm",
            Family::RandomForest => "random_forest",
            Family::Xgboost => "xgboost",
        }
    }

    /// The prefix of this family's parameter names.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Linear => "linear_",
            Family::Gbm => "gbm_",
            Family::Nn => "nn_",
            Family::Lightgbm => "lgbm_",
            Family::RandomForest => "rf_",
            Family::Xgboost => "xgb_",
        }
    }

    /// Whether the family trains on standardised numbers. Linear models and
    /// networks need comparable scales. Tree families do not, and their
    /// libraries bin the raw values: LightGBM lays its bins out around zero
    /// and merges sparse ones, so standardised inputs move its splits away
    /// from what LightGBM does with the user's data (R² 37.92 instead of
    /// 38.73 on scikit-learn's diabetes, bench/RESULTS.md).
    pub fn scales_features(self) -> bool {
        match self {
            Family::Linear | Family::Nn => true,
            Family::Gbm | Family::Lightgbm | Family::RandomForest | Family::Xgboost => false,
        }
    }

    /// Whether this build can train the family: "nn" needs the `torch`
    /// feature, "lightgbm" and "random_forest" the `lightgbm` feature,
    /// "xgboost" the `xgboost` feature (see [`super::params`]).
    pub fn available(self) -> bool {
        match self {
            Family::Linear | Family::Gbm => true,
            Family::Nn => NN_AVAILABLE,
            Family::Lightgbm | Family::RandomForest => cfg!(feature = "lightgbm"),
            Family::Xgboost => cfg!(feature = "xgboost"),
        }
    }

    /// The build feature a family needs, for error messages.
    pub(crate) fn feature(self) -> &'static str {
        match self {
            Family::Linear | Family::Gbm => "",
            Family::Nn => "torch",
            Family::Lightgbm | Family::RandomForest => "lightgbm",
            Family::Xgboost => "xgboost",
        }
    }
}
