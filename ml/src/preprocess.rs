//! Feature encoding fitted on training rows: impute + standardise numbers
//! (standardise only for the families that need it), one-hot encode
//! categories.
//!
//! The [`Preprocessor`] is fitted on the training rows of each CV fold only,
//! so validation rows never leak into medians, scales or category lists.
//! Encoded columns remember their source feature, so per-column model
//! contributions can be summed back to the features a user knows.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::dataset::{ColumnData, ColumnKind, Dataset};
use crate::error::{invalid, Result};
use crate::matrix::DenseMatrix;
use crate::model::family::Family;

/// Most frequent categories that get their own column; the rest share one.
pub const MAX_CATEGORIES: usize = 50;
/// Column for categories seen in training outside the most frequent ones.
pub const OTHER: &str = "__other__";
/// Column for a missing category.
pub const MISSING: &str = "__missing__";

/// One raw input value for a feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureValue<'a> {
    Missing,
    Number(f64),
    Text(&'a str),
}

/// Median imputation then standardisation with the training mean and std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericEncoder {
    pub name: String,
    pub median: f64,
    pub mean: f64,
    /// 1 where the training values had no spread, so the column encodes to 0.
    pub std: f64,
}

impl NumericEncoder {
    /// With `scale` false the encoder only imputes (mean 0, std 1).
    fn fit(name: &str, values: impl Iterator<Item = f64>, scale: bool) -> NumericEncoder {
        let mut known: Vec<f64> = values.filter(|x| x.is_finite()).collect();
        if known.is_empty() {
            return NumericEncoder {
                name: name.to_string(),
                median: 0.0,
                mean: 0.0,
                std: 1.0,
            };
        }
        known.sort_by(f64::total_cmp);
        let n = known.len();
        let median = if n % 2 == 1 {
            known[n / 2]
        } else {
            (known[n / 2 - 1] + known[n / 2]) / 2.0
        };
        if !scale {
            return NumericEncoder {
                name: name.to_string(),
                median,
                mean: 0.0,
                std: 1.0,
            };
        }
        let mean = known.iter().sum::<f64>() / n as f64;
        let var = known.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let std = var.sqrt();
        NumericEncoder {
            name: name.to_string(),
            median,
            mean,
            std: if std.is_finite() && std > 1e-12 {
                std
            } else {
                1.0
            },
        }
    }

    fn encode(&self, x: f64) -> f64 {
        let x = if x.is_nan() { self.median } else { x };
        (x - self.mean) / self.std
    }
}

/// The serialised form of [`CategoricalEncoder`], without the lookup table.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CategoricalSpec {
    name: String,
    categories: Vec<String>,
    rare: Vec<String>,
    missing_column: bool,
}

/// One-hot encoding over the training categories.
///
/// Layout: one column per entry of `categories`, then `__other__` if `rare`
/// is non-empty, then `__missing__` if training rows had missing values. A
/// category never seen in training encodes to all zeros.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "CategoricalSpec", into = "CategoricalSpec")]
pub struct CategoricalEncoder {
    pub name: String,
    /// The most frequent categories (at most [`MAX_CATEGORIES`]), by
    /// frequency then name.
    pub categories: Vec<String>,
    /// The other categories seen in training, sorted.
    pub rare: Vec<String>,
    pub missing_column: bool,
    lookup: HashMap<String, usize>,
}

impl PartialEq for CategoricalEncoder {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.categories == other.categories
            && self.rare == other.rare
            && self.missing_column == other.missing_column
    }
}

impl From<CategoricalSpec> for CategoricalEncoder {
    fn from(s: CategoricalSpec) -> Self {
        let mut lookup: HashMap<String, usize> = s
            .categories
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        let other = s.categories.len();
        for r in &s.rare {
            lookup.entry(r.clone()).or_insert(other);
        }
        CategoricalEncoder {
            name: s.name,
            categories: s.categories,
            rare: s.rare,
            missing_column: s.missing_column,
            lookup,
        }
    }
}

impl From<CategoricalEncoder> for CategoricalSpec {
    fn from(e: CategoricalEncoder) -> Self {
        CategoricalSpec {
            name: e.name,
            categories: e.categories,
            rare: e.rare,
            missing_column: e.missing_column,
        }
    }
}

