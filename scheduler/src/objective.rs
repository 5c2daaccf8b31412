//! The `objectives` list of a multi-objective spec, checked at the edge:
//! names, directions, and the AutoML measurements an objective may name.
//! A leaf of the crate: the spec and the multi-objective operations
//! (`crate::objectives`) both build on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracseq_core::{Error, Result};
use tracseq_hpo::multi::MAX_OBJECTIVES;
use tracseq_hpo::Direction;
use tracseq_learn::metrics::Metric;

/// AutoML objective: mean prediction time per row, in microseconds, of a
/// trial's fold models on their validation rows (preprocessing included).
pub const LATENCY_US: &str = "latency_us";
/// AutoML objective: size in bytes of a trial's fitted model as serialized
/// in the model artifact, averaged over the folds.
pub const MODEL_BYTES: &str = "model_bytes";
/// Longest objective name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// One objective of a multi-objective experiment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    pub name: String,
    pub direction: Direction,
}

pub(crate) fn invalid<T>(message: String) -> Result<T> {
    Err(Error::Invalid(message))
}

/// Parses and checks a request's `objectives`. For AutoML (`automl`) the
/// first must be a metric and the rest measurements; directions there are
/// implied and, if given, must agree. Metric names come back normalised
/// (`LogLoss` → `log_loss`).
pub fn parse(v: &Value, automl: bool) -> Result<Vec<Objective>> {
    let Some(items) = v.as_array() else {
        return invalid("objectives must be a list of {\"name\", \"direction\"} objects".into());
    };
    if !(2..=MAX_OBJECTIVES).contains(&items.len()) {
        return invalid(format!(
            "objectives must list 2 to {MAX_OBJECTIVES} objectives (got {}); for one objective use {}",
            items.len(),
            if automl { "metric" } else { "direction" }
        ));
    }
    let mut out: Vec<Objective> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = format!("objectives[{i}]");
        let Some(obj) = item.as_object() else {
            return invalid(format!(
                "{field} must be an object with \"name\" and \"direction\" (got {item})"
            ));
        };
        if let Some(key) = obj
            .keys()
            .find(|k| !["name", "direction"].contains(&k.as_str()))
        {
            return invalid(format!(
                "{field}: unknown field '{key}'; expected name, direction"
            ));
        }
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => return invalid(format!("{field}.name must be a string (got {other})")),
            None => return invalid(format!("{field}.name is required")),
        };
        if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control)
        {
            return invalid(format!(
                "{field}.name must be 1 to {MAX_NAME_LEN} bytes of printable text (got {name:?})"
            ));
        }
        let direction = match obj.get("direction") {
            None => None,
            Some(Value::String(s)) => Some(s.parse::<Direction>().map_err(|_| {
                Error::Invalid(format!(
                    "{field}.direction must be \"minimize\" or \"maximize\" (got {s:?})"
                ))
            })?),
            Some(other) => {
                return invalid(format!(
                    "{field}.direction must be \"minimize\" or \"maximize\" (got {other})"
                ))
            }
        };
        let objective = if automl {
            automl_objective(i, &name, direction)?
        } else {
            let Some(direction) = direction else {
                return invalid(format!(
                    "{field}.direction is required (\"minimize\" or \"maximize\")"
                ));
            };
            Objective { name, direction }
        };
        if let Some(j) = out.iter().position(|o| o.name == objective.name) {
            return invalid(format!(
                "{field}.name '{}' repeats objectives[{j}]; objective names must be unique",
                objective.name
            ));
        }
        out.push(objective);
    }
    Ok(out)
}

/// What an AutoML experiment can optimise: its CV metric first, then what
/// a worker measures.
fn automl_objective(i: usize, name: &str, given: Option<Direction>) -> Result<Objective> {
    let field = format!("objectives[{i}]");
    let (name, implied) = if i == 0 {
        let metric: Metric = name.parse().map_err(|_| {
            Error::Invalid(format!(
                "{field}.name must be the metric to cross-validate, first in an AutoML experiment (rmse, mae, r2, auc, log_loss, accuracy or f1; got '{name}')"
            ))
        })?;
        (metric.name().to_string(), metric.direction())
    } else if name == LATENCY_US || name == MODEL_BYTES {
        (name.to_string(), Direction::Minimize)
    } else {
        return invalid(format!(
            "{field}.name '{name}' is not measured per trial; after the metric an AutoML experiment can minimise {LATENCY_US} (prediction time per row) and {MODEL_BYTES} (serialized model size)"
        ));
    };
    if given.is_some_and(|d| d != implied) {
        return invalid(format!(
            "{field}.direction: {name} is always {} here; remove direction or set it to \"{implied}\"",
            match implied {
                Direction::Minimize => "minimized",
                Direction::Maximize => "maximized",
            }
        ));
    }
    Ok(Objective {
        name,
        direction: implied,
    })
}

/// Reads a tell's `values`, naming the entry at fault: serde's own message
/// for a list of numbers says neither which field nor which entry.
pub(crate) fn deserialize_values<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Vec<f64>>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64().ok_or_else(|| {
                    D::Error::custom(format!("values[{i}] must be a number (got {v})"))
                })
            })
            .collect::<std::result::Result<Vec<f64>, _>>()
            .map(Some),
        Some(other) => Err(D::Error::custom(format!(
            "values must be a list of numbers, one per objective (got {other})"
        ))),
    }
}
