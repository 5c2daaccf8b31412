//! Evaluation metrics for regression and classification, with their direction.
//!
//! Predictions are row-major with [`Task::output_width`] values per row: the
//! predicted value for regression, one probability per class otherwise.
//! Class targets are class indices stored as `f64`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{invalid, LearnError, Result};
use crate::task::Task;

/// Whether smaller or larger metric values are better: the HPO crate's
/// direction, so a metric's direction is a study's without mapping between
/// two enums.
pub use tracseq_hpo::Direction;

/// A model quality measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Area under the ROC curve; multiclass: macro one-vs-rest.
    Auc,
    /// Mean negative log-likelihood of the true class.
    LogLoss,
    Accuracy,
    /// Binary: F1 of the positive class; multiclass: macro F1.
    F1,
    Rmse,
    Mae,
    R2,
}

const ALL: [Metric; 7] = [
    Metric::Auc,
    Metric::LogLoss,
    Metric::Accuracy,
    Metric::F1,
    Metric::Rmse,
    Metric::Mae,
    Metric::R2,
];

/// Probabilities are clipped this far from 0 and 1 so one confident mistake
/// costs a large but finite log loss.
const PROB_EPS: f64 = 1e-15;

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Auc => "auc",
            Metric::LogLoss => "log_loss",
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
        }
    }

    pub fn direction(self) -> Direction {
        match self {
            Metric::LogLoss | Metric::Rmse | Metric::Mae => Direction::Minimize,
            Metric::Auc | Metric::Accuracy | Metric::F1 | Metric::R2 => Direction::Maximize,
        }
    }

    /// The metric used when a study names none: RMSE for regression, AUC for
    /// binary and log loss for multiclass classification.
    pub fn default_for(task: &Task) -> Metric {
        match task {
            Task::Regression => Metric::Rmse,
            Task::Classification { classes } if classes.len() <= 2 => Metric::Auc,
            Task::Classification { .. } => Metric::LogLoss,
        }
    }

    pub fn applies_to(self, task: &Task) -> bool {
        let regression = matches!(self, Metric::Rmse | Metric::Mae | Metric::R2);
        regression != task.is_classification()
    }

    /// Checks that the metric fits the task, naming both if not.
    pub fn check_applies(self, task: &Task) -> Result<()> {
        if self.applies_to(task) {
            Ok(())
        } else {
            let kind = if task.is_classification() {
                "classification"
            } else {
                "regression"
            };
            Err(invalid(format!(
                "metric '{self}' does not apply to a {kind} task"
            )))
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = LearnError;

    fn from_str(s: &str) -> Result<Metric> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        let wanted = if wanted == "logloss" {
            "log_loss".to_string()
        } else {
            wanted
        };
        ALL.into_iter().find(|m| m.name() == wanted).ok_or_else(|| {
            invalid(format!(
                "unknown metric '{s}'; expected one of {}",
                ALL.map(Metric::name).join(", ")
            ))
        })
    }
}

/// Computes one metric. Errors if the metric does not fit the task, the
/// shapes disagree, or the metric is undefined for this data (e.g. AUC when
/// only one class is present).
pub fn compute(metric: Metric, task: &Task, y_true: &[f64], predictions: &[f64]) -> Result<f64> {
    metric.check_applies(task)?;
    let width = task.output_width();
    if y_true.is_empty() || predictions.len() != y_true.len() * width {
        return Err(invalid(format!(
            "metric '{metric}': {} targets need {} predictions, got {}",
            y_true.len(),
            y_true.len() * width,
            predictions.len()
        )));
    }
    let value = match metric {
        Metric::Rmse => mse(y_true, predictions).sqrt(),
        Metric::Mae => {
            y_true
                .iter()
                .zip(predictions)
                .map(|(y, p)| (y - p).abs())
                .sum::<f64>()
                / y_true.len() as f64
        }
        Metric::R2 => r2(y_true, predictions),
        Metric::LogLoss => log_loss(y_true, predictions, width),
        Metric::Accuracy => {
            let hits = y_true
                .iter()
                .zip(predictions.chunks(width))
                .filter(|(y, p)| argmax(p) == **y as usize)
                .count();
            hits as f64 / y_true.len() as f64
        }
        Metric::F1 => f1(y_true, predictions, width),
        Metric::Auc => auc_multi(y_true, predictions, width),
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(invalid(format!(
            "metric '{metric}' is undefined for these {} rows (e.g. only one class present)",
            y_true.len()
        )))
    }
}

