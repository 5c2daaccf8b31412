//! The prediction log: one record per answer `/predict` gave — which model
//! version and traffic variant answered whom, for which entity, from which
//! features, with what output and how fast.
//!
//! It is what the rest of production serving reads: outcomes reported
//! later are joined to it, live metrics and A/B analyses are computed over
//! it, and the drift monitor compares its features with the training
//! profile. The api writes it behind `/predict` through a bounded,
//! batched writer, so serving never waits on it; the stores append and
//! never change a record.

use crate::ids::{DeploymentId, RequestId};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The longest entity id in characters (a sample's or a unit's id, not a
/// document).
pub const MAX_ENTITY_ID: usize = 128;
/// What an entity id may hold, as a JSON-schema pattern: no control
/// characters (the length is [`MAX_ENTITY_ID`]).
pub const ENTITY_ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";
/// The longest variant name.
pub const MAX_VARIANT: usize = 64;
/// The variant of a deployment without a traffic policy.
pub const PRIMARY: &str = "primary";

/// One logged prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Returned to the caller, who reports the outcome under it.
    pub request_id: RequestId,
    pub at: DateTime<Utc>,
    pub model: String,
    pub version: u32,
    /// Which arm of the deployment's traffic policy answered
    /// ([`PRIMARY`] without one).
    pub variant: String,
    /// What the prediction is about, when the caller said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    pub features: LoggedFeatures,
    /// The answer without its explanation: `value`, and for classifiers
    /// `label` and `probabilities`.
    pub output: Value,
    /// Time spent serving it, in microseconds.
    pub latency_us: u64,
    /// The name of the caller's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The live deployment whose traffic policy chose the version (absent
    /// when the request named a version or an alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<DeploymentId>,
    /// A shadow's copy: the request id of the answer it shadowed (whose
    /// outcome it is judged by). Never returned to anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_of: Option<RequestId>,
    /// Why the version gave no answer (its `output` is then null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PredictionRecord {
    /// Whether this is an answer someone received (not a shadow's copy,
    /// not a failure): what an outcome can be reported for.
    pub fn answered(&self) -> bool {
        self.shadow_of.is_none() && self.error.is_none()
    }
}

/// A logged record's features: the JSON object as the caller sent it.
///
/// Kept as text rather than a parsed map because the log is written on the
/// serving machine's CPU for every answer: text goes into the record's body
/// as it is, where a map would have every name escaped and every number
/// formatted again, and then freed node by node. The few readers (the
/// drift monitor, `GET /predictions` clients) parse it when they need it.
/// Two are equal when they hold the same features, however spaced.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoggedFeatures(Box<RawValue>);

impl LoggedFeatures {
    /// The text of `raw` as it is; the caller has checked that it is a JSON
    /// object of features (the request's `features`).
    pub fn verbatim(raw: &RawValue) -> LoggedFeatures {
        LoggedFeatures(raw.to_owned())
    }

    /// The features of a parsed record, written as JSON.
    pub fn of(features: &Map<String, Value>) -> LoggedFeatures {
        // A map of strings to values always serialises.
        let raw = serde_json::value::to_raw_value(features)
            .unwrap_or_else(|_| RawValue::from_string("{}".into()).unwrap_or_default());
        LoggedFeatures(raw)
    }

