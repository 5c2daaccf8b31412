//! A sample's raw lab record and the one definition of its 18 features.
//!
//! The synthetic generator and the feature store's real-time event
//! processor both build a [`LabSample`] and call [`lab_features`]: a model
//! trained on generated (or stored) features sees exactly what the live
//! feature store computes from lab events.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::{LabValue, FEATURES};

/// Pure DNA reads ~1.8 on A260/280, pure RNA ~2.0.
pub fn ideal_260_280(sample_type: &str) -> f64 {
    if sample_type == "rna_extract" {
        2.0
    } else {
        1.8
    }
}

/// Running statistics of a sample's storage temperature readings against
/// its storage target: O(1) memory however long the sample is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemperatureStats {
    pub readings: u64,
    /// Sum of |reading - target|.
    pub sum_abs_deviation: f64,
    /// Largest reading - target seen (warm side), never below 0.
    pub max_excursion: f64,
    /// Welford's running mean and sum of squared differences of readings.
    pub mean: f64,
    pub m2: f64,
}

impl TemperatureStats {
    /// Adds one reading, in °C, taken while the sample's target was `target_c`.
    pub fn push(&mut self, reading_c: f64, target_c: f64) {
        let deviation = reading_c - target_c;
        self.readings += 1;
        self.sum_abs_deviation += deviation.abs();
        self.max_excursion = self.max_excursion.max(deviation);
        let delta = reading_c - self.mean;
        self.mean += delta / self.readings as f64;
        self.m2 += delta * (reading_c - self.mean);
    }

    /// Mean absolute deviation from the target; `None` before any reading.
    pub fn deviation(&self) -> Option<f64> {
        (self.readings > 0).then(|| self.sum_abs_deviation / self.readings as f64)
    }

    pub fn max_excursion(&self) -> Option<f64> {
        (self.readings > 0).then_some(self.max_excursion)
    }

    /// Population standard deviation of the readings.
    pub fn variability(&self) -> Option<f64> {
        (self.readings > 0).then(|| (self.m2 / self.readings as f64).max(0.0).sqrt())
    }
}

/// What the lab knows about one sample. Everything but the type may be
/// unknown; a feature whose inputs are unknown is missing (`null`), never
/// guessed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LabSample {
    pub sample_type: Option<String>,
    pub collected_at: Option<NaiveDateTime>,
    pub processed_at: Option<NaiveDateTime>,
    pub temperature: TemperatureStats,
    pub freeze_thaw_cycles: u32,
    pub volume_ml: Option<f64>,
    pub concentration_ng_ul: Option<f64>,
    pub purity_260_280: Option<f64>,
    pub purity_260_230: Option<f64>,
    pub rin: Option<f64>,
    pub transport_time_hours: Option<f64>,
    /// Fill fraction (0..1) of the storage location the sample is in.
    pub storage_fill_fraction: Option<f64>,
}

fn hours_between(from: NaiveDateTime, to: NaiveDateTime) -> f64 {
    (to - from).num_seconds() as f64 / 3600.0
}

/// The 18 features of `sample` as known at time `at`, in [`FEATURES`] order.
pub fn lab_features(sample: &LabSample, at: NaiveDateTime) -> [LabValue; 18] {
    let age_days = sample.collected_at.map(|c| hours_between(c, at) / 24.0);
    let delay = sample
        .collected_at
        .zip(sample.processed_at)
        .map(|(c, p)| hours_between(c, p));
    let deviation = sample.temperature.deviation();
    let purity_deviation = sample
        .purity_260_280
        .map(|p| (p - ideal_260_280(sample.sample_type.as_deref().unwrap_or(""))).abs());
    let ft = f64::from(sample.freeze_thaw_cycles);
    let risk = match (deviation, delay, purity_deviation, age_days) {
        (Some(dev), Some(delay), Some(purity), Some(age)) => {
            Some(super::quality_risk_score(ft, dev, delay, purity, age))
        }
        _ => None,
    };
    let num = LabValue::Number;
    [
        LabValue::Text(sample.sample_type.clone()),
        num(age_days),
        num(delay),
        LabValue::Text(delay.map(|d| super::processing_delay_category(d).to_string())),
        num(deviation),
        num(sample.temperature.max_excursion()),
        num(sample.temperature.variability()),
        num(Some(ft)),
        num(sample.volume_ml),
        num(sample.concentration_ng_ul),
        num(sample.purity_260_280),
        num(sample.purity_260_230),
        num(purity_deviation),
        num(sample.rin),
        num(sample.transport_time_hours),
        num(sample.storage_fill_fraction),
        num(sample
            .volume_ml
            .zip(sample.concentration_ng_ul)
            .map(|(v, c)| v * c)),
        num(risk),
    ]
}

/// The position of a lab feature in [`FEATURES`].
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| *f == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(day: u32, hour: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2025, 3, day)
            .and_then(|d| d.and_hms_opt(hour, 0, 0))
            .unwrap_or_default()
    }

    #[test]
    fn a_sample_with_nothing_known_has_only_its_freeze_thaw_count() {
        let f = lab_features(&LabSample::default(), at(1, 0));
        let known: Vec<&str> = FEATURES
            .iter()
            .zip(&f)
            .filter(|(_, v)| v.to_json() != serde_json::Value::Null)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(known, ["freeze_thaw_cycles"]);
    }

    #[test]
    fn features_follow_the_record_and_the_time_asked() {
        let mut s = LabSample {
            sample_type: Some("rna_extract".into()),
            collected_at: Some(at(1, 0)),
            processed_at: Some(at(2, 6)),
            freeze_thaw_cycles: 2,
            volume_ml: Some(0.1),
            concentration_ng_ul: Some(50.0),
            purity_260_280: Some(1.9),
            ..LabSample::default()
        };
        for r in [-79.0, -81.0, -76.0] {
            s.temperature.push(r, -80.0);
        }
        let f = lab_features(&s, at(11, 0));
        let n = |name: &str| f[feature_index(name).unwrap_or(0)].number();
        assert_eq!(n("sample_age_days"), Some(10.0));
        assert_eq!(n("processing_delay_hours"), Some(30.0));
        assert_eq!(
            f[3],
            LabValue::Text(Some("next_day".into())),
            "30 h is next-day processing"
        );
        assert_eq!(n("temperature_deviation"), Some(2.0));
        assert_eq!(n("temperature_max_excursion"), Some(4.0));
        let var = n("temperature_variability").unwrap_or(0.0);
        assert!((var - (38.0_f64 / 9.0).sqrt()).abs() < 1e-12, "{var}");
        assert!((n("purity_deviation").unwrap_or(0.0) - 0.1).abs() < 1e-12);
        assert_eq!(n("total_yield_ug"), Some(5.0));
        assert!(n("quality_risk_score").is_some());
        // A day later the sample is a day older; nothing else moves.
        let g = lab_features(&s, at(12, 0));
        assert_eq!(g[1].number(), Some(11.0));
        assert_eq!(&g[2..17], &f[2..17]);
    }
}
