//! Parsing of the search-space JSON: one parameter spec at a time, then the `when` graph's topological order.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::param::{repeated_value, ParamKind, MAX_CHOICES, MAX_INT_ABS};
use crate::{invalid, Result};

pub(super) type ParsedSpec = (ParamKind, Vec<(String, Vec<Value>)>);

pub(super) fn parse_spec(name: &str, spec: &Value) -> Result<ParsedSpec> {
    let obj = spec.as_object().ok_or_else(|| {
        invalid(format!(
            "parameter '{name}': spec must be an object with a \"type\""
        ))
    })?;
    let ty = obj.get("type").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!(
            "parameter '{name}': \"type\" must be \"float\", \"int\" or \"categorical\""
        ))
    })?;
    let allowed: &[&str] = match ty {
        "float" | "int" => &["type", "low", "high", "log", "step", "when"],
        "categorical" => &["type", "choices", "when"],
        other => {
            return Err(invalid(format!(
                "parameter '{name}': unknown type {other:?} (expected \"float\", \"int\" or \"categorical\")"
            )))
        }
    };
    if let Some(key) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "parameter '{name}': unknown key '{key}' for type {ty} (allowed: {})",
            allowed.join(", ")
        )));
    }
    let kind = match ty {
        "float" => parse_float(name, obj)?,
        "int" => parse_int(name, obj)?,
        _ => parse_categorical(name, obj)?,
    };
    let when = match obj.get("when") {
        None => Vec::new(),
        Some(w) => parse_when(name, w)?,
    };
    Ok((kind, when))
}

fn parse_float(name: &str, obj: &Map<String, Value>) -> Result<ParamKind> {
    let low = required_f64(name, obj, "low")?;
    let high = required_f64(name, obj, "high")?;
    let log = optional_bool(name, obj, "log")?;
    let step = match obj.get("step") {
        None => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    invalid(format!(
                        "parameter '{name}': step must be a positive number (got {v})"
                    ))
                })?,
        ),
    };
    if low >= high {
        return Err(invalid(format!(
            "parameter '{name}': low ({low}) must be less than high ({high})"
        )));
    }
    if !(high - low).is_finite() {
        return Err(invalid(format!(
            "parameter '{name}': range [{low}, {high}] is too wide to represent"
        )));
    }
    if log && low <= 0.0 {
        return Err(invalid(format!(
            "parameter '{name}': log requires low > 0 (got low = {low})"
        )));
    }
    if let Some(step) = step {
        if log {
            return Err(invalid(format!(
                "parameter '{name}': log and step cannot be combined"
            )));
        }
        let n = ((high - low) / step).round();
        if n < 1.0 || (n * step - (high - low)).abs() > step * 1e-6 {
            return Err(invalid(format!(
                "parameter '{name}': high - low ({}) must be a positive multiple of step ({step})",
                high - low
            )));
        }
    }
    Ok(ParamKind::Float {
        low,
        high,
        log,
        step,
    })
}

fn parse_int(name: &str, obj: &Map<String, Value>) -> Result<ParamKind> {
    let low = required_i64(name, obj, "low")?;
    let high = required_i64(name, obj, "high")?;
    let log = optional_bool(name, obj, "log")?;
    let step = match obj.get("step") {
        None => 1,
        Some(v) => v.as_i64().filter(|s| *s >= 1).ok_or_else(|| {
            invalid(format!(
                "parameter '{name}': step must be an integer >= 1 (got {v})"
            ))
        })?,
    };
    if low > high {
        return Err(invalid(format!(
            "parameter '{name}': low ({low}) must not exceed high ({high})"
        )));
    }
    // |low|, |high| <= 2^53, so the difference cannot overflow.
    if (high - low) % step != 0 {
        return Err(invalid(format!(
            "parameter '{name}': high - low ({}) must be a multiple of step ({step})",
            high - low
        )));
    }
    if log && low < 1 {
        return Err(invalid(format!(
            "parameter '{name}': log requires low >= 1 (got low = {low})"
        )));
    }
    if log && step > 1 {
        return Err(invalid(format!(
            "parameter '{name}': log cannot be combined with step > 1 (got step = {step})"
        )));
    }
    Ok(ParamKind::Int {
        low,
        high,
        step,
        log,
    })
}

