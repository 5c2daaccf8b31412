//! Tree ensembles trained by LightGBM or XGBoost, served in pure Rust.
//!
//! The libraries train; their models are then read back from the libraries'
//! own export formats (LightGBM's text model, XGBoost's JSON model) into one
//! [`TreeEnsemble`]. Serving walks these arrays: no foreign call per
//! prediction, no library handle shared between threads, and a server built
//! without the native libraries still serves the models. The conversion is
//! checked where it is made: [`TreeEnsemble::verify`] compares its margins
//! with the library's own on the training rows and the trainer refuses a
//! model that disagrees, so a served prediction is the library's prediction.
//!
//! Contributions use path attribution (Saabas): each split on the path of a
//! row credits its feature with the change in the subtree's expected value,
//! expected values weighted by training cover. They add up exactly to the
//! margin, like the other families' contributions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{invalid, Result};

mod walk;
pub use walk::WalkCache;

/// How a split compares a feature with its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// LightGBM: `x <= threshold` goes left, in double precision.
    LessOrEqual,
    /// XGBoost: `x < threshold` goes left, both as `f32` (XGBoost stores
    /// features and thresholds in single precision).
    LessF32,
}

/// Marks a leaf in [`Node::feature`].
const LEAF: u32 = u32::MAX;

/// One node. Leaves carry their output in `value`; internal nodes carry the
/// cover-weighted mean of their leaves there (for contributions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub threshold: f64,
    pub left: u32,
    pub right: u32,
    pub value: f64,
    /// LightGBM's "zero as missing": a zero feature goes to `default_left`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zero_missing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default_left: bool,
}

impl Node {
    pub(crate) fn leaf(value: f64) -> Node {
        Node {
            feature: LEAF,
            threshold: 0.0,
            left: 0,
            right: 0,
            value,
            zero_missing: false,
            default_left: false,
        }
    }

    fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

/// Root first; every child comes after its parent, so walks terminate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Leaves' outputs with their covers, before expected values are filled in.
struct TreeBuilder {
    nodes: Vec<Node>,
    cover: Vec<f64>,
}

impl TreeBuilder {
    /// Fills internal nodes' values with the cover-weighted mean of their
    /// leaves (children first: they come after their parents).
    fn finish(mut self) -> Tree {
        for i in (0..self.nodes.len()).rev() {
            if self.nodes[i].is_leaf() {
                continue;
            }
            let (l, r) = (self.nodes[i].left as usize, self.nodes[i].right as usize);
            let (cl, cr) = (self.cover[l], self.cover[r]);
            let total = cl + cr;
            self.nodes[i].value = if total > 0.0 {
                (cl * self.nodes[l].value + cr * self.nodes[r].value) / total
            } else {
                0.5 * (self.nodes[l].value + self.nodes[r].value)
            };
            self.cover[i] = total;
        }
        Tree { nodes: self.nodes }
    }
}

/// A fitted ensemble: `margin[g] = base[g] + scale * sum of the trees of
/// group g`, where tree `i` belongs to group `i % groups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub n_features: usize,
    /// Margins per row: the class count for multiclass, else 1.
    pub groups: usize,
    pub rule: SplitRule,
    pub base: Vec<f64>,
    /// 1 for boosting; 1 / rounds for forests that average their trees.
    pub scale: f64,
    pub trees: Vec<Tree>,
    /// The trees laid out for serving ([`walk`]), built on the first walk:
    /// change no tree after that.
    #[serde(skip)]
    pub walk: WalkCache,
}

impl TreeEnsemble {
    fn goes_left(&self, node: &Node, x: f64) -> bool {
        if node.zero_missing && x.abs() <= 1e-35 {
            return node.default_left;
        }
        match self.rule {
            SplitRule::LessOrEqual => x <= node.threshold,
            SplitRule::LessF32 => (x as f32) < (node.threshold as f32),
        }
    }

    fn leaf_of(&self, tree: &Tree, x: &[f64]) -> usize {
        let mut i = 0;
        loop {
            let node = &tree.nodes[i];
            if node.is_leaf() {
                return i;
            }
            i = if self.goes_left(node, x[node.feature as usize]) {
                node.left as usize
            } else {
                node.right as usize
            };
        }
    }

