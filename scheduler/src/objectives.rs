//! Multi-objective experiments: the `objectives` list of a spec, checked at the edge; each trial's values (told, or measured by AutoML workers); sampling from the history; and the Pareto front.
//!
//! Ask/tell experiments name their objectives freely and give each a
//! direction. AutoML experiments optimise what a worker measures per trial:
//! the first objective is the cross-validated metric, and the others may be
//! [`LATENCY_US`] and [`MODEL_BYTES`], both minimised.

use crate::service::TellRequest;
use crate::spec::ExperimentSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracseq_core::protocol::TrialResult;
use tracseq_core::types::{Trial, TrialState};
use tracseq_core::{Error, Result};
use tracseq_hpo::multi::{MultiObjectiveTrial, MAX_OBJECTIVES};
use tracseq_hpo::{Direction, Params, SearchSpace};
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

fn invalid<T>(message: String) -> Result<T> {
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

/// An AutoML trial's values in objective order: the first is the trial's
/// CV value, the others its measurements. `Err` names what the result lacks
/// (a result from a worker that does not measure it, or a trial pruned
/// before any fold finished).
pub fn automl_values(
    objectives: &[Objective],
    result: &TrialResult,
) -> std::result::Result<Vec<f64>, String> {
    objectives
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let v = match o.name.as_str() {
                _ if i == 0 => Some(result.value),
                LATENCY_US => result.latency_us,
                MODEL_BYTES => result.model_bytes.map(|b| b as f64),
                _ => None,
            };
            v.filter(|v| v.is_finite())
                .ok_or_else(|| format!("trial result has no finite {}", o.name))
        })
        .collect()
}

/// [`crate::service::history`] for a multi-objective experiment's sampler.
pub fn history(trials: &[Trial], below: Option<u64>) -> Vec<MultiObjectiveTrial> {
    trials
        .iter()
        .filter(|t| below.is_none_or(|b| t.number < b))
        .filter_map(|t| {
            let state = crate::service::finished_state(t.state)?;
            Some(MultiObjectiveTrial {
                number: t.number,
                params: t.params.clone(),
                state,
                values: t.values.clone(),
            })
        })
        .collect()
}

/// Parameters for trial `number` of a multi-objective experiment, learnt
/// from the trials numbered below `below` (all finished ones when `None`).
/// `None` for a single-objective experiment.
pub fn suggest(
    spec: &ExperimentSpec,
    space: &SearchSpace,
    trials: &[Trial],
    below: Option<u64>,
    number: u64,
) -> Result<Option<Params>> {
    let Some(directions) = spec.multi_objective_directions() else {
        return Ok(None);
    };
    // Validation refused every other sampler; one here is a corrupt spec.
    let sampler = tracseq_hpo::build_multi_objective(&spec.sampler)
        .map_err(|e| Error::Internal(format!("stored experiment spec: {e}")))?;
    let history = history(trials, below);
    Ok(Some(sampler.sample_multi(
        space,
        &history,
        &directions,
        number,
    )))
}

