//! Hyperparameter importance, shown in an experiment's summary.
//!
//! The method is a simple, faithful version of fANOVA (Hutter et al. 2014):
//!
//! 1. Fit a small random forest of regression trees on the complete trials,
//!    mapping parameters to the objective value. Trees are the usual model for
//!    this because they need no scaling of the inputs, handle categoricals and
//!    "parameter not active" natively, and their average is cheap to evaluate.
//! 2. For each parameter, compute the forest's *partial dependence* on it: the
//!    prediction with that parameter set to `v`, averaged over the other
//!    parameters' observed values (the trials' own rows). The variance of this
//!    marginal over the parameter's observed distribution is the part of the
//!    value's variance the parameter explains on its own (fANOVA's main effect).
//! 3. Normalise the variances to sum to 1, so each number reads as a share.
//!
//! Interactions are not reported separately (fANOVA would); the main effects
//! are what users ask for, and they need no integration over pairs.
//!
//! Encoding: numeric parameters keep their raw value (tree splits only use the
//! order, so log scales need no transform); categoricals are category codes
//! split by equality (one choice against the rest). A conditional parameter
//! absent from a trial gets a distinct "not active" value: `-inf` for numbers
//! (one `<=` split separates it) and an extra code for categoricals.
//!
//! Everything is a pure function of the trials and the seed: the forest's draws
//! come from one ChaCha8 stream keyed by the experiment seed, so the summary
//! shows the same numbers on every GET. The work is capped (at most
//! [`MAX_TRIALS`] trials, 64 depth-6 trees, partial dependence computed per
//! leaf instead of per row and grid point) because it runs on every GET.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::space::{ParamKind, SearchSpace};
use crate::Params;

/// The `method` string reported with the importances.
pub const METHOD: &str = "forest partial-dependence variance";
/// Fewer usable trials than this and no importance is reported.
pub const MIN_TRIALS: usize = 5;
/// At most this many trials (the lowest-numbered complete ones) are used. The
/// lowest numbers keep the result stable once reached, and early trials explore
/// the space more widely, which is what importance is about.
pub const MAX_TRIALS: usize = 1000;
const N_TREES: usize = 64;
const MAX_DEPTH: usize = 6;
const MIN_LEAF: usize = 2;
/// Numeric parameters' partial dependence is evaluated at this many quantiles at most.
const MAX_NUMERIC_GRID: usize = 32;
/// Mixed into the experiment seed so the forest's stream differs from the samplers'.
const SEED_SALT: u64 = 0x1a7e_5eed_f0e5_7000;

/// The importances of an experiment's parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Importance {
    pub method: &'static str,
    /// How many complete trials the forest was fitted on.
    pub trials: usize,
    /// One entry per search-space parameter, most important first; they sum to 1.
    pub params: Vec<ParamImportance>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParamImportance {
    pub name: String,
    pub importance: f64,
}

#[derive(Clone, Copy)]
enum Feature {
    Numeric,
    /// Codes `0..n` are the choices; `n` is "not active" (or an unknown value).
    Categorical,
}

#[derive(Clone, Copy)]
enum Test {
    /// `x <= t`, `t` an observed value.
    Le(f64),
    /// `x == code`.
    Eq(f64),
}

impl Test {
    fn left(self, x: f64) -> bool {
        match self {
            Test::Le(t) => x <= t,
            Test::Eq(c) => x == c,
        }
    }
}

enum Node {
    Leaf(f64),
    Split {
        feature: usize,
        test: Test,
        left: usize,
        right: usize,
    },
}

