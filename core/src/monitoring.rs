//! What the monitor finds and keeps: alerts (their lifecycle is in
//! [`crate::lifecycle::alert`]) and each served version's latest drift
//! scores, which `/metrics` publishes.
//!
//! The scheduler's monitor raises alerts (drift over its threshold, an
//! error-rate spike; the canary controller raises one per automatic
//! rollback) and delivers them; the api lists them (`GET /alerts`). Both
//! go through the [`crate::ports::AlertStore`] port.

use crate::lifecycle::alert::AlertKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::lifecycle::alert::{Alert, Delivery, DeliveryState, Raise, Severity};

/// Which alerts a listing holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertFilter {
    pub kind: Option<AlertKind>,
    pub model: Option<String>,
    /// Raised at or after.
    pub since: Option<DateTime<Utc>>,
}

impl AlertFilter {
    pub fn matches(&self, a: &Alert) -> bool {
        self.kind.is_none_or(|k| a.kind == k)
            && self.model.as_ref().is_none_or(|m| &a.model == m)
            && self.since.is_none_or(|t| a.at >= t)
    }
}

/// One feature's drift score in a monitor pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureScore {
    pub feature: String,
    /// `psi` (numbers) or `jensen_shannon` (categories).
    pub statistic: String,
    pub value: f64,
    pub drifted: bool,
}

/// The latest drift scores of one model version: what the monitor's last
/// pass over it found (features with too few live values have no score).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftScores {
    pub model: String,
    pub version: u32,
    pub at: DateTime<Utc>,
    /// Live records the pass compared.
    pub live_records: u64,
    pub features: Vec<FeatureScore>,
}
