//! Gradient-boosted trees with forust-ml: squared loss for regression, log
//! loss for binary, one-vs-rest boosters for multiclass.
//!
//! Boosters run single-threaded with a fixed seed, so the same data, params
//! and seed give the same trees (workers already run one trial per core).
//! Prediction and contributions walk the trees directly for one row, which
//! avoids forust's per-call matrix allocation on the serving path.
//! Contributions use the path-attribution ("weight", Saabas) method, which
//! sums exactly to the margin and costs one root-to-leaf walk per tree.

use forust_ml::objective::ObjectiveType;
use forust_ml::sampler::SampleMethod;
use forust_ml::{GradientBooster, Matrix};
use serde::{Deserialize, Serialize, Serializer};

use super::outputs::two_classes;
use super::{check_training_data, FittedModel, GbmParams, Trainer};
use crate::error::{internal, LearnError, Result};
use crate::matrix::DenseMatrix;
use crate::task::Task;

/// Histogram bins per feature. Fewer than forust's default 256 keeps split
/// search cheap on the small tables trials see, at no measurable accuracy
/// cost on the lab data.
const NBINS: u16 = 64;

/// How booster margins become outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GbmKind {
    Regression,
    /// One booster for the positive class.
    Binary,
    /// One booster per class; sigmoid outputs normalised to sum to 1.
    OneVsRest,
}

/// A fitted boosted-tree model.
#[derive(Deserialize)]
#[serde(try_from = "GbmRepr")]
pub struct GbmModel {
    pub kind: GbmKind,
    pub n_features: usize,
    boosters: Vec<GradientBooster>,
}

/// Stored form: boosters as forust's own JSON dumps, so the trees can be
/// read back by any forust-compatible tool.
#[derive(Serialize, Deserialize)]
struct GbmRepr {
    kind: GbmKind,
    n_features: usize,
    boosters: Vec<String>,
}

impl TryFrom<GbmRepr> for GbmModel {
    type Error = LearnError;

    fn try_from(r: GbmRepr) -> Result<GbmModel> {
        let boosters = r
            .boosters
            .iter()
            .map(|s| GradientBooster::from_json(s))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| LearnError::Corrupt(format!("gbm booster: {e}")))?;
        let expected = match r.kind {
            GbmKind::Regression | GbmKind::Binary => 1,
            GbmKind::OneVsRest => boosters.len().max(3),
        };
        // Children must come after their parent (as forust builds them) so a
        // walk always ends, and indices must stay inside the tree.
        let bad_tree = boosters.iter().flat_map(|b| &b.trees).any(|t| {
            t.nodes.is_empty()
                || t.nodes.iter().enumerate().any(|(i, n)| {
                    !n.is_leaf
                        && (n.split_feature >= r.n_features
                            || [n.left_child, n.right_child, n.missing_node]
                                .iter()
                                .any(|&c| c <= i || c >= t.nodes.len()))
                })
        });
        if boosters.len() != expected || bad_tree {
            return Err(LearnError::Corrupt(
                "gbm model: booster count or split features do not match its shape".into(),
            ));
        }
        Ok(GbmModel {
            kind: r.kind,
            n_features: r.n_features,
            boosters,
        })
    }
}

impl Serialize for GbmModel {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let boosters = self
            .boosters
            .iter()
            .map(GradientBooster::json_dump)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(serde::ser::Error::custom)?;
        GbmRepr {
            kind: self.kind,
            n_features: self.n_features,
            boosters,
        }
        .serialize(serializer)
    }
}

impl std::fmt::Debug for GbmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let trees: Vec<usize> = self.boosters.iter().map(|b| b.trees.len()).collect();
        f.debug_struct("GbmModel")
            .field("kind", &self.kind)
            .field("n_features", &self.n_features)
            .field("trees_per_booster", &trees)
            .finish()
    }
}

/// The plain logistic form this family has always served; not the shared
/// [`super::outputs::sigmoid`], whose other form for negative margins would
/// move served probabilities in their last bits.
fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn margin(booster: &GradientBooster, x: &[f64]) -> f64 {
    let n = booster.prediction_iteration.unwrap_or(booster.trees.len());
    booster.base_score
        + booster
            .trees
            .iter()
            .take(n)
            .map(|t| t.predict_row_from_row_slice(x, &booster.missing))
            .sum::<f64>()
}

