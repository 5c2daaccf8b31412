//! Linear and logistic (binary or multinomial) regression with an L2 penalty,
//! trained with argmin's L-BFGS.
//!
//! The loss is the mean over rows plus `l2 / 2 * ||w||^2` (intercepts are not
//! penalised). Regression targets are standardised while optimising, so the
//! penalty and the stopping tolerances mean the same for any target scale;
//! coefficients are mapped back to target units afterwards. Inputs are the
//! preprocessor's standardised columns, so a contribution `w_j * x_j` is the
//! effect of the feature relative to its training mean.

use argmin::core::{CostFunction, Error as ArgminError, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};

use super::outputs::{sigmoid, softmax_in_place, two_classes};
use super::{check_training_data, FittedModel, LinearParams, Trainer};
use crate::error::{internal, Result};
use crate::matrix::DenseMatrix;
use crate::task::Task;

const MAX_ITERS: u64 = 200;
const HISTORY: usize = 7;
const TOL_GRAD: f64 = 1e-7;
const TOL_COST: f64 = 1e-12;

/// What the linear predictor is turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearKind {
    Regression,
    /// One logit for the positive class (class 1).
    Binary,
    /// One logit per class, softmax.
    Multinomial,
}

/// A fitted linear model: `weights` is `n_outputs x n_features`, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub kind: LinearKind,
    pub n_features: usize,
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
}

/// `ln(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LinearModel {
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Shape invariants `predict_row` relies on.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let outputs = self.intercepts.len();
        let shape_ok = match self.kind {
            LinearKind::Regression | LinearKind::Binary => outputs == 1,
            LinearKind::Multinomial => outputs >= 3,
        } && self.weights.len() == outputs * self.n_features;
        let finite = self
            .weights
            .iter()
            .chain(&self.intercepts)
            .all(|v| v.is_finite());
        if shape_ok && finite {
            Ok(())
        } else {
            Err(format!(
                "linear model has {} weights and {outputs} intercepts for {} features",
                self.weights.len(),
                self.n_features
            ))
        }
    }

    pub fn output_width(&self) -> usize {
        match self.kind {
            LinearKind::Regression => 1,
            LinearKind::Binary => 2,
            LinearKind::Multinomial => self.intercepts.len(),
        }
    }

    fn logit(&self, x: &[f64], k: usize) -> f64 {
        let p = self.n_features;
        dot(&self.weights[k * p..(k + 1) * p], x) + self.intercepts[k]
    }

    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        match self.kind {
            LinearKind::Regression => out[0] = self.logit(x, 0),
            LinearKind::Binary => two_classes(sigmoid(self.logit(x, 0)), out),
            LinearKind::Multinomial => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = self.logit(x, k);
                }
                softmax_in_place(out);
            }
        }
    }

    /// Row of weights explaining `class` (binary has only the positive row).
    fn explained_row(&self, class: usize) -> usize {
        match self.kind {
            LinearKind::Multinomial => class.min(self.intercepts.len().saturating_sub(1)),
            _ => 0,
        }
    }

    pub fn contributions_row(&self, x: &[f64], class: usize, out: &mut [f64]) {
        let k = self.explained_row(class);
        let p = self.n_features;
        for ((o, w), v) in out.iter_mut().zip(&self.weights[k * p..(k + 1) * p]).zip(x) {
            *o = w * v;
        }
        if let Some(base) = out.get_mut(p) {
            *base = self.intercepts[k];
        }
    }

    pub fn margin_row(&self, x: &[f64], class: usize) -> f64 {
        self.logit(x, self.explained_row(class))
    }
}

/// The penalised mean loss, as an argmin problem over `[w_0, b_0, w_1, b_1, ...]`.
struct Objective<'a> {
    x: &'a DenseMatrix,
    y: &'a [f64],
    kind: LinearKind,
    outputs: usize,
    l2: f64,
}