/// Computes the importances from the complete trials `(number, params, value)`.
/// Non-finite values are skipped. Errs with a human-readable reason when there
/// is not enough to go on.
pub fn importance(
    space: &SearchSpace,
    trials: &[(u64, &Params, f64)],
    seed: u64,
) -> Result<Importance, String> {
    let mut usable: Vec<&(u64, &Params, f64)> = trials.iter().filter(|t| t.2.is_finite()).collect();
    if usable.len() < MIN_TRIALS {
        return Err(format!(
            "needs at least {MIN_TRIALS} complete trials with finite values; {} so far",
            usable.len()
        ));
    }
    usable.sort_by_key(|t| t.0);
    usable.truncate(MAX_TRIALS);
    let n = usable.len();

    let specs = space.params();
    let features: Vec<Feature> = specs
        .iter()
        .map(|s| match s.kind() {
            ParamKind::Categorical { .. } => Feature::Categorical,
            _ => Feature::Numeric,
        })
        .collect();
    // Row-major n x p matrix.
    let p = specs.len();
    let mut x = Vec::with_capacity(n * p);
    for (_, params, _) in &usable {
        for spec in specs {
            let v = params.get(spec.name());
            x.push(match spec.kind() {
                ParamKind::Categorical { choices } => {
                    v.and_then(|v| spec.choice_index(v))
                        .unwrap_or(choices.len()) as f64
                }
                _ => v
                    .and_then(|v| v.as_f64())
                    .filter(|v| v.is_finite())
                    .unwrap_or(f64::NEG_INFINITY),
            });
        }
    }

    // Standardise y so the split tolerance is scale-free (divide by the largest
    // magnitude first so the variance cannot overflow).
    let scale = usable.iter().map(|t| t.2.abs()).fold(0.0, f64::max);
    let y: Vec<f64> = usable
        .iter()
        .map(|t| if scale > 0.0 { t.2 / scale } else { 0.0 })
        .collect();
    let mean = y.iter().sum::<f64>() / n as f64;
    let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    if var <= 1e-24 {
        return Err("every complete trial has the same value; nothing to explain".into());
    }
    let sd = var.sqrt();
    let y: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();

    let data = Data {
        x: &x,
        y: &y,
        p,
        features: &features,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SEED_SALT);
    let mtry = ((p as f64).sqrt().ceil() as usize).clamp(1, p.max(1));
    let forest: Vec<Vec<Node>> = (0..N_TREES)
        .map(|_| {
            let mut rows: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            let mut nodes = Vec::new();
            data.build(&mut nodes, &mut rows, 0, mtry, &mut rng);
            nodes
        })
        .collect();

    let mut variances = Vec::with_capacity(p);
    let mut scratch: Vec<usize> = Vec::with_capacity(n);
    for f in 0..p {
        let column: Vec<f64> = (0..n).map(|i| x[i * p + f]).collect();
        let (grid, weights) = grid(&column, features[f]);
        let words = grid.len().div_ceil(64);
        let mut full = vec![0u64; words];
        for g in 0..grid.len() {
            full[g / 64] |= 1 << (g % 64);
        }
        let mut acc = vec![0.0; grid.len()];
        for tree in &forest {
            scratch.clear();
            scratch.extend(0..n);
            data.pd_walk(tree, 0, &mut scratch, &full, f, &grid, &mut acc);
        }
        // acc[g] summed leaf value x rows over trees: the forest's partial dependence.
        let denom = (n * N_TREES) as f64;
        let pd: Vec<f64> = acc.iter().map(|a| a / denom).collect();
        let m: f64 = pd.iter().zip(&weights).map(|(v, w)| v * w).sum();
        let v: f64 = pd
            .iter()
            .zip(&weights)
            .map(|(v, w)| w * (v - m) * (v - m))
            .sum();
        variances.push(v.max(0.0));
    }
    let total: f64 = variances.iter().sum();
    if total.is_nan() || total <= 1e-24 || total.is_infinite() {
        return Err(
            "the forest found no parameter that changes the value; importances are undefined"
                .into(),
        );
    }
    let mut params: Vec<ParamImportance> = specs
        .iter()
        .zip(&variances)
        .map(|(s, v)| ParamImportance {
            name: s.name().to_string(),
            importance: v / total,
        })
        .collect();
    params.sort_by(|a, b| {
        b.importance
            .total_cmp(&a.importance)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(Importance {
        method: METHOD,
        trials: n,
        params,
    })
}

/// The points at which a parameter's partial dependence is evaluated, with the
/// share of trials each stands for: every observed category (and "not active"),
/// or for numbers the distinct values, or equal-mass quantile bins (each
/// represented by its median) when there are more than [`MAX_NUMERIC_GRID`].
fn grid(column: &[f64], feature: Feature) -> (Vec<f64>, Vec<f64>) {
    let n = column.len() as f64;
    let mut sorted = column.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &v in &sorted {
        match distinct.last_mut() {
            Some((last, count)) if *last == v => *count += 1,
            _ => distinct.push((v, 1)),
        }
    }
    if matches!(feature, Feature::Categorical) || distinct.len() <= MAX_NUMERIC_GRID {
        return distinct.into_iter().map(|(v, c)| (v, c as f64 / n)).unzip();
    }
    let len = sorted.len();
    (0..MAX_NUMERIC_GRID)
        .map(|b| {
            let lo = b * len / MAX_NUMERIC_GRID;
            let hi = (b + 1) * len / MAX_NUMERIC_GRID;
            (sorted[(lo + hi) / 2], (hi - lo) as f64 / n)
        })
        .filter(|&(_, w)| w > 0.0)
        .unzip()
}

struct Data<'a> {
    x: &'a [f64],
    y: &'a [f64],
    p: usize,
    features: &'a [Feature],
}

impl Data<'_> {
    fn at(&self, row: usize, f: usize) -> f64 {
        self.x[row * self.p + f]
    }

    /// Grows a regression tree (squared-error splits, `mtry` features drawn
    /// per node) on `rows`, appending its nodes; returns the root's index.
    fn build(
        &self,
        nodes: &mut Vec<Node>,
        rows: &mut [usize],
        depth: usize,
        mtry: usize,
        rng: &mut ChaCha8Rng,
    ) -> usize {
        let idx = nodes.len();
        let len = rows.len();
        let sum: f64 = rows.iter().map(|&r| self.y[r]).sum();
        let mean = sum / len as f64;
        nodes.push(Node::Leaf(mean));
        if depth >= MAX_DEPTH || len < 2 * MIN_LEAF || self.p == 0 {
            return idx;
        }
        let sse: f64 = rows.iter().map(|&r| (self.y[r] - mean).powi(2)).sum();
        if sse <= 1e-12 {
            return idx;
        }
        // Maximising sum_l^2/n_l + sum_r^2/n_r minimises the children's SSE.
        let parent_score = sum * sum / len as f64;
        let mut best: Option<(f64, usize, Test)> = None;
        for f in sample(rng, self.p, mtry).into_iter() {
            if let Some((score, test)) = self.best_split(rows, f, sum) {
                if best.as_ref().is_none_or(|b| score > b.0) {
                    best = Some((score, f, test));
                }
            }
        }
        let Some((score, feature, test)) = best else {
            return idx;
        };
        if score - parent_score <= 1e-12 {
            return idx;
        }
        let split = partition(rows, |r| test.left(self.at(r, feature)));
        let (l, r) = rows.split_at_mut(split);
        let left = self.build(nodes, l, depth + 1, mtry, rng);
        let right = self.build(nodes, r, depth + 1, mtry, rng);
        nodes[idx] = Node::Split {
            feature,
            test,
            left,
            right,
        };
        idx
    }

    /// The best split of `rows` on feature `f` with both sides at least
    /// `MIN_LEAF` rows: its score (see `build`) and test.
    fn best_split(&self, rows: &[usize], f: usize, sum: f64) -> Option<(f64, Test)> {
        let len = rows.len();
        let mut pairs: Vec<(f64, f64)> = rows.iter().map(|&r| (self.at(r, f), self.y[r])).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let score = |s: f64, k: usize| s * s / k as f64 + (sum - s).powi(2) / (len - k) as f64;
        let mut best: Option<(f64, Test)> = None;
        match self.features[f] {
            Feature::Numeric => {
                let mut s = 0.0;
                for k in 1..len {
                    s += pairs[k - 1].1;
                    if pairs[k - 1].0 < pairs[k].0 && k >= MIN_LEAF && len - k >= MIN_LEAF {
                        let sc = score(s, k);
                        if best.as_ref().is_none_or(|b| sc > b.0) {
                            best = Some((sc, Test::Le(pairs[k - 1].0)));
                        }
                    }
                }
            }
            Feature::Categorical => {
                let mut start = 0;
                while start < len {
                    let code = pairs[start].0;
                    let mut end = start;
                    let mut s = 0.0;
                    while end < len && pairs[end].0 == code {
                        s += pairs[end].1;
                        end += 1;
                    }
                    let k = end - start;
                    if k >= MIN_LEAF && len - k >= MIN_LEAF {
                        let sc = score(s, k);
                        if best.as_ref().is_none_or(|b| sc > b.0) {
                            best = Some((sc, Test::Eq(code)));
                        }
                    }
                    start = end;
                }
            }
        }
        best
    }

    /// Adds to `acc[g]`, for each grid point `g` in `mask`, the tree's
    /// prediction summed over `rows` with feature `f` set to `grid[g]`. Rows are
    /// partitioned at splits on other features; at splits on `f` they all go
    /// both ways and the grid points are divided instead. This equals
    /// evaluating every (row, grid point) pair, at the cost of one pass.
    #[allow(clippy::too_many_arguments)]
    fn pd_walk(
        &self,
        tree: &[Node],
        node: usize,
        rows: &mut [usize],
        mask: &[u64],
        f: usize,
        grid: &[f64],
        acc: &mut [f64],
    ) {
        match tree[node] {
            Node::Leaf(v) => {
                let total = v * rows.len() as f64;
                for (w, &word) in mask.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        let b = bits.trailing_zeros() as usize;
                        acc[w * 64 + b] += total;
                        bits &= bits - 1;
                    }
                }
            }
            Node::Split {
                feature,
                test,
                left,
                right,
            } if feature == f => {
                let mut lmask = vec![0u64; mask.len()];
                let mut rmask = vec![0u64; mask.len()];
                for (g, &value) in grid.iter().enumerate() {
                    let bit = 1u64 << (g % 64);
                    if mask[g / 64] & bit != 0 {
                        if test.left(value) {
                            lmask[g / 64] |= bit;
                        } else {
                            rmask[g / 64] |= bit;
                        }
                    }
                }
                if lmask.iter().any(|&w| w != 0) {
                    self.pd_walk(tree, left, rows, &lmask, f, grid, acc);
                }
                if rmask.iter().any(|&w| w != 0) {
                    self.pd_walk(tree, right, rows, &rmask, f, grid, acc);
                }
            }
            Node::Split {
                feature,
                test,
                left,
                right,
            } => {
                let split = partition(rows, |r| test.left(self.at(r, feature)));
                let (l, r) = rows.split_at_mut(split);
                if !l.is_empty() {
                    self.pd_walk(tree, left, l, mask, f, grid, acc);
                }
                if !r.is_empty() {
                    self.pd_walk(tree, right, r, mask, f, grid, acc);
                }
            }
        }
    }
}

