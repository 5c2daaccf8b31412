//! Serving-time prediction from a [`ModelArtifact`]: input validation,
//! outputs and per-feature contributions.
//!
//! Contributions cost more than the answer itself for most families (a
//! tree's every path, a network's integrated gradients), so they are
//! optional: [`Explain::No`] answers with the output alone.
//!
//! Records are JSON objects keyed by feature name. A missing feature, or
//! `null`, is a missing value and is imputed like in training. A field named
//! like the target is ignored, so callers can send whole rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::artifact::ModelArtifact;
use crate::error::{invalid, LearnError, Result};
use crate::preprocess::{FeatureEncoder, FeatureValue};
use crate::task::Task;

/// How much one input feature moved the model's margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    /// The input value as given (`null` when missing).
    pub value: Value,
    /// In margin units: target units for regression, log-odds (binary,
    /// positive class) or the predicted class's margin (multiclass).
    pub contribution: f64,
}

/// One record's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The regression value, or the probability of the predicted class.
    pub value: f64,
    /// Predicted class (classification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Probability per class (classification only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<BTreeMap<String, f64>>,
    /// One per input feature, largest absolute contribution first; empty
    /// when the answer was not explained (a model always has features).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<Contribution>,
    /// Margin with every feature at its training reference; base plus the
    /// contributions equals the explained margin. `None` when not explained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_value: Option<f64>,
}

impl Prediction {
    /// Whether the answer carries its contributions.
    pub fn explained(&self) -> bool {
        self.base_value.is_some()
    }
}

/// Whether a prediction comes with its per-feature contributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Explain {
    Yes,
    No,
}

fn kind_error(record: usize, feature: &str, expected: &str, got: &Value) -> LearnError {
    let got = match got {
        Value::String(s) => format!("the string {s:?}"),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    };
    invalid(format!(
        "record {record}, feature '{feature}': expected {expected}, got {got}"
    ))
}

impl ModelArtifact {
    fn feature_position(&self, name: &str) -> Option<usize> {
        if self.feature_index.len() == self.preprocessor.features.len() {
            self.feature_index.get(name).copied()
        } else {
            // Deserialised without `from_bytes`, so the index was never built.
            self.preprocessor
                .features
                .iter()
                .position(|f| f.name() == name)
        }
    }

    /// Predicts and explains every record; any invalid record fails the
    /// whole call with a message naming the record (0-based) and feature.
    pub fn predict(&self, records: &[Map<String, Value>]) -> Result<Vec<Prediction>> {
        self.predict_with(records, Explain::Yes)
    }

