//! The fitted model of the LightGBM, random forest and XGBoost families: a
//! [`TreeEnsemble`] converted from the library's model, the link from its
//! margins to outputs, and the library's own model text for export.

use serde::{Deserialize, Serialize};

use super::outputs::{softmax_in_place, two_classes};
use super::trees::TreeEnsemble;
use crate::task::Task;

/// How margins become outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Regression: the margin is the prediction.
    Identity,
    /// Binary: one margin, the positive class's log-odds.
    Sigmoid,
    /// Multiclass: one margin per class.
    Softmax,
}

impl Link {
    pub fn for_task(task: &Task) -> Link {
        match task.n_classes() {
            0 => Link::Identity,
            2 => Link::Sigmoid,
            _ => Link::Softmax,
        }
    }

    /// Margins per row for `task`: one per class for softmax, else one.
    pub fn groups(self, task: &Task) -> usize {
        match self {
            Link::Softmax => task.n_classes(),
            Link::Identity | Link::Sigmoid => 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeModel {
    pub link: Link,
    pub ensemble: TreeEnsemble,
    /// The model in the library's own format (LightGBM text, XGBoost JSON),
    /// loadable by that library anywhere; prediction never reads it.
    pub native: String,
}

impl TreeModel {
    pub fn n_features(&self) -> usize {
        self.ensemble.n_features
    }

    pub fn output_width(&self) -> usize {
        match self.link {
            Link::Identity => 1,
            Link::Sigmoid => 2,
            Link::Softmax => self.ensemble.groups,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.ensemble.validate()?;
        let groups = self.ensemble.groups;
        match self.link {
            Link::Identity | Link::Sigmoid if groups != 1 => {
                Err(format!("{:?} link with {groups} margins", self.link))
            }
            Link::Softmax if groups < 3 => Err(format!("softmax link with {groups} margins")),
            _ => Ok(()),
        }
    }

    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        match self.link {
            Link::Identity => out[0] = self.ensemble.margin_row(x, 0),
            Link::Sigmoid => {
                // The plain logistic form, as the libraries compute it.
                let p = 1.0 / (1.0 + (-self.ensemble.margin_row(x, 0)).exp());
                two_classes(p, out);
            }
            Link::Softmax => {
                self.ensemble.margins_row(x, out);
                softmax_in_place(out);
            }
        }
    }

    fn group(&self, class: usize) -> usize {
        match self.link {
            Link::Softmax => class,
            Link::Identity | Link::Sigmoid => 0,
        }
    }

    pub fn contributions_row(&self, x: &[f64], class: usize, out: &mut [f64]) {
        self.ensemble.contributions_row(x, self.group(class), out);
    }

    pub fn margin_row(&self, x: &[f64], class: usize) -> f64 {
        self.ensemble.margin_row(x, self.group(class))
    }

    /// Outputs (as [`TreeModel::predict_row`]) from library outputs that
    /// give one probability per row for binary tasks.
    #[cfg(any(feature = "lightgbm", feature = "xgboost"))]
    pub(crate) fn widen_binary(link: Link, outputs: &[f64]) -> Vec<f64> {
        match link {
            Link::Sigmoid => outputs.iter().flat_map(|&p| [1.0 - p, p]).collect(),
            Link::Identity | Link::Softmax => outputs.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trees::{Node, SplitRule, Tree};

    fn stump(value_left: f64, value_right: f64) -> Tree {
        let split = Node {
            feature: 0,
            left: 1,
            right: 2,
            ..Node::leaf(0.0)
        };
        Tree {
            nodes: vec![split, Node::leaf(value_left), Node::leaf(value_right)],
        }
    }

    #[test]
    fn links_turn_margins_into_probabilities() {
        let binary = TreeModel {
            link: Link::Sigmoid,
            ensemble: TreeEnsemble {
                n_features: 1,
                groups: 1,
                rule: SplitRule::LessOrEqual,
                base: vec![0.0],
                scale: 1.0,
                trees: vec![stump(-2.0, 2.0)],
                walk: Default::default(),
            },
            native: String::new(),
        };
        assert!(binary.validate().is_ok());
        let mut out = [0.0; 2];
        binary.predict_row(&[1.0], &mut out);
        assert!((out[1] - 1.0 / (1.0 + (-2.0f64).exp())).abs() < 1e-15);
        assert!((out[0] + out[1] - 1.0).abs() < 1e-15);

        let multi = TreeModel {
            link: Link::Softmax,
            ensemble: TreeEnsemble {
                n_features: 1,
                groups: 3,
                rule: SplitRule::LessOrEqual,
                base: vec![0.0; 3],
                scale: 0.5,
                trees: vec![stump(1.0, 0.0), stump(0.0, 1.0), stump(0.0, 0.0)],
                walk: Default::default(),
            },
            native: String::new(),
        };
        assert!(multi.validate().is_ok());
        let mut out = [0.0; 3];
        multi.predict_row(&[1.0], &mut out);
        assert!(out[1] > out[0] && (out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(multi.margin_row(&[1.0], 1), 0.5);

        let mut wrong = multi.clone();
        wrong.link = Link::Sigmoid;
        assert!(wrong.validate().is_err());
    }
}