    /// Every group's margin for one row into `out` (`groups` long).
    pub fn margins_row(&self, x: &[f64], out: &mut [f64]) {
        let mut sums = [0.0f64; 1];
        let sums: &mut [f64] = if self.groups == 1 {
            &mut sums
        } else {
            out.fill(0.0);
            &mut *out
        };
        match self.walk.get(self) {
            Some(layout) => layout.leaves(self.rule, x, |i, v| sums[i % self.groups] += v),
            None => {
                for (i, tree) in self.trees.iter().enumerate() {
                    sums[i % self.groups] += tree.nodes[self.leaf_of(tree, x)].value;
                }
            }
        }
        if self.groups == 1 {
            out[0] = self.base[0] + self.scale * sums[0];
        } else {
            for (g, m) in out.iter_mut().enumerate() {
                *m = self.base[g] + self.scale * *m;
            }
        }
    }

    /// The margin of one group.
    pub fn margin_row(&self, x: &[f64], group: usize) -> f64 {
        if self.groups == 1 {
            if let Some(layout) = self.walk.get(self) {
                let mut sum = 0.0;
                layout.leaves(self.rule, x, |_, v| sum += v);
                return self.base[0] + self.scale * sum;
            }
        }
        let sum: f64 = self
            .trees
            .iter()
            .skip(group)
            .step_by(self.groups)
            .map(|t| t.nodes[self.leaf_of(t, x)].value)
            .sum();
        self.base[group] + self.scale * sum
    }

    /// Path attributions of `group`'s margin: `out` has `n_features + 1`
    /// slots, the last the base value; the slots add up to the margin.
    pub fn contributions_row(&self, x: &[f64], group: usize, out: &mut [f64]) {
        let base = out.len() - 1;
        out[base] += self.base[group];
        for tree in self.trees.iter().skip(group).step_by(self.groups) {
            let mut i = 0;
            out[base] += self.scale * tree.nodes[0].value;
            loop {
                let node = &tree.nodes[i];
                if node.is_leaf() {
                    break;
                }
                let next = if self.goes_left(node, x[node.feature as usize]) {
                    node.left as usize
                } else {
                    node.right as usize
                };
                out[node.feature as usize] += self.scale * (tree.nodes[next].value - node.value);
                i = next;
            }
        }
    }

