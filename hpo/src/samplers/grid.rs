//! Grid sampler: enumerates a finite grid over the search space and hands trial `n` grid point `n`.
//!
//! The grid is the product of one value list per parameter, walked in the
//! space's topological order so that a conditional parameter is only varied
//! where its `when` holds: an inactive parameter is absent from a point and
//! never multiplies it, so no point appears twice. Points are numbered
//! lexicographically (parameters in topological order, values in list order);
//! with `shuffle` (the default) trial `n` takes point `perm[n]` of a
//! permutation seeded by `seed`, so a trial budget smaller than the grid still
//! spreads over it. Everything is recomputed from (config, space, n): no
//! sampler state survives between asks.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::random::sample_all;
use super::{check_count, Ask, AskSampler};
use crate::rng::trial_rng;
use crate::space::{cmp_choice, repeated_value, ParamKind, ParamSpec, SearchSpace};
use crate::{invalid, Params, Result};

/// Most points one grid may have; a bigger one is rejected at validation.
pub const MAX_GRID_POINTS: u64 = 100_000;
/// An int parameter with at most this many values on its step grid is
/// enumerated in full; a wider one gets `points_per_dimension` spread values.
pub const MAX_INT_VALUES: u64 = 100;
/// Largest `points_per_dimension`.
pub const MAX_POINTS_PER_DIMENSION: u32 = 1000;
/// Most values an explicit grid may list for one parameter.
pub const MAX_GRID_VALUES: usize = 10_000;

/// `{"type": "grid", "seed": 0, "grid": {"x": [0.1, 1.0]}, "points_per_dimension": 5, "shuffle": true}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridSamplerConfig {
    /// Seeds the visiting order when `shuffle` is set.
    pub seed: u64,
    /// Explicit values per parameter; a parameter not listed gets values
    /// derived from its spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid: Option<BTreeMap<String, Vec<Value>>>,
    /// Values derived for a float (and for an int with more than
    /// `MAX_INT_VALUES` values): evenly spaced, log-spaced when `log`.
    pub points_per_dimension: u32,
    /// Visit the points in a seeded random order instead of lexicographically.
    pub shuffle: bool,
}

impl Default for GridSamplerConfig {
    fn default() -> Self {
        GridSamplerConfig {
            seed: 0,
            grid: None,
            points_per_dimension: 5,
            shuffle: true,
        }
    }
}

impl GridSamplerConfig {
    /// Checks the fields that don't need the space.
    pub fn validate(&self) -> Result<()> {
        check_count(
            "points_per_dimension",
            self.points_per_dimension,
            1..=MAX_POINTS_PER_DIMENSION,
        )
    }

    /// The value list of every parameter (indexed like `space.params()`),
    /// checking the explicit grid against the space.
    pub fn axes(&self, space: &SearchSpace) -> Result<Vec<Vec<Value>>> {
        self.validate()?;
        if let Some(grid) = &self.grid {
            if let Some(unknown) = grid.keys().find(|k| space.get(k).is_none()) {
                return Err(invalid(format!(
                    "sampler.grid: unknown parameter '{unknown}' (not in the search space)"
                )));
            }
        }
        space
            .params()
            .iter()
            .map(
                |spec| match self.grid.as_ref().and_then(|g| g.get(spec.name())) {
                    Some(values) => explicit_values(spec, values),
                    None => Ok(derived_values(spec, self.points_per_dimension)),
                },
            )
            .collect()
    }

    /// Number of grid points; errors when the grid is invalid or has more
    /// than `MAX_GRID_POINTS` points.
    pub fn size(&self, space: &SearchSpace) -> Result<u64> {
        let axes = self.axes(space)?;
        count(space, &axes).ok_or_else(|| {
            invalid(format!(
                "sampler: the grid has more than {MAX_GRID_POINTS} points; list fewer values in sampler.grid or lower points_per_dimension"
            ))
        })
    }
}

/// Checks an explicit value list: every value valid for the parameter and none twice.
fn explicit_values(spec: &ParamSpec, values: &[Value]) -> Result<Vec<Value>> {
    let name = spec.name();
    if values.is_empty() {
        return Err(invalid(format!(
            "sampler.grid.{name}: list at least one value"
        )));
    }
    if values.len() > MAX_GRID_VALUES {
        return Err(invalid(format!(
            "sampler.grid.{name}: lists {} values; the limit is {MAX_GRID_VALUES}",
            values.len()
        )));
    }
    for v in values {
        check_value(spec, v)?;
    }
    if let Some(twice) = repeated_value(values) {
        return Err(invalid(format!(
            "sampler.grid.{name}: {twice} is listed twice"
        )));
    }
    Ok(values.to_vec())
}

