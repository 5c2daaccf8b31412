//! The OpenAPI schema of a deployment's traffic policy: every bound is the
//! constant the policy's own validation uses.

use serde_json::{json, Value};
use tracseq_core::types::NAME_PATTERN;

/// A deployment's traffic policy (core/src/lifecycle/traffic.rs).
pub(super) fn schema() -> Value {
    use tracseq_core::lifecycle::traffic as t;
    let version = json!({"type": "integer", "minimum": 1, "maximum": u32::MAX});
    let percent = json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 100});
    json!({"type": "object", "additionalProperties": false,
        "description": "platform target only: A/B arms besides primary (the deployed version takes the rest), a shadow that gets a copy of each request, or a canary rollout against the live deployment (not with arms)",
        "example": {"canary": {"steps": [5, 25, 50, 100], "interval_secs": 300,
            "gates": {"max_error_rate": 0.01, "max_p99_ms": 50, "metric": {"name": "rmse", "tolerance": 0.1}}}},
        "properties": {
        "split": {"type": "array", "maxItems": t::MAX_ARMS, "items": {"type": "object",
            "required": ["variant", "version", "weight"], "additionalProperties": false, "properties": {
            "variant": {"type": "string", "pattern": NAME_PATTERN, "maxLength": tracseq_core::predictions::MAX_VARIANT,
                        "not": {"enum": t::RESERVED_VARIANTS}},
            "version": version,
            "weight": {"type": "number", "minimum": 0.01, "maximum": 100, "exclusiveMaximum": true, "description": "percent of the traffic"}}}},
        "shadow": {"type": "object", "required": ["version"], "additionalProperties": false, "properties": {
            "version": version,
            "timeout_ms": {"type": "integer", "minimum": 1, "maximum": t::MAX_SHADOW_TIMEOUT_MS, "default": t::DEFAULT_SHADOW_TIMEOUT_MS}}},
        "canary": {"type": "object", "required": ["steps", "interval_secs", "gates"], "additionalProperties": false, "properties": {
            "steps": {"type": "array", "minItems": 1, "maxItems": 20, "items": percent,
                      "description": "the canary's share at each step, rising, ending at 100"},
            "interval_secs": {"type": "integer", "minimum": 1, "maximum": t::MAX_INTERVAL_SECS},
            "fail_after": {"type": "integer", "minimum": 1, "maximum": 100, "default": 3},
            "min_requests": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000, "default": 100},
            "gates": {"type": "object", "additionalProperties": false, "minProperties": 1, "properties": {
                "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
                "max_p99_ms": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                "metric": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "enum": t::GATE_METRICS.iter().map(|(m, _)| *m).collect::<Vec<_>>()},
                    "tolerance": {"type": "number", "minimum": 0, "maximum": 10, "default": 0},
                    "min_outcomes": {"type": "integer", "minimum": 1, "maximum": 1_000_000, "default": t::DEFAULT_MIN_OUTCOMES}}}}}}}}})
}
