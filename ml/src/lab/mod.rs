//! Laboratory sample quality: a synthetic sample generator with a documented
//! ground truth, its 18 engineered features, and assessment of predictions.
//!
//! # Simulated samples
//! Each sample has a type (blood, plasma, serum, tissue, saliva, urine,
//! dna_extract, rna_extract), a collection time up to ~2.5 years before the
//! reference date 2025-01-01, a processing time after collection (log-normal
//! delay, median ~4.5 h), a storage target temperature set by its type (4 °C,
//! -20 °C, -80 °C or -196 °C), a log of 48 storage temperature readings
//! (noise plus, for ~15% of samples, a warm excursion), freeze-thaw cycles
//! (Poisson, more for older samples), volume, concentration, A260/280 and
//! A260/230 purity ratios (A260/230 missing for ~3%), RIN (only measured for
//! blood, tissue and rna_extract; missing otherwise), transport time and the
//! fill fraction of its storage location.
//!
//! # Ground truth
//! With `s` the type's degradation sensitivity (rna_extract 1.6, tissue 1.3,
//! blood/plasma/serum 1.0, saliva/urine 0.8, dna_extract 0.5):
//!
//! ```text
//! quality_score = clamp(0, 100,
//!     100
//!   - 4.0 * ln(1 + sample_age_days / 90)
//!   - 5.0 * s * freeze_thaw_cycles
//!   - 3.0 * s * temperature_deviation
//!   - 1.2 * s * max(0, temperature_max_excursion - 2)
//!   - 8.0 * ln(1 + processing_delay_hours / 6)
//!   - 60  * purity_deviation
//!   - 6.0 * max(0, 1.8 - purity_260_230)        (0 when missing)
//!   - 2.5 * max(0, 8 - rin)                     (0 when missing)
//!   - 8.0 * [total_yield_ug < 1]
//!   - 4.0 * max(0, storage_utilization - 0.85) / 0.15
//!   - 0.2 * transport_time_hours
//!   + Normal(0, 3))
//! ```
//!
//! The sensitivity interactions and thresholds make it non-linear, so tree
//! models have something to find that linear ones cannot.

mod assess;
mod sample;

use chrono::{Duration, NaiveDate, NaiveDateTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use serde_json::{Map, Number, Value};

pub use assess::{assess, quality_category, Assessment, RiskFactor};
pub use sample::{feature_index, ideal_260_280, lab_features, LabSample, TemperatureStats};

/// The column a lab model predicts.
pub const TARGET: &str = "quality_score";

/// The 18 engineered features, in CSV column order.
pub const FEATURES: [&str; 18] = [
    "sample_type",
    "sample_age_days",
    "processing_delay_hours",
    "processing_delay_category",
    "temperature_deviation",
    "temperature_max_excursion",
    "temperature_variability",
    "freeze_thaw_cycles",
    "volume_ml",
    "concentration_ng_ul",
    "purity_260_280",
    "purity_260_230",
    "purity_deviation",
    "rin",
    "transport_time_hours",
    "storage_utilization",
    "total_yield_ug",
    "quality_risk_score",
];

/// Sample types and their degradation sensitivity in the ground truth.
pub const SAMPLE_TYPES: [(&str, f64); 8] = [
    ("blood", 1.0),
    ("plasma", 1.0),
    ("serum", 1.0),
    ("tissue", 1.3),
    ("saliva", 0.8),
    ("urine", 0.8),
    ("dna_extract", 0.5),
    ("rna_extract", 1.6),
];

const TEMPERATURE_READINGS: usize = 48;

/// One feature value.
#[derive(Debug, Clone, PartialEq)]
pub enum LabValue {
    Number(Option<f64>),
    Text(Option<String>),
}

impl LabValue {
    /// The value as JSON: a number, a string, or `null` when missing.
    pub fn to_json(&self) -> Value {
        match self {
            LabValue::Number(x) => x
                .and_then(Number::from_f64)
                .map_or(Value::Null, Value::Number),
            LabValue::Text(t) => t.clone().map_or(Value::Null, Value::String),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            LabValue::Number(x) => *x,
            LabValue::Text(_) => None,
        }
    }
}

fn reference_time() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd).map_or(mean, |d| d.sample(rng))
}

