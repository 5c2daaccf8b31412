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
//! `gbm_l2` = 1.0, `gbm_subsample` = 1.0.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::gbm::GbmTrainer;
use super::linear::LinearTrainer;
use super::Trainer;
use crate::error::{invalid, Result};

/// A model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Linear,
    Gbm,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::Linear => "linear",
            Family::Gbm => "gbm",
        }
    }
}

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

/// Parsed, validated hyperparameters of one trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum ModelParams {
    Linear(LinearParams),
    Gbm(GbmParams),
}

const KNOWN: [&str; 8] = [
    "family",
    "linear_l2",
    "gbm_iterations",
    "gbm_learning_rate",
    "gbm_max_depth",
    "gbm_min_leaf_weight",
    "gbm_l2",
    "gbm_subsample",
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

impl ModelParams {
    /// Parses sampler output; see the module docs for names and defaults.
    pub fn from_map(params: &Map<String, Value>) -> Result<ModelParams> {
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown parameter '{unknown}'; expected one of {}",
                KNOWN.join(", ")
            )));
        }
        let family = match params.get("family") {
            None => Family::Gbm,
            Some(Value::String(s)) if s == "linear" => Family::Linear,
            Some(Value::String(s)) if s == "gbm" => Family::Gbm,
            Some(other) => {
                return Err(invalid(format!(
                    "parameter 'family' must be \"linear\" or \"gbm\", got {other}"
                )))
            }
        };
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
        })
    }

    pub fn family(&self) -> Family {
        match self {
            ModelParams::Linear(_) => Family::Linear,
            ModelParams::Gbm(_) => Family::Gbm,
        }
    }

    /// A trainer for these parameters; `seed` drives any randomness
    /// (row subsampling) so the same seed gives the same model.
    pub fn trainer(&self, seed: u64) -> Box<dyn Trainer> {
        match *self {
            ModelParams::Linear(params) => Box::new(LinearTrainer { params }),
            ModelParams::Gbm(params) => Box::new(GbmTrainer { params, seed }),
        }
    }
}

/// The search space the scheduler samples trials from.
///
/// Ranges keep one trial (3-fold CV, ~2,000 rows x ~25 encoded columns)
/// under a second on one core: at most 200 trees of depth 5 (~0.6 s on a
/// shared 2-core build box, ~0.2 s for a typical draw).
pub fn default_search_space() -> Value {
    let gbm = json!({"family": ["gbm"]});
    json!({
        "family": {"type": "categorical", "choices": ["linear", "gbm"]},
        "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true,
                      "when": {"family": ["linear"]}},
        "gbm_iterations": {"type": "int", "low": 50, "high": 200, "step": 50, "when": gbm},
        "gbm_learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": true, "when": gbm},
        "gbm_max_depth": {"type": "int", "low": 2, "high": 5, "when": gbm},
        "gbm_min_leaf_weight": {"type": "float", "low": 0.5, "high": 20.0, "log": true, "when": gbm},
        "gbm_l2": {"type": "float", "low": 0.001, "high": 10.0, "log": true, "when": gbm},
        "gbm_subsample": {"type": "float", "low": 0.5, "high": 1.0, "when": gbm},
    })
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
        for name in KNOWN {
            assert!(space.contains_key(name), "{name}");
        }
        for bound in ["low", "high"] {
            let mut m = Map::new();
            m.insert("family".into(), json!("gbm"));
            for (name, spec) in space.iter().filter(|(n, _)| n.starts_with("gbm_")) {
                m.insert(name.clone(), spec[bound].clone());
            }
            assert!(ModelParams::from_map(&m).is_ok(), "{bound}");
        }
    }
}
