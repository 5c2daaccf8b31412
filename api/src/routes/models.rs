//! `/models`: the registry — models and their versions with metrics, each
//! version's stage, aliases and tags, what serves it, and its live figures.

use super::{body, json_reply, paging, query, run, who, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use tracseq_core::lifecycle::deployment::DeploymentState;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::ports::DeploymentFilter;
use tracseq_core::protocol::JobSpec;
use tracseq_core::registry::validate_tags;
use tracseq_core::security::Caller;
use tracseq_core::types::{validate_name, Lineage, ModelVersion};
use tracseq_core::Error;
use tracseq_core::ExperimentId;
use tracseq_scheduler::register::{self as service, Registration, Source};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("models")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx: Ctx, q: HashMap<String, String>| {
            run(async move {
                let page = paging::page(&q, |a| validate_name("after", a))?;
                let mut by_name: BTreeMap<String, Vec<ModelVersion>> = BTreeMap::new();
                for v in ctx.platform.state.page_model_versions(&page).await? {
                    by_name.entry(v.name.clone()).or_default().push(v);
                }
                let last = by_name.keys().next_back().cloned();
                let out: Vec<_> = by_name
                    .into_iter()
                    .filter_map(|(name, versions)| {
                        let latest = versions.iter().max_by_key(|v| v.version)?.clone();
                        Some(json!({"name": name, "versions": versions.len(), "latest": latest}))
                    })
                    .collect();
                let mut resp = json_reply(&out, StatusCode::OK);
                paging::link_next(&mut resp, "/models", &page, out.len(), last);
                Ok(resp)
            })
        });
    let get = warp::path!("models" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|name: String, ctx: Ctx| run(model(ctx, name)));
    let metrics = warp::path!("models" / String / "versions" / u32 / "metrics")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|name: String, version: u32, ctx: Ctx| run(version_metrics(ctx, name, version)));
    let model_tags = warp::path!("models" / String / "tags")
        .and(warp::put())
        .and(with_ctx(ctx.clone()))
        .and(body(&ctx))
        .then(|name: String, ctx: Ctx, b| run(put_tags(ctx, name, None, b)));
    let version_tags = warp::path!("models" / String / "versions" / u32 / "tags")
        .and(warp::put())
        .and(with_ctx(ctx.clone()))
        .and(body(&ctx))
        .then(|name: String, version: u32, ctx: Ctx, b| run(put_tags(ctx, name, Some(version), b)));
    let register = warp::path!("models" / "register")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who_, b| run(register(ctx, who_, b)));
    register
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(metrics)
        .unify()
        .or(model_tags)
        .unify()
        .or(version_tags)
        .unify()
}

/// A model: every version with its stage, aliases and tags, the model's
/// own tags, and the version each live deployment serves.
async fn model(ctx: Ctx, name: String) -> ApiResult {
    validate_name("model", &name)?;
    let p = &ctx.platform;
    let versions = p.state.list_model_versions(Some(&name)).await?;
    if versions.is_empty() {
        return Err(Error::NotFound(format!("model '{name}' not found")).into());
    }
    let slots = p.registry.model_slots(&name).await?;
    let tags = p.registry.tags(&name).await?;
    let live = p
        .registry
        .list_deployments(&DeploymentFilter {
            model: Some(name.clone()),
            state: Some(DeploymentState::Live),
            ..Default::default()
        })
        .await?;
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let n = v.version;
            let mut out = serde_json::to_value(v).unwrap_or_default();
            if let Value::Object(o) = &mut out {
                o.insert("stage".into(), json!(slots.stage_of(n)));
                o.insert("aliases".into(), json!(slots.aliases_of(n)));
                o.insert(
                    "tags".into(),
                    json!(tags.versions.get(&n).cloned().unwrap_or_default()),
                );
            }
            out
        })
        .collect();
    let deployed: BTreeMap<String, Value> = live
        .iter()
        .map(|d| {
            (
                d.target.to_string(),
                json!({"version": d.version, "deployment_id": d.id}),
            )
        })
        .collect();
    Ok(json_reply(
        &json!({
            "name": name,
            "production": slots.production(),
            "aliases": slots.aliases,
            "tags": tags.model,
            "deployed": deployed,
            "versions": versions,
        }),
        StatusCode::OK,
    ))
}