    /// The features as a map (`Invalid` when the text is not an object).
    pub fn parse(&self) -> Result<Map<String, Value>> {
        serde_json::from_str(self.0.get())
            .map_err(|e| Error::Invalid(format!("logged features are not a JSON object: {e}")))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// The features of the records one version answered, parsed (what the
/// drift checks compare with the version's training profile). A record
/// whose features are not an object is left out: the log only holds what
/// `/predict` accepted, so that is a damaged row, not live traffic.
pub fn version_features(records: &[PredictionRecord], version: u32) -> Vec<Map<String, Value>> {
    records
        .iter()
        .filter(|r| r.version == version)
        .filter_map(|r| r.features.parse().ok())
        .collect()
}

impl From<Map<String, Value>> for LoggedFeatures {
    fn from(features: Map<String, Value>) -> LoggedFeatures {
        LoggedFeatures::of(&features)
    }
}

impl PartialEq for LoggedFeatures {
    fn eq(&self, other: &LoggedFeatures) -> bool {
        match (self.parse(), other.parse()) {
            (Ok(a), Ok(b)) => a == b,
            _ => self.as_str() == other.as_str(),
        }
    }
}

/// What really happened to a predicted entity (a sample's measured
/// quality), reported later by the lab and joined to its prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The prediction it belongs to.
    pub request_id: RequestId,
    /// Copied from the prediction, so outcomes are counted per version and
    /// variant without reading the log.
    pub model: String,
    pub version: u32,
    pub variant: String,
    /// The true value: a number for regression, a class label for
    /// classification.
    pub actual: Value,
    pub reported_at: DateTime<Utc>,
    /// The name of the reporting token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
}

/// A logged prediction with its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    pub prediction: PredictionRecord,
    pub outcome: Outcome,
}

/// Upper bounds (inclusive, microseconds) of the latency histograms kept
/// of the log and exported in `/metrics`; a last bucket takes the rest.
pub const LATENCY_BOUNDS_US: [u64; 18] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// How many predictions one version and variant of a model answered, how
/// many failed, and how fast.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantCount {
    pub version: u32,
    pub variant: String,
    /// Logged records, failures included.
    pub predictions: u64,
    /// Of them, those that gave no answer.
    pub errors: u64,
    /// Cumulative counts at each of [`LATENCY_BOUNDS_US`] (Prometheus's
    /// `le` buckets); `predictions` is the total.
    pub latency_le: Vec<u64>,
}

impl VariantCount {
    /// The `q` quantile of the latency in milliseconds, interpolated
    /// linearly inside its bucket (as Prometheus's `histogram_quantile`);
    /// the open last bucket answers its lower bound. `None` without records.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        quantile_of(&self.latency_le, self.predictions, q)
    }
}

/// The quantile `q` of a cumulative histogram over [`LATENCY_BOUNDS_US`]
/// with `total` observations, in milliseconds.
pub fn quantile_of(le: &[u64], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    let mut lower = 0u64;
    for (i, &bound) in LATENCY_BOUNDS_US.iter().enumerate() {
        let count = le.get(i).copied().unwrap_or(total);
        if count as f64 >= rank && count > below {
            let within = (rank - below as f64) / (count - below) as f64;
            let us = lower as f64 + within.clamp(0.0, 1.0) * (bound - lower) as f64;
            return Some(us / 1000.0);
        }
        below = count;
        lower = bound;
    }
    Some(lower as f64 / 1000.0)
}

/// Tallies records into [`VariantCount`]s by version and variant (the
/// memory store's way; the databases do it in SQL).
pub fn tally<'a>(records: impl Iterator<Item = &'a PredictionRecord>) -> Vec<VariantCount> {
    let mut by: std::collections::BTreeMap<(u32, &str), VariantCount> = Default::default();
    for r in records {
        let c = by
            .entry((r.version, r.variant.as_str()))
            .or_insert_with(|| VariantCount {
                version: r.version,
                variant: r.variant.clone(),
                predictions: 0,
                errors: 0,
                latency_le: vec![0; LATENCY_BOUNDS_US.len()],
            });
        c.predictions += 1;
        c.errors += u64::from(r.error.is_some());
        for (n, bound) in c.latency_le.iter_mut().zip(LATENCY_BOUNDS_US) {
            *n += u64::from(r.latency_us <= bound);
        }
    }
    by.into_values().collect()
}

/// Which records live figures are computed over: a model's, at or after
/// `since`, and (if given) those one deployment's policy routed.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveFilter {
    pub model: String,
    pub since: Option<DateTime<Utc>>,
    pub deployment: Option<DeploymentId>,
}

impl LiveFilter {
    pub fn model(model: &str, since: Option<DateTime<Utc>>) -> LiveFilter {
        LiveFilter {
            model: model.to_string(),
            since,
            deployment: None,
        }
    }

    pub fn matches(&self, r: &PredictionRecord) -> bool {
        r.model == self.model
            && self.since.is_none_or(|t| r.at >= t)
            && self.deployment.is_none_or(|d| r.deployment_id == Some(d))
    }
}