/// The `(value, values)` a tell records, after checking them against the
/// experiment's objectives. A multi-objective trial's `value` is its first
/// objective's, so ranking by value ranks by the first objective.
pub(crate) fn told_values(
    spec: &ExperimentSpec,
    state: TrialState,
    req: &TellRequest,
    trial: &Trial,
) -> Result<(Option<f64>, Option<Vec<f64>>)> {
    let invalid = |m: String| Err(Error::Invalid(m));
    let Some(objectives) = &spec.objectives else {
        // Single objective: exactly the checks tell always made.
        if req.values.is_some() {
            return invalid(
                "values is for multi-objective experiments; this one has a single objective: tell {\"value\": x}"
                    .into(),
            );
        }
        let value = match (state, req.value) {
            (TrialState::Complete, None) => {
                return invalid("value is required for a complete trial".into())
            }
            (TrialState::Failed, Some(_)) => return invalid("a failed trial has no value".into()),
            (_, Some(v)) if !v.is_finite() => {
                return invalid(format!("value must be finite (got {v})"))
            }
            (TrialState::Pruned, None) => trial.intermediate.values().last().copied(),
            (_, v) => v,
        };
        return Ok((value, None));
    };
    let names = objectives
        .iter()
        .map(|o| o.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let n = objectives.len();
    if req.value.is_some() {
        return invalid(format!(
            "value is for single-objective experiments; this one has {n} objectives ({names}): tell {{\"values\": [...]}} with one number per objective"
        ));
    }
    match (state, &req.values) {
        (TrialState::Complete, None) => invalid(format!(
            "values is required for a complete trial: one number per objective ({names})"
        )),
        (TrialState::Failed, Some(_)) => invalid("a failed trial has no values".into()),
        (_, Some(values)) if values.len() != n => invalid(format!(
            "values must hold one number per objective ({n}: {names}); got {}",
            values.len()
        )),
        (_, Some(values)) => {
            if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return invalid(format!("values[{i}] must be finite (got {v})"));
            }
            Ok((values.first().copied(), Some(values.clone())))
        }
        (TrialState::Pruned, None) => Ok((trial.intermediate.values().last().copied(), None)),
        (_, None) => Ok((None, None)),
    }
}

/// A point of a multi-objective experiment's Pareto front.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrontTrial {
    pub number: u64,
    pub values: Vec<f64>,
    pub params: Map<String, Value>,
}

