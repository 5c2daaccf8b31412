//! The lab event processor: histories, the in-order fast path, and the
//! replay that corrects a sample's timeline after a late event.

use std::collections::{HashMap, HashSet};

use tracseq_learn::lab::LabValue;

use super::fold::{Fold, Item};
use super::{Checked, SampleChange};
use crate::time::Micros;

/// Lab feature values of one sample at one event time: the features
/// (indices into `tracseq_learn::lab::FEATURES`) whose visible value
/// changes there.
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub sample: String,
    pub event_time: Micros,
    pub features: Vec<(usize, LabValue)>,
}

/// Total order of items: time, class (own, reading, fill), arrival.
type Key = (Micros, u8, u64);

#[derive(Debug, Default)]
struct SampleState {
    own: Vec<(Key, SampleChange)>,
    fold: Fold,
    /// The latest key the sample's stored values reflect.
    last: Option<Key>,
    /// Per feature, the points where a value was emitted and the value
    /// readers see there (a later emission at the same point replaces
    /// it: the later ingestion wins the tie). Kept so that a replay knows
    /// exactly what readers currently see at every time.
    entries: Vec<Vec<(Key, LabValue)>>,
}

impl SampleState {
    fn visible(&self, feature: usize, at: Key) -> LabValue {
        let list = &self.entries[feature];
        let end = list.partition_point(|(k, _)| *k <= at);
        end.checked_sub(1)
            .map_or_else(|| missing(feature), |i| list[i].1.clone())
    }

    /// Makes readers see `desired` from `at` on (until the next entry);
    /// returns the features that needed an entry.
    fn settle(&mut self, at: Key, desired: &[LabValue; 18]) -> Vec<(usize, LabValue)> {
        if self.entries.is_empty() {
            self.entries = vec![Vec::new(); desired.len()];
        }
        let mut out = Vec::new();
        for (i, v) in desired.iter().enumerate() {
            if self.visible(i, at) == *v {
                continue;
            }
            let list = &mut self.entries[i];
            let pos = list.partition_point(|(k, _)| *k < at);
            match list.get_mut(pos) {
                Some((k, old)) if *k == at => *old = v.clone(),
                _ => list.insert(pos, (at, v.clone())),
            }
            out.push((i, v.clone()));
        }
        self.last = self.last.max(Some(at));
        out
    }
}

/// The missing value of a feature, with the feature's kind.
fn missing(feature: usize) -> LabValue {
    match Fold::default().features(0).get(feature) {
        Some(LabValue::Text(_)) => LabValue::Text(None),
        _ => LabValue::Number(None),
    }
}

/// Keeps every sample's history and computes the lab features as events
/// arrive. Not thread-safe by itself: the feature store serialises events
/// through one processor.
#[derive(Debug, Default)]
pub struct LabProcessor {
    samples: HashMap<String, SampleState>,
    readings: HashMap<String, Vec<(Key, f64)>>,
    fills: HashMap<String, Vec<(Key, f64)>>,
    unit_members: HashMap<String, HashSet<String>>,
    location_members: HashMap<String, HashSet<String>>,
    seq: u64,
}

fn insert_sorted<T>(list: &mut Vec<(Key, T)>, key: Key, value: T) {
    let at = list.partition_point(|(k, _)| *k <= key);
    list.insert(at, (key, value));
}

fn latest_at(list: Option<&Vec<(Key, f64)>>, time: Micros) -> Option<f64> {
    let list = list?;
    let end = list.partition_point(|(k, _)| k.0 <= time);
    end.checked_sub(1).map(|i| list[i].1)
}

impl LabProcessor {
    /// How many samples have a history.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// The current state of `sample`, if it has a history.
    pub fn state(&self, sample: &str) -> Option<&Fold> {
        self.samples.get(sample).map(|s| &s.fold)
    }

    /// Applies one validated event; returns the feature values it changes,
    /// in time order per sample.
    pub fn apply(&mut self, event: Checked) -> Vec<Emission> {
        self.seq += 1;
        let seq = self.seq;
        match event {
            Checked::Sample {
                sample,
                time,
                change,
            } => {
                let key = (time, 0, seq);
                if let SampleChange::Moved {
                    storage_unit,
                    location,
                    ..
                } = &change
                {
                    self.unit_members
                        .entry(storage_unit.clone())
                        .or_default()
                        .insert(sample.clone());
                    if let Some(l) = location {
                        self.location_members
                            .entry(l.clone())
                            .or_default()
                            .insert(sample.clone());
                    }
                }
                let state = self.samples.entry(sample.clone()).or_default();
                insert_sorted(&mut state.own, key, change);
                self.touch(&sample, key)
            }
            Checked::Reading {
                unit,
                time,
                celsius,
            } => {
                let key = (time, 1, seq);
                insert_sorted(self.readings.entry(unit.clone()).or_default(), key, celsius);
                self.fan_out(self.unit_members.get(&unit).cloned(), key)
            }
            Checked::Fill {
                location,
                time,
                fraction,
            } => {
                let key = (time, 2, seq);
                insert_sorted(
                    self.fills.entry(location.clone()).or_default(),
                    key,
                    fraction,
                );
                self.fan_out(self.location_members.get(&location).cloned(), key)
            }
        }
    }

    fn fan_out(&mut self, members: Option<HashSet<String>>, key: Key) -> Vec<Emission> {
        let mut members: Vec<String> = members.unwrap_or_default().into_iter().collect();
        members.sort();
        members.iter().flat_map(|s| self.touch(s, key)).collect()
    }

