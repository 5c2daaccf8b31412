//! One search-space parameter: its kind, its `when` conditions, the limits a spec must respect, validation of a told value, and the samplers' internal (log, grid, index) mapping.

use std::cmp::Ordering;
use std::fmt::Display;

use serde_json::Value;

use crate::{invalid, HpoError, Result};

/// Most parameters one space may define.
pub const MAX_PARAMS: usize = 100;
/// Most choices one categorical parameter may list.
pub const MAX_CHOICES: usize = 1000;
/// Longest parameter name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest magnitude of an int bound: samplers work in `f64`, which holds
/// integers exactly only up to 2^53.
pub const MAX_INT_ABS: i64 = 1 << 53;

/// What values a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamKind {
    /// A real in `[low, high]`; log-uniform when `log`; on the grid `low + k*step` when `step` is set.
    Float {
        low: f64,
        high: f64,
        log: bool,
        step: Option<f64>,
    },
    /// An integer on the grid `low + k*step` in `[low, high]`; log-uniform when `log` (then `step == 1`).
    Int {
        low: i64,
        high: i64,
        step: i64,
        log: bool,
    },
    /// One of a list of distinct strings, numbers or bools.
    Categorical { choices: Vec<Value> },
}

/// `when` clause: the parameter is active only if `parent` is active and holds one of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub(super) parent: String,
    pub(super) values: Vec<Value>,
    /// Index of the parent in the space's topological order.
    pub(super) parent_idx: usize,
    /// `allowed[i]` says whether the parent's choice `i` activates the child.
    pub(super) allowed: Vec<bool>,
}

impl Condition {
    pub fn parent(&self) -> &str {
        &self.parent
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }
}

/// One parameter of a search space.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub(super) name: String,
    pub(super) kind: ParamKind,
    pub(super) when: Vec<Condition>,
    /// Categorical only: choice indices sorted by `cmp_choice`, so a told value
    /// is found by binary search instead of a scan over up to 1000 choices.
    pub(super) choice_order: Vec<usize>,
}

impl ParamSpec {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> &ParamKind {
        &self.kind
    }

    /// The `when` conditions; all must hold for the parameter to be active.
    pub fn conditions(&self) -> &[Condition] {
        &self.when
    }

    /// Index of `value` among this categorical's choices; numbers compare by
    /// value so `1` and `1.0` name the same choice.
    pub(crate) fn choice_index(&self, value: &Value) -> Option<usize> {
        let ParamKind::Categorical { choices } = &self.kind else {
            return None;
        };
        self.choice_order
            .binary_search_by(|&i| cmp_choice(&choices[i], value))
            .ok()
            .map(|pos| self.choice_order[pos])
    }