/// Every metric that fits the task and is defined on this data, by name.
pub fn all_metrics(task: &Task, y_true: &[f64], predictions: &[f64]) -> BTreeMap<String, f64> {
    ALL.into_iter()
        .filter(|m| m.applies_to(task))
        .filter_map(|m| {
            compute(m, task, y_true, predictions)
                .ok()
                .map(|v| (m.name().to_string(), v))
        })
        .collect()
}

/// Index of the largest value; the first one on ties, so results are stable.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn mse(y: &[f64], p: &[f64]) -> f64 {
    y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / y.len() as f64
}

/// 1 for a perfect fit; 0 for a constant target (no variance to explain)
/// unless the fit is perfect.
fn r2(y: &[f64], p: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = y.iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum();
    if ss_tot == 0.0 {
        return if ss_res == 0.0 { 1.0 } else { 0.0 };
    }
    1.0 - ss_res / ss_tot
}

fn log_loss(y: &[f64], p: &[f64], width: usize) -> f64 {
    let total: f64 = y
        .iter()
        .zip(p.chunks(width))
        .map(|(&c, row)| {
            let prob = row.get(c as usize).copied().unwrap_or(0.0);
            -prob.clamp(PROB_EPS, 1.0 - PROB_EPS).ln()
        })
        .sum();
    total / y.len() as f64
}

fn f1(y: &[f64], p: &[f64], width: usize) -> f64 {
    let mut tp = vec![0usize; width];
    let mut fp = vec![0usize; width];
    let mut fn_ = vec![0usize; width];
    for (&c, row) in y.iter().zip(p.chunks(width)) {
        let truth = c as usize;
        let pred = argmax(row);
        if truth == pred {
            tp[truth] += 1;
        } else {
            if let Some(v) = fp.get_mut(pred) {
                *v += 1;
            }
            if let Some(v) = fn_.get_mut(truth) {
                *v += 1;
            }
        }
    }
    let score = |k: usize| {
        let denom = 2 * tp[k] + fp[k] + fn_[k];
        if denom == 0 {
            0.0
        } else {
            2.0 * tp[k] as f64 / denom as f64
        }
    };
    if width == 2 {
        return score(1);
    }
    // Classes that neither occur nor are predicted carry no information;
    // averaging them in as zeros would punish the model for their absence.
    let present: Vec<usize> = (0..width).filter(|&k| tp[k] + fp[k] + fn_[k] > 0).collect();
    if present.is_empty() {
        return f64::NAN;
    }
    present.iter().map(|&k| score(k)).sum::<f64>() / present.len() as f64
}