impl GbmModel {
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn output_width(&self) -> usize {
        match self.kind {
            GbmKind::Regression => 1,
            GbmKind::Binary => 2,
            GbmKind::OneVsRest => self.boosters.len(),
        }
    }

    /// Output of a single-booster model from its margin.
    pub(crate) fn output_from_margin(&self, margin: f64, out: &mut [f64]) {
        if self.kind == GbmKind::Regression {
            out[0] = margin;
        } else {
            two_classes(sigmoid(margin), out);
        }
    }

    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) {
        match self.kind {
            GbmKind::Regression | GbmKind::Binary => {
                self.output_from_margin(margin(&self.boosters[0], x), out)
            }
            GbmKind::OneVsRest => {
                let mut sum = 0.0;
                for (o, b) in out.iter_mut().zip(&self.boosters) {
                    *o = sigmoid(margin(b, x));
                    sum += *o;
                }
                for o in out.iter_mut() {
                    *o /= sum;
                }
            }
        }
    }

    fn booster_for(&self, class: usize) -> &GradientBooster {
        match self.kind {
            GbmKind::OneVsRest => &self.boosters[class.min(self.boosters.len() - 1)],
            _ => &self.boosters[0],
        }
    }

    pub fn contributions_row(&self, x: &[f64], class: usize, out: &mut [f64]) {
        let booster = self.booster_for(class);
        let n = booster.prediction_iteration.unwrap_or(booster.trees.len());
        if let Some(base) = out.last_mut() {
            *base = booster.base_score;
        }
        for tree in booster.trees.iter().take(n) {
            tree.predict_contributions_row_weight(x, out, &booster.missing);
        }
    }

    pub fn margin_row(&self, x: &[f64], class: usize) -> f64 {
        margin(self.booster_for(class), x)
    }
}

/// Trains [`GbmModel`]s.
#[derive(Debug, Clone, Copy)]
pub struct GbmTrainer {
    pub params: GbmParams,
    pub seed: u64,
}

impl GbmTrainer {
    fn booster(&self, objective: ObjectiveType) -> GradientBooster {
        let p = &self.params;
        let sample_method = if p.subsample < 1.0 {
            SampleMethod::Random
        } else {
            SampleMethod::None
        };
        GradientBooster::default()
            .set_objective_type(objective)
            .set_iterations(p.iterations)
            .set_learning_rate(p.learning_rate as f32)
            .set_max_depth(p.max_depth)
            .set_min_leaf_weight(p.min_leaf_weight as f32)
            .set_l2(p.l2 as f32)
            .set_subsample(p.subsample as f32)
            .set_sample_method(sample_method)
            .set_seed(self.seed)
            .set_parallel(false)
            .set_num_threads(Some(1))
            .set_nbins(NBINS)
    }

    fn fit_one(
        &self,
        x: &Matrix<f64>,
        y: &[f64],
        objective: ObjectiveType,
    ) -> Result<GradientBooster> {
        let squared = matches!(objective, ObjectiveType::SquaredLoss);
        let mut booster = self.booster(objective);
        if squared {
            booster = booster.set_initialize_base_score(true);
        } else {
            // forust's own initial log-odds is infinite when a class is
            // absent from a fold; a clipped prior keeps it finite.
            let rate = (y.iter().sum::<f64>() + 0.5) / (y.len() as f64 + 1.0);
            let rate = rate.clamp(1e-4, 1.0 - 1e-4);
            booster = booster
                .set_initialize_base_score(false)
                .set_base_score((rate / (1.0 - rate)).ln());
        }
        booster
            .fit_unweighted(x, y, None)
            .map_err(|e| internal(format!("gbm training failed: {e}")))?;
        Ok(booster)
    }
}

