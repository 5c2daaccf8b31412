//! The validated search space: its parameters in topological order, parsing from and printing to the JSON spec, conditional activity, activation groups, and validation of told parameter sets.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::json::{parse_spec, topological_order, ParsedSpec};
use super::param::{
    cmp_choice, list_values, Condition, ParamKind, ParamSpec, MAX_NAME_LEN, MAX_PARAMS,
};
use crate::{invalid, HpoError, Params, Result};

/// A validated search space. Parameters are kept in topological order
/// (parents before children) so samplers can decide activity in one pass.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchSpace {
    params: Vec<ParamSpec>,
    index: BTreeMap<String, usize>,
}

impl SearchSpace {
    /// Parses and checks a JSON spec (an object mapping parameter names to specs).
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| {
            invalid("search space must be a JSON object mapping parameter names to specs")
        })?;
        if obj.is_empty() {
            return Err(invalid("search space must define at least one parameter"));
        }
        if obj.len() > MAX_PARAMS {
            return Err(invalid(format!(
                "search space defines {} parameters; the limit is {MAX_PARAMS}",
                obj.len()
            )));
        }

        let mut parsed: BTreeMap<String, ParsedSpec> = BTreeMap::new();
        for (name, spec) in obj {
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                return Err(invalid(format!(
                    "parameter name {name:?} must be 1 to {MAX_NAME_LEN} bytes long"
                )));
            }
            parsed.insert(name.clone(), parse_spec(name, spec)?);
        }

        // Check the `when` references before ordering, so a reference to a
        // missing parameter is reported as such rather than as a cycle.
        for (name, (_, when)) in &parsed {
            for (parent, values) in when {
                if parent == name {
                    return Err(invalid(format!(
                        "parameter '{name}': when cannot refer to the parameter itself"
                    )));
                }
                let Some((parent_kind, _)) = parsed.get(parent) else {
                    return Err(invalid(format!(
                        "parameter '{name}': when refers to unknown parameter '{parent}'"
                    )));
                };
                let ParamKind::Categorical { choices } = parent_kind else {
                    return Err(invalid(format!(
                        "parameter '{name}': when parent '{parent}' must be categorical"
                    )));
                };
                for v in values {
                    if !choices.iter().any(|c| cmp_choice(c, v) == Ordering::Equal) {
                        return Err(invalid(format!(
                            "parameter '{name}': when value {v} is not a choice of '{parent}' ({})",
                            list_values(choices)
                        )));
                    }
                }
            }
        }

        let order = topological_order(&parsed)?;
        let index: BTreeMap<String, usize> = order
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();

        let mut params: Vec<ParamSpec> = Vec::with_capacity(order.len());
        for name in &order {
            let (kind, when) = parsed
                .remove(name)
                .ok_or_else(|| invalid(format!("parameter '{name}' defined twice")))?;
            let choice_order = match &kind {
                ParamKind::Categorical { choices } => {
                    let mut idx: Vec<usize> = (0..choices.len()).collect();
                    idx.sort_by(|&a, &b| cmp_choice(&choices[a], &choices[b]));
                    idx
                }
                _ => Vec::new(),
            };
            let mut conditions = Vec::with_capacity(when.len());
            for (parent, values) in when {
                let parent_idx = index[&parent];
                // Parents precede children in `order`, so the parent is already built.
                let parent_spec = &params[parent_idx];
                let n_choices = match &parent_spec.kind {
                    ParamKind::Categorical { choices } => choices.len(),
                    _ => 0,
                };
                let mut allowed = vec![false; n_choices];
                for v in &values {
                    if let Some(i) = parent_spec.choice_index(v) {
                        allowed[i] = true;
                    }
                }
                conditions.push(Condition {
                    parent,
                    values,
                    parent_idx,
                    allowed,
                });
            }
            params.push(ParamSpec {
                name: name.clone(),
                kind,
                when: conditions,
                choice_order,
            });
        }
        Ok(SearchSpace { params, index })
    }

    /// The spec back in the JSON format `from_json` reads.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        for p in &self.params {
            let mut spec = kind_to_json(&p.kind);
            if !p.when.is_empty() {
                let when: Map<String, Value> = p
                    .when
                    .iter()
                    .map(|c| (c.parent.clone(), Value::Array(c.values.clone())))
                    .collect();
                spec.insert("when".into(), Value::Object(when));
            }
            out.insert(p.name.clone(), Value::Object(spec));
        }
        Value::Object(out)
    }

    /// Parameters in topological order: every parent before its children.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.index.get(name).map(|&i| &self.params[i])
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Whether `name` is active given the values in `params`: every `when`
    /// parent is itself active and holds an allowed value. Unknown names are inactive.
    pub fn is_active(&self, name: &str, params: &Params) -> bool {
        self.index
            .get(name)
            .is_some_and(|&i| self.is_active_at(i, params))
    }

    pub(crate) fn is_active_at(&self, i: usize, params: &Params) -> bool {
        self.params[i].when.iter().all(|c| {
            let parent = &self.params[c.parent_idx];
            // Recursion depth is bounded by the (acyclic) chain of parents.
            self.is_active_at(c.parent_idx, params)
                && params
                    .get(&parent.name)
                    .and_then(|v| parent.choice_index(v))
                    .is_some_and(|ci| c.allowed[ci])
        })
    }

    /// Parameters that are always active together, as lists of indices in
    /// topological order, the groups ordered by their first member. Two
    /// parameters share a group when their `when` conditions, their parents'
    /// included, allow the same choices of the same parents. Multivariate TPE
    /// fits one joint density per group (Optuna's `group=True`); deriving
    /// the groups from the space rather than from the trials seen so far
    /// keeps them the same for every ask of a study.
    pub(crate) fn activation_groups(&self) -> Vec<Vec<usize>> {
        // Per parameter: parent index -> which of its choices activate it,
        // over the whole chain of ancestors (conditions on one parent AND).
        let mut signatures: Vec<BTreeMap<usize, Vec<bool>>> = Vec::with_capacity(self.len());
        for spec in &self.params {
            let mut sig = BTreeMap::new();
            for c in &spec.when {
                // Parents come first in topological order, so theirs exist.
                for (&p, allowed) in &signatures[c.parent_idx] {
                    and_into(&mut sig, p, allowed);
                }
                and_into(&mut sig, c.parent_idx, &c.allowed);
            }
            signatures.push(sig);
        }
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, sig) in signatures.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|(first, _)| signatures[*first] == *sig)
            {
                Some((_, members)) => members.push(i),
                None => groups.push((i, vec![i])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }

    /// Checks told parameters: no unknown names, every active parameter
    /// present and valid, no inactive parameter present.
    pub fn validate(&self, params: &Params) -> Result<()> {
        if let Some(unknown) = params.keys().find(|k| !self.index.contains_key(*k)) {
            return Err(invalid(format!(
                "unknown parameter '{unknown}' (not in the search space)"
            )));
        }
        for (i, spec) in self.params.iter().enumerate() {
            let active = self.is_active_at(i, params);
            match (active, params.get(&spec.name)) {
                (true, Some(v)) => spec.check_value(v)?,
                (true, None) => {
                    return Err(invalid(format!(
                        "parameter '{}' is active but missing",
                        spec.name
                    )))
                }
                (false, Some(_)) => {
                    let reason: Vec<String> = spec
                        .when
                        .iter()
                        .map(|c| format!("{} in {}", c.parent, list_values(&c.values)))
                        .collect();
                    return Err(invalid(format!(
                        "parameter '{}' is inactive (it requires {}) and must be omitted",
                        spec.name,
                        reason.join(" and ")
                    )));
                }
                (false, None) => {}
            }
        }
        Ok(())
    }
}

