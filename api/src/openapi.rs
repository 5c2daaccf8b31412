//! The OpenAPI 3.0 description of every route (served at `/openapi.json`).

use serde_json::{json, Value};

/// (method, path, summary, request body schema or null, success status)
pub(crate) const ROUTES: &[(&str, &str, &str, &str, u16)] = &[
    ("get", "/health", "Liveness and version", "", 200),
    ("get", "/openapi.json", "This document", "", 200),
    (
        "post",
        "/datasets",
        "Upload a CSV data set (text/csv body; ?name=)",
        "csv",
        201,
    ),
    ("get", "/datasets", "List data sets", "", 200),
    (
        "get",
        "/datasets/{id}",
        "One data set with its detected schema",
        "",
        200,
    ),
    (
        "post",
        "/experiments",
        "Create an AutoML (with dataset_id) or ask/tell experiment",
        "ExperimentRequest",
        201,
    ),
    (
        "get",
        "/experiments",
        "List experiments with trial counts and best trial",
        "",
        200,
    ),
    (
        "get",
        "/experiments/{id}",
        "Experiment state, best trial and counts",
        "",
        200,
    ),
    (
        "get",
        "/experiments/{id}/trials",
        "Trials (?fields=a,b&sort=value|number&state=&limit=)",
        "",
        200,
    ),
    (
        "post",
        "/experiments/{id}/ask",
        "Ask/tell: get the next trial's params",
        "",
        201,
    ),
    (
        "post",
        "/experiments/{id}/trials/{number}/report",
        "Report an intermediate value; answers should_prune",
        "ReportRequest",
        200,
    ),
    (
        "post",
        "/experiments/{id}/trials/{number}/tell",
        "Tell a trial's final value or state",
        "TellRequest",
        200,
    ),
    (
        "post",
        "/experiments/{id}/cancel",
        "Cancel an experiment and its jobs",
        "",
        200,
    ),
    (
        "get",
        "/jobs/{id}",
        "A job's state, attempts, last error and result",
        "",
        200,
    ),
    ("post", "/jobs/{id}/cancel", "Cancel one job", "", 200),
    (
        "get",
        "/workers",
        "The fleet: each worker's slots, GPUs with live figures, running jobs, last heartbeat; dead workers marked",
        "",
        200,
    ),
    ("get", "/workers/{id}", "One worker", "", 200),
    (
        "get",
        "/metrics",
        "Prometheus metrics: workers, GPUs, reservations, queue depths",
        "",
        200,
    ),
    (
        "get",
        "/models",
        "Registered models with their latest version",
        "",
        200,
    ),
    (
        "get",
        "/models/{name}",
        "A model's versions with metrics",
        "",
        200,
    ),
    (
        "post",
        "/predict",
        "Predict one record with a model version (latest by default)",
        "PredictRequest",
        200,
    ),
    (
        "post",
        "/batch_predict",
        "Predict records now, or a data set as a job (202)",
        "BatchPredictRequest",
        200,
    ),
];

fn schemas() -> Value {
    json!({
        "Problem": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string", "enum": ["invalid", "not_found", "conflict", "unavailable", "internal",
                "too_large", "method_not_allowed", "unsupported_media_type"]},
            "message": {"type": "string"}}},
        "ExperimentRequest": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
            "dataset_id": {"type": "string", "format": "uuid"},
            "target": {"type": "string"},
            "metric": {"type": "string", "enum": ["auc", "log_loss", "accuracy", "f1", "rmse", "mae", "r2"]},
            "direction": {"type": "string", "enum": ["minimize", "maximize"]},
            "objectives": {"type": "array", "minItems": 2, "maxItems": 4,
                "description": "multi-objective: replaces metric/direction; AutoML: the metric first, then latency_us and/or model_bytes",
                "items": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 64},
                    "direction": {"type": "string", "enum": ["minimize", "maximize"]}}}},
            "search_space": {"type": "object", "additionalProperties": {"type": "object", "properties": {
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
                "mutation_prob": {"type": ["number", "null"], "minimum": 0, "maximum": 1}}},
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
            "model_name": {"type": "string"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 9},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
            "trial_timeout_secs": {"type": "integer", "minimum": 1},
            "resources": {"type": "object", "additionalProperties": false, "properties": {
                "cpus": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                "memory_mb": {"type": "integer", "minimum": 0, "default": 0},
                "gpus": {"type": "number", "minimum": 0, "default": 0,
                         "description": "a share of one device in (0, 1] (e.g. 0.25) or a whole number of devices"},
                "gpu_memory_mb": {"type": "integer", "minimum": 0, "default": 0,
                                  "description": "per device; needs gpus > 0"}}}}},
        "ReportRequest": {"type": "object", "required": ["step", "value"], "additionalProperties": false, "properties": {
            "step": {"type": "integer", "minimum": 0}, "value": {"type": "number"}}},
        "TellRequest": {"type": "object", "additionalProperties": false, "properties": {
            "value": {"type": "number"}, "state": {"type": "string", "enum": ["complete", "failed", "pruned"]},
            "values": {"type": "array", "items": {"type": "number"}, "description": "multi-objective: one per objective, in order"},
            "params": {"type": "object"}}},
        "PredictRequest": {"type": "object", "required": ["model", "features"], "additionalProperties": false, "properties": {
            "model": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
            "features": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean", "null"]}}}},
        "BatchPredictRequest": {"type": "object", "required": ["model"], "additionalProperties": false, "properties": {
            "model": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
            "records": {"type": "array", "items": {"type": "object"}},
            "dataset_id": {"type": "string", "format": "uuid"}}}
    })
}

pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, body, status) in ROUTES {
        let mut op = json!({
            "summary": summary,
            "responses": {
                status.to_string(): {"description": "success", "content": {"application/json": {}}},
                "4XX": {"description": "bad request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
                "5XX": {"description": "server error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            }
        });
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        match *body {
            "" => {}
            "csv" => {
                op["requestBody"] = json!({"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}});
            }
            schema => {
                op["requestBody"] = json!({"required": true, "content": {"application/json":
                    {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
            }
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "TracSeq ML", "version": env!("CARGO_PKG_VERSION"),
                 "description": "AutoML experiments, ask/tell HPO, model registry and serving for laboratory data."},
        "servers": [{"url": "http://127.0.0.1:8094"}],
        "paths": paths,
        "components": {"schemas": schemas()}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiState;
    use std::sync::Arc;
    use tracseq_core::lifecycle::RetryPolicy;

    /// Every documented route is served (never "no such route" or 405), and
    /// every served route is documented: the table drives both checks.
    #[tokio::test]
    async fn every_documented_route_is_served() {
        let platform = tracseq_backends::platform::in_memory(RetryPolicy::default());
        let ctx = ApiState::new(
            platform,
            Default::default(),
            Default::default(),
            Arc::new(tokio::sync::Notify::new()),
        );
        let filter = crate::routes(ctx);
        let id = uuid::Uuid::now_v7().to_string();
        for (method, path, ..) in ROUTES {
            let concrete = path
                .replace("{id}", &id)
                .replace("{number}", "0")
                .replace("{name}", "m");
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
        assert_eq!(
            doc["paths"].as_object().unwrap().len(),
            20,
            "distinct paths in ROUTES"
        );
        let unknown = warp::test::request().path("/nope").reply(&filter).await;
        assert_eq!(unknown.status(), 404);
    }
}