/// Which records a listing returns (newest first); absent fields match all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionFilter {
    pub model: Option<String>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    pub entity_id: Option<String>,
    /// Only answers someone received ([`PredictionRecord::answered`]).
    pub answered_only: bool,
}

/// Checks an entity id a caller gave: 1 to [`MAX_ENTITY_ID`] characters,
/// no control characters. The message never quotes it whole.
pub fn validate_entity_id(id: &str) -> Result<()> {
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_ENTITY_ID || id.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "entity_id '{}' must be 1 to {MAX_ENTITY_ID} characters without control characters",
            crate::error::excerpt(id, 64)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_ids_are_bounded_and_printable() {
        assert!(validate_entity_id("S-2024-0001").is_ok());
        assert!(validate_entity_id(&"x".repeat(MAX_ENTITY_ID)).is_ok());
        assert!(
            validate_entity_id(&"é".repeat(MAX_ENTITY_ID)).is_ok(),
            "characters, not bytes"
        );
        for bad in ["", "a\nb", "tab\there"] {
            let err = validate_entity_id(bad).unwrap_err().to_string();
            assert!(err.contains("entity_id"), "{err}");
        }
        assert!(validate_entity_id(&"x".repeat(MAX_ENTITY_ID + 1)).is_err());
    }

    fn counted(latencies_us: &[u64]) -> VariantCount {
        let records: Vec<PredictionRecord> = latencies_us
            .iter()
            .map(|&l| PredictionRecord {
                request_id: RequestId::new(),
                at: Utc::now(),
                model: "m".into(),
                version: 1,
                variant: PRIMARY.into(),
                entity_id: None,
                features: Map::new().into(),
                output: Value::Null,
                latency_us: l,
                caller: None,
                deployment_id: None,
                shadow_of: None,
                error: None,
            })
            .collect();
        tally(records.iter()).remove(0)
    }

    #[test]
    fn logged_features_keep_the_callers_text_and_compare_by_content() {
        let raw: Box<RawValue> = serde_json::from_str(r#"{ "b": 2.50, "a": "x" }"#).unwrap();
        let logged = LoggedFeatures::verbatim(&raw);
        assert_eq!(logged.as_str(), r#"{ "b": 2.50, "a": "x" }"#);
        let parsed = logged.parse().unwrap();
        assert_eq!(parsed["b"], serde_json::json!(2.5));
        assert_eq!(
            logged,
            LoggedFeatures::of(&parsed),
            "spacing does not matter"
        );
        assert_ne!(logged, LoggedFeatures::of(&Map::new()));
        // In a record's body the text goes as it is, and comes back.
        let text = serde_json::to_string(&[&logged]).unwrap();
        assert_eq!(text, r#"[{ "b": 2.50, "a": "x" }]"#);
        let back: LoggedFeatures =
            serde_json::from_value(serde_json::json!({"a": "x", "b": 2.5})).unwrap();
        assert_eq!(back, logged, "also read from a parsed value");
        let not_object =
            LoggedFeatures::verbatim(&serde_json::from_str::<Box<RawValue>>("[1]").unwrap());
        assert!(not_object
            .parse()
            .unwrap_err()
            .to_string()
            .contains("features"));
    }

    #[test]
    fn latency_quantiles_interpolate_inside_their_bucket() {
        // 100 answers between 1 and 2.5 ms: the median is half-way.
        let c = counted(&[2_000; 100]);
        assert_eq!(c.predictions, 100);
        let p50 = c.latency_quantile_ms(0.5).unwrap();
        assert!((p50 - 1.75).abs() < 1e-9, "{p50}");
        // 99 fast answers and one slow: p99 stays fast, the maximum does not.
        let mut l = vec![80; 99];
        l.push(400_000);
        let c = counted(&l);
        assert!(c.latency_quantile_ms(0.99).unwrap() <= 0.1);
        assert!(c.latency_quantile_ms(1.0).unwrap() > 250.0);
        assert_eq!(quantile_of(&[], 0, 0.5), None);
    }
}
