//! Tree ensembles laid out for serving: every answer walks every tree.
//!
//! The trained layout ([`Node`]: 40 bytes, children anywhere after their
//! parent) costs a cache line per level and a branch the processor cannot
//! predict, since which way a row goes is the whole point of the split.
//! Here each tree is a run of 16-byte steps in breadth-first order with a
//! split's two children side by side, so the next step is `next + (went
//! right)`: an address computed from a comparison rather than a branch,
//! and the top levels of a tree share a few cache lines. Trees are walked
//! [`LANES`] at a time in lockstep, so their loads overlap instead of each
//! waiting for the one before.
//!
//! The layout is derived, never stored: it is built from the trees on the
//! first walk and answers exactly what the trees answer (the same
//! comparisons, in the same precision). Contributions still walk the
//! trained nodes, which carry each subtree's expected value.

use super::{Node, SplitRule, Tree, TreeEnsemble};

/// Trees walked side by side.
const LANES: usize = 4;
/// `Step::feature` of a leaf (its value is in `threshold`).
const LEAF: u32 = u32::MAX;
/// Flag: a zero goes to the default side (LightGBM's zero as missing).
const ZERO_MISSING: u32 = 1 << 31;
/// Flag: that default side is the left one.
const DEFAULT_LEFT: u32 = 1 << 30;
/// The feature index below the flags.
const FEATURE: u32 = DEFAULT_LEFT - 1;

#[derive(Clone, Copy)]
struct Step {
    /// The split's threshold, or the leaf's value.
    threshold: f64,
    /// Feature index and flags, or [`LEAF`].
    feature: u32,
    /// The left child; the right one follows it.
    next: u32,
}

/// Every tree of an ensemble as steps, with where each tree starts.
pub(super) struct Layout {
    steps: Vec<Step>,
    roots: Vec<u32>,
}

impl Layout {
    /// The layout of `trees`; `None` when they are not trees that fit one
    /// (a node reached twice, a child out of range, indices past the flags):
    /// the caller then walks the trained nodes.
    pub(super) fn of(trees: &[Tree]) -> Option<Layout> {
        let mut steps = Vec::with_capacity(trees.iter().map(|t| t.nodes.len()).sum());
        let mut roots = Vec::with_capacity(trees.len());
        for tree in trees {
            roots.push(u32::try_from(steps.len()).ok()?);
            lay_out(tree, &mut steps)?;
        }
        Some(Layout { steps, roots })
    }

    /// Calls `visit(tree, leaf value)` for every tree, in tree order.
    pub(super) fn leaves(&self, rule: SplitRule, x: &[f64], visit: impl FnMut(usize, f64)) {
        match rule {
            SplitRule::LessOrEqual => self.walk::<false>(x, visit),
            SplitRule::LessF32 => self.walk::<true>(x, visit),
        }
    }

