//! The OpenAPI 3.0 description of every route (served at `/openapi.json`),
//! generated from the [route table](crate::route_table).

use crate::problem::PROBLEM_CODES;
use crate::route_table::{Access, ROUTES};
use serde_json::{json, Value};
use tracseq_core::lifecycle::alert::AlertKind;
use tracseq_core::lifecycle::deployment::{DeploymentState, Target};
use tracseq_core::lifecycle::promotion::{PromotionState, MAX_REASON_CHARS};
use tracseq_core::registry::Stage;
use tracseq_core::security::token::LIFETIME_PATTERN;
use tracseq_core::types::NAME_PATTERN;

mod traffic;

/// An entity id (a sample's id) as `/predict` and `/predictions` take it.
fn entity_id_schema() -> Value {
    use tracseq_core::predictions::{ENTITY_ID_PATTERN, MAX_ENTITY_ID};
    json!({"type": "string", "minLength": 1, "maxLength": MAX_ENTITY_ID, "pattern": ENTITY_ID_PATTERN})
}

fn schemas() -> Value {
    let name = json!({"type": "string", "pattern": NAME_PATTERN});
    let feature = json!({"nullable": true, "anyOf": [{"type": "number"}, {"type": "boolean"},
        {"type": "string", "maxLength": crate::routes::MAX_FEATURE_TEXT}]});
    let resources = json!({"type": "object", "additionalProperties": false, "properties": {
        "cpus": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "default": 1},
        "memory_mb": {"type": "integer", "minimum": 0, "default": 0},
        "gpus": {"type": "number", "minimum": 0, "default": 0,
                 "description": "a share of one device in (0, 1] (e.g. 0.25) or a whole number of devices"},
        "gpu_memory_mb": {"type": "integer", "minimum": 0, "default": 0,
                          "description": "per device; needs gpus > 0"}}});
    let version = json!({"type": "integer", "minimum": 1, "maximum": u32::MAX});
    let reason = json!({"type": "string", "maxLength": MAX_REASON_CHARS});
    let tags = json!({"type": "object", "maxProperties": tracseq_core::registry::MAX_TAGS,
        "propertyNames": {"pattern": format!("^[A-Za-z0-9_./:-]{{1,{}}}$", tracseq_core::registry::MAX_TAG_KEY)},
        "additionalProperties": {"type": "string", "maxLength": tracseq_core::registry::MAX_TAG_VALUE,
            "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"}});
    let entity_id = entity_id_schema();
    let explain = json!({"type": "boolean", "default": true,
        "description": "false: the answer without contributions, base_value and risk factors (much cheaper)"});
    let serving_alias = json!({"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$",
        "description": "an alias (champion...), or latest (the newest version), or v<n>"});
    let stage = json!({"type": "string", "enum": Stage::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()});
    json!({
        "Problem": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "enum": PROBLEM_CODES},
            "message": {"type": "string"}}},
        "ExperimentRequest": {"type": "object", "required": ["name"], "additionalProperties": false,
            "description": "AutoML: dataset_id and target; ask/tell: search_space without dataset_id",
            "example": {"name": "tune-x", "direction": "minimize", "budget": {"trials": 20},
                        "search_space": {"x": {"type": "float", "low": -5, "high": 5},
                                         "kind": {"type": "categorical", "choices": ["a", "b"]}}},
            "anyOf": [{"required": ["dataset_id", "target"]},
                      {"required": ["search_space"], "not": {"required": ["dataset_id"]}}],
            "properties": {
            "name": name,
            "dataset_id": {"type": "string", "format": "uuid"},
            "target": {"type": "string"},
            "metric": {"type": "string", "enum": ["auc", "log_loss", "accuracy", "f1", "rmse", "mae", "r2"]},
            "direction": {"type": "string", "enum": ["minimize", "maximize"]},
            "objectives": {"type": "array", "minItems": 2, "maxItems": 4,
                "description": "multi-objective: replaces metric/direction; AutoML: the metric first, then latency_us and/or model_bytes",
                "items": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "direction": {"type": "string", "enum": ["minimize", "maximize"]}}}},
            "search_space": {"type": "object", "minProperties": 1, "additionalProperties": {"type": "object", "required": ["type"], "properties": {
                "type": {"type": "string", "enum": ["float", "int", "categorical"]},
                "low": {"type": "number"}, "high": {"type": "number"}, "log": {"type": "boolean"},
                "step": {"type": "number"}, "choices": {"type": "array"},
                "when": {"type": "object", "additionalProperties": {"type": "array"}}}}},
            "sampler": {"type": "object", "properties": {"type": {"type": "string", "enum": ["random", "tpe", "grid", "nelder_mead", "particle_swarm", "nsga2"]}, "seed": {"type": "integer"},
                "n_startup_trials": {"type": "integer"}, "n_ei_candidates": {"type": "integer"}, "gamma": {"type": "number"},
                "prior_weight": {"type": "number"}, "multivariate": {"type": "boolean"}, "constant_liar": {"type": "boolean"},
                "initial_point": {"type": "object"}, "initial_step": {"type": "number"}, "alpha": {"type": "number"},
                "rho": {"type": "number"}, "sigma": {"type": "number"}, "sd_tolerance": {"type": "number"},
                "population": {"type": "integer", "minimum": 2, "maximum": 1000}, "inertia": {"type": "number"},
                "cognitive": {"type": "number"}, "social": {"type": "number"},
                "grid": {"type": "object", "additionalProperties": {"type": "array", "minItems": 1}},
                "points_per_dimension": {"type": "integer", "minimum": 1, "maximum": 1000},
                "shuffle": {"type": "boolean"},
                "population_size": {"type": "integer", "minimum": 2, "maximum": 1000},
                "crossover_prob": {"type": "number", "minimum": 0, "maximum": 1},
                "mutation_prob": {"type": "number", "nullable": true, "minimum": 0, "maximum": 1}}},
            "pruner": {"type": "object", "properties": {"type": {"type": "string", "enum": ["none", "median", "asha", "hyperband"]},
                "n_startup_trials": {"type": "integer"}, "n_warmup_steps": {"type": "integer"}, "interval_steps": {"type": "integer"},
                "min_resource": {"type": "integer", "minimum": 1}, "max_resource": {"type": "integer", "minimum": 2},
                "reduction_factor": {"type": "integer", "minimum": 2}, "min_early_stopping_rate": {"type": "integer", "minimum": 0},
                "bootstrap_count": {"type": "integer", "minimum": 0}}},
            "budget": {"type": "object", "properties": {"trials": {"type": "integer", "minimum": 1}, "seconds": {"type": "integer", "minimum": 1},
                "no_improvement_trials": {"type": "integer", "minimum": 1}}},
            "parallelism": {"type": "integer", "minimum": 1},
            "cv_folds": {"type": "integer", "minimum": 2, "maximum": 20},
            "seed": {"type": "integer"},
            "model_name": name,
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
            "trial_timeout_secs": {"type": "integer", "minimum": 1},
            "resources": resources}},
        "ReportRequest": {"type": "object", "required": ["step", "value"], "additionalProperties": false,
            "example": {"step": 1, "value": 0.5}, "properties": {
            "step": {"type": "integer", "minimum": 0, "maximum": u32::MAX}, "value": {"type": "number"}}},
        "TellRequest": {"type": "object", "additionalProperties": false, "example": {"value": 0.25}, "properties": {
            "value": {"type": "number"}, "state": {"type": "string", "enum": ["complete", "failed", "pruned"]},
            "values": {"type": "array", "items": {"type": "number"}, "description": "multi-objective: one per objective, in order"},
            "params": {"type": "object"}}},
        "PredictRequest": {"type": "object", "required": ["model", "features"], "additionalProperties": false,
            "description": "at most one of version and alias; neither: the deployed version (else the production one)",
            "properties": {
            "model": name, "version": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
            "alias": serving_alias.clone(),
            "entity_id": entity_id.clone(),
            "features": {"type": "object", "additionalProperties": feature},
            "explain": explain.clone()}},
        "FeedbackRequest": {"type": "object", "required": ["actual"], "additionalProperties": false,
            "description": "exactly one of request_id (from the answer) and entity_id (its latest prediction, of model if given)",
            "example": {"request_id": "01938f7a-0000-7000-8000-000000000000", "actual": 0.82},
            "properties": {
            "request_id": {"type": "string", "format": "uuid"},
            "entity_id": entity_id.clone(),
            "model": name,
            "actual": {"oneOf": [{"type": "number"}, {"type": "boolean"},
                {"type": "string", "maxLength": crate::routes::predict::MAX_FEATURE_TEXT}],
                "description": "the measured value, or the true class"}}},
        "TokenRequest": {"type": "object", "required": ["name", "role"], "additionalProperties": false,
            "example": {"name": "lims", "role": "predictor", "expires": "30d"}, "properties": {
            "name": name,
            "role": {"type": "string", "enum": tracseq_core::security::Role::ALL.map(|r| r.as_str())},
            "expires": {"type": "string", "nullable": true, "pattern": LIFETIME_PATTERN,
                        "description": "lifetime, e.g. 30d, 12h, 45m, 3600s (at most 3650d); absent: no expiry"}}},
        "BatchPredictRequest": {"type": "object", "required": ["model"], "additionalProperties": false,
            "description": "exactly one of records and dataset_id; at most one of version and alias",
            "properties": {
            "model": name, "version": {"type": "integer", "minimum": 1, "maximum": u32::MAX},
            "alias": serving_alias,
            "records": {"type": "array", "minItems": 1, "items": {"type": "object", "additionalProperties": feature}},
            "entity_ids": {"type": "array", "items": entity_id,
                "description": "with records only: one per record, in order"},
            "explain": explain,
            "dataset_id": {"type": "string", "format": "uuid"}}},
        "PromoteRequest": {"type": "object", "required": ["name", "version", "stage", "reason"], "additionalProperties": false,
            "example": {"name": "sample-quality", "version": 3, "stage": "production", "reason": "best AUC of the run",
                        "gates": [{"type": "better_than_production", "metric": "auc"}]},
            "properties": {
            "name": name, "version": version, "stage": stage,
            "reason": {"type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS, "pattern": "\\S"},
            "archive_previous": {"type": "boolean", "default": true,
                "description": "into production: the replaced version goes to archived (true) or staging"},
            "gates": {"type": "array", "maxItems": 16, "items": {"type": "object", "required": ["type", "metric"],
                "additionalProperties": false, "properties": {
                "type": {"type": "string", "enum": ["threshold", "better_than_production"]},
                "metric": {"type": "string", "minLength": 1, "maxLength": 64},
                "value": {"type": "number", "description": "threshold only"},
                "goal": {"type": "string", "enum": ["higher", "lower"],
                         "description": "which way is better; known metrics have their own"}}}}}},
        "DecisionRequest": {"type": "object", "additionalProperties": false, "properties": {"reason": reason},
            "description": "approve: an optional reason; reject: a reason is required"},
        "AliasRequest": {"type": "object", "required": ["version"], "additionalProperties": false,
            "example": {"version": 3, "reason": "the new champion"},
            "properties": {"version": version, "reason": reason}},
        "DeployRequest": {"type": "object", "required": ["name"], "additionalProperties": false,
            "description": "exactly one of version, alias or stage",
            "example": {"name": "sample-quality", "stage": "production", "target": "platform"},
            "properties": {
            "name": name, "version": version, "alias": {"type": "string", "maxLength": 64}, "stage": stage,
            "target": {"type": "string", "enum": Target::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(), "default": "platform"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": tracseq_scheduler::deployments::MAX_REPLICAS, "default": 1},
            "resources": resources,
            "traffic": traffic::schema()}},
        "RollbackRequest": {"type": "object", "additionalProperties": false, "properties": {"reason": reason}},
        "RegisterRequest": {"type": "object", "required": ["name", "sha256"], "additionalProperties": false,
            "description": "exactly one of artifact_path (an object in the artifact store) and artifact_base64 (the model.json bytes)",
            "example": {"name": "sample-quality", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                        "artifact_path": "uploads/core-facility/model.json", "tags": {"team": "core"},
                        "lineage": {"feature_set_version": "lab-features@3"}},
            "properties": {
            "name": name,
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            "artifact_path": {"type": "string", "minLength": 1, "maxLength": tracseq_core::ports::ArtifactPath::MAX_LEN,
                "pattern": "^[A-Za-z0-9._=-]{1,255}(/[A-Za-z0-9._=-]{1,255})*$"},
            "artifact_base64": {"type": "string", "contentEncoding": "base64"},
            "metrics": {"type": "object", "maxProperties": tracseq_scheduler::register::MAX_METRICS,
                "additionalProperties": {"type": "number"}},
            "params": {"type": "object", "description": "at most 64 KiB as JSON"},
            "tags": tags.clone(),
            "description": {"type": "string", "maxLength": tracseq_scheduler::register::MAX_DESCRIPTION_CHARS},
            "experiment_id": {"type": "string", "format": "uuid"},
            "lineage": {"type": "object", "additionalProperties": false, "properties": {
                "trial": {"type": "integer", "minimum": 0},
                "dataset_id": {"type": "string", "format": "uuid"},
                "dataset_sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                "feature_set_version": {"type": "string", "minLength": 1, "maxLength": tracseq_scheduler::register::MAX_FEATURE_SET_VERSION}}}}},
        "TagsRequest": {"type": "object", "required": ["tags"], "additionalProperties": false,
            "example": {"tags": {"team": "sequencing-core", "assay": "wgs"}},
            "properties": {"tags": tags}}
    })
}

/// OpenAPI links: how an answer's ids feed the next call (schemathesis's
/// stateful phase follows them). (from method, from path, the answer's
/// status, link name, to method, to path, path parameters as runtime
/// expressions).
type Link = (
    &'static str,
    &'static str,
    u16,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);
const LINKS: &[Link] = &[
    (
        "post",
        "/datasets",
        201,
        "GetDataset",
        "get",
        "/datasets/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/experiments",
        201,
        "GetExperiment",
        "get",
        "/experiments/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/experiments",
        201,
        "ListTrials",
        "get",
        "/experiments/{id}/trials",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/experiments",
        201,
        "Ask",
        "post",
        "/experiments/{id}/ask",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/experiments",
        201,
        "Cancel",
        "post",
        "/experiments/{id}/cancel",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/experiments/{id}/ask",
        201,
        "Report",
        "post",
        "/experiments/{id}/trials/{number}/report",
        &[
            ("id", "$request.path.id"),
            ("number", "$response.body#/number"),
        ],
    ),
    (
        "post",
        "/experiments/{id}/ask",
        201,
        "Tell",
        "post",
        "/experiments/{id}/trials/{number}/tell",
        &[
            ("id", "$request.path.id"),
            ("number", "$response.body#/number"),
        ],
    ),
    (
        "post",
        "/batch_predict",
        202,
        "GetJob",
        "get",
        "/jobs/{id}",
        &[("id", "$response.body#/job_id")],
    ),
    (
        "post",
        "/batch_predict",
        202,
        "CancelJob",
        "post",
        "/jobs/{id}/cancel",
        &[("id", "$response.body#/job_id")],
    ),
    (
        "post",
        "/tokens",
        201,
        "Revoke",
        "post",
        "/tokens/{id}/revoke",
        &[("id", "$response.body#/id")],
    ),
];

/// The operation id of a route: its method and path in one word.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_string();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        let seg = seg.trim_start_matches('{').trim_end_matches('}');
        let mut c = seg.chars();
        if let Some(first) = c.next() {
            id.push(first.to_ascii_uppercase());
            id.extend(c.map(|c| if c == '_' || c == '.' { 'X' } else { c }));
        }
    }
    id
}

/// The query parameters of a route, as each handler reads them.
fn query_params(method: &str, path: &str) -> Vec<Value> {
    use tracseq_core::paging::MAX_PAGE;
    let q = |name: &str, schema: Value, description: &str| json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description});
    let limit = q(
        "limit",
        json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": tracseq_core::paging::DEFAULT_PAGE}),
        "items per page",
    );
    let after = |schema: Value| {
        q(
            "after",
            schema,
            "the last key of the previous page (see the Link header)",
        )
    };
    let uuid = json!({"type": "string", "format": "uuid"});
    match (method, path) {
        ("get", "/datasets") | ("get", "/experiments") => vec![limit, after(uuid)],
        ("get", "/models") => vec![
            limit,
            after(json!({"type": "string", "pattern": NAME_PATTERN})),
        ],
        ("get", "/workers") => vec![
            limit,
            after(json!({"type": "string", "pattern": tracseq_core::ids::WorkerId::PATTERN})),
        ],
        ("get", "/promotions") => vec![
            q(
                "model",
                json!({"type": "string", "pattern": NAME_PATTERN}),
                "only this model's",
            ),
            q(
                "state",
                json!({"type": "string", "enum": PromotionState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()}),
                "only in this state",
            ),
            limit,
        ],
        ("get", "/predictions") => vec![
            q(
                "model",
                json!({"type": "string", "pattern": NAME_PATTERN}),
                "only this model's",
            ),
            q(
                "since",
                json!({"type": "string", "format": "date-time"}),
                "only at or after this time (RFC 3339)",
            ),
            q("entity_id", entity_id_schema(), "only about this entity"),
            limit,
            after(uuid),
        ],
        ("get", "/alerts") => vec![
            q(
                "kind",
                json!({"type": "string", "enum": AlertKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()}),
                "only of this kind",
            ),
            q(
                "model",
                json!({"type": "string", "pattern": NAME_PATTERN}),
                "only about this model",
            ),
            q(
                "since",
                json!({"type": "string", "format": "date-time"}),
                "only raised at or after this time (RFC 3339)",
            ),
            limit,
            after(uuid),
        ],
        ("get", "/models/{name}/live") => vec![q(
            "since",
            json!({"type": "string", "format": "date-time"}),
            "only predictions at or after this time (RFC 3339)",
        )],
        ("get", "/models/{name}/drift") => vec![
            q(
                "version",
                json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
                "the version to judge (default: the one serving requests without a version)",
            ),
            q(
                "since",
                json!({"type": "string", "format": "date-time"}),
                "only predictions at or after this time (RFC 3339)",
            ),
            q(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": crate::routes::drift::MAX_WINDOW, "default": crate::routes::drift::DEFAULT_WINDOW}),
                "the newest live records compared",
            ),
        ],
        ("get", "/deployments") => vec![
            q(
                "model",
                json!({"type": "string", "pattern": NAME_PATTERN}),
                "only this model's",
            ),
            q(
                "target",
                json!({"type": "string", "enum": Target::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>()}),
                "only to this target",
            ),
            q(
                "state",
                json!({"type": "string", "enum": DeploymentState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()}),
                "only in this state",
            ),
            limit,
        ],
        ("get", "/models/{name}/history") => vec![
            q(
                "after",
                json!({"type": "integer", "minimum": 0}),
                "entries after this seq (the next page)",
            ),
            q(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
                "entries per page",
            ),
        ],
        ("post", "/datasets") => vec![q(
            "name",
            json!({"type": "string", "pattern": NAME_PATTERN}),
            "the data set's name (default: dataset)",
        )],
        ("get", "/experiments/{id}/trials") => vec![
            q(
                "fields",
                json!({"type": "string"}),
                "comma-separated fields to keep",
            ),
            q(
                "sort",
                json!({"type": "string", "enum": ["number", "value"]}),
                "number, or value best first",
            ),
            q(
                "state",
                json!({"type": "string", "enum": ["running", "complete", "pruned", "failed"]}),
                "only trials in this state",
            ),
            q(
                "limit",
                json!({"type": "integer", "minimum": 0}),
                "the first N",
            ),
        ],
        ("get", "/artifacts") => vec![
            q(
                "prefix",
                json!({"type": "string", "maxLength": tracseq_core::ports::ArtifactPath::MAX_LEN}),
                "only artifacts under this path (empty: all)",
            ),
            q(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": crate::routes::MAX_ARTIFACT_LIST}),
                "the first N",
            ),
        ],
        ("get", "/audit") => {
            let text = json!({"type": "string", "minLength": 1, "maxLength": crate::routes::MAX_AUDIT_FILTER});
            vec![
                q("actor", text.clone(), "token name or id"),
                q("action", text.clone(), "e.g. experiments.create"),
                q("target", text, "an id or name the entry names"),
                q(
                    "since",
                    json!({"type": "string", "format": "date-time"}),
                    "entries at or after this time",
                ),
                q(
                    "before",
                    json!({"type": "integer", "minimum": 1}),
                    "entries before this seq (the next page)",
                ),
                limit,
            ]
        }
        _ => Vec::new(),
    }
}