/// One version's figures: what training measured, the cross-validation
/// folds of the trial it was fitted from, and how it serves (this replica's
/// figures since it loaded the version; `/metrics` has them for Prometheus
/// to add up across replicas).
async fn version_metrics(ctx: Ctx, name: String, version: u32) -> ApiResult {
    validate_name("model", &name)?;
    let p = &ctx.platform;
    let v = p.state.get_model_version(&name, Some(version)).await?;
    let mut cv = Value::Null;
    if let (Some(job_id), Some(experiment)) = (v.job_id, v.experiment_id) {
        if let Ok(job) = p.state.get_job(job_id).await {
            if let Ok(JobSpec::Train(t)) = job.spec() {
                if let Ok(trial) = p.state.get_trial(experiment, t.best_trial).await {
                    let detail = trial.detail.unwrap_or_default();
                    cv = json!({
                        "trial": trial.number,
                        "metric": t.metric,
                        "folds": t.folds,
                        "value": trial.value,
                        "fold_values": detail.get("fold_values").cloned().unwrap_or_default(),
                        "metrics": detail.get("metrics").cloned().unwrap_or_default(),
                    });
                }
            }
        }
    }
    let serving = ctx.models.figures(&name, version);
    let live: Vec<Value> = p
        .registry
        .list_deployments(&DeploymentFilter {
            model: Some(name.clone()),
            state: Some(DeploymentState::Live),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|d| d.version == version)
        .map(|d| json!({"deployment_id": d.id, "target": d.target}))
        .collect();
    Ok(json_reply(
        &json!({
            "name": name,
            "version": version,
            "training": v.metrics,
            "cross_validation": cv,
            "serving": {
                "replica": serving,
                "deployed_on": live,
                "serves_unpinned_requests_here": ctx
                    .models
                    .deployed_versions()
                    .iter()
                    .any(|(n, dv)| *n == name && *dv == version),
            },
        }),
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagsRequest {
    tags: BTreeMap<String, String>,
}

/// Replaces the tags of a model or of one of its versions.
async fn put_tags(
    ctx: Ctx,
    name: String,
    version: Option<u32>,
    body: Result<Bytes, ApiError>,
) -> ApiResult {
    validate_name("model", &name)?;
    let req: TagsRequest = parse_json(&body?)?;
    validate_tags(&req.tags).map_err(ApiError::bad_request)?;
    ctx.platform
        .registry
        .set_tags(&name, version, req.tags.clone())
        .await?;
    Ok(json_reply(
        &json!({"name": name, "version": version, "tags": req.tags}),
        StatusCode::OK,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    name: String,
    sha256: String,
    artifact_path: Option<String>,
    artifact_base64: Option<String>,
    metrics: Option<BTreeMap<String, f64>>,
    params: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    description: Option<String>,
    experiment_id: Option<ExperimentId>,
    #[serde(default)]
    lineage: Lineage,
}

/// Registers a version from outside a train job: the artifact sent in the
/// body (base64) or already in the store, checked against `sha256`.
async fn register(ctx: Ctx, who_: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let caller = who(who_)?;
    let req: RegisterRequest = parse_json(&body?)?;
    let source = match (req.artifact_path, req.artifact_base64) {
        (Some(path), None) => Source::Stored(ArtifactPath::parse(&path)?),
        (None, Some(encoded)) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| ApiError::bad_request(format!("artifact_base64 is not base64: {e}")))?;
            Source::Upload(Bytes::from(bytes))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of artifact_path (an object in the artifact store) and artifact_base64 (the artifact itself)",
            ))
        }
    };
    let registration = Registration {
        name: req.name,
        source,
        sha256: req.sha256,
        metrics: req.metrics,
        params: req.params,
        tags: req.tags.clone(),
        description: req.description,
        experiment_id: req.experiment_id,
        lineage: req.lineage,
    };
    let v = service::register(
        &ctx.platform,
        registration,
        &caller.actor,
        chrono::Utc::now(),
    )
    .await?;
    let mut out = serde_json::to_value(&v).unwrap_or_default();
    if let Value::Object(o) = &mut out {
        o.insert("tags".into(), json!(req.tags));
        o.insert("stage".into(), json!("none"));
    }
    let mut resp = json_reply(&out, StatusCode::CREATED);
    record_targets(&mut resp, [format!("{}@{}", v.name, v.version)]);
    Ok(resp)
}
