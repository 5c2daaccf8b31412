//! Live performance: how good a model's served answers were, once the lab
//! has reported what really happened (the measured outcome of a sample).
//!
//! A logged answer's output (`value`, and for classifiers `label` and
//! `probabilities`) is paired with its reported outcome; every pair gives
//! one loss per metric (the error, a hit or miss, the log loss), and a
//! metric is the mean of its losses with a 95% confidence interval. With
//! fewer than [`MIN_OUTCOMES`] outcomes a figure says it is not enough to
//! judge by rather than pretending to be precise.
//!
//! Per-pair losses are also what comparing two variants needs: the
//! analysis of an A/B test compares their means.

use serde::Serialize;
use serde_json::Value;

/// Outcomes below which a live metric is reported as not yet enough.
pub const MIN_OUTCOMES: usize = 30;
/// Probabilities are clipped this far from 0 and 1 (as in training).
const PROB_EPS: f64 = 1e-15;
/// The standard normal's 97.5% quantile: two-sided 95% intervals.
pub(crate) const Z95: f64 = 1.959_963_984_540_054;
/// The most classes a refusal lists.
const LISTED_CLASSES: usize = 20;

/// One live metric over reported outcomes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveMetric {
    pub metric: &'static str,
    pub outcomes: usize,
    /// Absent without outcomes.
    pub value: Option<f64>,
    /// The 95% confidence interval of `value` (normal approximation of the
    /// mean loss; Wilson's interval for accuracy).
    pub ci95: Option<[f64; 2]>,
    /// Whether there are at least [`MIN_OUTCOMES`] outcomes.
    pub enough: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether an output is a classifier's (it names a label).
fn is_classification(output: &Value) -> bool {
    output.get("label").is_some()
}

/// A class label (or a category) as reports and requests may write it: a
/// text, or a number or boolean that stands for one.
pub(crate) fn label_of(actual: &Value) -> Option<String> {
    match actual {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks a reported outcome against the answer it belongs to: a finite
/// number for a regression, one of the model's classes for a classifier.
/// The message says what was expected.
pub fn check_actual(output: &Value, actual: &Value) -> Result<(), String> {
    if is_classification(output) {
        let classes: Vec<&String> = output
            .get("probabilities")
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        match label_of(actual) {
            Some(label) if classes.iter().any(|c| **c == label) => Ok(()),
            _ => {
                let mut listed: Vec<&str> = classes
                    .iter()
                    .take(LISTED_CLASSES)
                    .map(|c| c.as_str())
                    .collect();
                if classes.len() > LISTED_CLASSES {
                    listed.push("…");
                }
                Err(format!(
                    "actual must be one of the model's classes: {}",
                    listed.join(", ")
                ))
            }
        }
    } else {
        match actual.as_f64() {
            Some(x) if x.is_finite() => Ok(()),
            _ => Err("actual must be a finite number: the model predicts a value".into()),
        }
    }
}

/// Per-pair losses of answers against their outcomes, per live metric:
/// squared and absolute errors (for RMSE and MAE) of a regression, hits
/// and log losses of a classifier. What a metric is the mean of, and what
/// comparing two variants tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Losses {
    pub by_metric: Vec<(&'static str, Vec<f64>)>,
}

impl Losses {
    pub fn of(&self, metric: &str) -> Option<&[f64]> {
        self.by_metric
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, l)| l.as_slice())
    }
}

/// The [`Losses`] of answers paired with their outcomes (`(output,
/// actual)`, each checked with [`check_actual`]; pairs that fail it are
/// left out). Empty when there are no pairs.
pub fn losses(pairs: &[(&Value, &Value)]) -> Losses {
    let Some((first, _)) = pairs.first() else {
        return Losses::default();
    };
    if is_classification(first) {
        let mut hits = Vec::new();
        let mut logs = Vec::new();
        for (output, actual) in pairs {
            if !is_classification(output) || check_actual(output, actual).is_err() {
                continue;
            }
            let label = label_of(actual).unwrap_or_default();
            let hit = output.get("label").and_then(Value::as_str) == Some(label.as_str());
            hits.push(if hit { 1.0 } else { 0.0 });
            let p = output
                .get("probabilities")
                .and_then(|p| p.get(&label))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
                .clamp(PROB_EPS, 1.0 - PROB_EPS);
            logs.push(-p.ln());
        }
        Losses {
            by_metric: vec![("accuracy", hits), ("log_loss", logs)],
        }
    } else {
        let errors: Vec<f64> = pairs
            .iter()
            .filter(|(output, actual)| {
                !is_classification(output) && check_actual(output, actual).is_ok()
            })
            .filter_map(|(output, actual)| Some(output.get("value")?.as_f64()? - actual.as_f64()?))
            .collect();
        Losses {
            by_metric: vec![
                ("rmse", errors.iter().map(|e| e * e).collect()),
                ("mae", errors.iter().map(|e| e.abs()).collect()),
            ],
        }
    }
}

/// The live metrics of answers paired with their outcomes (`(output,
/// actual)`, each checked with [`check_actual`]; pairs that fail it are
/// left out): RMSE and MAE for a regression, accuracy and log loss for a
/// classifier. Empty when there are no pairs.
pub fn live_metrics(pairs: &[(&Value, &Value)]) -> Vec<LiveMetric> {
    metrics_of(&losses(pairs))
}

/// The live metrics of per-pair [`Losses`].
pub fn metrics_of(l: &Losses) -> Vec<LiveMetric> {
    l.by_metric
        .iter()
        .map(|(metric, xs)| match *metric {
            "accuracy" => accuracy(xs),
            "rmse" => {
                let mut rmse = mean_metric("rmse", xs);
                // The RMSE is the root of the mean squared error, and so
                // is its interval's every bound.
                rmse.value = rmse.value.map(f64::sqrt);
                rmse.ci95 = rmse.ci95.map(|[lo, hi]| [lo.max(0.0).sqrt(), hi.sqrt()]);
                rmse
            }
            "mae" => mean_metric("mae", xs),
            _ => mean_metric("log_loss", xs),
        })
        .collect()
}