/// The schema of a path parameter.
fn param_schema(path: &str, name: &str) -> Value {
    match name {
        "number" => json!({"type": "integer", "minimum": 0}),
        "version" => json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
        "name" => json!({"type": "string", "pattern": NAME_PATTERN}),
        "alias" => json!({"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}),
        "path" => {
            json!({"type": "string", "minLength": 1, "maxLength": tracseq_core::ports::ArtifactPath::MAX_LEN,
            "pattern": "^[A-Za-z0-9._=-]{1,255}(/[A-Za-z0-9._=-]{1,255})*$"})
        }
        "id" if path.starts_with("/workers") => {
            json!({"type": "string", "pattern": tracseq_core::ids::WorkerId::PATTERN})
        }
        _ => json!({"type": "string", "format": "uuid"}),
    }
}

/// What a creating route answers, as far as other operations consume it:
/// the new record's id (and an experiment's model name). Schemathesis's
/// stateful phase reads these to learn which operation produces the data
/// sets and experiments that other routes take (without them it took the
/// experiment's `model_name` for a reference to a model nothing creates,
/// and never started a chain from `POST /experiments`).
fn created_schema(method: &str, path: &str) -> Option<Value> {
    let id = json!({"type": "string", "format": "uuid"});
    match (method, path) {
        ("post", "/datasets") => Some(json!({"type": "object", "required": ["id"],
            "properties": {"id": id}})),
        ("post", "/experiments") => Some(json!({"type": "object", "required": ["id"],
            "properties": {"id": id, "model_name": {"type": "string", "nullable": true}}})),
        _ => None,
    }
}

/// Success answers a route gives besides its usual one.
fn other_answers(method: &str, path: &str) -> Vec<(u16, &'static str, Value)> {
    match (method, path) {
        ("post", "/batch_predict") => vec![(
            202,
            "a data set's predictions, queued as a job (follow GET /jobs/{job_id})",
            json!({"type": "object", "required": ["job_id", "state"], "properties": {
                "job_id": {"type": "string", "format": "uuid"}, "state": {"type": "string"}}}),
        )],
        _ => Vec::new(),
    }
}

pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut responses = json!({
            route.status.to_string(): {"description": "success", "content": {"application/json": {}}},
            "4XX": {"description": "bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
            "5XX": {"description": "server error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        });
        if route.path == "/metrics" {
            responses["200"]["content"] = json!({"text/plain": {"schema": {"type": "string"}}});
        }
        if let Some(schema) = created_schema(route.method, route.path) {
            responses[route.status.to_string()]["content"]["application/json"]["schema"] = schema;
        }
        let mut op = json!({"summary": route.summary, "responses": responses,
            "operationId": operation_id(route.method, route.path)});
        for (status, description, schema) in other_answers(route.method, route.path) {
            op["responses"][status.to_string()] = json!({"description": description,
                "content": {"application/json": {"schema": schema}}});
        }
        for (_, _, status, name, to_method, to_path, params) in LINKS
            .iter()
            .filter(|l| l.0 == route.method && l.1 == route.path)
        {
            let parameters: serde_json::Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            op["responses"][status.to_string()]["links"][*name] = json!({
                "operationId": operation_id(to_method, to_path), "parameters": parameters});
        }
        match route.access {
            Access::Public => op["security"] = json!([]),
            Access::Authenticated => {
                op["description"] = json!("Any active API token.");
            }
            Access::Needs(p) => {
                op["description"] = json!(format!("Needs the '{p}' permission."));
                op["responses"]["403"] = json!({"description": "the token's role lacks the permission",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
            }
        }
        if route.access != Access::Public {
            op["responses"]["401"] = json!({"description": "no token, or an unknown, revoked or expired one",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
        }
        let mut params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": param_schema(route.path, name)}))
            .collect();
        params.extend(query_params(route.method, route.path));
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        match route.body {
            "" => {}
            "csv" => {
                op["requestBody"] = json!({"required": true, "content": {"text/csv": {"schema": {"type": "string"},
                    "example": "depth,gc,batch,quality\n1.5,0.41,a,0.9\n2.0,0.38,b,0.7\n0.7,0.52,a,0.4\n1.1,0.47,b,0.8\n"}}});
            }
            schema => {
                op["requestBody"] = json!({"required": true, "content": {"application/json":
                    {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
            }
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "TracSeq ML", "version": env!("CARGO_PKG_VERSION"),
                 "description": "AutoML experiments, ask/tell HPO, model registry and serving for laboratory data."},
        "servers": [{"url": "http://127.0.0.1:8094"}],
        "paths": paths,
        "security": [{"bearerAuth": []}],
        "components": {"schemas": schemas(), "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "An API token (tsq_...): `tracseq-ml token create`, or admin.token in the data directory"}}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiState;
    use std::sync::Arc;
    use tracseq_core::lifecycle::RetryPolicy;

    #[test]
    fn every_link_joins_two_routes_and_fills_every_path_parameter_of_its_target() {
        let exists = |m: &str, p: &str| ROUTES.iter().any(|r| r.method == m && r.path == p);
        let mut ids = std::collections::BTreeSet::new();
        for r in ROUTES {
            assert!(
                ids.insert(operation_id(r.method, r.path)),
                "duplicate operation id"
            );
        }
        for (from_m, from_p, status, name, to_m, to_p, params) in LINKS {
            assert!(exists(from_m, from_p), "{name}: no route {from_m} {from_p}");
            let answers = ROUTES
                .iter()
                .filter(|r| r.method == *from_m && r.path == *from_p)
                .map(|r| r.status)
                .chain(other_answers(from_m, from_p).into_iter().map(|a| a.0));
            assert!(
                answers.clone().any(|s| s == *status),
                "{name}: {from_m} {from_p} never answers {status}"
            );
            assert!(exists(to_m, to_p), "{name}: no route {to_m} {to_p}");
            let wanted: Vec<&str> = to_p
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            let given: Vec<&str> = params.iter().map(|(k, _)| *k).collect();
            assert_eq!(given, wanted, "{name}");
        }
    }

    /// Every documented route is served (never "no such route" or 405), and
    /// every served route is documented: the table drives both checks.
    #[tokio::test]
    async fn every_documented_route_is_served() {
        let platform = tracseq_backends::platform::in_memory(RetryPolicy::default());
        let ctx = ApiState::new(
            platform,
            Arc::new(tracseq_backends::MemorySecurityStore::new()),
            Default::default(),
            Default::default(),
            Default::default(),
            Default::default(),
            Arc::new(tokio::sync::Notify::new()),
        );
        let filter = crate::routes(ctx);
        let id = uuid::Uuid::now_v7().to_string();
        for route in ROUTES {
            let (method, path) = (route.method, route.path);
            let concrete = path
                .replace("{id}", &id)
                .replace("{number}", "0")
                .replace("{name}", "m")
                .replace("{alias}", "champion")
                .replace("{version}", "1")
                .replace("{path}", "datasets/x/data.csv");
            let resp = warp::test::request()
                .method(&method.to_uppercase())
                .path(&concrete)
                .header("content-type", "application/json")
                .body("{}")
                .reply(&filter)
                .await;
            let body = String::from_utf8_lossy(resp.body()).to_string();
            assert!(
                !body.contains("no such route"),
                "{method} {path} is not routed: {body}"
            );
            assert_ne!(resp.status(), 405, "{method} {path}: {body}");
        }
        let doc = openapi();
        let distinct: std::collections::BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
        let documented: std::collections::BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(documented, distinct, "every path in ROUTES, and only those");
        let unknown = warp::test::request().path("/nope").reply(&filter).await;
        assert_eq!(unknown.status(), 404);
    }
}
