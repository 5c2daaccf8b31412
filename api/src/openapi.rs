//! The OpenAPI 3.0 description of every route (served at `/openapi.json`),
//! generated from the [route table](crate::route_table).

use crate::route_table::{Access, ROUTES};
use serde_json::{json, Value};

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
                "cpus": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "default": 1},
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
        "TokenRequest": {"type": "object", "required": ["name", "role"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"},
            "role": {"type": "string", "enum": ["viewer", "scientist", "predictor", "approver", "admin"]},
            "expires": {"type": "string", "pattern": "^[1-9][0-9]{0,10}[smhd]$",
                        "description": "lifetime, e.g. 30d, 12h, 45m, 3600s (at most 3650d); absent: no expiry"}}},
        "BatchPredictRequest": {"type": "object", "required": ["model"], "additionalProperties": false, "properties": {
            "model": {"type": "string"}, "version": {"type": "integer", "minimum": 1},
            "records": {"type": "array", "items": {"type": "object"}},
            "dataset_id": {"type": "string", "format": "uuid"}}}
    })
}

/// The schema of a path parameter.
fn param_schema(path: &str, name: &str) -> Value {
    match name {
        "number" => json!({"type": "integer", "minimum": 0}),
        "name" => json!({"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"}),
        "path" => json!({"type": "string", "minLength": 1, "maxLength": 512}),
        "id" if path.starts_with("/workers") => {
            json!({"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"})
        }
        _ => json!({"type": "string", "format": "uuid"}),
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
        let mut op = json!({"summary": route.summary, "responses": responses});
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
        let params: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": param_schema(route.path, name)}))
            .collect();
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        match route.body {
            "" => {}
            "csv" => {
                op["requestBody"] = json!({"required": true, "content": {"text/csv": {"schema": {"type": "string"}}}});
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