fn check_value(spec: &ParamSpec, v: &Value) -> Result<()> {
    let name = spec.name();
    let ok = spec.to_internal(v).is_some();
    if ok {
        return Ok(());
    }
    Err(invalid(match spec.kind() {
        ParamKind::Float {
            low, high, step, ..
        } => match v.as_f64() {
            None => format!("sampler.grid.{name}: expected a number, got {v}"),
            Some(x) if !(*low..=*high).contains(&x) => {
                format!("sampler.grid.{name}: {x} is outside [{low}, {high}]")
            }
            Some(x) => format!(
                "sampler.grid.{name}: {x} is not on the grid {low} + k * {}",
                step.unwrap_or(0.0)
            ),
        },
        ParamKind::Int {
            low, high, step, ..
        } => match v.as_i64() {
            None => format!("sampler.grid.{name}: expected an integer, got {v}"),
            Some(x) if x < *low || x > *high => {
                format!("sampler.grid.{name}: {x} is outside [{low}, {high}]")
            }
            Some(x) => format!("sampler.grid.{name}: {x} is not on the grid {low} + k * {step}"),
        },
        ParamKind::Categorical { choices } => {
            let shown: Vec<String> = choices.iter().take(10).map(Value::to_string).collect();
            format!(
                "sampler.grid.{name}: {v} is not one of [{}{}]",
                shown.join(", "),
                if choices.len() > 10 { ", …" } else { "" }
            )
        }
    }))
}

/// Values derived from a parameter's spec: every choice, every int of a
/// small int range, else `points` values evenly spaced in the sampler's
/// internal (log for log params) space, snapped to the step, duplicates dropped.
fn derived_values(spec: &ParamSpec, points: u32) -> Vec<Value> {
    // Continuous floats take their ends exactly: exp(ln(low)) may miss low
    // by an ulp.
    let exact_ends = match spec.kind() {
        ParamKind::Float {
            low,
            high,
            step: None,
            ..
        } => Some((*low, *high)),
        _ => None,
    };
    let spread = |lo: f64, hi: f64| -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        for j in 0..points {
            let x = if points == 1 {
                (lo + hi) / 2.0
            } else {
                lo + (hi - lo) * f64::from(j) / f64::from(points - 1)
            };
            let v = match exact_ends {
                Some((low, _)) if j == 0 && points > 1 => Value::from(low),
                Some((_, high)) if j + 1 == points && points > 1 => Value::from(high),
                _ => spec.internal_to_value(x),
            };
            if !out.iter().any(|o| cmp_choice(o, &v) == Ordering::Equal) {
                out.push(v);
            }
        }
        out
    };
    match spec.kind() {
        ParamKind::Categorical { choices } => choices.clone(),
        ParamKind::Int {
            low, high, step, ..
        } if (((high - low) / step) as u64) < MAX_INT_VALUES => (0..=(high - low) / step)
            .map(|k| Value::from(low + k * step))
            .collect(),
        ParamKind::Int {
            low,
            high,
            log: true,
            ..
        } => spread((*low as f64).ln(), (*high as f64).ln()),
        ParamKind::Int { low, high, .. } => spread(*low as f64, *high as f64),
        ParamKind::Float {
            low,
            high,
            log: true,
            ..
        } => spread(low.ln(), high.ln()),
        ParamKind::Float { low, high, .. } => spread(*low, *high),
    }
}

/// Number of points, or `None` past `MAX_GRID_POINTS`.
fn count(space: &SearchSpace, axes: &[Vec<Value>]) -> Option<u64> {
    let mut n = 0u64;
    let mut params = Params::new();
    walk(space, axes, 0, &mut params, &mut |_| {
        n += 1;
        n <= MAX_GRID_POINTS
    });
    (n <= MAX_GRID_POINTS).then_some(n)
}

/// The point with lexicographic index `index`, if there is one.
fn point(space: &SearchSpace, axes: &[Vec<Value>], index: u64) -> Option<Params> {
    let mut seen = 0u64;
    let mut found = None;
    let mut params = Params::new();
    walk(space, axes, 0, &mut params, &mut |p| {
        if seen == index {
            found = Some(p.clone());
            return false;
        }
        seen += 1;
        true
    });
    found
}

/// Depth-first walk over the points in lexicographic order; `visit` returns
/// false to stop. Returns false once stopped.
fn walk(
    space: &SearchSpace,
    axes: &[Vec<Value>],
    i: usize,
    params: &mut Params,
    visit: &mut dyn FnMut(&Params) -> bool,
) -> bool {
    let Some(spec) = space.params().get(i) else {
        return visit(params);
    };
    if !space.is_active_at(i, params) {
        return walk(space, axes, i + 1, params, visit);
    }
    for v in &axes[i] {
        params.insert(spec.name().to_string(), v.clone());
        let go_on = walk(space, axes, i + 1, params, visit);
        params.remove(spec.name());
        if !go_on {
            return false;
        }
    }
    true
}

