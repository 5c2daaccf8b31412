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

use crate::ids::RequestId;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
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
    pub features: Map<String, Value>,
    /// The answer without its explanation: `value`, and for classifiers
    /// `label` and `probabilities`.
    pub output: Value,
    /// Time spent serving it, in microseconds.
    pub latency_us: u64,
    /// The name of the caller's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
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

/// How many predictions one version and variant of a model answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantCount {
    pub version: u32,
    pub variant: String,
    pub predictions: u64,
}

/// Which records a listing returns (newest first); absent fields match all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionFilter {
    pub model: Option<String>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    pub entity_id: Option<String>,
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
}