impl Trainer for GbmTrainer {
    fn fit(&self, x: &DenseMatrix, y: &[f64], task: &Task) -> Result<FittedModel> {
        check_training_data(x, y, task)?;
        let columns = x.to_column_major();
        let matrix = Matrix::new(&columns, x.rows, x.cols);
        let (kind, boosters) = match task {
            Task::Regression => (
                GbmKind::Regression,
                vec![self.fit_one(&matrix, y, ObjectiveType::SquaredLoss)?],
            ),
            Task::Classification { classes } if classes.len() == 2 => (
                GbmKind::Binary,
                vec![self.fit_one(&matrix, y, ObjectiveType::LogLoss)?],
            ),
            Task::Classification { classes } => {
                let boosters = (0..classes.len())
                    .map(|k| {
                        let yk: Vec<f64> = y
                            .iter()
                            .map(|&v| f64::from(u8::from(v as usize == k)))
                            .collect();
                        self.fit_one(&matrix, &yk, ObjectiveType::LogLoss)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (GbmKind::OneVsRest, boosters)
            }
        };
        Ok(FittedModel::Gbm(GbmModel {
            kind,
            n_features: x.cols,
            boosters,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{compute, Metric};
    use crate::model::linear::LinearTrainer;
    use crate::model::test_data::{assert_explains, targets, uniform};
    use crate::model::LinearParams;

    fn trainer(seed: u64) -> GbmTrainer {
        GbmTrainer {
            params: GbmParams {
                iterations: 100,
                subsample: 0.8,
                ..GbmParams::default()
            },
            seed,
        }
    }

    #[test]
    fn gbm_fits_a_nonlinear_function_better_than_linear() {
        let x = uniform(800, 2, 5);
        let y = targets(&x, |r| (2.0 * r[0]).sin() * 3.0 + r[1] * r[1]);
        let (train, test): (Vec<usize>, Vec<usize>) = (0..x.rows).partition(|i| i % 4 != 0);
        let (xt, yt) = (
            x.select_rows(&train),
            train.iter().map(|&i| y[i]).collect::<Vec<_>>(),
        );
        let (xv, yv) = (
            x.select_rows(&test),
            test.iter().map(|&i| y[i]).collect::<Vec<_>>(),
        );
        let rmse = |m: &FittedModel| compute(Metric::Rmse, &Task::Regression, &yv, &m.predict(&xv));
        let gbm = trainer(1).fit(&xt, &yt, &Task::Regression);
        let linear = LinearTrainer {
            params: LinearParams::default(),
        }
        .fit(&xt, &yt, &Task::Regression);
        let (Ok(gbm), Ok(linear)) = (gbm, linear) else {
            panic!("fit failed")
        };
        let (Ok(g), Ok(l)) = (rmse(&gbm), rmse(&linear)) else {
            panic!("rmse failed")
        };
        assert!(g < 0.5 * l, "gbm {g} vs linear {l}");

        // Contributions plus base equal the prediction.
        assert_explains(&gbm, xv.row(3), 1e-6);
    }

    #[test]
    fn same_seed_same_model_and_serde_round_trip() {
        let x = uniform(300, 3, 9);
        let y = targets(&x, |r| r[0] * r[2]);
        let a = trainer(4).fit(&x, &y, &Task::Regression).ok();
        let b = trainer(4).fit(&x, &y, &Task::Regression).ok();
        let (Some(a), Some(b)) = (a, b) else {
            panic!("fit failed")
        };
        assert_eq!(a.predict(&x), b.predict(&x));
        let json = serde_json::to_string(&a).unwrap_or_default();
        let back: FittedModel = match serde_json::from_str(&json) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(back.predict(&x), a.predict(&x));
        assert!(serde_json::from_str::<FittedModel>(
            r#"{"family":"gbm","kind":"binary","n_features":1,"boosters":["{"]}"#
        )
        .is_err());
    }

    #[test]
    fn binary_and_multiclass_probabilities() {
        let x = uniform(400, 2, 11);
        let y3 = targets(&x, |r| {
            f64::from(u8::from(r[0] > 0.0) + u8::from(r[1] > 1.0))
        });
        let task3 = Task::Classification {
            classes: vec!["a".into(), "b".into(), "c".into()],
        };
        let Ok(m) = trainer(1).fit(&x, &y3, &task3) else {
            panic!("fit failed")
        };
        let p = m.predict(&x);
        assert!((p[..3].iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(compute(Metric::Accuracy, &task3, &y3, &p).is_ok_and(|a| a > 0.9));
        assert_explains(&m, x.row(0), 1e-6);

        let y2: Vec<f64> = y3.iter().map(|&v| f64::from(u8::from(v > 0.0))).collect();
        let task2 = Task::Classification {
            classes: vec!["n".into(), "y".into()],
        };
        let Ok(m) = trainer(1).fit(&x, &y2, &task2) else {
            panic!("fit failed")
        };
        let p = m.predict(&x);
        assert!(compute(Metric::Auc, &task2, &y2, &p).is_ok_and(|a| a > 0.95));
        assert_explains(&m, x.row(1), 1e-6);
    }
}