/// Hands trial `n` grid point `n` (in the configured order). Trial numbers
/// past the grid wrap around; the spec caps the trial budget at the grid
/// size so experiments never ask for them.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSampler {
    config: GridSamplerConfig,
}

impl GridSampler {
    pub fn new(config: GridSamplerConfig) -> Self {
        GridSampler { config }
    }

    /// Every point in trial order (for tests and small grids).
    pub fn points(&self, space: &SearchSpace) -> Result<Vec<Params>> {
        let size = self.config.size(space)?;
        let axes = self.config.axes(space)?;
        Ok((0..size)
            .filter_map(|n| point(space, &axes, self.index_of(n, size)))
            .collect())
    }

    /// The lexicographic index of the point trial `n` takes.
    fn index_of(&self, n: u64, size: u64) -> u64 {
        let n = n % size;
        if !self.config.shuffle {
            return n;
        }
        // size <= MAX_GRID_POINTS, so the permutation is at most 100k u32s.
        let mut perm: Vec<u32> = (0..size as u32).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(self.config.seed));
        u64::from(perm[n as usize])
    }
}

impl AskSampler for GridSampler {
    fn ask(&self, ask: &Ask<'_>) -> Params {
        let space = ask.space;
        let found = self.config.axes(space).ok().and_then(|axes| {
            let size = count(space, &axes).filter(|&s| s > 0)?;
            point(space, &axes, self.index_of(ask.trial_number, size))
        });
        // Only an unvalidated config gets here without a point; answer with a
        // valid random one rather than panic.
        found.unwrap_or_else(|| {
            sample_all(space, &mut trial_rng(self.config.seed, ask.trial_number))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, Sampler};
    use serde_json::json;
    use std::collections::BTreeSet;

    fn mixed_space() -> SearchSpace {
        SearchSpace::from_json(&json!({
            "family": {"type": "categorical", "choices": ["linear", "gbm"]},
            "l2": {"type": "float", "low": 0.001, "high": 10.0, "log": true, "when": {"family": ["linear"]}},
            "depth": {"type": "int", "low": 2, "high": 4, "when": {"family": ["gbm"]}},
            "x": {"type": "float", "low": 0, "high": 1}
        }))
        .unwrap()
    }

    fn config(v: Value) -> GridSamplerConfig {
        serde_json::from_value(v).unwrap()
    }

    /// Canonical text of a point, whatever the map's key order.
    fn key(p: &Params) -> String {
        serde_json::to_string(&p.iter().collect::<BTreeMap<_, _>>()).unwrap()
    }

    #[test]
    fn enumerates_exactly_the_mixed_grid_with_conditionals() {
        let space = mixed_space();
        let c = config(json!({"points_per_dimension": 3, "shuffle": false}));
        assert_eq!(c.size(&space).unwrap(), 3 * 3 + 3 * 3);
        let points = GridSampler::new(c).points(&space).unwrap();
        // Each branch: its own parameter's three values, each with x's three.
        let branches = [
            ("linear", "l2", [json!(0.001), json!(0.1), json!(10.0)]),
            ("gbm", "depth", [json!(2), json!(3), json!(4)]),
        ];
        let mut expected = BTreeSet::new();
        for (family, param, values) in branches {
            for v in values {
                for x in [0.0, 0.5, 1.0] {
                    let point = json!({"family": family, param: v, "x": x});
                    expected.insert(key(point.as_object().unwrap()));
                }
            }
        }
        let got: Vec<String> = points.iter().map(key).collect();
        let got_set: BTreeSet<String> = got.iter().cloned().collect();
        // l2 is log-spaced: its middle value is exp((ln 0.001 + ln 10) / 2),
        // 0.1 up to float rounding.
        let got_rounded: BTreeSet<String> = points
            .iter()
            .map(|p| {
                let mut p = p.clone();
                if let Some(l2) = p.get("l2").and_then(Value::as_f64) {
                    p.insert("l2".into(), json!((l2 * 1e9).round() / 1e9));
                }
                key(&p)
            })
            .collect();
        assert_eq!(got_set.len(), got.len(), "a point repeats: {got:?}");
        assert_eq!(got_rounded, expected);
        for p in &points {
            space.validate(p).unwrap();
        }
        // Lexicographic: the first parameter in topological order varies slowest.
        assert_eq!(points[0]["family"], json!("linear"));
        assert_eq!(points[17]["family"], json!("gbm"));
    }

    #[test]
    fn shuffled_order_is_a_seeded_permutation_and_sample_matches() {
        let space = mixed_space();
        let lex = GridSampler::new(config(json!({"shuffle": false})))
            .points(&space)
            .unwrap();
        let s = GridSampler::new(config(json!({"seed": 3})));
        let shuffled = s.points(&space).unwrap();
        assert_eq!(shuffled.len(), lex.len());
        assert_ne!(shuffled, lex);
        let a: BTreeSet<String> = lex.iter().map(key).collect();
        let b: BTreeSet<String> = shuffled.iter().map(key).collect();
        assert_eq!(a, b);
        for (n, p) in shuffled.iter().enumerate() {
            assert_eq!(&s.sample(&space, &[], Direction::Minimize, n as u64), p);
        }
        let other = GridSampler::new(config(json!({"seed": 4})))
            .points(&space)
            .unwrap();
        assert_ne!(other, shuffled);
    }

    #[test]
    fn explicit_grid_overrides_derived_values() {
        let space = mixed_space();
        let c = config(json!({"grid": {"family": ["gbm"], "depth": [4, 2], "x": [0.25]}}));
        assert_eq!(c.size(&space).unwrap(), 2);
        let points = GridSampler::new(c).points(&space).unwrap();
        let keys: BTreeSet<String> = points.iter().map(key).collect();
        assert!(
            keys.contains(&key(json!({"family": "gbm", "depth": 4, "x": 0.25})
                .as_object()
                .unwrap()))
        );
        assert!(
            keys.contains(&key(json!({"family": "gbm", "depth": 2, "x": 0.25})
                .as_object()
                .unwrap()))
        );
    }

    #[test]
    fn derived_values_follow_the_spec() {
        let space = SearchSpace::from_json(&json!({
            "wide": {"type": "int", "low": 0, "high": 1000},
            "stepped": {"type": "int", "low": 50, "high": 400, "step": 50},
            "f": {"type": "float", "low": 0, "high": 1, "step": 0.5},
            "b": {"type": "categorical", "choices": [true, false]}
        }))
        .unwrap();
        let axes = config(json!({})).axes(&space).unwrap();
        let by_name = |n: &str| {
            let i = space.params().iter().position(|p| p.name() == n).unwrap();
            axes[i].clone()
        };
        assert_eq!(
            by_name("wide"),
            vec![json!(0), json!(250), json!(500), json!(750), json!(1000)]
        );
        assert_eq!(by_name("stepped").len(), 8);
        // 5 spread points snapped to a 3-point step grid, duplicates dropped.
        assert_eq!(by_name("f"), vec![json!(0.0), json!(0.5), json!(1.0)]);
        assert_eq!(by_name("b"), vec![json!(true), json!(false)]);
    }

    #[test]
    fn explicit_grid_errors_name_the_problem() {
        let space = mixed_space();
        let cases = [
            (json!({"grid": {"nope": [1]}}), "unknown parameter 'nope'"),
            (
                json!({"grid": {"x": []}}),
                "sampler.grid.x: list at least one value",
            ),
            (
                json!({"grid": {"x": [2.0]}}),
                "sampler.grid.x: 2 is outside [0, 1]",
            ),
            (
                json!({"grid": {"x": ["a"]}}),
                "sampler.grid.x: expected a number",
            ),
            (
                json!({"grid": {"depth": [2.5]}}),
                "sampler.grid.depth: expected an integer",
            ),
            (
                json!({"grid": {"depth": [9]}}),
                "sampler.grid.depth: 9 is outside [2, 4]",
            ),
            (
                json!({"grid": {"family": ["svm"]}}),
                "sampler.grid.family: \"svm\" is not one of",
            ),
            (
                json!({"grid": {"x": [0.5, 0.5]}}),
                "sampler.grid.x: 0.5 is listed twice",
            ),
            (json!({"points_per_dimension": 0}), "points_per_dimension"),
        ];
        for (c, needle) in cases {
            let err = config(c.clone()).size(&space).unwrap_err().to_string();
            assert!(err.contains(needle), "{c}: {err}");
        }
        let stepped =
            SearchSpace::from_json(&json!({"s": {"type": "int", "low": 0, "high": 10, "step": 5}}))
                .unwrap();
        let err = config(json!({"grid": {"s": [3]}}))
            .size(&stepped)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not on the grid"), "{err}");
    }

    #[test]
    fn grid_size_is_capped() {
        let space = SearchSpace::from_json(&json!({
            "a": {"type": "float", "low": 0, "high": 1},
            "b": {"type": "float", "low": 0, "high": 1},
            "c": {"type": "float", "low": 0, "high": 1}
        }))
        .unwrap();
        assert_eq!(
            config(json!({"points_per_dimension": 46}))
                .size(&space)
                .unwrap(),
            46 * 46 * 46
        );
        let err = config(json!({"points_per_dimension": 47}))
            .size(&space)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 100000 points"), "{err}");
    }
}
