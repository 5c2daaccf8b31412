//! One model version's drift, feature by feature: the live values a
//! prediction log holds against the training profile the version carries.
//!
//! Numbers: the PSI and the two-sample Kolmogorov–Smirnov test against the
//! profile's evenly spaced training quantiles. Categories: the chi-squared
//! test and the Jensen–Shannon distance over the profile's most frequent
//! categories (the rest pooled as one). A feature counts as drifted on its
//! effect size — PSI at or above [`PSI_DRIFT`], or a Jensen–Shannon
//! distance at or above [`JS_DRIFT`] — never on a p-value alone: with the
//! sample sizes a prediction log reaches, every p-value is small. The
//! test still has a say the other way: an effect its test cannot tell from
//! sampling noise (p ≥ [`NOISE_P`]) is not called drift. Small samples
//! need this — with a few hundred training rows, PSI's floored empty bins
//! and a category's noisy shares pass the thresholds on data drawn from
//! the training distribution itself.

use crate::drift::{chi_squared, jensen_shannon, ks_against_quantiles, psi, ChiSquared, Ks, Psi};
use crate::live::label_of;
use crate::profile::{DataProfile, FeatureProfile};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The PSI from which a numeric feature counts as drifted (the usual
/// reading: under 0.1 stable, 0.1 to 0.25 a moderate shift, above a major).
pub const PSI_DRIFT: f64 = 0.2;
/// The Jensen–Shannon distance from which a categorical feature counts as
/// drifted.
pub const JS_DRIFT: f64 = 0.1;
/// The p-value at or above which a feature's shift is taken for sampling
/// noise whatever its effect size. Strict, because a report tests every
/// feature: over the lab model's 18, the chance that noise alone passes it
/// somewhere stays under 2%.
pub const NOISE_P: f64 = 0.001;
/// Live values below which a feature is not judged.
pub const MIN_LIVE: usize = 100;
/// The name the categories outside the profile's most frequent go under.
pub const OTHER: &str = "(other)";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub kind: &'static str,
    /// Training rows with a value.
    pub n_reference: usize,
    /// Live records with a value, and without one.
    pub n_live: usize,
    pub missing_live: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<Psi>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<Ks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi_squared: Option<ChiSquared>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jensen_shannon: Option<f64>,
    pub drifted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A live value as a number (numbers, and texts that read as one).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

/// The drift of one feature: `live` holds its value in each live record
/// (`None` where the record lacks it).
pub fn feature_drift(profile: &FeatureProfile, live: &[Option<&Value>]) -> FeatureDrift {
    let mut out = FeatureDrift {
        feature: profile.name().to_string(),
        kind: "numeric",
        n_reference: 0,
        n_live: 0,
        missing_live: 0,
        psi: None,
        ks: None,
        chi_squared: None,
        jensen_shannon: None,
        drifted: false,
        note: None,
    };
    match profile {
        FeatureProfile::Numeric {
            count, quantiles, ..
        } => {
            let values: Vec<f64> = live.iter().filter_map(|v| v.and_then(number)).collect();
            out.n_reference = *count;
            out.n_live = values.len();
            out.missing_live = live.len() - values.len();
            if quantiles.is_empty() {
                out.note = Some(
                    "this version's profile keeps no training quantiles (trained before they were kept): retrain to monitor it".into(),
                );
                return out;
            }
            out.psi = psi(quantiles, &values);
            out.ks = ks_against_quantiles(quantiles, *count, &values);
            out.drifted = out.psi.as_ref().is_some_and(|p| p.value >= PSI_DRIFT)
                && out.ks.as_ref().is_some_and(|k| k.p_value < NOISE_P);
        }
        FeatureProfile::Categorical { count, top, .. } => {
            out.kind = "categorical";
            let mut reference: BTreeMap<String, u64> = top
                .iter()
                .map(|c| (c.value.clone(), c.count as u64))
                .collect();
            let kept: u64 = reference.values().sum();
            if (*count as u64) > kept {
                reference.insert(OTHER.into(), *count as u64 - kept);
            }
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for v in live.iter().filter_map(|v| v.and_then(label_of)) {
                let key = if reference.contains_key(&v) && v != OTHER {
                    v
                } else {
                    OTHER.to_string()
                };
                *counts.entry(key).or_default() += 1;
            }
            out.n_reference = *count;
            out.n_live = counts.values().sum::<u64>() as usize;
            out.missing_live = live.len() - out.n_live;
            out.chi_squared = chi_squared(&reference, &counts);
            out.jensen_shannon = jensen_shannon(&reference, &counts);
            out.drifted = out.jensen_shannon.is_some_and(|js| js >= JS_DRIFT)
                && out
                    .chi_squared
                    .as_ref()
                    .is_some_and(|c| c.p_value < NOISE_P);
        }
    }
    if out.n_live < MIN_LIVE {
        out.drifted = false;
        out.note = Some(format!(
            "not enough live values to judge: {} of the {MIN_LIVE} needed",
            out.n_live
        ));
    }
    out
}

impl FeatureDrift {
    /// The effect size a feature is judged on: `("psi", value)` for a
    /// number, `("jensen_shannon", value)` for a category; `None` when
    /// there was nothing to score.
    pub fn score(&self) -> Option<(&'static str, f64)> {
        match (&self.psi, self.jensen_shannon) {
            (Some(p), _) => Some(("psi", p.value)),
            (None, Some(js)) => Some(("jensen_shannon", js)),
            (None, None) => None,
        }
    }
}

/// Every profiled feature's drift over the live records' features (each
/// record's feature map, as the prediction log keeps it): what
/// `GET /models/{name}/drift` answers and the scheduler's monitor judges.
pub fn profile_drift(
    profile: &DataProfile,
    live: &[&serde_json::Map<String, Value>],
) -> Vec<FeatureDrift> {
    profile
        .features
        .iter()
        .map(|feature| {
            let values: Vec<_> = live.iter().map(|r| r.get(feature.name())).collect();
            feature_drift(feature, &values)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::CategoryCount;
    use serde_json::json;

    fn numeric(quantiles: Vec<f64>) -> FeatureProfile {
        numeric_of(5_000, quantiles)
    }

    /// A numeric profile of `count` training rows.
    fn numeric_of(count: usize, quantiles: Vec<f64>) -> FeatureProfile {
        FeatureProfile::Numeric {
            name: "age".into(),
            count,
            missing: 0,
            mean: None,
            std: None,
            min: None,
            p05: None,
            p50: None,
            p95: None,
            max: None,
            quantiles,
        }
    }

    fn values(xs: impl Iterator<Item = f64>) -> Vec<Value> {
        xs.map(|x| json!(x)).collect()
    }

    #[test]
    fn a_shifted_number_drifts_and_the_same_distribution_does_not() {
        let profile = numeric((0..200).map(|i| i as f64 / 199.0).collect());
        let same = values((0..500).map(|i| (i as f64 + 0.5) / 500.0));
        let live: Vec<Option<&Value>> = same.iter().map(Some).collect();
        let d = feature_drift(&profile, &live);
        assert!(!d.drifted, "{d:?}");
        assert!(d.psi.as_ref().unwrap().value < 0.05);
        assert_eq!((d.n_reference, d.n_live), (5_000, 500));
        assert_eq!(
            d.ks.as_ref().unwrap().n_reference,
            5_000,
            "the real training size"
        );

        let shifted = values((0..500).map(|i| 0.5 + (i as f64 + 0.5) / 500.0));
        let mut live: Vec<Option<&Value>> = shifted.iter().map(Some).collect();
        live.push(None);
        let d = feature_drift(&profile, &live);
        assert!(d.drifted, "{d:?}");
        assert!(d.ks.as_ref().unwrap().statistic > 0.45);
        assert!(d.ks.as_ref().unwrap().p_value < 1e-6);
        assert_eq!(d.missing_live, 1);
    }

    #[test]
    fn categories_outside_the_profile_pool_as_other_and_a_new_mix_drifts() {
        let profile = FeatureProfile::Categorical {
            name: "site".into(),
            count: 1_000,
            missing: 0,
            distinct: 3,
            top: vec![
                CategoryCount {
                    value: "north".into(),
                    count: 600,
                },
                CategoryCount {
                    value: "south".into(),
                    count: 300,
                },
            ],
        };
        let same: Vec<Value> = (0..200)
            .map(|i| {
                json!(match i % 10 {
                    0..=5 => "north",
                    6..=8 => "south",
                    _ => "east",
                })
            })
            .collect();
        let live: Vec<Option<&Value>> = same.iter().map(Some).collect();
        let d = feature_drift(&profile, &live);
        assert!(!d.drifted, "{d:?}");
        assert!(d.jensen_shannon.unwrap() < 0.01);
        let moved: Vec<Value> = (0..200).map(|_| json!("west")).collect();
        let live: Vec<Option<&Value>> = moved.iter().map(Some).collect();
        let d = feature_drift(&profile, &live);
        assert!(
            d.drifted && d.chi_squared.as_ref().unwrap().cramers_v > 0.5,
            "{d:?}"
        );
    }

    #[test]
    fn a_shift_its_test_cannot_tell_from_noise_is_not_drift_however_large_the_psi() {
        let quantiles: Vec<f64> = (0..200).map(|i| i as f64 / 199.0).collect();
        let shifted = values((0..100).map(|i| 0.2 + (i as f64 + 0.5) / 100.0));
        let live: Vec<Option<&Value>> = shifted.iter().map(Some).collect();
        // Twenty training rows: the KS test cannot say the shift is real.
        let small = numeric_of(20, quantiles.clone());
        let d = feature_drift(&small, &live);
        assert!(d.psi.as_ref().unwrap().value >= PSI_DRIFT, "{d:?}");
        assert!(d.ks.as_ref().unwrap().p_value >= NOISE_P, "{d:?}");
        assert!(!d.drifted, "{d:?}");
        // The same shift against 5,000 training rows is drift.
        let d = feature_drift(&numeric(quantiles), &live);
        assert!(d.drifted, "{d:?}");
    }

    #[test]
    fn too_few_live_values_or_an_old_profile_are_said_not_judged() {
        let profile = numeric((0..200).map(|i| i as f64).collect());
        let few = values((0..10).map(|i| 1e6 + i as f64));
        let live: Vec<Option<&Value>> = few.iter().map(Some).collect();
        let d = feature_drift(&profile, &live);
        assert!(!d.drifted);
        assert!(d.note.unwrap().contains("10 of the 100"));
        let d = feature_drift(&numeric(Vec::new()), &live);
        assert!(d.note.unwrap().contains("retrain"));
    }
}