/// Moves the rows for which `left` holds to the front; returns how many.
fn partition(rows: &mut [usize], left: impl Fn(usize) -> bool) -> usize {
    let mut k = 0;
    for i in 0..rows.len() {
        if left(rows[i]) {
            rows.swap(i, k);
            k += 1;
        }
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn space(v: Value) -> SearchSpace {
        SearchSpace::from_json(&v).unwrap()
    }

    fn run(space: &SearchSpace, rows: &[(Params, f64)], seed: u64) -> Result<Importance, String> {
        let trials: Vec<(u64, &Params, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, (p, v))| (i as u64, p, *v))
            .collect();
        importance(space, &trials, seed)
    }

    fn get(imp: &Importance, name: &str) -> f64 {
        imp.params
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .importance
    }

    /// value = 10x + 2*[c == "b"] + noise; y is irrelevant, c explains about a tenth.
    fn linear_rows(n: usize, seed: u64) -> Vec<(Params, f64)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let x: f64 = rng.gen();
                let y: f64 = rng.gen();
                let c = ["a", "b", "c"][rng.gen_range(0..3)];
                let noise: f64 = rng.gen_range(-0.1..0.1);
                let value = 10.0 * x + if c == "b" { 2.0 } else { 0.0 } + noise;
                let p = json!({"x": x, "y": y, "c": c});
                (p.as_object().unwrap().clone(), value)
            })
            .collect()
    }

    fn xyc_space() -> SearchSpace {
        space(json!({
            "x": {"type": "float", "low": 0, "high": 1},
            "y": {"type": "float", "low": 0, "high": 1},
            "c": {"type": "categorical", "choices": ["a", "b", "c"]}
        }))
    }

    #[test]
    fn the_parameter_that_drives_the_value_ranks_first() {
        let imp = run(&xyc_space(), &linear_rows(100, 1), 7).unwrap();
        assert_eq!(imp.method, METHOD);
        assert_eq!(imp.trials, 100);
        assert_eq!(imp.params.len(), 3);
        assert_eq!(imp.params[0].name, "x", "{imp:?}");
        assert!(get(&imp, "x") > 0.7, "{imp:?}");
        assert!(get(&imp, "y") < 0.1, "{imp:?}");
        // The categorical matters a little: more than the irrelevant y.
        assert!(get(&imp, "c") > 2.0 * get(&imp, "y"), "{imp:?}");
        let sum: f64 = imp.params.iter().map(|p| p.importance).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        assert!(imp
            .params
            .windows(2)
            .all(|w| w[0].importance >= w[1].importance));
    }

    #[test]
    fn deterministic_for_a_seed_and_independent_of_input_order() {
        let s = xyc_space();
        let rows = linear_rows(60, 2);
        let a = run(&s, &rows, 11).unwrap();
        assert_eq!(a, run(&s, &rows, 11).unwrap());
        // Trials are ordered by number, not by slice order.
        let mut trials: Vec<(u64, &Params, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, (p, v))| (i as u64, p, *v))
            .collect();
        trials.reverse();
        assert_eq!(a, importance(&s, &trials, 11).unwrap());
        // Another seed grows another forest (same ranking, different numbers).
        let b = run(&s, &rows, 12).unwrap();
        assert_eq!(b.params[0].name, "x");
        assert_ne!(a, b);
    }

    #[test]
    fn conditional_parameters_get_an_inactive_value() {
        let s = space(json!({
            "model": {"type": "categorical", "choices": ["svm", "tree"]},
            "depth": {"type": "int", "low": 1, "high": 10, "when": {"model": ["tree"]}},
            "gamma": {"type": "float", "low": 0.001, "high": 1, "log": true,
                      "when": {"model": ["svm"]}},
        }));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let rows: Vec<(Params, f64)> = (0..80)
            .map(|_| {
                if rng.gen_bool(0.5) {
                    let depth: i64 = rng.gen_range(1..=10);
                    let p = json!({"model": "tree", "depth": depth});
                    (p.as_object().unwrap().clone(), depth as f64)
                } else {
                    let gamma: f64 = rng.gen_range(0.001..1.0);
                    let p = json!({"model": "svm", "gamma": gamma});
                    (
                        p.as_object().unwrap().clone(),
                        5.0 + rng.gen_range(-0.05..0.05),
                    )
                }
            })
            .collect();
        let imp = run(&s, &rows, 1).unwrap();
        assert_eq!(imp.params.len(), 3);
        assert_eq!(imp.params[0].name, "depth", "{imp:?}");
        assert!(get(&imp, "gamma") < 0.1, "{imp:?}");
        assert!(imp.params.iter().all(|p| p.importance.is_finite()));
    }

    #[test]
    fn too_few_or_constant_trials_give_a_reason() {
        let s = xyc_space();
        let mut rows = linear_rows(4, 3);
        let err = run(&s, &rows, 1).unwrap_err();
        assert!(err.contains("at least 5 complete trials"), "{err}");
        // Non-finite values don't count.
        rows.push((rows[0].0.clone(), f64::NAN));
        assert!(run(&s, &rows, 1).unwrap_err().contains("4 so far"));
        let constant: Vec<(Params, f64)> = linear_rows(10, 4)
            .into_iter()
            .map(|(p, _)| (p, 3.0))
            .collect();
        let err = run(&s, &constant, 1).unwrap_err();
        assert!(err.contains("same value"), "{err}");
    }

    #[test]
    fn uses_at_most_max_trials_and_many_categories() {
        let s = space(json!({
            "x": {"type": "float", "low": 0, "high": 1},
            "k": {"type": "int", "low": 0, "high": 199}
        }));
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let rows: Vec<(Params, f64)> = (0..MAX_TRIALS + 50)
            .map(|_| {
                let x: f64 = rng.gen();
                let k: i64 = rng.gen_range(0..200);
                let p = json!({"x": x, "k": k});
                (p.as_object().unwrap().clone(), x + k as f64 / 20.0)
            })
            .collect();
        let imp = run(&s, &rows, 1).unwrap();
        assert_eq!(imp.trials, MAX_TRIALS);
        assert_eq!(imp.params[0].name, "k", "{imp:?}");

        // A categorical with more than 64 observed choices (multi-word grid mask).
        let choices: Vec<Value> = (0..100).map(|i| json!(format!("c{i}"))).collect();
        let s = space(json!({"c": {"type": "categorical", "choices": choices}}));
        let rows: Vec<(Params, f64)> = (0..300)
            .map(|i| {
                let c = i % 100;
                let p = json!({"c": format!("c{c}")});
                (p.as_object().unwrap().clone(), (c % 7) as f64)
            })
            .collect();
        let imp = run(&s, &rows, 1).unwrap();
        assert_eq!(imp.params.len(), 1);
        assert!((imp.params[0].importance - 1.0).abs() < 1e-12);
    }
}