impl CategoricalEncoder {
    fn fit<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> CategoricalEncoder {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut missing = false;
        for v in values {
            match v {
                Some(s) => *counts.entry(s).or_insert(0) += 1,
                None => missing = true,
            }
        }
        let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let split = by_count.len().min(MAX_CATEGORIES);
        let categories = by_count[..split]
            .iter()
            .map(|(s, _)| s.to_string())
            .collect();
        let mut rare: Vec<String> = by_count[split..]
            .iter()
            .map(|(s, _)| s.to_string())
            .collect();
        rare.sort();
        CategoricalSpec {
            name: name.to_string(),
            categories,
            rare,
            missing_column: missing,
        }
        .into()
    }

    fn width(&self) -> usize {
        self.categories.len()
            + usize::from(!self.rare.is_empty())
            + usize::from(self.missing_column)
    }

    fn column_names(&self) -> impl Iterator<Item = String> + '_ {
        let other = (!self.rare.is_empty()).then_some(OTHER);
        let missing = self.missing_column.then_some(MISSING);
        self.categories
            .iter()
            .map(String::as_str)
            .chain(other)
            .chain(missing)
            .map(move |c| format!("{}={c}", self.name))
    }

    /// Writes this feature's one-hot block (already zeroed by the caller).
    fn encode(&self, value: Option<&str>, out: &mut [f64]) {
        let slot = match value {
            Some(s) => self.lookup.get(s).copied(),
            None => self.missing_column.then(|| self.width() - 1),
        };
        if let Some(slot) = slot.and_then(|i| out.get_mut(i)) {
            *slot = 1.0;
        }
    }
}

/// The encoder of one input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FeatureEncoder {
    Numeric(NumericEncoder),
    Categorical(CategoricalEncoder),
}

impl FeatureEncoder {
    pub fn name(&self) -> &str {
        match self {
            FeatureEncoder::Numeric(e) => &e.name,
            FeatureEncoder::Categorical(e) => &e.name,
        }
    }

    pub fn kind(&self) -> ColumnKind {
        match self {
            FeatureEncoder::Numeric(_) => ColumnKind::Numeric,
            FeatureEncoder::Categorical(_) => ColumnKind::Categorical,
        }
    }

    fn width(&self) -> usize {
        match self {
            FeatureEncoder::Numeric(_) => 1,
            FeatureEncoder::Categorical(e) => e.width(),
        }
    }
}

/// Fitted encoding of every non-target column into a dense numeric matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub features: Vec<FeatureEncoder>,
    /// Name of each encoded column (`feature` or `feature=category`).
    pub output_names: Vec<String>,
    /// Index into `features` of each encoded column's source.
    pub output_source: Vec<usize>,
}

impl Preprocessor {
    /// Fits on `rows` of `data`, using every column except `target`,
    /// standardising the numbers.
    pub fn fit(data: &Dataset, target: &str, rows: &[usize]) -> Result<Preprocessor> {
        Preprocessor::fit_with(data, target, rows, true)
    }

    /// The encoding `family` trains on: numbers standardised only for the
    /// families that need it ([`Family::scales_features`]).
    pub fn fit_for(
        family: Family,
        data: &Dataset,
        target: &str,
        rows: &[usize],
    ) -> Result<Preprocessor> {
        Preprocessor::fit_with(data, target, rows, family.scales_features())
    }

    fn fit_with(data: &Dataset, target: &str, rows: &[usize], scale: bool) -> Result<Preprocessor> {
        let mut features = Vec::new();
        for column in data.columns.iter().filter(|c| c.name != target) {
            let encoder = match &column.data {
                ColumnData::Numeric(v) => FeatureEncoder::Numeric(NumericEncoder::fit(
                    &column.name,
                    rows.iter().map(|&r| v.get(r).copied().unwrap_or(f64::NAN)),
                    scale,
                )),
                ColumnData::Categorical(v) => FeatureEncoder::Categorical(CategoricalEncoder::fit(
                    &column.name,
                    rows.iter().map(|&r| v.get(r).and_then(|s| s.as_deref())),
                )),
            };
            features.push(encoder);
        }
        if features.is_empty() {
            return Err(invalid(format!(
                "the dataset has no feature columns besides the target '{target}'"
            )));
        }
        Ok(Preprocessor::from_features(features))
    }