fn log_normal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    LogNormal::new(median.ln(), sigma).map_or(median, |d| d.sample(rng))
}

fn simulate(rng: &mut ChaCha8Rng) -> LabSample {
    let sample_type = rng.gen_range(0..SAMPLE_TYPES.len());
    let name = SAMPLE_TYPES[sample_type].0;
    let age_days = rng.gen_range(1.0..900.0_f64);
    let collected_at = reference_time() - Duration::minutes((age_days * 1440.0) as i64);
    let delay_hours = log_normal(rng, 4.5, 1.3).min(168.0);
    let processed_at = collected_at + Duration::minutes((delay_hours * 60.0) as i64);
    let storage_target_c = match name {
        "blood" | "saliva" | "urine" => 4.0,
        "dna_extract" => -20.0,
        "tissue" if rng.gen_bool(0.3) => -196.0,
        _ => -80.0,
    };
    let noise_sd = 0.2 + 1.5 * rng.gen::<f64>().powi(2);
    let mut temperature_log: Vec<f64> = (0..TEMPERATURE_READINGS)
        .map(|_| normal(rng, storage_target_c, noise_sd))
        .collect();
    if rng.gen_bool(0.15) {
        let start = rng.gen_range(0..TEMPERATURE_READINGS - 10);
        let length = rng.gen_range(3..10);
        let height = normal(rng, 8.0, 4.0).abs();
        for r in &mut temperature_log[start..start + length] {
            *r += height;
        }
    }
    let lambda = 0.6 + age_days / 400.0;
    let freeze_thaw_cycles = Poisson::new(lambda)
        .map_or(0.0, |d| d.sample(rng))
        .min(10.0) as u32;
    let volume_ml = match name {
        "blood" => rng.gen_range(2.0..10.0),
        "plasma" | "serum" => rng.gen_range(0.5..4.0),
        "tissue" => rng.gen_range(0.05..0.5),
        "saliva" => rng.gen_range(1.0..5.0),
        "urine" => rng.gen_range(5.0..50.0),
        _ => rng.gen_range(0.02..0.2),
    };
    let concentration_ng_ul = match name {
        "dna_extract" | "rna_extract" => log_normal(rng, 80.0, 0.8),
        "tissue" => log_normal(rng, 150.0, 0.6),
        _ => log_normal(rng, 25.0, 0.7),
    };
    let ideal = ideal_260_280(name);
    let contamination = rng.gen::<f64>().powi(3);
    let purity_260_280 = normal(rng, ideal - 0.25 * contamination, 0.06);
    let purity_260_230 =
        (!rng.gen_bool(0.03)).then(|| normal(rng, 2.05 - 0.6 * contamination, 0.2));
    let measures_rin = matches!(name, "blood" | "tissue" | "rna_extract");
    let rin_mean =
        9.3 - 0.45 * f64::from(freeze_thaw_cycles) - 0.02 * delay_hours - age_days / 600.0;
    let rin = measures_rin.then(|| normal(rng, rin_mean, 0.5).clamp(1.0, 10.0));
    let mut temperature = TemperatureStats::default();
    for reading in temperature_log {
        temperature.push(reading, storage_target_c);
    }
    LabSample {
        sample_type: Some(name.to_string()),
        collected_at: Some(collected_at),
        processed_at: Some(processed_at),
        temperature,
        freeze_thaw_cycles,
        volume_ml: Some(volume_ml),
        concentration_ng_ul: Some(concentration_ng_ul),
        purity_260_280: Some(purity_260_280),
        purity_260_230,
        rin,
        transport_time_hours: Some(log_normal(rng, 6.0, 0.7).min(96.0)),
        storage_fill_fraction: Some(rng.gen_range(0.2..0.99)),
    }
}