    /// Checks the invariants prediction relies on (for decoded models).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.groups == 0 || self.base.len() != self.groups {
            return Err(format!(
                "{} base values for {} groups",
                self.base.len(),
                self.groups
            ));
        }
        if !self.trees.len().is_multiple_of(self.groups) {
            return Err(format!(
                "{} trees do not divide into {} groups",
                self.trees.len(),
                self.groups
            ));
        }
        if !self.scale.is_finite() || self.base.iter().any(|b| !b.is_finite()) {
            return Err("non-finite base or scale".into());
        }
        for (t, tree) in self.trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(format!("tree {t} has no nodes"));
            }
            let n = tree.nodes.len();
            for (i, node) in tree.nodes.iter().enumerate() {
                if !node.value.is_finite() {
                    return Err(format!("tree {t} node {i} has a non-finite value"));
                }
                if node.is_leaf() {
                    continue;
                }
                let (l, r) = (node.left as usize, node.right as usize);
                if node.feature as usize >= self.n_features {
                    return Err(format!(
                        "tree {t} node {i} splits on feature {} of {}",
                        node.feature, self.n_features
                    ));
                }
                if l <= i || r <= i || l >= n || r >= n || node.threshold.is_nan() {
                    return Err(format!("tree {t} node {i} has bad children or threshold"));
                }
            }
        }
        Ok(())
    }

    /// Compares this ensemble's margins on `rows` (row-major, `n_features`
    /// wide) with the library's `reference` margins (row-major, `groups`
    /// wide); fails naming the worst row when they differ by more than
    /// `tolerance * (1 + |reference|)`.
    pub fn verify(&self, rows: &[f64], reference: &[f64], tolerance: f64) -> Result<()> {
        let n = rows.len() / self.n_features.max(1);
        if reference.len() != n * self.groups {
            return Err(invalid(format!(
                "reference has {} margins for {n} rows x {} groups",
                reference.len(),
                self.groups
            )));
        }
        let mut out = vec![0.0; self.groups];
        for (i, x) in rows.chunks(self.n_features).enumerate() {
            self.margins_row(x, &mut out);
            for (g, (&ours, &theirs)) in out.iter().zip(&reference[i * self.groups..]).enumerate() {
                if (ours - theirs).abs() > tolerance * (1.0 + theirs.abs()) {
                    return Err(crate::error::internal(format!(
                        "converted model disagrees with the library on row {i} group {g}: \
                         {ours} vs {theirs}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Sets `base` so that this ensemble's margins on the first row equal
    /// the library's (`reference`, `groups` wide). The libraries keep their
    /// starting score in version-dependent places (XGBoost's `base_score` in
    /// probability or margin units, LightGBM's folded into the first trees);
    /// measuring it is exact and version-proof. [`TreeEnsemble::verify`] on
    /// every row then checks the whole conversion.
    pub fn calibrate_base(&mut self, first_row: &[f64], reference: &[f64]) {
        self.base = vec![0.0; self.groups];
        let mut out = vec![0.0; self.groups];
        self.margins_row(first_row, &mut out);
        self.base = reference.iter().zip(&out).map(|(r, o)| r - o).collect();
    }
}

fn parse_list<T: std::str::FromStr>(field: &str, text: Option<&str>) -> Result<Vec<T>> {
    let Some(text) = text else {
        return Err(invalid(format!("LightGBM model lacks '{field}'")));
    };
    text.split_whitespace()
        .map(|v| {
            v.parse()
                .map_err(|_| invalid(format!("LightGBM model: bad {field} value '{v}'")))
        })
        .collect()
}

/// Reads LightGBM's text model (`LGBM_BoosterSaveModelToString`). `base`
/// is left at zero: LightGBM folds its starting score into the trees.
pub fn from_lightgbm(text: &str, n_features: usize) -> Result<TreeEnsemble> {
    let mut header = std::collections::HashMap::new();
    let mut blocks: Vec<std::collections::HashMap<&str, &str>> = Vec::new();
    let mut average = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "end of trees" {
            break;
        }
        if line == "average_output" {
            average = true;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key == "Tree" {
            blocks.push(Default::default());
        } else if let Some(block) = blocks.last_mut() {
            block.insert(key, value);
        } else {
            header.insert(key, value);
        }
    }
    let groups: usize = header
        .get("num_tree_per_iteration")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("LightGBM model lacks num_tree_per_iteration"))?;
    if groups == 0 || !blocks.len().is_multiple_of(groups) {
        return Err(invalid(format!(
            "LightGBM model has {} trees for {groups} per round",
            blocks.len()
        )));
    }
    let mut trees = Vec::with_capacity(blocks.len());
    for (t, block) in blocks.iter().enumerate() {
        if block.get("is_linear").is_some_and(|v| *v != "0")
            || block.get("num_cat").is_some_and(|v| *v != "0")
        {
            return Err(invalid(format!(
                "LightGBM tree {t} uses linear leaves or categorical splits, which this \
                 platform does not train"
            )));
        }
        let leaves: usize = block
            .get("num_leaves")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| invalid(format!("LightGBM tree {t} lacks num_leaves")))?;
        let leaf_value: Vec<f64> = parse_list("leaf_value", block.get("leaf_value").copied())?;
        if leaves == 0 || leaf_value.len() != leaves {
            return Err(invalid(format!("LightGBM tree {t} has bad leaves")));
        }
        if leaves == 1 {
            trees.push(Tree {
                nodes: vec![Node::leaf(leaf_value[0])],
            });
            continue;
        }
        let internal = leaves - 1;
        let feature: Vec<u32> = parse_list("split_feature", block.get("split_feature").copied())?;
        let threshold: Vec<f64> = parse_list("threshold", block.get("threshold").copied())?;
        let decision: Vec<u32> = parse_list("decision_type", block.get("decision_type").copied())?;
        let left: Vec<i64> = parse_list("left_child", block.get("left_child").copied())?;
        let right: Vec<i64> = parse_list("right_child", block.get("right_child").copied())?;
        let leaf_count: Vec<f64> = parse_list("leaf_count", block.get("leaf_count").copied())
            .unwrap_or_else(|_| vec![1.0; leaves]);
        if [
            feature.len(),
            threshold.len(),
            decision.len(),
            left.len(),
            right.len(),
        ]
        .iter()
        .any(|&n| n != internal)
            || leaf_count.len() != leaves
        {
            return Err(invalid(format!("LightGBM tree {t} has ragged arrays")));
        }
        // Internal nodes keep their indices; leaf k becomes internal + k.
        let index = |c: i64| -> Result<u32> {
            let i = if c >= 0 {
                c as usize
            } else {
                internal + (-(c + 1)) as usize
            };
            if i >= internal + leaves {
                return Err(invalid(format!(
                    "LightGBM tree {t} has child {c} out of range"
                )));
            }
            Ok(i as u32)
        };
        let mut nodes = (0..internal)
            .map(|i| {
                // decision_type bits: 1 categorical, 2 default left, 4..12 missing type.
                let missing = (decision[i] >> 2) & 3;
                Ok(Node {
                    feature: feature[i],
                    threshold: threshold[i],
                    left: index(left[i])?,
                    right: index(right[i])?,
                    value: 0.0,
                    zero_missing: missing == 1,
                    default_left: decision[i] & 2 != 0,
                })
            })
            .collect::<Result<Vec<Node>>>()?;
        nodes.reserve(leaves);
        nodes.extend(leaf_value.iter().map(|&v| Node::leaf(v)));
        let mut cover = vec![0.0; internal];
        cover.extend(leaf_count);
        trees.push(TreeBuilder { nodes, cover }.finish());
    }
    let rounds = trees.len() / groups;
    let ensemble = TreeEnsemble {
        n_features,
        groups,
        rule: SplitRule::LessOrEqual,
        base: vec![0.0; groups],
        scale: if average && rounds > 0 {
            1.0 / rounds as f64
        } else {
            1.0
        },
        trees,
        walk: WalkCache::default(),
    };
    ensemble
        .validate()
        .map_err(|m| invalid(format!("LightGBM model: {m}")))?;
    Ok(ensemble)
}

fn json_list<'a>(tree: &'a Value, field: &str, t: usize) -> Result<&'a Vec<Value>> {
    tree.get(field)
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("XGBoost tree {t} lacks '{field}'")))
}

