//! One sample's state, folded item by item in time order.

use tracseq_learn::lab::{lab_features, LabSample, LabValue};

use super::SampleChange;
use crate::time::{to_naive, Micros, MICROS_PER_SECOND};

/// Something that may change a sample: its own event, a reading of a
/// storage unit, a fill level of a location.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    Own(&'a SampleChange),
    Reading { unit: &'a str, celsius: f64 },
    Fill { location: &'a str, fraction: f64 },
}

impl Item<'_> {
    /// Order among items with the same time: the sample's own events
    /// first (a sample moved at 10:00 is in its new unit for the 10:00
    /// reading), then readings, then fill levels.
    pub fn class(&self) -> u8 {
        match self {
            Item::Own(_) => 0,
            Item::Reading { .. } => 1,
            Item::Fill { .. } => 2,
        }
    }
}

/// A sample's state after the items applied so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fold {
    pub sample: LabSample,
    /// The storage unit the sample is in, and its target temperature.
    pub unit: Option<(String, f64)>,
    pub location: Option<String>,
    collected_at: Option<Micros>,
    received_at: Option<Micros>,
    explicit_transport: Option<f64>,
}

fn hours(from: Micros, to: Micros) -> f64 {
    (to - from) as f64 / (3_600.0 * MICROS_PER_SECOND as f64)
}

impl Fold {
    /// Applies `item` at `time`; `fill_at(location, time)` is the latest
    /// fill level of a location at or before a time (for a sample moved
    /// into a location whose level is already known). Returns whether the
    /// item concerned this sample.
    pub fn apply(
        &mut self,
        time: Micros,
        item: &Item,
        fill_at: &dyn Fn(&str, Micros) -> Option<f64>,
    ) -> bool {
        match item {
            Item::Own(change) => {
                self.own(time, change, fill_at);
                true
            }
            Item::Reading { unit, celsius } => match &self.unit {
                Some((u, target)) if u == unit => {
                    self.sample.temperature.push(*celsius, *target);
                    true
                }
                _ => false,
            },
            Item::Fill { location, fraction } => {
                if self.location.as_deref() == Some(*location) {
                    self.sample.storage_fill_fraction = Some(*fraction);
                    true
                } else {
                    false
                }
            }
        }
    }

    fn own(
        &mut self,
        time: Micros,
        change: &SampleChange,
        fill_at: &dyn Fn(&str, Micros) -> Option<f64>,
    ) {
        let s = &mut self.sample;
        match change {
            SampleChange::Collected {
                sample_type,
                volume_ml,
            } => {
                s.sample_type = Some(sample_type.clone());
                s.collected_at = Some(to_naive(time));
                self.collected_at = Some(time);
                if volume_ml.is_some() {
                    s.volume_ml = *volume_ml;
                }
            }
            SampleChange::Received {
                transport_time_hours,
            } => {
                self.received_at = Some(time);
                self.explicit_transport = *transport_time_hours;
            }
            SampleChange::Processed => {
                // The first processing is the one the delay measures.
                if s.processed_at.is_none() {
                    s.processed_at = Some(to_naive(time));
                }
            }
            SampleChange::Measured {
                volume_ml,
                concentration_ng_ul,
                purity_260_280,
                purity_260_230,
                rin,
            } => {
                for (slot, new) in [
                    (&mut s.volume_ml, volume_ml),
                    (&mut s.concentration_ng_ul, concentration_ng_ul),
                    (&mut s.purity_260_280, purity_260_280),
                    (&mut s.purity_260_230, purity_260_230),
                    (&mut s.rin, rin),
                ] {
                    if new.is_some() {
                        *slot = *new;
                    }
                }
            }
            SampleChange::Moved {
                storage_unit,
                target_temperature_c,
                location,
            } => {
                self.unit = Some((storage_unit.clone(), *target_temperature_c));
                if *location != self.location {
                    self.location = location.clone();
                    s.storage_fill_fraction = location.as_deref().and_then(|l| fill_at(l, time));
                }
            }
            SampleChange::Thawed => s.freeze_thaw_cycles += 1,
        }
        s.transport_time_hours = self.explicit_transport.or_else(|| {
            self.collected_at
                .zip(self.received_at)
                .map(|(c, r)| hours(c, r))
                .filter(|h| *h >= 0.0)
        });
    }

    /// The 18 lab features at `time`.
    pub fn features(&self, time: Micros) -> [LabValue; 18] {
        lab_features(&self.sample, to_naive(time))
    }
}