/// Delay buckets: immediate <= 1 h, same_day <= 24 h, next_day <= 48 h,
/// delayed beyond.
pub fn processing_delay_category(hours: f64) -> &'static str {
    if hours <= 1.0 {
        "immediate"
    } else if hours <= 24.0 {
        "same_day"
    } else if hours <= 48.0 {
        "next_day"
    } else {
        "delayed"
    }
}

/// Heuristic risk composite in 0..100 (not the ground truth): weighted,
/// saturating shares of freeze-thaw (25%), temperature deviation (25%),
/// processing delay (20%), purity deviation (15%) and age (15%).
pub fn quality_risk_score(
    freeze_thaw_cycles: f64,
    temperature_deviation: f64,
    processing_delay_hours: f64,
    purity_deviation: f64,
    sample_age_days: f64,
) -> f64 {
    100.0
        * (0.25 * (freeze_thaw_cycles / 5.0).min(1.0)
            + 0.25 * (temperature_deviation / 3.0).min(1.0)
            + 0.20 * (processing_delay_hours / 48.0).min(1.0)
            + 0.15 * (purity_deviation / 0.3).min(1.0)
            + 0.15 * (sample_age_days / 730.0).min(1.0))
}

fn number(cells: &[LabValue; 18], name: &str) -> Option<f64> {
    cells[feature_index(name)?].number()
}

/// A sample type's degradation sensitivity (1.0 for types outside
/// [`SAMPLE_TYPES`]).
fn sensitivity(sample_type: Option<&str>) -> f64 {
    SAMPLE_TYPES
        .iter()
        .find(|(name, _)| Some(*name) == sample_type)
        .map_or(1.0, |(_, s)| *s)
}

/// The documented ground truth (see the module docs), noise excluded.
fn true_quality(s: &LabSample, cells: &[LabValue; 18]) -> f64 {
    let f = |name| number(cells, name).unwrap_or(0.0);
    let sens = sensitivity(s.sample_type.as_deref());
    let purity_230_penalty =
        number(cells, "purity_260_230").map_or(0.0, |p| 6.0 * (1.8 - p).max(0.0));
    let rin_penalty = number(cells, "rin").map_or(0.0, |r| 2.5 * (8.0 - r).max(0.0));
    100.0
        - 4.0 * (1.0 + f("sample_age_days") / 90.0).ln()
        - 5.0 * sens * f("freeze_thaw_cycles")
        - 3.0 * sens * f("temperature_deviation")
        - 1.2 * sens * (f("temperature_max_excursion") - 2.0).max(0.0)
        - 8.0 * (1.0 + f("processing_delay_hours") / 6.0).ln()
        - 60.0 * f("purity_deviation")
        - purity_230_penalty
        - rin_penalty
        - if f("total_yield_ug") < 1.0 { 8.0 } else { 0.0 }
        - 4.0 * (f("storage_utilization") - 0.85).max(0.0) / 0.15
        - 0.2 * f("transport_time_hours")
}

fn format_cell(cell: &LabValue, out: &mut String) {
    match cell {
        LabValue::Text(Some(s)) => out.push_str(s),
        LabValue::Number(Some(x)) => out.push_str(&format!("{x:.4}")),
        LabValue::Number(None) | LabValue::Text(None) => out.push_str("NA"),
    }
}

/// A CSV of `n` simulated samples: the 18 features plus `quality_score`.
/// The same `n` and `seed` always give the same bytes.
pub fn generate_csv(n: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = FEATURES.join(",");
    out.push(',');
    out.push_str(TARGET);
    out.push('\n');
    for _ in 0..n {
        let sample = simulate(&mut rng);
        let cells = lab_features(&sample, reference_time());
        let score = (true_quality(&sample, &cells) + normal(&mut rng, 0.0, 3.0)).clamp(0.0, 100.0);
        for cell in &cells {
            format_cell(cell, &mut out);
            out.push(',');
        }
        out.push_str(&format!("{score:.2}\n"));
    }
    out
}

/// One realistic sample's 18 features as a prediction request record
/// (missing measurements are `null`).
pub fn example_record(seed: u64) -> Map<String, Value> {
    example_sample(seed).0
}