    /// [`ModelArtifact::predict`], with contributions only when `explain`
    /// asks for them.
    pub fn predict_with(
        &self,
        records: &[Map<String, Value>],
        explain: Explain,
    ) -> Result<Vec<Prediction>> {
        let features = &self.preprocessor.features;
        let n_out = self.preprocessor.n_outputs();
        let mut encoded = vec![0.0; n_out];
        let mut contrib = vec![0.0; n_out + 1];
        let mut output = vec![0.0; self.model.output_width()];
        let mut per_feature = vec![0.0; features.len()];
        let mut slots: Vec<Option<&Value>> = vec![None; features.len()];
        let mut predictions = Vec::with_capacity(records.len());

        for (i, record) in records.iter().enumerate() {
            slots.fill(None);
            for (key, value) in record {
                match self.feature_position(key) {
                    Some(f) => slots[f] = Some(value),
                    None if *key == self.target => {}
                    None => {
                        return Err(invalid(format!(
                            "record {i}: unknown feature '{key}'; expected one of {}",
                            self.feature_schema
                                .iter()
                                .map(|f| f.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )))
                    }
                }
            }
            // Numbers and booleans given for a categorical feature are
            // matched by their text, so owned strings live here (made only
            // for such a record: most send texts).
            let texts: Vec<Option<String>> = if features.iter().zip(&slots).any(|(f, v)| {
                matches!(
                    (f, v),
                    (
                        FeatureEncoder::Categorical(_),
                        Some(Value::Number(_) | Value::Bool(_))
                    )
                )
            }) {
                features
                    .iter()
                    .zip(&slots)
                    .map(|(f, v)| match (f, v) {
                        (FeatureEncoder::Categorical(_), Some(Value::Number(n))) => {
                            Some(n.to_string())
                        }
                        (FeatureEncoder::Categorical(_), Some(Value::Bool(b))) => {
                            Some(b.to_string())
                        }
                        _ => None,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut values = Vec::with_capacity(features.len());
            for (j, (f, v)) in features.iter().zip(&slots).enumerate() {
                values.push(match (f, v) {
                    (_, None | Some(Value::Null)) => FeatureValue::Missing,
                    (FeatureEncoder::Numeric(e), Some(v)) => match v.as_f64() {
                        Some(x) if x.is_finite() => FeatureValue::Number(x),
                        Some(_) => return Err(kind_error(i, &e.name, "a finite number", v)),
                        None => return Err(kind_error(i, &e.name, "a number or null", v)),
                    },
                    (FeatureEncoder::Categorical(e), Some(v)) => {
                        match (v, texts.get(j).and_then(Option::as_deref)) {
                            (Value::String(s), _) => FeatureValue::Text(s),
                            (_, Some(t)) => FeatureValue::Text(t),
                            _ => {
                                return Err(kind_error(
                                    i,
                                    &e.name,
                                    "a string, number, boolean or null",
                                    v,
                                ))
                            }
                        }
                    }
                });
            }

            self.preprocessor.encode_row(&values, &mut encoded);
            let (contributions, base_value) = match explain {
                Explain::No => {
                    self.model.predict_row(&encoded, &mut output);
                    (Vec::new(), None)
                }
                Explain::Yes => {
                    self.model.explain_row(&encoded, &mut output, &mut contrib);
                    let contributions = self.contributions(&contrib, &mut per_feature, &slots);
                    (contributions, Some(contrib[n_out]))
                }
            };

            predictions.push(match &self.task {
                Task::Regression => Prediction {
                    value: output[0],
                    label: None,
                    probabilities: None,
                    contributions,
                    base_value,
                },
                Task::Classification { classes } => {
                    let best = crate::metrics::argmax(&output);
                    Prediction {
                        value: output[best],
                        label: classes.get(best).cloned(),
                        probabilities: Some(
                            classes
                                .iter()
                                .cloned()
                                .zip(output.iter().copied())
                                .collect(),
                        ),
                        contributions,
                        base_value,
                    }
                }
            });
        }
        Ok(predictions)
    }

    /// Per-feature contributions from per-column ones (a one-hot feature's
    /// columns add up), largest absolute first.
    fn contributions(
        &self,
        per_column: &[f64],
        per_feature: &mut [f64],
        slots: &[Option<&Value>],
    ) -> Vec<Contribution> {
        per_feature.fill(0.0);
        for (&source, c) in self.preprocessor.output_source.iter().zip(per_column) {
            per_feature[source] += c;
        }
        let mut contributions: Vec<Contribution> = self
            .preprocessor
            .features
            .iter()
            .zip(per_feature.iter())
            .zip(slots)
            .map(|((f, &c), v)| Contribution {
                feature: f.name().to_string(),
                value: v.cloned().unwrap_or(Value::Null),
                contribution: c,
            })
            .collect();
        contributions.sort_by(|a, b| {
            b.contribution
                .abs()
                .total_cmp(&a.contribution.abs())
                .then_with(|| a.feature.cmp(&b.feature))
        });
        contributions
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::artifact::sha256_hex;
    use crate::automl::{fit_final, EvalOptions};
    use crate::dataset::{Dataset, Limits};
    use crate::lab;
    use crate::model::test_data::contributions_total;
    use crate::LearnError;
    use serde_json::json;

    fn train(family: &str) -> ModelArtifact {
        let data = Dataset::from_csv(lab::generate_csv(800, 3).as_bytes(), &Limits::default())
            .unwrap_or_default();
        let params = json!({"family": family, "gbm_iterations": 200})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut metrics = BTreeMap::new();
        metrics.insert("rmse".to_string(), 4.2);
        match fit_final(
            &data,
            lab::TARGET,
            &params,
            &EvalOptions::default(),
            metrics,
        ) {
            Ok(a) => a,
            Err(e) => panic!("{e}"),
        }
    }

    fn record(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn invalid_message(r: Result<Vec<Prediction>>) -> String {
        match r {
            Err(LearnError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn artifact_round_trip_with_digest_and_corruption() {
        for family in ["linear", "gbm"] {
            let a = train(family);
            let bytes = a.to_bytes();
            let digest = sha256_hex(&bytes);
            let b = match ModelArtifact::from_bytes(&bytes, &digest) {
                Ok(b) => b,
                Err(e) => panic!("{family}: {e}"),
            };
            assert_eq!(b.metrics.get("rmse"), Some(&4.2));
            assert_eq!(b.family, a.family);
            let records = [lab::example_record(1), lab::example_record(2)];
            assert_eq!(a.predict(&records).ok(), b.predict(&records).ok());

            let mut tampered = bytes.clone();
            if let Some(byte) = tampered.iter_mut().rev().find(|b| b.is_ascii_digit()) {
                *byte = if *byte == b'1' { b'2' } else { b'1' };
            }
            assert!(matches!(
                ModelArtifact::from_bytes(&tampered, &digest),
                Err(LearnError::Corrupt(_))
            ));
            // Right digest of wrong content: still refused, as corrupt.
            let garbage = b"{\"format_version\": 1}";
            assert!(matches!(
                ModelArtifact::from_bytes(garbage, &sha256_hex(garbage)),
                Err(LearnError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn contributions_sum_to_the_prediction() {
        for family in ["linear", "gbm"] {
            let a = train(family);
            let Ok(out) = a.predict(&[lab::example_record(9), record(json!({}))]) else {
                panic!("predict failed");
            };
            for p in &out {
                assert_eq!(p.contributions.len(), 18);
                let total = contributions_total(p);
                assert!(
                    (total - p.value).abs() < 1e-6,
                    "{family}: {total} vs {}",
                    p.value
                );
                let sorted = p
                    .contributions
                    .windows(2)
                    .all(|w| w[0].contribution.abs() >= w[1].contribution.abs());
                assert!(sorted);
                assert!(p.label.is_none() && p.probabilities.is_none());
            }
            // An all-missing record is imputed, not rejected.
            assert!(out[1].contributions.iter().all(|c| c.value.is_null()));
        }
    }

    #[test]
    fn an_unexplained_answer_is_the_explained_one_without_its_contributions() {
        let records = [
            lab::example_record(4),
            lab::example_record(5),
            record(json!({})),
        ];
        for family in crate::model::Family::ALL
            .into_iter()
            .filter(|f| f.available())
        {
            let a = train(family.name());
            let (Ok(explained), Ok(plain)) = (
                a.predict_with(&records, Explain::Yes),
                a.predict_with(&records, Explain::No),
            ) else {
                panic!("{family:?}: predict failed");
            };
            for (e, p) in explained.iter().zip(&plain) {
                assert!(e.explained() && !p.explained(), "{family:?}");
                assert!(p.contributions.is_empty(), "{family:?}");
                // Boosted trees add the margin up from the contributions
                // when explaining, so the two sums may differ in rounding.
                assert!(
                    (e.value - p.value).abs() <= 1e-9 * (1.0 + e.value.abs()),
                    "{family:?}: {} vs {}",
                    e.value,
                    p.value
                );
                assert_eq!((&e.label, &e.probabilities), (&p.label, &p.probabilities));
                let json = serde_json::to_value(p).unwrap_or_default();
                assert!(json.get("contributions").is_none() && json.get("base_value").is_none());
            }
        }
    }

    #[test]
    fn bad_records_are_rejected_with_names() {
        let a = train("linear");
        let m = invalid_message(a.predict(&[record(json!({"nope": 1}))]));
        assert!(
            m.contains("record 0: unknown feature 'nope'; expected one of sample_type"),
            "{m}"
        );
        let m =
            invalid_message(a.predict(&[lab::example_record(1), record(json!({"rin": "high"}))]));
        assert!(
            m.contains(
                "record 1, feature 'rin': expected a number or null, got the string \"high\""
            ),
            "{m}"
        );
        let m = invalid_message(a.predict(&[record(json!({"rin": true}))]));
        assert!(m.contains("'rin'"), "{m}");
        let m = invalid_message(a.predict(&[record(json!({"sample_type": [1]}))]));
        assert!(m.contains("'sample_type'"), "{m}");
        // Nulls, numbers for categories, unknown categories and the target are accepted.
        let ok = a.predict(&[record(json!({
            "rin": null, "sample_type": 7, "processing_delay_category": "weekly", "quality_score": 50
        }))]);
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn single_record_prediction_is_fast() {
        let record = [lab::example_record(4)];
        for (family, budget_us) in [("linear", 200.0), ("gbm", 1000.0)] {
            let a = train(family);
            let runs = 2000;
            let start = Instant::now();
            for _ in 0..runs {
                assert!(a.predict(&record).is_ok());
            }
            let per_call = start.elapsed().as_secs_f64() * 1e6 / f64::from(runs);
            // Generous bounds so debug builds on slow CI pass; see bench/ for real numbers.
            assert!(
                per_call < budget_us,
                "{family}: {per_call:.1} us per prediction"
            );
            eprintln!("{family}: {per_call:.2} us per single-record prediction");
        }
    }
}
