//! Point-in-time correctness: which stored value a row at time `t` sees.
//!
//! The rule, Feast's, written once and used by every reader (the online
//! store's ttl check, `as_of` lookups, and as the reference the offline
//! engine is tested against):
//! - only values with event time `<= t` (nothing from the future);
//! - with a ttl, only values with event time `>= t - ttl` (bounds
//!   inclusive, as Feast's file offline store);
//! - among those, the latest event time; ties go to the later ingestion;
//! - optionally (`exclude_ingested_after`) values ingested after `t` are
//!   invisible, so a backfill written today cannot leak into a training row
//!   dated last year: the row sees what was *known* at `t`;
//! - no value: the row is kept and the feature is null (a left join).
//!
//! Times are microseconds since the Unix epoch (UTC), the resolution of
//! the offline store's Parquet timestamps.

use std::collections::HashMap;

use serde_json::Value;

/// One stored value of one feature for one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub event_time: i64,
    pub ingested_at: i64,
    pub value: Value,
}

/// How a lookup treats time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AsOf {
    /// The row's time `t`.
    pub time: i64,
    /// The feature's ttl in microseconds, if any.
    pub ttl: Option<i64>,
    /// Hide values ingested after `t`.
    pub exclude_ingested_after: bool,
}

impl AsOf {
    /// Whether a value with these times may answer this lookup.
    pub fn admits(&self, event_time: i64, ingested_at: i64) -> bool {
        event_time <= self.time
            && self
                .ttl
                .is_none_or(|ttl| event_time >= self.time.saturating_sub(ttl))
            && !(self.exclude_ingested_after && ingested_at > self.time)
    }
}

/// Orders observations the way [`latest`] expects: by event time, then
/// ingestion time.
pub fn sort(observations: &mut [Observation]) {
    observations.sort_by_key(|o| (o.event_time, o.ingested_at));
}

/// The value `as_of` sees among `sorted` (ordered by [`sort`]), or `None`.
pub fn latest<'a>(sorted: &'a [Observation], as_of: &AsOf) -> Option<&'a Observation> {
    let end = sorted.partition_point(|o| o.event_time <= as_of.time);
    // Walking back from the newest candidate, the first admitted one is the
    // answer: later (event, ingestion) pairs come first, so an event-time
    // tie goes to the later ingestion.
    let floor = as_of.ttl.map(|ttl| as_of.time.saturating_sub(ttl));
    for o in sorted[..end].iter().rev() {
        if floor.is_some_and(|f| o.event_time < f) {
            return None;
        }
        if !(as_of.exclude_ingested_after && o.ingested_at > as_of.time) {
            return Some(o);
        }
    }
    None
}

/// One feature's stored values, by entity, each list sorted by [`sort`].
pub type FeatureHistory = HashMap<String, Vec<Observation>>;

/// The point-in-time join of `rows` (entity id, time) with `features`
/// (each a history and its ttl in microseconds): one output row per input
/// row, in order, with one value per feature (null when none is visible).
pub fn join(
    rows: &[(String, i64)],
    features: &[(&FeatureHistory, Option<i64>)],
    exclude_ingested_after: bool,
) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|(entity, time)| {
            features
                .iter()
                .map(|(history, ttl)| {
                    let as_of = AsOf {
                        time: *time,
                        ttl: *ttl,
                        exclude_ingested_after,
                    };
                    history
                        .get(entity)
                        .and_then(|obs| latest(obs, &as_of))
                        .map_or(Value::Null, |o| o.value.clone())
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
#[path = "pit_tests.rs"]
mod tests;