/// Rank-statistic (Mann-Whitney) AUC with average ranks for tied scores.
pub fn auc(positive: &[bool], scores: &[f64]) -> f64 {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks are 1-based; every member of a tie group gets their mean.
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if positive[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let n_pos = n_pos as f64;
    (rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg as f64)
}

fn auc_multi(y: &[f64], p: &[f64], width: usize) -> f64 {
    let class_auc = |k: usize| {
        let positive: Vec<bool> = y.iter().map(|&c| c as usize == k).collect();
        let scores: Vec<f64> = p.chunks(width).map(|row| row[k]).collect();
        auc(&positive, &scores)
    };
    if width == 2 {
        return class_auc(1);
    }
    let aucs: Vec<f64> = (0..width)
        .map(class_auc)
        .filter(|a| a.is_finite())
        .collect();
    if aucs.is_empty() {
        return f64::NAN;
    }
    aucs.iter().sum::<f64>() / aucs.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary() -> Task {
        Task::Classification {
            classes: vec!["no".into(), "yes".into()],
        }
    }

    fn close(a: Result<f64>, b: f64) {
        match a {
            Ok(a) => assert!((a - b).abs() < 1e-9, "{a} != {b}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn regression_metrics_by_hand() {
        let y = [1.0, 2.0, 3.0, 4.0];
        let p = [1.0, 3.0, 3.0, 2.0];
        close(
            compute(Metric::Rmse, &Task::Regression, &y, &p),
            (5.0f64 / 4.0).sqrt(),
        );
        close(compute(Metric::Mae, &Task::Regression, &y, &p), 3.0 / 4.0);
        // ss_tot = 5, ss_res = 5.
        close(compute(Metric::R2, &Task::Regression, &y, &p), 0.0);
    }

    #[test]
    fn auc_with_ties_matches_hand_count() {
        // Pairs (pos, neg): scores pos [0.8, 0.4], neg [0.4, 0.1].
        // 0.8>0.4, 0.8>0.1, 0.4=0.4 (half), 0.4>0.1 => 3.5 / 4.
        let a = auc(&[true, true, false, false], &[0.8, 0.4, 0.4, 0.1]);
        assert!((a - 0.875).abs() < 1e-12);
        assert!(auc(&[true, true], &[0.1, 0.2]).is_nan());
    }

    #[test]
    fn binary_classification_metrics_by_hand() {
        let y = [0.0, 0.0, 1.0, 1.0];
        let p = [0.9, 0.1, 0.4, 0.6, 0.3, 0.7, 0.8, 0.2];
        // Positive scores: 0.1, 0.6 | 0.7, 0.2 -> pairs: 0.7>0.1, 0.7>0.6, 0.2>0.1 => 3/4.
        close(compute(Metric::Auc, &binary(), &y, &p), 0.75);
        // Predictions: 0, 1, 1, 0 -> accuracy 0.5; positive class tp=1 fp=1 fn=1 -> f1 0.5.
        close(compute(Metric::Accuracy, &binary(), &y, &p), 0.5);
        close(compute(Metric::F1, &binary(), &y, &p), 0.5);
        let expected = -(0.9f64.ln() + 0.4f64.ln() + 0.7f64.ln() + 0.2f64.ln()) / 4.0;
        close(compute(Metric::LogLoss, &binary(), &y, &p), expected);
    }

    #[test]
    fn multiclass_macro_metrics() {
        let task = Task::Classification {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let y = [0.0, 1.0, 2.0, 2.0];
        let p = [
            0.8, 0.1, 0.1, //
            0.2, 0.7, 0.1, //
            0.1, 0.2, 0.7, //
            0.6, 0.2, 0.2,
        ];
        // Per class F1: a: tp1 fp1 -> 2/3; b: 1; c: tp1 fn1 -> 2/3.
        close(
            compute(Metric::F1, &task, &y, &p),
            (2.0 / 3.0 + 1.0 + 2.0 / 3.0) / 3.0,
        );
        close(compute(Metric::Accuracy, &task, &y, &p), 0.75);
        // One-vs-rest AUCs: a: pos 0.8 vs neg 0.2,0.1,0.6 -> 1; b: 0.7 vs 0.1,0.2,0.2 -> 1;
        // c: pos 0.7,0.2 vs neg 0.1,0.1 -> 1.
        close(compute(Metric::Auc, &task, &y, &p), 1.0);
        let all = all_metrics(&task, &y, &p);
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            vec!["accuracy", "auc", "f1", "log_loss"]
        );
    }

    #[test]
    fn names_directions_defaults_and_errors() {
        assert_eq!("log_loss".parse::<Metric>().ok(), Some(Metric::LogLoss));
        assert_eq!("RMSE".parse::<Metric>().ok(), Some(Metric::Rmse));
        assert!("bogus".parse::<Metric>().is_err());
        assert_eq!(Metric::Auc.direction(), Direction::Maximize);
        assert_eq!(Metric::Mae.direction(), Direction::Minimize);
        assert_eq!(
            serde_json::to_string(&Metric::LogLoss).ok().as_deref(),
            Some("\"log_loss\"")
        );
        assert_eq!(
            serde_json::to_string(&Direction::Minimize).ok().as_deref(),
            Some("\"minimize\"")
        );
        assert_eq!(Metric::default_for(&Task::Regression), Metric::Rmse);
        assert_eq!(Metric::default_for(&binary()), Metric::Auc);
        assert!(compute(Metric::Rmse, &binary(), &[0.0], &[0.5, 0.5]).is_err());
        assert!(compute(Metric::Rmse, &Task::Regression, &[0.0], &[0.5, 0.5]).is_err());
        assert!(compute(Metric::Auc, &binary(), &[1.0], &[0.5, 0.5]).is_err());
    }
}