fn json_f64s(tree: &Value, field: &str, t: usize) -> Result<Vec<f64>> {
    json_list(tree, field, t)?
        .iter()
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| invalid(format!("XGBoost tree {t}: bad {field} value {v}")))
        })
        .collect()
}

/// Reads XGBoost's JSON model (`XGBoosterSaveModelToBuffer` with
/// `{"format": "json"}`). `base` is left at zero; see
/// [`TreeEnsemble::calibrate_base`].
pub fn from_xgboost(model: &Value, n_features: usize, groups: usize) -> Result<TreeEnsemble> {
    let booster = &model["learner"]["gradient_booster"];
    let trees_json = booster["model"]["trees"]
        .as_array()
        .ok_or_else(|| invalid("XGBoost model lacks learner.gradient_booster.model.trees"))?;
    let info = booster["model"]["tree_info"]
        .as_array()
        .ok_or_else(|| invalid("XGBoost model lacks tree_info"))?;
    if info.len() != trees_json.len() {
        return Err(invalid(
            "XGBoost model: tree_info and trees differ in length",
        ));
    }
    let mut trees = Vec::with_capacity(trees_json.len());
    for (t, tree) in trees_json.iter().enumerate() {
        // Trees come round by round, one per group in group order; the
        // serving walk relies on that.
        if info[t].as_u64() != Some((t % groups) as u64) {
            return Err(invalid(format!(
                "XGBoost tree {t} belongs to group {}, expected {}",
                info[t],
                t % groups
            )));
        }
        let left = json_f64s(tree, "left_children", t)?;
        let right = json_f64s(tree, "right_children", t)?;
        let feature = json_f64s(tree, "split_indices", t)?;
        let condition = json_f64s(tree, "split_conditions", t)?;
        let hessian = json_f64s(tree, "sum_hessian", t)?;
        let default_left = json_f64s(tree, "default_left", t)?;
        let n = left.len();
        if [
            right.len(),
            feature.len(),
            condition.len(),
            hessian.len(),
            default_left.len(),
        ]
        .iter()
        .any(|&m| m != n)
            || n == 0
        {
            return Err(invalid(format!("XGBoost tree {t} has ragged arrays")));
        }
        if tree
            .get("split_type")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(|v| v.as_f64() != Some(0.0)))
        {
            return Err(invalid(format!(
                "XGBoost tree {t} has categorical splits, which this platform does not train"
            )));
        }
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                if left[i] < 0.0 {
                    Node::leaf(condition[i])
                } else {
                    Node {
                        feature: feature[i] as u32,
                        threshold: condition[i],
                        left: left[i] as u32,
                        right: right[i] as u32,
                        value: 0.0,
                        zero_missing: false,
                        default_left: default_left[i] != 0.0,
                    }
                }
            })
            .collect();
        trees.push(
            TreeBuilder {
                nodes,
                cover: hessian,
            }
            .finish(),
        );
    }
    let ensemble = TreeEnsemble {
        n_features,
        groups,
        rule: SplitRule::LessF32,
        base: vec![0.0; groups],
        scale: 1.0,
        trees,
        walk: WalkCache::default(),
    };
    ensemble
        .validate()
        .map_err(|m| invalid(format!("XGBoost model: {m}")))?;
    Ok(ensemble)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-leaf LightGBM tree on feature 1 at 0.5, and a stump.
    const LGBM: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\n\
        max_feature_idx=1\nobjective=regression\n\nTree=0\nnum_leaves=2\nnum_cat=0\n\
        split_feature=1\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\n\
        leaf_value=1 3\nleaf_count=3 1\nis_linear=0\nshrinkage=1\n\n\nTree=1\nnum_leaves=1\n\
        num_cat=0\nsplit_feature=\nthreshold=\ndecision_type=\nleft_child=\nright_child=\n\
        leaf_value=0.25\nis_linear=0\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn lightgbm_text_predicts_and_contributions_add_up() {
        let e = from_lightgbm(LGBM, 2).unwrap();
        let mut out = [0.0];
        e.margins_row(&[9.0, 0.5], &mut out);
        assert_eq!(out[0], 1.25); // 0.5 <= 0.5 goes left
        e.margins_row(&[9.0, 0.6], &mut out);
        assert_eq!(out[0], 3.25);
        let mut c = [0.0; 3];
        e.contributions_row(&[0.0, 0.6], 0, &mut c);
        // Expected value of tree 0 is (3*1 + 1*3)/4 = 1.5.
        assert_eq!(c, [0.0, 1.5, 1.75]);
        assert_eq!(c.iter().sum::<f64>(), 3.25);
        assert!(e
            .verify(&[0.0, 0.6, 0.0, 0.1], &[3.25, 1.25], 1e-12)
            .is_ok());
        assert!(e.verify(&[0.0, 0.6], &[3.0], 1e-12).is_err());
    }

    #[test]
    fn corrupt_models_are_refused() {
        let bad = LGBM.replace("right_child=-2", "right_child=-7");
        assert!(from_lightgbm(&bad, 2).is_err());
        let bad = LGBM.replace("split_feature=1\n", "split_feature=5\n");
        assert!(from_lightgbm(&bad, 2).is_err());
        let bad = LGBM.replace("leaf_value=1 3", "leaf_value=1");
        assert!(from_lightgbm(&bad, 2).is_err());
        let mut e = from_lightgbm(LGBM, 2).unwrap();
        e.trees[0].nodes[0].left = 0;
        assert!(e.validate().is_err());
    }

    #[test]
    fn xgboost_json_uses_strict_f32_comparisons() {
        let model = serde_json::json!({"learner": {"gradient_booster": {"model": {
            "tree_info": [0],
            "trees": [{
                "left_children": [1, -1, -1], "right_children": [2, -1, -1],
                "split_indices": [0, 0, 0], "split_conditions": [0.1f32 as f64, -1.0, 2.0],
                "sum_hessian": [4.0, 1.0, 3.0], "default_left": [1, 0, 0],
                "split_type": [0, 0, 0]
            }]
        }}}});
        let mut e = from_xgboost(&model, 1, 1).unwrap();
        e.calibrate_base(&[0.0], &[0.5]);
        assert_eq!(e.base, vec![1.5]);
        let mut out = [0.0];
        // 0.1 as f32 is not < 0.1f32: right.
        e.margins_row(&[0.1], &mut out);
        assert_eq!(out[0], 3.5);
        e.margins_row(&[0.09], &mut out);
        assert_eq!(out[0], 0.5);
        let mut c = [0.0; 2];
        e.contributions_row(&[0.09], 0, &mut c);
        assert_eq!(c.iter().sum::<f64>(), 0.5);
    }
}