    fn from_features(features: Vec<FeatureEncoder>) -> Preprocessor {
        let mut output_names = Vec::new();
        let mut output_source = Vec::new();
        for (i, f) in features.iter().enumerate() {
            match f {
                FeatureEncoder::Numeric(e) => output_names.push(e.name.clone()),
                FeatureEncoder::Categorical(e) => output_names.extend(e.column_names()),
            }
            output_source.extend(std::iter::repeat_n(i, f.width()));
        }
        Preprocessor {
            features,
            output_names,
            output_source,
        }
    }

    /// Whether the stored output layout is the one the features produce
    /// (a decoded artifact could disagree and make encoding index wrongly).
    pub fn is_consistent(&self) -> bool {
        let expected = Preprocessor::from_features(self.features.clone());
        expected.output_source == self.output_source && expected.output_names == self.output_names
    }

    /// Number of encoded columns.
    pub fn n_outputs(&self) -> usize {
        self.output_source.len()
    }

    /// Encodes `rows` of `data`; the dataset must have the fitted columns
    /// with the same kinds.
    pub fn transform(&self, data: &Dataset, rows: &[usize]) -> Result<DenseMatrix> {
        let columns = self
            .features
            .iter()
            .map(|f| {
                let column = data.column(f.name()).ok_or_else(|| {
                    invalid(format!(
                        "feature column '{}' is missing from the data",
                        f.name()
                    ))
                })?;
                if column.data.kind() != f.kind() {
                    return Err(invalid(format!(
                        "column '{}' is {:?} but the model was fitted on {:?} values",
                        f.name(),
                        column.data.kind(),
                        f.kind()
                    )));
                }
                Ok(&column.data)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = DenseMatrix::zeros(rows.len(), self.n_outputs());
        let mut values = Vec::with_capacity(self.features.len());
        for (i, &r) in rows.iter().enumerate() {
            values.clear();
            values.extend(columns.iter().map(|c| {
                match c {
                    ColumnData::Numeric(v) => v
                        .get(r)
                        .map_or(FeatureValue::Missing, |&x| FeatureValue::Number(x)),
                    ColumnData::Categorical(v) => match v.get(r) {
                        Some(Some(s)) => FeatureValue::Text(s),
                        _ => FeatureValue::Missing,
                    },
                }
            }));
            self.encode_row(&values, out.row_mut(i));
        }
        Ok(out)
    }

    /// Encodes one row given in feature order into `out` (`n_outputs` long;
    /// a shorter buffer receives only the features that fit).
    /// Values of the wrong kind for a feature are treated as missing; callers
    /// validate kinds at the edge, where they can say which input was wrong.
    pub fn encode_row(&self, values: &[FeatureValue<'_>], out: &mut [f64]) {
        out.fill(0.0);
        let mut offset = 0;
        for (f, value) in self.features.iter().zip(values) {
            let width = f.width();
            let Some(block) = out.get_mut(offset..offset + width) else {
                break;
            };
            match f {
                FeatureEncoder::Numeric(e) => {
                    let x = match value {
                        FeatureValue::Number(x) if x.is_finite() => *x,
                        _ => f64::NAN,
                    };
                    block[0] = e.encode(x);
                }
                FeatureEncoder::Categorical(e) => {
                    let s = match value {
                        FeatureValue::Text(s) => Some(*s),
                        _ => None,
                    };
                    e.encode(s, block);
                }
            }
            offset += width;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Limits;

    fn data() -> Dataset {
        let csv = "x,c,y\n1,a,0\n2,b,0\n3,a,1\nNA,,1\n100,z,1\n";
        Dataset::from_csv(csv.as_bytes(), &Limits::default()).unwrap_or_default()
    }

    #[test]
    fn fitted_on_training_rows_only() {
        let d = data();
        let p = Preprocessor::fit(&d, "y", &[0, 1, 2]).ok();
        let Some(FeatureEncoder::Numeric(x)) = p.as_ref().map(|p| p.features[0].clone()) else {
            panic!("x should be numeric");
        };
        // Row 4 (x = 100) is a validation row and must not shift the scale.
        assert_eq!(x.median, 2.0);
        assert_eq!(x.mean, 2.0);
        let Some(FeatureEncoder::Categorical(c)) = p.as_ref().map(|p| p.features[1].clone()) else {
            panic!("c should be categorical");
        };
        assert_eq!(c.categories, vec!["a", "b"]);
        assert!(!c.missing_column);
        assert_eq!(
            p.map(|p| p.output_names),
            Some(vec!["x".to_string(), "c=a".into(), "c=b".into()])
        );
    }

    #[test]
    fn tree_families_get_raw_numbers_and_the_others_standardised_ones() {
        let d = data();
        let rows = [0, 1, 2, 3];
        let encode = |family: Family| {
            let p = Preprocessor::fit_for(family, &d, "y", &rows).expect("fits");
            let m = p.transform(&d, &rows).expect("transforms");
            (0..rows.len())
                .map(|r| m.data[r * m.cols])
                .collect::<Vec<f64>>()
        };
        for family in [
            Family::Gbm,
            Family::Lightgbm,
            Family::RandomForest,
            Family::Xgboost,
        ] {
            // Imputed with the median, otherwise the user's values.
            assert_eq!(encode(family), vec![1.0, 2.0, 3.0, 2.0], "{family:?}");
        }
        for family in [Family::Linear, Family::Nn] {
            let x = encode(family);
            let mean = x.iter().sum::<f64>() / 4.0;
            assert!(
                mean.abs() < 1e-12 && x[0] < 0.0 && x[2] > 0.0,
                "{family:?}: {x:?}"
            );
        }
    }

    #[test]
    fn transform_imputes_one_hots_and_zeros_unknowns() {
        let d = data();
        let Ok(p) = Preprocessor::fit(&d, "y", &[0, 1, 2, 3]) else {
            panic!("fit failed");
        };
        // Categories: a (2), b (1), plus a missing column.
        assert_eq!(p.n_outputs(), 4);
        assert_eq!(p.output_source, vec![0, 1, 1, 1]);
        let Ok(m) = p.transform(&d, &[3, 4]) else {
            panic!("transform failed");
        };
        // Row 3: x missing -> median 2 -> standardised 0; c missing -> __missing__.
        assert!(m.row(0)[0].abs() < 1e-12);
        assert_eq!(&m.row(0)[1..], &[0.0, 0.0, 1.0]);
        // Row 4: unknown category 'z' -> all zeros.
        assert_eq!(&m.row(1)[1..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn long_tail_goes_to_other_and_survives_serde() {
        let names: Vec<String> = (0..60).map(|i| format!("k{i:02}")).collect();
        let mut csv = String::from("c,y\n");
        for (i, n) in names.iter().enumerate() {
            // k00 appears most often so it is first in frequency order.
            let times = if i == 0 { 3 } else { 1 };
            for _ in 0..times {
                csv.push_str(&format!("{n},1\n"));
            }
        }
        let d = Dataset::from_csv(csv.as_bytes(), &Limits::default()).unwrap_or_default();
        let rows: Vec<usize> = (0..d.n_rows()).collect();
        let Ok(p) = Preprocessor::fit(&d, "y", &rows) else {
            panic!("fit failed");
        };
        assert_eq!(p.n_outputs(), MAX_CATEGORIES + 1);
        assert_eq!(p.output_names[0], "c=k00");
        assert_eq!(p.output_names[MAX_CATEGORIES], "c=__other__");
        let json = serde_json::to_string(&p).unwrap_or_default();
        let Ok(back) = serde_json::from_str::<Preprocessor>(&json) else {
            panic!("round trip failed");
        };
        assert_eq!(back, p);
        let mut out = vec![0.0; back.n_outputs()];
        back.encode_row(&[FeatureValue::Text("k59")], &mut out);
        assert_eq!(out[MAX_CATEGORIES], 1.0);
        back.encode_row(&[FeatureValue::Text("never-seen")], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn constant_column_gets_unit_scale_and_target_only_is_invalid() {
        let d = Dataset::from_csv(b"x,y\n5,1\n5,2\n", &Limits::default()).unwrap_or_default();
        let p = Preprocessor::fit(&d, "y", &[0, 1]).ok();
        assert!(matches!(
            p.map(|p| p.features[0].clone()),
            Some(FeatureEncoder::Numeric(NumericEncoder { std, .. })) if std == 1.0
        ));
        let only = Dataset::from_csv(b"y\n1\n2\n", &Limits::default()).unwrap_or_default();
        assert!(Preprocessor::fit(&only, "y", &[0, 1]).is_err());
    }
}