    /// Brings `sample` up to date with the item at `key`, which is already
    /// in the histories.
    fn touch(&mut self, sample: &str, key: Key) -> Vec<Emission> {
        let Some(state) = self.samples.get(sample) else {
            return Vec::new();
        };
        let mut in_order = state.last.is_none_or(|l| key > l);
        // A move makes the new unit's readings and the new location's fill
        // levels concern the sample: any that already arrived with a later
        // time must be folded in, which the fast path cannot do.
        if in_order && key.1 == 0 {
            if let Some((
                _,
                SampleChange::Moved {
                    storage_unit,
                    location,
                    ..
                },
            )) = state.own.iter().find(|(k, _)| *k == key)
            {
                let later = |list: Option<&Vec<(Key, f64)>>| {
                    list.and_then(|l| l.last()).is_some_and(|(k, _)| *k > key)
                };
                in_order = !later(self.readings.get(storage_unit))
                    && !location.as_ref().is_some_and(|l| later(self.fills.get(l)));
            }
        }
        if in_order {
            self.advance(sample, key)
        } else {
            self.replay(sample, key)
        }
    }

    /// The fast path: the item comes after everything the sample has seen.
    fn advance(&mut self, sample: &str, key: Key) -> Vec<Emission> {
        let fills = &self.fills;
        let fill_at = |l: &str, t: Micros| latest_at(fills.get(l), t);
        let Some(state) = self.samples.get_mut(sample) else {
            return Vec::new();
        };
        let touched = match key.1 {
            0 => state
                .own
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, c)| c.clone())
                .is_some_and(|c| state.fold.apply(key.0, &Item::Own(&c), &fill_at)),
            1 => state.fold.unit.clone().is_some_and(|(unit, _)| {
                let celsius = latest_with_key(self.readings.get(&unit), key);
                celsius.is_some_and(|c| {
                    state.fold.apply(
                        key.0,
                        &Item::Reading {
                            unit: &unit,
                            celsius: c,
                        },
                        &fill_at,
                    )
                })
            }),
            _ => state.fold.location.clone().is_some_and(|location| {
                let fraction = latest_with_key(fills.get(&location), key);
                fraction.is_some_and(|f| {
                    state.fold.apply(
                        key.0,
                        &Item::Fill {
                            location: &location,
                            fraction: f,
                        },
                        &fill_at,
                    )
                })
            }),
        };
        if !touched {
            return Vec::new();
        }
        let desired = state.fold.features(key.0);
        let features = state.settle(key, &desired);
        if features.is_empty() {
            return Vec::new();
        }
        vec![Emission {
            sample: sample.to_string(),
            event_time: key.0,
            features,
        }]
    }

    /// The slow path: rebuild the sample's timeline with the late item and
    /// make readers' view match it at every point from the late item on.
    fn replay(&mut self, sample: &str, late: Key) -> Vec<Emission> {
        let Some(state) = self.samples.get(sample) else {
            return Vec::new();
        };
        let mut items: Vec<(Key, Item)> =
            state.own.iter().map(|(k, c)| (*k, Item::Own(c))).collect();
        let mut units: Vec<&str> = Vec::new();
        let mut locations: Vec<&str> = Vec::new();
        for (_, c) in &state.own {
            if let SampleChange::Moved {
                storage_unit,
                location,
                ..
            } = c
            {
                units.push(storage_unit);
                locations.extend(location.as_deref());
            }
        }
        units.sort_unstable();
        units.dedup();
        locations.sort_unstable();
        locations.dedup();
        for unit in units {
            for (k, c) in self.readings.get(unit).into_iter().flatten() {
                items.push((*k, Item::Reading { unit, celsius: *c }));
            }
        }
        for location in locations {
            for (k, f) in self.fills.get(location).into_iter().flatten() {
                items.push((
                    *k,
                    Item::Fill {
                        location,
                        fraction: *f,
                    },
                ));
            }
        }
        items.sort_by_key(|(k, _)| *k);
        // Points from the late item on where readers' view may have to
        // change: where the new timeline is touched, and where a value was
        // stored before (it may now be wrong, and it shadows anything
        // emitted earlier).
        let mut points: Vec<Key> = state
            .entries
            .iter()
            .flatten()
            .map(|(k, _)| *k)
            .filter(|k| *k >= late)
            .collect();
        let fills = &self.fills;
        let fill_at = |l: &str, t: Micros| latest_at(fills.get(l), t);
        let mut fold = Fold::default();
        let mut desired: Vec<(Key, [LabValue; 18])> = Vec::new();
        let mut before_late: Option<[LabValue; 18]> = None;
        let mut last_touched = None;
        for (key, item) in &items {
            if fold.apply(key.0, item, &fill_at) {
                last_touched = Some(*key);
                if *key >= late {
                    points.push(*key);
                    desired.push((*key, fold.features(key.0)));
                } else {
                    before_late = Some(fold.features(key.0));
                }
            }
        }
        points.sort_unstable();
        points.dedup();
        let Some(state) = self.samples.get_mut(sample) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut d = 0;
        let nothing: [LabValue; 18] = std::array::from_fn(missing);
        let mut current = before_late.unwrap_or(nothing);
        for point in points {
            while d < desired.len() && desired[d].0 <= point {
                current = desired[d].1.clone();
                d += 1;
            }
            let features = state.settle(point, &current);
            if !features.is_empty() {
                out.push(Emission {
                    sample: sample.to_string(),
                    event_time: point.0,
                    features,
                });
            }
        }
        state.fold = fold;
        state.last = state.last.max(last_touched);
        out
    }
}

fn latest_with_key(list: Option<&Vec<(Key, f64)>>, key: Key) -> Option<f64> {
    let list = list?;
    list.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
}