fn parse_categorical(name: &str, obj: &Map<String, Value>) -> Result<ParamKind> {
    let choices = obj
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("parameter '{name}': choices must be an array")))?;
    if choices.is_empty() {
        return Err(invalid(format!(
            "parameter '{name}': choices must not be empty"
        )));
    }
    if choices.len() > MAX_CHOICES {
        return Err(invalid(format!(
            "parameter '{name}': {} choices exceed the limit of {MAX_CHOICES}",
            choices.len()
        )));
    }
    if let Some(bad) = choices
        .iter()
        .find(|c| !(c.is_string() || c.is_number() || c.is_boolean()))
    {
        return Err(invalid(format!(
            "parameter '{name}': choice {bad} must be a string, number or bool"
        )));
    }
    if let Some(twice) = repeated_value(choices) {
        return Err(invalid(format!(
            "parameter '{name}': choice {twice} is listed more than once"
        )));
    }
    Ok(ParamKind::Categorical {
        choices: choices.clone(),
    })
}

fn parse_when(name: &str, when: &Value) -> Result<Vec<(String, Vec<Value>)>> {
    let obj = when.as_object().ok_or_else(|| {
        invalid(format!(
            "parameter '{name}': when must be an object {{parent: [values]}}"
        ))
    })?;
    if obj.is_empty() {
        return Err(invalid(format!(
            "parameter '{name}': when must name at least one parent"
        )));
    }
    obj.iter()
        .map(|(parent, values)| {
            let values = values.as_array().filter(|v| !v.is_empty()).ok_or_else(|| {
                invalid(format!(
                    "parameter '{name}': when.{parent} must be a non-empty array of choices"
                ))
            })?;
            Ok((parent.clone(), values.clone()))
        })
        .collect()
}

fn required_f64(name: &str, obj: &Map<String, Value>, key: &str) -> Result<f64> {
    match obj.get(key) {
        None => Err(invalid(format!("parameter '{name}': {key} is required"))),
        Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
            invalid(format!(
                "parameter '{name}': {key} must be a finite number (got {v})"
            ))
        }),
    }
}

fn required_i64(name: &str, obj: &Map<String, Value>, key: &str) -> Result<i64> {
    match obj.get(key) {
        None => Err(invalid(format!("parameter '{name}': {key} is required"))),
        Some(v) => v
            .as_i64()
            .filter(|x| x.abs() <= MAX_INT_ABS)
            .ok_or_else(|| {
                invalid(format!(
                    "parameter '{name}': {key} must be an integer within ±2^53 (got {v})"
                ))
            }),
    }
}

fn optional_bool(name: &str, obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| {
            invalid(format!(
                "parameter '{name}': {key} must be true or false (got {v})"
            ))
        }),
    }
}