impl TryFrom<Value> for SearchSpace {
    type Error = HpoError;

    fn try_from(value: Value) -> Result<Self> {
        SearchSpace::from_json(&value)
    }
}

impl Serialize for SearchSpace {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SearchSpace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        SearchSpace::from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// ANDs `allowed` into the entry for `parent` (a child of two conditions on
/// one parent needs both).
fn and_into(sig: &mut BTreeMap<usize, Vec<bool>>, parent: usize, allowed: &[bool]) {
    match sig.get_mut(&parent) {
        Some(mask) => mask.iter_mut().zip(allowed).for_each(|(m, &a)| *m &= a),
        None => {
            sig.insert(parent, allowed.to_vec());
        }
    }
}

/// A parameter kind's part of its JSON spec: `type` and its settings, with
/// the defaults `from_json` fills in (no log, an int step of 1) left out.
fn kind_to_json(kind: &ParamKind) -> Map<String, Value> {
    let mut spec = Map::new();
    let (type_name, low, high, step, log) = match *kind {
        ParamKind::Categorical { ref choices } => {
            spec.insert("type".into(), "categorical".into());
            spec.insert("choices".into(), Value::Array(choices.clone()));
            return spec;
        }
        ParamKind::Float {
            low,
            high,
            log,
            step,
        } => ("float", low.into(), high.into(), step.map(Value::from), log),
        ParamKind::Int {
            low,
            high,
            step,
            log,
        } => (
            "int",
            low.into(),
            high.into(),
            (step != 1).then_some(step.into()),
            log,
        ),
    };
    spec.insert("type".into(), type_name.into());
    spec.insert("low".into(), low);
    spec.insert("high".into(), high);
    if let Some(step) = step {
        spec.insert("step".into(), step);
    }
    if log {
        spec.insert("log".into(), true.into());
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({
            "family": {"type": "categorical", "choices": ["linear", "gbm"]},
            "linear_l2": {"type": "float", "low": 1e-6, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
            "gbm_iterations": {"type": "int", "low": 50, "high": 400, "step": 50, "when": {"family": ["gbm"]}},
            "x": {"type": "float", "low": -5, "high": 5}
        })
    }

    fn params(v: Value) -> Params {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn parses_example_in_topological_order() {
        let space = SearchSpace::from_json(&example()).unwrap();
        assert_eq!(space.len(), 4);
        let names: Vec<&str> = space.params().iter().map(|p| p.name()).collect();
        let pos = |n: &str| names.iter().position(|m| *m == n).unwrap();
        assert!(pos("family") < pos("linear_l2"));
        assert!(pos("family") < pos("gbm_iterations"));
        assert_eq!(
            space.get("gbm_iterations").unwrap().kind(),
            &ParamKind::Int {
                low: 50,
                high: 400,
                step: 50,
                log: false
            }
        );
        assert_eq!(
            space.get("linear_l2").unwrap().conditions()[0].parent(),
            "family"
        );
    }

    #[test]
    fn nested_conditions_order_and_activity() {
        let space = SearchSpace::from_json(&json!({
            "c": {"type": "float", "low": 0, "high": 1, "when": {"b": [true]}},
            "b": {"type": "categorical", "choices": [true, false], "when": {"a": ["on"]}},
            "a": {"type": "categorical", "choices": ["on", "off"]}
        }))
        .unwrap();
        let names: Vec<&str> = space.params().iter().map(|p| p.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(space.is_active("c", &params(json!({"a": "on", "b": true}))));
        // A stale child value under an inactive parent doesn't activate the grandchild.
        assert!(!space.is_active("c", &params(json!({"a": "off", "b": true}))));
        assert!(!space.is_active("c", &params(json!({"a": "on", "b": false}))));
        assert!(!space.is_active("nope", &params(json!({}))));
    }

    #[test]
    fn activation_groups_join_parameters_active_together() {
        let space = SearchSpace::from_json(&json!({
            "family": {"type": "categorical", "choices": ["linear", "gbm", "rf"]},
            "x": {"type": "float", "low": 0, "high": 1},
            "l2": {"type": "float", "low": 0, "high": 1, "when": {"family": ["linear"]}},
            "depth": {"type": "int", "low": 1, "high": 9, "when": {"family": ["gbm", "rf"]}},
            "lr": {"type": "float", "low": 0, "high": 1, "when": {"family": ["gbm"]}},
            "rounds": {"type": "int", "low": 1, "high": 9, "when": {"family": ["gbm"]}},
            "booster": {"type": "categorical", "choices": ["a", "b"], "when": {"family": ["gbm"]}},
            "alpha": {"type": "float", "low": 0, "high": 1, "when": {"booster": ["a"]}}
        }))
        .unwrap();
        let groups: Vec<Vec<&str>> = space
            .activation_groups()
            .iter()
            .map(|g| {
                let mut names: Vec<&str> = g.iter().map(|&i| space.params()[i].name()).collect();
                names.sort_unstable();
                names
            })
            .collect();
        let mut sorted = groups.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            vec![
                vec!["alpha"],
                vec!["booster", "lr", "rounds"],
                vec!["depth"],
                vec!["family", "x"],
                vec!["l2"],
            ]
        );
        // Groups come in topological order of their first member: parents' groups first.
        let pos = |name: &str| groups.iter().position(|g| g.contains(&name)).unwrap();
        assert_eq!(pos("family"), 0);
        assert!(pos("booster") < pos("alpha"));
    }

    #[test]
    fn to_json_round_trips() {
        let space = SearchSpace::from_json(&example()).unwrap();
        let again = SearchSpace::from_json(&space.to_json()).unwrap();
        assert_eq!(space, again);
        let via_serde: SearchSpace =
            serde_json::from_str(&serde_json::to_string(&space).unwrap()).unwrap();
        assert_eq!(space, via_serde);
        assert_eq!(space.to_json()["linear_l2"]["log"], json!(true));
        assert_eq!(space.to_json()["gbm_iterations"]["step"], json!(50));
    }

    #[test]
    fn conditional_activity() {
        let space = SearchSpace::from_json(&example()).unwrap();
        let p = params(json!({"family": "linear"}));
        assert!(space.is_active("family", &p));
        assert!(space.is_active("x", &p));
        assert!(space.is_active("linear_l2", &p));
        assert!(!space.is_active("gbm_iterations", &p));
        assert!(!space.is_active("linear_l2", &params(json!({}))));
        assert!(!space.is_active("linear_l2", &params(json!({"family": "svm"}))));
    }

    #[test]
    fn validate_accepts_good_params() {
        let space = SearchSpace::from_json(&example()).unwrap();
        space
            .validate(&params(
                json!({"family": "gbm", "gbm_iterations": 150, "x": -5}),
            ))
            .unwrap();
        space
            .validate(&params(
                json!({"family": "linear", "linear_l2": 0.01, "x": 4.5}),
            ))
            .unwrap();
    }

    #[test]
    fn validate_rejects_bad_params_naming_them() {
        let space = SearchSpace::from_json(&example()).unwrap();
        let cases = [
            (
                json!({"family": "gbm", "gbm_iterations": 150, "x": 0, "y": 1}),
                "'y'",
            ),
            (
                json!({"family": "gbm", "x": 0}),
                "'gbm_iterations' is active but missing",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 150, "x": 0, "linear_l2": 1.0}),
                "'linear_l2' is inactive",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 175, "x": 0}),
                "'gbm_iterations': 175 is not on the grid",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 450, "x": 0}),
                "'gbm_iterations': 450 is outside",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 150.0, "x": 0}),
                "'gbm_iterations': expected an integer",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 150, "x": 5.5}),
                "'x': 5.5 is outside",
            ),
            (
                json!({"family": "gbm", "gbm_iterations": 150, "x": "0"}),
                "'x': expected a number",
            ),
            (
                json!({"family": "svm", "x": 0}),
                "'family': \"svm\" is not one of",
            ),
            (
                json!({"family": "linear", "linear_l2": 0.0, "x": 0}),
                "'linear_l2': 0 is outside",
            ),
        ];
        for (p, expected) in cases {
            let err = space.validate(&params(p.clone())).unwrap_err().to_string();
            assert!(err.contains(expected), "{p}: {err}");
        }
    }

    #[test]
    fn categorical_numbers_compare_by_value() {
        let space = SearchSpace::from_json(&json!({
            "k": {"type": "categorical", "choices": [1, 2.5, "a", false]},
            "y": {"type": "float", "low": 0, "high": 1, "when": {"k": [1.0]}}
        }))
        .unwrap();
        space
            .validate(&params(json!({"k": 1.0, "y": 0.5})))
            .unwrap();
        space.validate(&params(json!({"k": false}))).unwrap();
        assert!(space.is_active("y", &params(json!({"k": 1}))));
        assert!(space.validate(&params(json!({"k": true}))).is_err());
    }

    #[test]
    fn stepped_float_grid_tolerates_client_rounding() {
        let space = SearchSpace::from_json(&json!({
            "f": {"type": "float", "low": 0, "high": 1, "step": 0.1}
        }))
        .unwrap();
        space.validate(&params(json!({"f": 0.1 * 3.0}))).unwrap();
        assert!(space.validate(&params(json!({"f": 0.35}))).is_err());
    }

    #[test]
    fn internal_mapping_round_trips_on_grid() {
        let space = SearchSpace::from_json(&json!({
            "i": {"type": "int", "low": 50, "high": 400, "step": 50},
            "l": {"type": "int", "low": 1, "high": 1000, "log": true},
            "f": {"type": "float", "low": 0, "high": 1, "step": 0.25}
        }))
        .unwrap();
        let i = space.get("i").unwrap();
        assert_eq!(i.internal_to_value(163.0), json!(150));
        assert_eq!(i.internal_to_value(1e9), json!(400));
        let l = space.get("l").unwrap();
        assert_eq!(
            l.internal_to_value(l.to_internal(&json!(37)).unwrap()),
            json!(37)
        );
        assert_eq!(l.internal_to_value(-3.0), json!(1));
        let f = space.get("f").unwrap();
        assert_eq!(f.internal_to_value(0.6), json!(0.5));
        assert_eq!(f.to_internal(&json!(0.3)), None);
    }
}