impl Objective<'_> {
    fn stride(&self) -> usize {
        self.x.cols + 1
    }

    fn logits(&self, param: &[f64], row: &[f64], z: &mut [f64]) {
        let s = self.stride();
        for (k, zk) in z.iter_mut().enumerate() {
            let block = &param[k * s..(k + 1) * s];
            *zk = dot(&block[..s - 1], row) + block[s - 1];
        }
    }

    /// Loss and (optionally) gradient in one pass over the data.
    fn evaluate(&self, param: &[f64], mut grad: Option<&mut [f64]>) -> f64 {
        let n = self.x.rows as f64;
        let s = self.stride();
        let mut z = vec![0.0; self.outputs];
        let mut residual = vec![0.0; self.outputs];
        let mut loss = 0.0;
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        for i in 0..self.x.rows {
            let row = self.x.row(i);
            let y = self.y[i];
            self.logits(param, row, &mut z);
            match self.kind {
                LinearKind::Regression => {
                    let r = z[0] - y;
                    loss += 0.5 * r * r;
                    residual[0] = r;
                }
                LinearKind::Binary => {
                    loss += softplus(z[0]) - y * z[0];
                    residual[0] = sigmoid(z[0]) - y;
                }
                LinearKind::Multinomial => {
                    let class = y as usize;
                    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                    loss += lse - z[class];
                    for (k, r) in residual.iter_mut().enumerate() {
                        *r = (z[k] - lse).exp() - f64::from(u8::from(k == class));
                    }
                }
            }
            if let Some(g) = grad.as_deref_mut() {
                for (k, &r) in residual.iter().enumerate() {
                    let block = &mut g[k * s..(k + 1) * s];
                    for (gj, xj) in block[..s - 1].iter_mut().zip(row) {
                        *gj += r * xj;
                    }
                    block[s - 1] += r;
                }
            }
        }
        loss /= n;
        let mut penalty = 0.0;
        for k in 0..self.outputs {
            for j in 0..s - 1 {
                let w = param[k * s + j];
                penalty += w * w;
            }
        }
        if let Some(g) = grad {
            for k in 0..self.outputs {
                for j in 0..s {
                    let idx = k * s + j;
                    g[idx] /= n;
                    if j < s - 1 {
                        g[idx] += self.l2 * param[idx];
                    }
                }
            }
        }
        loss + 0.5 * self.l2 * penalty
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, param: &Vec<f64>) -> std::result::Result<f64, ArgminError> {
        Ok(self.evaluate(param, None))
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, param: &Vec<f64>) -> std::result::Result<Vec<f64>, ArgminError> {
        let mut g = vec![0.0; param.len()];
        self.evaluate(param, Some(&mut g));
        Ok(g)
    }
}

/// Trains [`LinearModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct LinearTrainer {
    pub params: LinearParams,
}

fn minimise(problem: Objective<'_>, init: Vec<f64>) -> Result<Vec<f64>> {
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), HISTORY)
        .with_tolerance_grad(TOL_GRAD)
        .and_then(|s| s.with_tolerance_cost(TOL_COST))
        .map_err(|e| internal(format!("L-BFGS configuration: {e}")))?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(init).max_iters(MAX_ITERS))
        .run()
        .map_err(|e| internal(format!("L-BFGS failed: {e}")))?;
    let best = result
        .state()
        .get_best_param()
        .cloned()
        .ok_or_else(|| internal("L-BFGS returned no parameters"))?;
    if best.iter().all(|v| v.is_finite()) {
        Ok(best)
    } else {
        Err(internal("L-BFGS produced non-finite coefficients"))
    }
}