/// Kahn's algorithm, ready nodes taken in name order so the order (and thus
/// the RNG consumption order of samplers) never depends on JSON key order.
pub(super) fn topological_order(parsed: &BTreeMap<String, ParsedSpec>) -> Result<Vec<String>> {
    let mut parents_left: BTreeMap<&str, BTreeSet<&str>> = parsed
        .iter()
        .map(|(name, (_, when))| {
            (
                name.as_str(),
                when.iter().map(|(p, _)| p.as_str()).collect(),
            )
        })
        .collect();
    let mut order = Vec::with_capacity(parsed.len());
    loop {
        let ready: Vec<&str> = parents_left
            .iter()
            .filter(|(_, parents)| parents.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            break;
        }
        for name in ready {
            parents_left.remove(name);
            for parents in parents_left.values_mut() {
                parents.remove(name);
            }
            order.push(name.to_string());
        }
    }
    if !parents_left.is_empty() {
        let names: Vec<String> = parents_left.keys().map(|n| format!("'{n}'")).collect();
        return Err(invalid(format!(
            "parameters {} form a cycle through their when conditions",
            names.join(", ")
        )));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map, Value};

    use crate::space::{SearchSpace, MAX_PARAMS};

    fn err_of(spec: Value) -> String {
        SearchSpace::from_json(&spec).unwrap_err().to_string()
    }

    #[test]
    fn rejects_every_malformed_spec_naming_the_param() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"p": {"type": "float", "low": 1, "high": 1}}),
                "'p': low (1) must be less than high",
            ),
            (
                json!({"p": {"type": "float", "low": 2, "high": 1}}),
                "'p': low",
            ),
            (
                json!({"p": {"type": "float", "high": 1}}),
                "'p': low is required",
            ),
            (
                json!({"p": {"type": "float", "low": "a", "high": 1}}),
                "'p': low must be a finite number",
            ),
            (
                json!({"p": {"type": "float", "low": -1.7e308, "high": 1.7e308}}),
                "'p': range",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "log": true}}),
                "'p': log requires low > 0",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "log": "yes"}}),
                "'p': log must be true or false",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "step": 0}}),
                "'p': step must be a positive number",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "step": 0.3}}),
                "'p': high - low (1) must be a positive multiple of step",
            ),
            (
                json!({"p": {"type": "float", "low": 1, "high": 2, "step": 0.5, "log": true}}),
                "'p': log and step cannot be combined",
            ),
            (
                json!({"p": {"type": "int", "low": 3, "high": 2}}),
                "'p': low (3) must not exceed high",
            ),
            (
                json!({"p": {"type": "int", "low": 0.5, "high": 2}}),
                "'p': low must be an integer",
            ),
            (
                json!({"p": {"type": "int", "low": 0, "high": 1i64 << 60}}),
                "'p': high must be an integer within",
            ),
            (
                json!({"p": {"type": "int", "low": 0, "high": 10, "step": 0}}),
                "'p': step must be an integer >= 1",
            ),
            (
                json!({"p": {"type": "int", "low": 0, "high": 10, "step": 1.5}}),
                "'p': step must be an integer >= 1",
            ),
            (
                json!({"p": {"type": "int", "low": 0, "high": 10, "step": 3}}),
                "'p': high - low (10) must be a multiple of step (3)",
            ),
            (
                json!({"p": {"type": "int", "low": 0, "high": 10, "log": true}}),
                "'p': log requires low >= 1",
            ),
            (
                json!({"p": {"type": "int", "low": 1, "high": 9, "step": 2, "log": true}}),
                "'p': log cannot be combined with step > 1",
            ),
            (
                json!({"p": {"type": "categorical", "choices": []}}),
                "'p': choices must not be empty",
            ),
            (
                json!({"p": {"type": "categorical"}}),
                "'p': choices must be an array",
            ),
            (
                json!({"p": {"type": "categorical", "choices": ["a", "a"]}}),
                "'p': choice \"a\" is listed more than once",
            ),
            (
                json!({"p": {"type": "categorical", "choices": [1, 1.0]}}),
                "'p': choice 1",
            ),
            (
                json!({"p": {"type": "categorical", "choices": [null]}}),
                "'p': choice null must be",
            ),
            (
                json!({"p": {"type": "categorical", "choices": [[1]]}}),
                "'p': choice [1] must be",
            ),
            (
                json!({"p": {"type": "categorical", "choices": (0..1001).collect::<Vec<_>>()}}),
                "'p': 1001 choices exceed",
            ),
            (
                json!({"p": {"type": "categorical", "choices": ["a"], "low": 1}}),
                "'p': unknown key 'low'",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "lgo": true}}),
                "'p': unknown key 'lgo'",
            ),
            (
                json!({"p": {"type": "double", "low": 0, "high": 1}}),
                "'p': unknown type \"double\"",
            ),
            (json!({"p": {"low": 0, "high": 1}}), "'p': \"type\" must be"),
            (json!({"p": 3}), "'p': spec must be an object"),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {"q": ["a"]}}}),
                "'p': when refers to unknown parameter 'q'",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {"q": ["a"]}}, "q": {"type": "int", "low": 0, "high": 1}}),
                "'p': when parent 'q' must be categorical",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {"q": ["z"]}}, "q": {"type": "categorical", "choices": ["a"]}}),
                "'p': when value \"z\" is not a choice of 'q'",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {"q": []}}, "q": {"type": "categorical", "choices": ["a"]}}),
                "'p': when.q must be a non-empty array",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {"q": "a"}}, "q": {"type": "categorical", "choices": ["a"]}}),
                "'p': when.q must be a non-empty array",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": ["q"]}}),
                "'p': when must be an object",
            ),
            (
                json!({"p": {"type": "float", "low": 0, "high": 1, "when": {}}}),
                "'p': when must name at least one parent",
            ),
            (
                json!({"p": {"type": "categorical", "choices": ["a"], "when": {"p": ["a"]}}}),
                "'p': when cannot refer to the parameter itself",
            ),
            (
                json!({
                    "p": {"type": "categorical", "choices": ["a"], "when": {"q": ["b"]}},
                    "q": {"type": "categorical", "choices": ["b"], "when": {"p": ["a"]}},
                    "r": {"type": "int", "low": 0, "high": 1}
                }),
                "parameters 'p', 'q' form a cycle",
            ),
            (
                json!({"": {"type": "int", "low": 0, "high": 1}}),
                "parameter name \"\"",
            ),
            (json!({}), "at least one parameter"),
            (json!([1]), "must be a JSON object"),
        ];
        for (spec, expected) in cases {
            let err = err_of(spec.clone());
            assert!(
                err.contains(expected),
                "{spec}\n  got: {err}\n  want: {expected}"
            );
        }
    }

    #[test]
    fn enforces_param_count_limit() {
        let mut obj = Map::new();
        for i in 0..=MAX_PARAMS {
            obj.insert(format!("p{i}"), json!({"type": "int", "low": 0, "high": 1}));
        }
        let err = err_of(Value::Object(obj.clone()));
        assert!(err.contains("101 parameters"), "{err}");
        obj.remove("p0");
        SearchSpace::from_json(&Value::Object(obj)).unwrap();
    }
}