    fn walk<const F32: bool>(&self, x: &[f64], mut visit: impl FnMut(usize, f64)) {
        let steps = &self.steps[..];
        for (c, roots) in self.roots.chunks(LANES).enumerate() {
            let mut at = [0usize; LANES];
            for (a, &r) in at.iter_mut().zip(roots) {
                *a = r as usize;
            }
            let at = &mut at[..roots.len()];
            loop {
                let mut moved = false;
                for a in at.iter_mut() {
                    let s = steps[*a];
                    if s.feature != LEAF {
                        *a = s.next as usize + usize::from(goes_right::<F32>(&s, x));
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
            for (lane, &a) in at.iter().enumerate() {
                visit(c * LANES + lane, steps[a].threshold);
            }
        }
    }
}

/// The side a row takes at a split: the comparisons of
/// [`TreeEnsemble::goes_left`], negated.
#[inline(always)]
fn goes_right<const F32: bool>(s: &Step, x: &[f64]) -> bool {
    let v = x[(s.feature & FEATURE) as usize];
    if s.feature & ZERO_MISSING != 0 && v.abs() <= 1e-35 {
        return s.feature & DEFAULT_LEFT == 0;
    }
    let left = if F32 {
        (v as f32) < (s.threshold as f32)
    } else {
        v <= s.threshold
    };
    !left
}

/// Appends one tree breadth first; `None` if it is not a tree of at most
/// its own node count.
fn lay_out(tree: &Tree, steps: &mut Vec<Step>) -> Option<()> {
    let start = steps.len();
    let budget = start + tree.nodes.len();
    let mut queue = std::collections::VecDeque::from([(0usize, start)]);
    steps.push(step_of(tree.nodes.first()?, 0)?);
    while let Some((node, at)) = queue.pop_front() {
        let n = tree.nodes.get(node)?;
        if n.feature == super::LEAF {
            continue;
        }
        let next = steps.len();
        if next + 2 > budget {
            return None;
        }
        for child in [n.left, n.right] {
            let c = tree.nodes.get(child as usize)?;
            steps.push(step_of(c, 0)?);
            queue.push_back((child as usize, steps.len() - 1));
        }
        steps[at].next = u32::try_from(next).ok()?;
    }
    Some(())
}

/// One node as a step (its `next` filled in by [`lay_out`]).
fn step_of(n: &Node, next: u32) -> Option<Step> {
    if n.feature == super::LEAF {
        return Some(Step {
            threshold: n.value,
            feature: LEAF,
            next,
        });
    }
    if n.feature > FEATURE {
        return None;
    }
    let mut feature = n.feature;
    if n.zero_missing {
        feature |= ZERO_MISSING;
        if n.default_left {
            feature |= DEFAULT_LEFT;
        }
    }
    Some(Step {
        threshold: n.threshold,
        feature,
        next,
    })
}

/// The ensemble's layout, built on first use. Not part of the model: two
/// ensembles with the same trees are equal whether or not either was
/// walked, and it is never serialised.
#[derive(Default)]
pub struct WalkCache(std::sync::OnceLock<Option<Layout>>);

impl WalkCache {
    pub(super) fn get(&self, ensemble: &TreeEnsemble) -> Option<&Layout> {
        self.0.get_or_init(|| Layout::of(&ensemble.trees)).as_ref()
    }
}

impl Clone for WalkCache {
    /// A clone may have its trees changed, so it lays them out anew.
    fn clone(&self) -> Self {
        WalkCache::default()
    }
}

impl PartialEq for WalkCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for WalkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalkCache")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Node, SplitRule, Tree, TreeEnsemble};
    use super::Layout;

    fn split(feature: u32, threshold: f64, left: u32, right: u32) -> Node {
        Node {
            feature,
            threshold,
            left,
            right,
            ..Node::leaf(0.0)
        }
    }

    /// Trees whose children are not next to each other and whose leaves
    /// sit at different depths, one with LightGBM's zero-as-missing.
    fn ensemble(rule: SplitRule) -> TreeEnsemble {
        let deep = Tree {
            nodes: vec![
                split(0, 0.5, 4, 1),
                split(1, -1.0, 2, 3),
                Node::leaf(10.0),
                Node::leaf(20.0),
                split(2, 0.25, 6, 5),
                Node::leaf(30.0),
                Node::leaf(40.0),
            ],
        };
        let zero = Tree {
            nodes: vec![
                Node {
                    zero_missing: true,
                    default_left: false,
                    ..split(1, 0.0, 1, 2)
                },
                Node::leaf(1.0),
                Node::leaf(2.0),
            ],
        };
        let lone = Tree {
            nodes: vec![Node::leaf(0.5)],
        };
        TreeEnsemble {
            n_features: 3,
            groups: 1,
            rule,
            base: vec![0.0],
            scale: 1.0,
            trees: vec![deep.clone(), zero.clone(), lone.clone(), deep, zero, lone],
            walk: Default::default(),
        }
    }

    #[test]
    fn the_laid_out_walk_reaches_the_leaves_the_trained_nodes_reach() {
        let grid = [-2.0, -1.0, -1e-40, 0.0, 0.1f32 as f64, 0.25, 0.5, 0.7, 3.0];
        for rule in [SplitRule::LessOrEqual, SplitRule::LessF32] {
            let e = ensemble(rule);
            let layout = Layout::of(&e.trees).expect("trees lay out");
            for &a in &grid {
                for &b in &grid {
                    for &c in &grid {
                        let x = [a, b, c];
                        let mut walked = Vec::new();
                        layout.leaves(rule, &x, |t, v| walked.push((t, v)));
                        let trained: Vec<(usize, f64)> = e
                            .trees
                            .iter()
                            .enumerate()
                            .map(|(t, tree)| (t, tree.nodes[e.leaf_of(tree, &x)].value))
                            .collect();
                        assert_eq!(walked, trained, "{rule:?} at {x:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_node_reached_twice_or_a_child_out_of_range_is_walked_the_trained_way() {
        let shared = Tree {
            nodes: vec![split(0, 0.0, 1, 1), Node::leaf(1.0)],
        };
        assert!(Layout::of(&[shared]).is_none());
        let out_of_range = Tree {
            nodes: vec![split(0, 0.0, 1, 9), Node::leaf(1.0)],
        };
        assert!(Layout::of(&[out_of_range]).is_none());
        let mut e = ensemble(SplitRule::LessOrEqual);
        e.trees.push(Tree {
            nodes: vec![split(0, 0.0, 1, 1), Node::leaf(1.0)],
        });
        let mut out = [0.0];
        e.margins_row(&[1.0, 1.0, 1.0], &mut out);
        assert_eq!(out[0], 2.0 * (20.0 + 2.0 + 0.5) + 1.0);
    }
}
