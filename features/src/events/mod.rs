//! Raw lab events and the real-time computation of the lab features.
//!
//! A LIMS sends what happens: a sample collected, received, processed,
//! measured, moved into a storage unit, thawed; a storage unit's
//! temperature reading; a location's fill level. [`LabProcessor`] keeps
//! each sample's history and, for every event, computes the 18 lab features
//! of every sample the event touches, at the event's time, with
//! `tracseq_learn::lab::lab_features`, the function the sample-quality
//! generator uses. Late and out-of-order events are normal: an event older
//! than what a sample has already seen replays that sample's timeline from
//! the event's time and emits the corrected values, stamped with their
//! original event times (a later ingestion wins ties, so the correction is
//! what every reader sees from then on).

mod fold;
mod processor;

use serde::{Deserialize, Serialize};
use tracseq_core::{Error, Result};

use crate::time::{self, Micros, MICROS_PER_SECOND};

pub use fold::{Fold, Item};
pub use processor::{Emission, LabProcessor};

/// Longest sample, storage unit or location id.
pub const MAX_ID_CHARS: usize = 200;
/// How far in the future an event may be dated (clock skew between the
/// LIMS and this service).
pub const MAX_FUTURE_SECONDS: i64 = 300;

/// One raw lab event, as sent to `POST /events`. `at` is when it happened
/// (RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LabEvent {
    SampleCollected {
        sample: String,
        at: String,
        sample_type: String,
        #[serde(default)]
        volume_ml: Option<f64>,
    },
    SampleReceived {
        sample: String,
        at: String,
        /// Hours in transport; when absent, the time since collection.
        #[serde(default)]
        transport_time_hours: Option<f64>,
    },
    SampleProcessed {
        sample: String,
        at: String,
    },
    SampleMeasured {
        sample: String,
        at: String,
        #[serde(default)]
        volume_ml: Option<f64>,
        #[serde(default)]
        concentration_ng_ul: Option<f64>,
        #[serde(default)]
        purity_260_280: Option<f64>,
        #[serde(default)]
        purity_260_230: Option<f64>,
        #[serde(default)]
        rin: Option<f64>,
    },
    /// Into a storage unit (held at `target_temperature_c`), optionally at
    /// a location whose fill level is reported separately.
    SampleMoved {
        sample: String,
        at: String,
        storage_unit: String,
        target_temperature_c: f64,
        #[serde(default)]
        location: Option<String>,
    },
    SampleThawed {
        sample: String,
        at: String,
    },
    TemperatureReading {
        storage_unit: String,
        at: String,
        temperature_c: f64,
    },
    LocationFill {
        location: String,
        at: String,
        /// 0 (empty) to 1 (full).
        fill_fraction: f64,
    },
}

/// What a sample's own event changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SampleChange {
    Collected {
        sample_type: String,
        volume_ml: Option<f64>,
    },
    Received {
        transport_time_hours: Option<f64>,
    },
    Processed,
    Measured {
        volume_ml: Option<f64>,
        concentration_ng_ul: Option<f64>,
        purity_260_280: Option<f64>,
        purity_260_230: Option<f64>,
        rin: Option<f64>,
    },
    Moved {
        storage_unit: String,
        target_temperature_c: f64,
        location: Option<String>,
    },
    Thawed,
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    Sample {
        sample: String,
        time: Micros,
        change: SampleChange,
    },
    Reading {
        unit: String,
        time: Micros,
        celsius: f64,
    },
    Fill {
        location: String,
        time: Micros,
        fraction: f64,
    },
}

impl Checked {
    pub fn time(&self) -> Micros {
        match self {
            Checked::Sample { time, .. }
            | Checked::Reading { time, .. }
            | Checked::Fill { time, .. } => *time,
        }
    }
}

fn id(field: &str, value: &str) -> Result<String> {
    let ok = !value.trim().is_empty()
        && value.chars().count() <= MAX_ID_CHARS
        && !value.chars().any(char::is_control);
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::Invalid(format!(
            "{field}: an id is 1 to {MAX_ID_CHARS} printable characters"
        )))
    }
}

fn within(field: &str, value: Option<f64>, lo: f64, hi: f64, unit: &str) -> Result<Option<f64>> {
    match value {
        Some(x) if !(x.is_finite() && (lo..=hi).contains(&x)) => Err(Error::Invalid(format!(
            "{field}: {x} is outside {lo}..={hi}{unit}"
        ))),
        v => Ok(v),
    }
}