/// [`example_record`] and the quality the lab then measures for that
/// sample (its true quality with the generator's measurement noise): what
/// a lab reports as the outcome of a prediction.
pub fn example_sample(seed: u64) -> (Map<String, Value>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sample = simulate(&mut rng);
    let cells = lab_features(&sample, reference_time());
    let measured = (true_quality(&sample, &cells) + normal(&mut rng, 0.0, 3.0)).clamp(0.0, 100.0);
    let record = FEATURES
        .iter()
        .zip(cells)
        .map(|(name, cell)| {
            let value = match cell {
                LabValue::Number(x) => LabValue::Number(x.map(|x| (x * 1e4).round() / 1e4)),
                text => text,
            }
            .to_json();
            (name.to_string(), value)
        })
        .collect();
    (record, (measured * 100.0).round() / 100.0)
}

/// A linear model of the quality score fitted on `rows` generated samples,
/// as its artifact's bytes: a real, small model for examples and for tests
/// of the code that stores, registers and serves artifacts.
pub fn example_artifact_bytes(rows: usize, seed: u64) -> crate::Result<Vec<u8>> {
    let data = crate::dataset::Dataset::from_csv(
        generate_csv(rows, seed).as_bytes(),
        &crate::dataset::Limits::default(),
    )?;
    let mut params = Map::new();
    params.insert("family".into(), Value::String("linear".into()));
    let opts = crate::automl::EvalOptions::default();
    let artifact = crate::automl::fit_final(&data, TARGET, &params, &opts, Default::default())?;
    Ok(artifact.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{ColumnKind, Dataset, Limits};

    #[test]
    fn generator_is_deterministic_and_has_18_features() {
        let a = generate_csv(300, 42);
        assert_eq!(a, generate_csv(300, 42));
        assert_ne!(a, generate_csv(300, 43));
        let d = Dataset::from_csv(a.as_bytes(), &Limits::default()).unwrap_or_default();
        assert_eq!(d.n_rows(), 300);
        assert_eq!(d.columns.len(), 19);
        let names: Vec<&str> = d.column_names();
        assert_eq!(&names[..18], &FEATURES);
        assert_eq!(names[18], TARGET);
        let schema = d.schema();
        let kind = |n: &str| schema.columns.iter().find(|c| c.name == n).map(|c| c.kind);
        assert_eq!(kind("sample_type"), Some(ColumnKind::Categorical));
        assert_eq!(
            kind("processing_delay_category"),
            Some(ColumnKind::Categorical)
        );
        assert_eq!(kind("rin"), Some(ColumnKind::Numeric));
        assert_eq!(kind(TARGET), Some(ColumnKind::Numeric));
        // RIN is missing for sample types where it is not measured.
        assert!(schema
            .columns
            .iter()
            .any(|c| c.name == "rin" && c.missing > 50));
    }

    #[test]
    fn scores_span_the_categories() {
        let d = Dataset::from_csv(generate_csv(2000, 1).as_bytes(), &Limits::default())
            .unwrap_or_default();
        let Some(crate::dataset::ColumnData::Numeric(y)) = d.column(TARGET).map(|c| c.data.clone())
        else {
            panic!("target should be numeric");
        };
        let share =
            |cat: &str| y.iter().filter(|&&s| quality_category(s) == cat).count() as f64 / 2000.0;
        for cat in ["excellent", "good", "acceptable", "poor"] {
            assert!(share(cat) > 0.03, "{cat}: {}", share(cat));
        }
        assert!(y.iter().all(|s| (0.0..=100.0).contains(s)));
    }

    #[test]
    fn example_record_has_every_feature() {
        let r = example_record(5);
        assert_eq!(r.len(), 18);
        assert_eq!(r, example_record(5));
        assert!(r["sample_type"].is_string());
        assert!(r["sample_age_days"].is_number());
        assert_eq!(processing_delay_category(0.5), "immediate");
        assert_eq!(processing_delay_category(30.0), "next_day");
    }
}
