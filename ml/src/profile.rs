//! Training-data profile stored with each model, the reference for drift checks.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::dataset::{ColumnData, Dataset};

/// Most frequent categories kept per categorical feature.
pub const TOP_CATEGORIES: usize = 20;
/// Evenly spaced quantiles kept per numeric feature: its training
/// distribution at a resolution of 1/199, the reference the drift tests
/// compare live values with.
pub const REFERENCE_QUANTILES: usize = 200;

/// One category and how often it occurred.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCount {
    pub value: String,
    pub count: usize,
}

/// Distribution summary of one feature over the training rows. Statistics
/// are `None` when the feature had no values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FeatureProfile {
    Numeric {
        name: String,
        /// Rows with a value.
        count: usize,
        missing: usize,
        mean: Option<f64>,
        std: Option<f64>,
        min: Option<f64>,
        p05: Option<f64>,
        p50: Option<f64>,
        p95: Option<f64>,
        max: Option<f64>,
        /// The values at ranks 0, 1/(k−1), …, 1 of the sorted training
        /// values (k = [`REFERENCE_QUANTILES`], fewer when there were fewer
        /// values). Empty in profiles made before it was kept.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        quantiles: Vec<f64>,
    },
    Categorical {
        name: String,
        count: usize,
        missing: usize,
        distinct: usize,
        /// The most frequent categories, by count then value.
        top: Vec<CategoryCount>,
    },
}

impl FeatureProfile {
    pub fn name(&self) -> &str {
        match self {
            FeatureProfile::Numeric { name, .. } | FeatureProfile::Categorical { name, .. } => name,
        }
    }
}

/// Profile of every feature column over the rows a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataProfile {
    pub rows: usize,
    pub features: Vec<FeatureProfile>,
}

/// Percentile by linear interpolation between closest ranks (`sorted` non-empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn numeric(name: &str, values: impl Iterator<Item = f64>, rows: usize) -> FeatureProfile {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let count = v.len();
    let stat = |f: &dyn Fn(&[f64]) -> f64| (!v.is_empty()).then(|| f(&v));
    let mean = stat(&|v| v.iter().sum::<f64>() / v.len() as f64);
    let std = mean.map(|m| (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / count as f64).sqrt());
    FeatureProfile::Numeric {
        name: name.to_string(),
        count,
        missing: rows - count,
        mean,
        std,
        min: v.first().copied(),
        p05: stat(&|v| percentile(v, 0.05)),
        p50: stat(&|v| percentile(v, 0.50)),
        p95: stat(&|v| percentile(v, 0.95)),
        max: v.last().copied(),
        quantiles: reference_quantiles(&v),
    }
}

/// [`REFERENCE_QUANTILES`] evenly spaced quantiles of `sorted` (all of it
/// when shorter).
fn reference_quantiles(sorted: &[f64]) -> Vec<f64> {
    if sorted.len() <= REFERENCE_QUANTILES {
        return sorted.to_vec();
    }
    let k = REFERENCE_QUANTILES;
    (0..k)
        .map(|i| percentile(sorted, i as f64 / (k - 1) as f64))
        .collect()
}

fn categorical<'a>(
    name: &str,
    values: impl Iterator<Item = Option<&'a str>>,
    rows: usize,
) -> FeatureProfile {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut count = 0;
    for s in values.flatten() {
        *counts.entry(s).or_insert(0) += 1;
        count += 1;
    }
    let distinct = counts.len();
    let mut top: Vec<(&str, usize)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    top.truncate(TOP_CATEGORIES);
    FeatureProfile::Categorical {
        name: name.to_string(),
        count,
        missing: rows - count,
        distinct,
        top: top
            .into_iter()
            .map(|(value, count)| CategoryCount {
                value: value.to_string(),
                count,
            })
            .collect(),
    }
}

/// Profiles every column except `target` over `rows`.
pub fn profile(data: &Dataset, target: &str, rows: &[usize]) -> DataProfile {
    let features = data
        .columns
        .iter()
        .filter(|c| c.name != target)
        .map(|c| match &c.data {
            ColumnData::Numeric(v) => numeric(
                &c.name,
                rows.iter().map(|&r| v.get(r).copied().unwrap_or(f64::NAN)),
                rows.len(),
            ),
            ColumnData::Categorical(v) => categorical(
                &c.name,
                rows.iter().map(|&r| v.get(r).and_then(|s| s.as_deref())),
                rows.len(),
            ),
        })
        .collect();
    DataProfile {
        rows: rows.len(),
        features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Limits;

    #[test]
    fn profiles_numeric_and_categorical_features() {
        let csv = "x,c,y\n1,a,0\n2,b,0\n3,a,0\nNA,,0\n5,a,0\n";
        let d = Dataset::from_csv(csv.as_bytes(), &Limits::default()).unwrap_or_default();
        let p = profile(&d, "y", &[0, 1, 2, 3, 4]);
        assert_eq!(p.rows, 5);
        assert_eq!(p.features.len(), 2);
        match &p.features[0] {
            FeatureProfile::Numeric {
                count,
                missing,
                mean,
                min,
                p50,
                max,
                ..
            } => {
                assert_eq!((*count, *missing), (4, 1));
                assert_eq!(*mean, Some(2.75));
                assert_eq!((*min, *p50, *max), (Some(1.0), Some(2.5), Some(5.0)));
            }
            other => panic!("{other:?}"),
        }
        match &p.features[1] {
            FeatureProfile::Categorical {
                distinct,
                top,
                missing,
                ..
            } => {
                assert_eq!((*distinct, *missing), (2, 1));
                assert_eq!(
                    top[0],
                    CategoryCount {
                        value: "a".into(),
                        count: 3
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        // Empty features serialise without NaN (which JSON cannot hold).
        let empty = profile(&d, "y", &[3]);
        let json = serde_json::to_string(&empty).unwrap_or_default();
        assert!(serde_json::from_str::<DataProfile>(&json).is_ok(), "{json}");
    }
}
