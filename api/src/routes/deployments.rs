//! `POST /models/deploy`, `/deployments` and rollback: parse, call
//! [`tracseq_scheduler::deployments`] with the caller's identity, render.

use super::{body, json_reply, paging, query, run, who, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tracseq_core::ids::DeploymentId;
use tracseq_core::lifecycle::deployment::{DeploymentState, Target};
use tracseq_core::lifecycle::promotion::MAX_REASON_CHARS;
use tracseq_core::lifecycle::traffic::TrafficPolicy;
use tracseq_core::ports::DeploymentFilter;
use tracseq_core::registry::Stage;
use tracseq_core::resources::ResourceRequest;
use tracseq_core::security::Caller;
use tracseq_core::types::validate_name;
use tracseq_scheduler::deployments::{self as service, DeployRequest, Which};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let deploy = warp::path!("models" / "deploy")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(deploy(ctx, who, b)));
    let list = warp::path!("deployments")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)));
    let get = warp::path!("deployments" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let d = ctx
                    .platform
                    .registry
                    .get_deployment(deployment_id(&id)?)
                    .await?;
                Ok(json_reply(&d, StatusCode::OK))
            })
        });
    let rollback = warp::path!("deployments" / String / "rollback")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|id, ctx, who, b| run(rollback(ctx, who, id, b)));
    deploy.or(list).unify().or(get).unify().or(rollback).unify()
}

pub(crate) fn deployment_id(s: &str) -> Result<DeploymentId, ApiError> {
    Ok(s.parse::<DeploymentId>()?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    name: String,
    version: Option<u32>,
    alias: Option<String>,
    stage: Option<String>,
    target: Option<String>,
    replicas: Option<u32>,
    resources: Option<ResourceRequest>,
    traffic: Option<TrafficPolicy>,
}

async fn deploy(ctx: Ctx, who_: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let caller = who(who_)?;
    let req: Request = parse_json(&body?)?;
    validate_name("name", &req.name)?;
    let which = match (req.version, req.alias, req.stage) {
        (Some(v), None, None) => Which::Version(v),
        (None, Some(a), None) => {
            tracseq_core::registry::check_alias_shape(&a)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Which::Alias(a)
        }
        (None, None, Some(s)) => Which::Stage(
            s.parse::<Stage>()
                .map_err(|e| ApiError::bad_request(format!("stage: {e}")))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "name the version with exactly one of version, alias or stage",
            ))
        }
    };
    let request = DeployRequest {
        model: req.name,
        which,
        target: match req.target {
            Some(t) => t
                .parse::<Target>()
                .map_err(|e| ApiError::bad_request(format!("target: {e}")))?,
            None => Target::Platform,
        },
        replicas: req.replicas.unwrap_or(1),
        resources: req.resources,
        traffic: req.traffic,
    };
    let (d, job) = service::deploy(
        &ctx.platform,
        request,
        &ctx.deploy,
        &caller.actor,
        Utc::now(),
    )
    .await?;
    ctx.wake.notify_one();
    let mut resp = json_reply(
        &json!({"deployment": d, "job_id": job.id}),
        StatusCode::ACCEPTED,
    );
    record_targets(
        &mut resp,
        [
            d.id.to_string(),
            format!("{}@{}", d.model, d.version),
            job.id.to_string(),
        ],
    );
    Ok(resp)
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    paging::only(&q, &["model", "target", "state", "limit"])?;
    let model = q.get("model").cloned();
    if let Some(m) = &model {
        validate_name("model", m)?;
    }
    let filter = DeploymentFilter {
        model,
        target: q.get("target").map(|t| t.parse::<Target>()).transpose()?,
        state: q
            .get("state")
            .map(|s| s.parse::<DeploymentState>())
            .transpose()?,
        limit: Some(paging::limit(&q)?),
    };
    let out = ctx.platform.registry.list_deployments(&filter).await?;
    Ok(json_reply(&out, StatusCode::OK))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    reason: Option<String>,
}

async fn rollback(
    ctx: Ctx,
    who_: Option<Caller>,
    id: String,
    body: Result<Bytes, ApiError>,
) -> ApiResult {
    let caller = who(who_)?;
    let id = deployment_id(&id)?;
    let body = body?;
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        parse_json(&body)?
    };
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let d = service::rollback(&ctx.platform, id, &caller.actor, req.reason, Utc::now()).await?;
    let mut resp = json_reply(&d, StatusCode::OK);
    let previous = d.previous.map(|p| p.id.to_string()).unwrap_or_default();
    record_targets(&mut resp, [id.to_string(), previous]);
    Ok(resp)
}