/// Mean and sample standard deviation.
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

fn figure(
    metric: &'static str,
    n: usize,
    value: Option<f64>,
    ci95: Option<[f64; 2]>,
) -> LiveMetric {
    let enough = n >= MIN_OUTCOMES;
    LiveMetric {
        metric,
        outcomes: n,
        value,
        ci95,
        enough,
        note: (!enough).then(|| {
            format!("not enough outcomes yet: {n} of the {MIN_OUTCOMES} needed to judge by")
        }),
    }
}

/// The mean of per-outcome losses with a normal-approximation interval.
fn mean_metric(metric: &'static str, losses: &[f64]) -> LiveMetric {
    if losses.is_empty() {
        return figure(metric, 0, None, None);
    }
    let (mean, sd) = mean_sd(losses);
    let half = Z95 * sd / (losses.len() as f64).sqrt();
    figure(
        metric,
        losses.len(),
        Some(mean),
        Some([mean - half, mean + half]),
    )
}

/// The share of hits with Wilson's score interval (sound near 0 and 1 and
/// for small counts, where the normal approximation is not).
fn accuracy(hits: &[f64]) -> LiveMetric {
    let n = hits.len();
    if n == 0 {
        return figure("accuracy", 0, None, None);
    }
    let nf = n as f64;
    let p = hits.iter().sum::<f64>() / nf;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
    let half = Z95 / (1.0 + z2 / nf) * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    figure(
        "accuracy",
        n,
        Some(p),
        Some([(centre - half).max(0.0), (centre + half).min(1.0)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn regression_outcomes_give_rmse_and_mae_with_intervals() {
        let outputs: Vec<Value> = (0..40).map(|i| json!({"value": i as f64})).collect();
        let actuals: Vec<Value> = (0..40)
            .map(|i| json!(i as f64 + if i % 2 == 0 { 1.0 } else { -3.0 }))
            .collect();
        let pairs: Vec<(&Value, &Value)> = outputs.iter().zip(&actuals).collect();
        let m = live_metrics(&pairs);
        assert_eq!((m[0].metric, m[1].metric), ("rmse", "mae"));
        // Errors alternate -1 and +3: MSE 5, MAE 2.
        assert!(close(m[0].value.unwrap(), 5f64.sqrt()));
        assert!(close(m[1].value.unwrap(), 2.0));
        let [lo, hi] = m[1].ci95.unwrap();
        // sd of |e| = 1.0127 (n - 1 = 39): half-width 1.96 · sd / √40.
        let half = Z95 * (40.0f64 / 39.0).sqrt() / 40f64.sqrt();
        assert!(close(lo, 2.0 - half) && close(hi, 2.0 + half), "{lo} {hi}");
        let [lo, hi] = m[0].ci95.unwrap();
        assert!(lo < 5f64.sqrt() && 5f64.sqrt() < hi);
        assert!(m.iter().all(|f| f.enough && f.note.is_none()));
    }

    #[test]
    fn classifier_outcomes_give_accuracy_with_wilson_bounds_and_log_loss() {
        let hit =
            json!({"value": 0.8, "label": "pass", "probabilities": {"fail": 0.2, "pass": 0.8}});
        let miss =
            json!({"value": 0.6, "label": "fail", "probabilities": {"fail": 0.6, "pass": 0.4}});
        let pass = json!("pass");
        let mut pairs = vec![(&hit, &pass); 9];
        pairs.push((&miss, &pass));
        let m = live_metrics(&pairs);
        assert_eq!(m[0].metric, "accuracy");
        assert!(close(m[0].value.unwrap(), 0.9));
        // Wilson's 95% interval for 9 of 10 (as statsmodels' proportion_confint).
        let [lo, hi] = m[0].ci95.unwrap();
        assert!(
            (lo - 0.5958).abs() < 1e-4 && (hi - 0.9821).abs() < 1e-4,
            "{lo} {hi}"
        );
        let want = (9.0 * -(0.8f64.ln()) - 0.4f64.ln()) / 10.0;
        assert!(close(m[1].value.unwrap(), want));
        assert!(!m[0].enough);
        assert!(m[0].note.as_ref().unwrap().contains("10 of the 30"));
    }

    #[test]
    fn an_outcome_must_be_a_number_or_one_of_the_classes() {
        let reg = json!({"value": 1.5});
        assert!(check_actual(&reg, &json!(2)).is_ok());
        assert!(check_actual(&reg, &json!("high"))
            .unwrap_err()
            .contains("number"));
        let clf = json!({"value": 0.7, "label": "1", "probabilities": {"0": 0.3, "1": 0.7}});
        assert!(
            check_actual(&clf, &json!(1)).is_ok(),
            "a number names its class"
        );
        assert!(check_actual(&clf, &json!("1")).is_ok());
        let err = check_actual(&clf, &json!("2")).unwrap_err();
        assert!(err.contains("0, 1"), "{err}");
        assert!(check_actual(&clf, &json!(null)).is_err());
    }

    #[test]
    fn no_outcomes_means_no_figures_and_mismatched_pairs_are_left_out() {
        assert!(live_metrics(&[]).is_empty());
        let reg = json!({"value": 1.0});
        let bad = json!("x");
        let good = json!(2.0);
        let m = live_metrics(&[(&reg, &bad), (&reg, &good)]);
        assert_eq!(m[1].outcomes, 1);
        assert!(close(m[1].value.unwrap(), 1.0));
    }
}