    /// Checks a told value against this parameter's range, grid or choices.
    pub(crate) fn check_value(&self, value: &Value) -> Result<()> {
        let name = &self.name;
        match &self.kind {
            ParamKind::Float {
                low, high, step, ..
            } => {
                let Some(v) = value.as_f64() else {
                    return Err(not_a(name, "a number", value));
                };
                if !(*low..=*high).contains(&v) {
                    return Err(outside(name, v, low, high));
                }
                if let Some(step) = step {
                    let k = ((v - low) / step).round();
                    // Clients compute grid points in their own float arithmetic
                    // (0.1 * 3 != 0.3), so allow a sliver of the step.
                    if (low + k * step - v).abs() > step * 1e-6 {
                        return Err(off_grid(name, v, low, step));
                    }
                }
                Ok(())
            }
            ParamKind::Int {
                low, high, step, ..
            } => {
                let Some(v) = value.as_i64() else {
                    return Err(not_a(name, "an integer", value));
                };
                if v < *low || v > *high {
                    return Err(outside(name, v, low, high));
                }
                if (v - low) % step != 0 {
                    return Err(off_grid(name, v, low, step));
                }
                Ok(())
            }
            ParamKind::Categorical { choices } => match self.choice_index(value) {
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "parameter '{name}': {value} is not one of {}",
                    list_values(choices)
                ))),
            },
        }
    }

    /// The value in the samplers' internal space (log-transformed for log
    /// params, the choice index for categoricals), or `None` when the value
    /// doesn't belong to this parameter; history from an older space version
    /// is then simply not learnt from instead of failing the ask.
    pub(crate) fn to_internal(&self, value: &Value) -> Option<f64> {
        if let ParamKind::Categorical { .. } = self.kind {
            // The lookup is the whole check; don't pay for it twice.
            return self.choice_index(value).map(|i| i as f64);
        }
        self.check_value(value).ok()?;
        match &self.kind {
            ParamKind::Float { log, .. } => {
                let v = value.as_f64()?;
                Some(if *log { v.ln() } else { v })
            }
            ParamKind::Int { log, .. } => {
                let v = value.as_i64()? as f64;
                Some(if *log { v.ln() } else { v })
            }
            ParamKind::Categorical { .. } => self.choice_index(value).map(|i| i as f64),
        }
    }

    /// Support of a numeric parameter in internal space: `(low, high, step)`.
    /// With a step, `low` and `high` are the first and last grid points; without
    /// one they are the ends of a continuous interval.
    pub(crate) fn internal_bounds(&self) -> Option<(f64, f64, Option<f64>)> {
        match &self.kind {
            ParamKind::Float {
                low,
                high,
                log: true,
                ..
            } => Some((low.ln(), high.ln(), None)),
            ParamKind::Float {
                low, high, step, ..
            } => Some((*low, *high, *step)),
            // Each integer owns [v - 0.5, v + 0.5] before the log, as in Optuna,
            // so the end values are as likely as the inner ones.
            ParamKind::Int {
                low,
                high,
                log: true,
                ..
            } => Some(((*low as f64 - 0.5).ln(), (*high as f64 + 0.5).ln(), None)),
            ParamKind::Int {
                low, high, step, ..
            } => Some((*low as f64, *high as f64, Some(*step as f64))),
            ParamKind::Categorical { .. } => None,
        }
    }

    /// Maps an internal-space numeric value back to a JSON value that passes
    /// `check_value` (rounded to the grid and clamped into range).
    pub(crate) fn internal_to_value(&self, x: f64) -> Value {
        match &self.kind {
            ParamKind::Float {
                low,
                high,
                log,
                step,
            } => {
                let v = if *log { x.exp() } else { x };
                let v = match step {
                    Some(step) => {
                        let n = ((high - low) / step).round();
                        let k = ((v - low) / step).round().clamp(0.0, n);
                        low + k * step
                    }
                    None => v,
                };
                Value::from(v.clamp(*low, *high))
            }
            ParamKind::Int {
                low,
                high,
                step,
                log,
            } => {
                let v = if *log { x.exp() } else { x };
                let n = ((high - low) / step) as f64;
                let k = ((v - *low as f64) / *step as f64).round().clamp(0.0, n);
                // k <= n <= 2^54 and the product stays within the bounds, so
                // the casts are exact.
                Value::from((low + (k as i64) * step).clamp(*low, *high))
            }
            ParamKind::Categorical { choices } => {
                let i = (x.max(0.0) as usize).min(choices.len() - 1);
                choices[i].clone()
            }
        }
    }
}

// `check_value`'s errors, worded once for floats and ints alike.

fn not_a(name: &str, expected: &str, value: &Value) -> HpoError {
    invalid(format!(
        "parameter '{name}': expected {expected}, got {value}"
    ))
}

fn outside(name: &str, v: impl Display, low: impl Display, high: impl Display) -> HpoError {
    invalid(format!(
        "parameter '{name}': {v} is outside [{low}, {high}]"
    ))
}

fn off_grid(name: &str, v: impl Display, low: impl Display, step: impl Display) -> HpoError {
    invalid(format!(
        "parameter '{name}': {v} is not on the grid {low} + k * {step}"
    ))
}

/// The first value `values` lists twice (first in `cmp_choice` order), if any.
pub(crate) fn repeated_value(values: &[Value]) -> Option<&Value> {
    let mut sorted: Vec<&Value> = values.iter().collect();
    sorted.sort_by(|a, b| cmp_choice(a, b));
    sorted
        .windows(2)
        .find(|w| cmp_choice(w[0], w[1]) == Ordering::Equal)
        .map(|w| w[0])
}

/// Total order on choice values: bools, then numbers (by value, -0 == 0), then strings.
pub(crate) fn cmp_choice(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Bool(_) => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            _ => 3,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            (x + 0.0).total_cmp(&(y + 0.0))
        }
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// `[a, b, c]` for messages, cut short for long choice lists.
pub(super) fn list_values(values: &[Value]) -> String {
    const SHOWN: usize = 10;
    let mut parts: Vec<String> = values.iter().take(SHOWN).map(Value::to_string).collect();
    if values.len() > SHOWN {
        parts.push(format!("… {} more", values.len() - SHOWN));
    }
    format!("[{}]", parts.join(", "))
}