impl Trainer for LinearTrainer {
    fn fit(&self, x: &DenseMatrix, y: &[f64], task: &Task) -> Result<FittedModel> {
        check_training_data(x, y, task)?;
        let p = x.cols;
        let n = y.len() as f64;
        let (kind, outputs) = match task {
            Task::Regression => (LinearKind::Regression, 1),
            Task::Classification { classes } if classes.len() == 2 => (LinearKind::Binary, 1),
            Task::Classification { classes } => (LinearKind::Multinomial, classes.len()),
        };
        let mut init = vec![0.0; outputs * (p + 1)];
        let model = match kind {
            LinearKind::Regression => {
                let mean = y.iter().sum::<f64>() / n;
                let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let scale = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
                let ys: Vec<f64> = y.iter().map(|v| (v - mean) / scale).collect();
                let problem = Objective {
                    x,
                    y: &ys,
                    kind,
                    outputs,
                    l2: self.params.l2,
                };
                let param = minimise(problem, init)?;
                LinearModel {
                    kind,
                    n_features: p,
                    weights: param[..p].iter().map(|w| w * scale).collect(),
                    intercepts: vec![param[p] * scale + mean],
                }
            }
            LinearKind::Binary | LinearKind::Multinomial => {
                // Starting at the class log-priors saves the first iterations
                // and keeps logits bounded for classes that are absent.
                for k in 0..outputs {
                    let class = if kind == LinearKind::Binary {
                        1.0
                    } else {
                        k as f64
                    };
                    let count = y.iter().filter(|&&v| v == class).count() as f64;
                    let rate = ((count + 0.5) / (n + 1.0)).clamp(1e-6, 1.0 - 1e-6);
                    init[k * (p + 1) + p] = if kind == LinearKind::Binary {
                        (rate / (1.0 - rate)).ln()
                    } else {
                        rate.ln()
                    };
                }
                let problem = Objective {
                    x,
                    y,
                    kind,
                    outputs,
                    l2: self.params.l2,
                };
                let param = minimise(problem, init)?;
                let mut weights = Vec::with_capacity(outputs * p);
                let mut intercepts = Vec::with_capacity(outputs);
                for block in param.chunks(p + 1) {
                    weights.extend_from_slice(&block[..p]);
                    intercepts.push(block[p]);
                }
                LinearModel {
                    kind,
                    n_features: p,
                    weights,
                    intercepts,
                }
            }
        };
        Ok(FittedModel::Linear(model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_data::{assert_explains, targets, uniform};

    fn fit(x: &DenseMatrix, y: &[f64], task: &Task, l2: f64) -> LinearModel {
        let trainer = LinearTrainer {
            params: LinearParams { l2 },
        };
        match trainer.fit(x, y, task) {
            Ok(FittedModel::Linear(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn linear_regression_recovers_known_coefficients() {
        let x = uniform(500, 3, 1);
        let y = targets(&x, |r| 3.0 * r[0] - 2.0 * r[1] + 0.5 * r[2] + 10.0);
        let m = fit(&x, &y, &Task::Regression, 1e-9);
        for (w, want) in m.weights.iter().zip([3.0, -2.0, 0.5]) {
            assert!((w - want).abs() < 1e-3, "{:?}", m.weights);
        }
        assert!((m.intercepts[0] - 10.0).abs() < 1e-3);
        // Contributions plus base reproduce the prediction.
        assert_explains(&FittedModel::Linear(m), x.row(7), 1e-9);
    }

    #[test]
    fn logistic_separates_a_separable_set() {
        let x = uniform(300, 2, 2);
        let y = targets(&x, |r| f64::from(u8::from(r[0] + r[1] > 0.0)));
        let task = Task::Classification {
            classes: vec!["a".into(), "b".into()],
        };
        let model = FittedModel::Linear(fit(&x, &y, &task, 1e-4));
        let probs = model.predict(&x);
        let correct = (0..x.rows)
            .filter(|&i| (probs[2 * i + 1] > 0.5) == (y[i] == 1.0))
            .count();
        assert!(correct >= 297, "{correct}/300");
        assert_explains(&model, x.row(0), 1e-6);
    }

    #[test]
    fn multinomial_learns_three_classes() {
        let x = uniform(600, 2, 3);
        let y = targets(&x, |r| {
            if r[0] > 0.7 {
                2.0
            } else if r[1] > 0.0 {
                1.0
            } else {
                0.0
            }
        });
        let task = Task::Classification {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let model = FittedModel::Linear(fit(&x, &y, &task, 1e-3));
        let probs = model.predict(&x);
        let acc = crate::metrics::compute(crate::metrics::Metric::Accuracy, &task, &y, &probs);
        assert!(acc.as_ref().is_ok_and(|a| *a > 0.9), "{acc:?}");
        let row_sum: f64 = probs[..3].iter().sum();
        assert!((row_sum - 1.0).abs() < 1e-12);
        assert_explains(&model, x.row(0), 1e-9);
    }
}