/// The Pareto front of a multi-objective experiment's complete trials
/// (`None` for a single objective): every complete trial with usable values
/// that no other dominates, sorted best first by the first objective, then
/// by the second, and so on, then by number.
pub fn pareto_front(spec: &ExperimentSpec, trials: &[Trial]) -> Option<Vec<FrontTrial>> {
    let directions = spec.multi_objective_directions()?;
    let usable: Vec<(&Trial, &Vec<f64>)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.values.as_ref().map(|v| (t, v)))
        .filter(|(_, v)| v.len() == directions.len() && v.iter().all(|x| x.is_finite()))
        .collect();
    let losses: Vec<Vec<f64>> = usable
        .iter()
        .map(|(_, v)| tracseq_hpo::multi::pareto::losses(v, &directions))
        .collect();
    let mut front = tracseq_hpo::multi::pareto::pareto_front(&losses);
    front.sort_by(|&a, &b| {
        losses[a]
            .iter()
            .zip(&losses[b])
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(usable[a].0.number.cmp(&usable[b].0.number))
    });
    Some(
        front
            .into_iter()
            .map(|i| FrontTrial {
                number: usable[i].0.number,
                values: usable[i].1.clone(),
                params: Map::clone(&usable[i].0.params),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn ask_tell_objectives_need_names_and_directions() {
        let v = json!([{"name": "auc", "direction": "maximize"}, {"name": "latency ms", "direction": "minimize"}]);
        let o = parse(&v, false).unwrap();
        assert_eq!(o[1].name, "latency ms");
        assert_eq!(o[0].direction, Direction::Maximize);
        let cases = [
            (json!({"name": "a"}), "objectives must be a list"),
            (
                json!([{"name": "a", "direction": "minimize"}]),
                "2 to 4 objectives (got 1); for one objective use direction",
            ),
            (
                Value::Array(vec![json!({"name": "a", "direction": "minimize"}); 5]),
                "2 to 4 objectives (got 5)",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, 3]),
                "objectives[1] must be an object",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"name": "b", "dir": "up"}]),
                "objectives[1]: unknown field 'dir'",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"direction": "minimize"}]),
                "objectives[1].name is required",
            ),
            (
                json!([{"name": 1, "direction": "minimize"}, {"name": "b", "direction": "minimize"}]),
                "objectives[0].name must be a string",
            ),
            (
                json!([{"name": " ", "direction": "minimize"}, {"name": "b", "direction": "minimize"}]),
                "objectives[0].name must be 1 to 64 bytes",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"name": "b", "direction": "up"}]),
                "objectives[1].direction must be \"minimize\" or \"maximize\" (got \"up\")",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"name": "b", "direction": 1}]),
                "objectives[1].direction must be",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"name": "b"}]),
                "objectives[1].direction is required",
            ),
            (
                json!([{"name": "a", "direction": "minimize"}, {"name": "a", "direction": "maximize"}]),
                "objectives[1].name 'a' repeats objectives[0]",
            ),
        ];
        for (v, needle) in cases {
            let err = parse(&v, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn automl_objectives_are_the_metric_then_measurements() {
        let o = parse(&json!([{"name": "LogLoss"}, {"name": "latency_us"}, {"name": "model_bytes", "direction": "minimize"}]), true).unwrap();
        assert_eq!(
            o,
            vec![
                Objective {
                    name: "log_loss".into(),
                    direction: Direction::Minimize
                },
                Objective {
                    name: LATENCY_US.into(),
                    direction: Direction::Minimize
                },
                Objective {
                    name: MODEL_BYTES.into(),
                    direction: Direction::Minimize
                },
            ]
        );
        assert_eq!(
            parse(&json!([{"name": "auc"}, {"name": "model_bytes"}]), true).unwrap()[0].direction,
            Direction::Maximize
        );
        let cases = [
            (
                json!([{"name": "latency_us"}, {"name": "auc"}]),
                "objectives[0].name must be the metric",
            ),
            (
                json!([{"name": "auc"}, {"name": "rmse"}]),
                "objectives[1].name 'rmse' is not measured per trial",
            ),
            (
                json!([{"name": "auc"}, {"name": "energy"}]),
                "objectives[1].name 'energy' is not measured",
            ),
            (
                json!([{"name": "auc", "direction": "minimize"}, {"name": "latency_us"}]),
                "objectives[0].direction: auc is always maximized",
            ),
            (
                json!([{"name": "auc"}, {"name": "latency_us", "direction": "maximize"}]),
                "objectives[1].direction: latency_us is always minimized",
            ),
            (
                json!([{"name": "auc"}, {"name": "latency_us"}, {"name": "latency_us"}]),
                "objectives[2].name 'latency_us' repeats objectives[1]",
            ),
            (json!([{"name": "auc"}]), "for one objective use metric"),
        ];
        for (v, needle) in cases {
            let err = parse(&v, true).unwrap_err().to_string();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn tell_values_name_the_bad_entry() {
        let ok: TellRequest = serde_json::from_value(json!({"values": [1, 2.5]})).unwrap();
        assert_eq!(ok.values, Some(vec![1.0, 2.5]));
        let single: TellRequest = serde_json::from_value(json!({"value": 1})).unwrap();
        assert_eq!(single.values, None);
        for (bad, needle) in [
            (
                json!({"values": [1, "x"]}),
                "values[1] must be a number (got \"x\")",
            ),
            (json!({"values": [null]}), "values[0] must be a number"),
            (json!({"values": "x"}), "values must be a list of numbers"),
        ] {
            let err = serde_json::from_value::<TellRequest>(bad.clone())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn automl_values_follow_the_objective_order() {
        let objectives = parse(
            &json!([{"name": "rmse"}, {"name": "model_bytes"}, {"name": "latency_us"}]),
            true,
        )
        .unwrap();
        let mut result = TrialResult {
            value: 3.5,
            metric: "rmse".into(),
            fold_values: vec![3.5],
            metrics: BTreeMap::new(),
            pruned: false,
            artifact: None,
            latency_us: Some(1.25),
            model_bytes: Some(2048),
        };
        assert_eq!(
            automl_values(&objectives, &result).unwrap(),
            vec![3.5, 2048.0, 1.25]
        );
        result.latency_us = None;
        let err = automl_values(&objectives, &result).unwrap_err();
        assert!(err.contains("latency_us"), "{err}");
    }
}