impl LabEvent {
    /// Validates the event (`field` names it in errors, e.g. `events[4]`)
    /// against the clock `now`.
    pub fn check(&self, field: &str, now: Micros) -> Result<Checked> {
        let f = |name: &str| format!("{field}.{name}");
        let at = match self {
            LabEvent::SampleCollected { at, .. }
            | LabEvent::SampleReceived { at, .. }
            | LabEvent::SampleProcessed { at, .. }
            | LabEvent::SampleMeasured { at, .. }
            | LabEvent::SampleMoved { at, .. }
            | LabEvent::SampleThawed { at, .. }
            | LabEvent::TemperatureReading { at, .. }
            | LabEvent::LocationFill { at, .. } => at,
        };
        let time = time::parse(&f("at"), at)?;
        if time > now + MAX_FUTURE_SECONDS * MICROS_PER_SECOND {
            return Err(Error::Invalid(format!(
                "{}: {} is in the future (more than {MAX_FUTURE_SECONDS} s after this server's clock)",
                f("at"),
                time::format(time)
            )));
        }
        let sample = |s: &str, change| -> Result<Checked> {
            Ok(Checked::Sample {
                sample: id(&f("sample"), s)?,
                time,
                change,
            })
        };
        match self {
            LabEvent::SampleCollected {
                sample: s,
                sample_type,
                volume_ml,
                ..
            } => sample(
                s,
                SampleChange::Collected {
                    sample_type: id(&f("sample_type"), sample_type)?,
                    volume_ml: within(&f("volume_ml"), *volume_ml, 0.0, 1e6, " ml")?,
                },
            ),
            LabEvent::SampleReceived {
                sample: s,
                transport_time_hours,
                ..
            } => sample(
                s,
                SampleChange::Received {
                    transport_time_hours: within(
                        &f("transport_time_hours"),
                        *transport_time_hours,
                        0.0,
                        24.0 * 365.0,
                        " h",
                    )?,
                },
            ),
            LabEvent::SampleProcessed { sample: s, .. } => sample(s, SampleChange::Processed),
            LabEvent::SampleMeasured {
                sample: s,
                volume_ml,
                concentration_ng_ul,
                purity_260_280,
                purity_260_230,
                rin,
                ..
            } => {
                let change = SampleChange::Measured {
                    volume_ml: within(&f("volume_ml"), *volume_ml, 0.0, 1e6, " ml")?,
                    concentration_ng_ul: within(
                        &f("concentration_ng_ul"),
                        *concentration_ng_ul,
                        0.0,
                        1e7,
                        " ng/µl",
                    )?,
                    purity_260_280: within(&f("purity_260_280"), *purity_260_280, 0.0, 10.0, "")?,
                    purity_260_230: within(&f("purity_260_230"), *purity_260_230, 0.0, 10.0, "")?,
                    rin: within(&f("rin"), *rin, 1.0, 10.0, "")?,
                };
                if [
                    volume_ml,
                    concentration_ng_ul,
                    purity_260_280,
                    purity_260_230,
                    rin,
                ]
                .iter()
                .all(|m| m.is_none())
                {
                    return Err(Error::Invalid(format!(
                        "{field}: a sample_measured event needs at least one of volume_ml, concentration_ng_ul, purity_260_280, purity_260_230, rin"
                    )));
                }
                sample(s, change)
            }
            LabEvent::SampleMoved {
                sample: s,
                storage_unit,
                target_temperature_c,
                location,
                ..
            } => sample(
                s,
                SampleChange::Moved {
                    storage_unit: id(&f("storage_unit"), storage_unit)?,
                    target_temperature_c: within(
                        &f("target_temperature_c"),
                        Some(*target_temperature_c),
                        -273.15,
                        200.0,
                        " °C",
                    )?
                    .unwrap_or_default(),
                    location: location
                        .as_deref()
                        .map(|l| id(&f("location"), l))
                        .transpose()?,
                },
            ),
            LabEvent::SampleThawed { sample: s, .. } => sample(s, SampleChange::Thawed),
            LabEvent::TemperatureReading {
                storage_unit,
                temperature_c,
                ..
            } => Ok(Checked::Reading {
                unit: id(&f("storage_unit"), storage_unit)?,
                time,
                celsius: within(
                    &f("temperature_c"),
                    Some(*temperature_c),
                    -273.15,
                    200.0,
                    " °C",
                )?
                .unwrap_or_default(),
            }),
            LabEvent::LocationFill {
                location,
                fill_fraction,
                ..
            } => Ok(Checked::Fill {
                location: id(&f("location"), location)?,
                time,
                fraction: within(&f("fill_fraction"), Some(*fill_fraction), 0.0, 1.0, "")?
                    .unwrap_or_default(),
            }),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
