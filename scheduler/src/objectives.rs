//! Multi-objective experiments: each trial's values (told, or measured by
//! AutoML workers); sampling from the history; and the Pareto front. The
//! objectives themselves are parsed in `crate::objective`.
//!
//! Ask/tell experiments name their objectives freely and give each a
//! direction. AutoML experiments optimise what a worker measures per trial:
//! the first objective is the cross-validated metric, and the others may be
//! [`LATENCY_US`] and [`MODEL_BYTES`], both minimised.

pub use crate::objective::{Objective, LATENCY_US, MAX_NAME_LEN, MODEL_BYTES};

use crate::history::finished_state;
use crate::spec::{ExperimentSpec, TellRequest};
use serde::Serialize;
use serde_json::{Map, Value};
use tracseq_core::protocol::TrialResult;
use tracseq_core::types::{Trial, TrialState};
use tracseq_core::{Error, Result};
use tracseq_hpo::multi::MultiObjectiveTrial;
use tracseq_hpo::{Params, SearchSpace};

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

/// [`crate::history::history`] for a multi-objective experiment's sampler.
pub fn history(trials: &[Trial], below: Option<u64>) -> Vec<MultiObjectiveTrial> {
    trials
        .iter()
        .filter(|t| below.is_none_or(|b| t.number < b))
        .filter_map(|t| {
            let state = finished_state(t.state)?;
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
    use crate::objective::parse;
    use serde_json::json;
    use std::collections::BTreeMap;
    use tracseq_hpo::Direction;

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
