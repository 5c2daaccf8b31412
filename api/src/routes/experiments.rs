//! `/experiments`: AutoML and ask/tell experiments, their trials, and cancel.

use super::{body, json_reply, paging, query, run, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use tracseq_core::security::Caller;
use tracseq_core::types::{Trial, TrialState};
use tracseq_core::ExperimentId;
use tracseq_hpo::Direction;
use tracseq_scheduler::service;
use tracseq_scheduler::spec::TellRequest;
use tracseq_scheduler::spec::{ExperimentRequest, ExperimentSpec};
use tracseq_scheduler::summary;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let create = warp::path!("experiments")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(create(ctx, who, b)));
    let list = warp::path!("experiments")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)));
    let get = warp::path!("experiments" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|id, ctx| run(get(ctx, id)));
    let trials = warp::path!("experiments" / String / "trials")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|id, ctx, q| run(trials(ctx, id, q)));
    let ask = warp::path!("experiments" / String / "ask")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .then(|id, ctx| run(ask(ctx, id)));
    let report = warp::path!("experiments" / String / "trials" / u64 / "report")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(body(&ctx))
        .then(|id, n, ctx, b| run(report(ctx, id, n, b)));
    let tell = warp::path!("experiments" / String / "trials" / u64 / "tell")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(body(&ctx))
        .then(|id, n, ctx, b| run(tell(ctx, id, n, b)));
    let cancel = warp::path!("experiments" / String / "cancel")
        .and(warp::post())
        .and(with_ctx(ctx))
        .then(|id, ctx| run(cancel(ctx, id)));
    create
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(trials)
        .unify()
        .or(ask)
        .unify()
        .or(report)
        .unify()
        .or(tell)
        .unify()
        .or(cancel)
        .unify()
        .boxed()
}

fn exp_id(s: &str) -> Result<ExperimentId, ApiError> {
    Ok(s.parse::<ExperimentId>()?)
}

async fn create(ctx: Ctx, who: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let body = body?;
    let mut req: ExperimentRequest = parse_json(&body)?;
    req.owner = who.map(|c| c.actor);
    let exp = service::create_experiment(&ctx.platform, req, &ctx.limits, Utc::now()).await?;
    ctx.wake.notify_one();
    let id = exp.id.to_string();
    let summary = summary::summary(&ctx.platform, exp).await?;
    let mut resp = json_reply(&summary, StatusCode::CREATED);
    record_targets(&mut resp, [id]);
    Ok(resp)
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    let page = paging::page(&q, |a| a.parse::<ExperimentId>().map(drop))?;
    let experiments = ctx.platform.state.page_experiments(&page).await?;
    let (n, last) = (
        experiments.len(),
        experiments.last().map(|e| e.id.to_string()),
    );
    let mut out = Vec::with_capacity(n);
    for exp in experiments {
        out.push(summary::brief_summary(&ctx.platform, exp).await?);
    }
    let mut resp = json_reply(&out, StatusCode::OK);
    paging::link_next(&mut resp, "/experiments", &page, n, last);
    Ok(resp)
}

async fn get(ctx: Ctx, id: String) -> ApiResult {
    let exp = ctx.platform.state.get_experiment(exp_id(&id)?).await?;
    Ok(json_reply(
        &summary::summary(&ctx.platform, exp).await?,
        StatusCode::OK,
    ))
}

const TRIAL_FIELDS: &[&str] = &[
    "id",
    "experiment_id",
    "number",
    "params",
    "state",
    "value",
    "values",
    "intermediate",
    "job_id",
    "detail",
    "created_at",
    "finished_at",
];

/// `?fields=number,value` keeps only those keys; `?sort=value` puts the best
/// first (by the experiment's direction; the first objective's in a
/// multi-objective experiment); `?state=complete` filters;
/// `?limit=N` keeps the first N.
async fn trials(ctx: Ctx, id: String, q: HashMap<String, String>) -> ApiResult {
    let id = exp_id(&id)?;
    let exp = ctx.platform.state.get_experiment(id).await?;
    let spec = ExperimentSpec::from_value(&exp.spec)?;
    for key in q.keys() {
        if !["fields", "sort", "state", "limit"].contains(&key.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter '{key}'; expected fields, sort, state or limit"
            )));
        }
    }
    let fields: Option<Vec<&str>> = q
        .get("fields")
        .map(|f| f.split(',').map(str::trim).collect());
    if let Some(fields) = &fields {
        if let Some(bad) = fields.iter().find(|f| !TRIAL_FIELDS.contains(f)) {
            return Err(ApiError::bad_request(format!(
                "unknown trial field '{bad}'; expected some of: {}",
                TRIAL_FIELDS.join(", ")
            )));
        }
    }
    // References into the cached trials: neither decoded again nor copied.
    let cached = ctx.platform.trials(id).await?;
    let state: Option<TrialState> = q.get("state").map(|s| s.parse()).transpose()?;
    let mut trials: Vec<&Trial> = cached
        .iter()
        .filter(|t| state.is_none_or(|s| t.state == s))
        .collect();
    match q.get("sort").map(String::as_str) {
        None | Some("number") => {}
        Some("value") => {
            let key = |v: Option<f64>| match v {
                Some(x) if x.is_finite() => match spec.direction {
                    Direction::Minimize => x,
                    Direction::Maximize => -x,
                },
                _ => f64::INFINITY,
            };
            trials.sort_by(|a, b| {
                key(a.value)
                    .total_cmp(&key(b.value))
                    .then(a.number.cmp(&b.number))
            });
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort must be 'number' or 'value' (got '{other}')"
            )))
        }
    }
    if let Some(limit) = q.get("limit") {
        let n: usize = limit.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "limit must be a non-negative integer (got '{limit}')"
            ))
        })?;
        trials.truncate(n);
    }
    let mut out = Vec::with_capacity(trials.len());
    for t in trials {
        let mut v = serde_json::to_value(t)?;
        if let (Some(fields), Value::Object(obj)) = (&fields, &mut v) {
            obj.retain(|k, _| fields.contains(&k.as_str()));
        }
        out.push(v);
    }
    Ok(json_reply(&out, StatusCode::OK))
}

async fn ask(ctx: Ctx, id: String) -> ApiResult {
    let trial = service::ask(&ctx.platform, exp_id(&id)?, Utc::now()).await?;
    let body = json!({"trial_id": trial.id, "number": trial.number, "params": trial.params});
    Ok(json_reply(&body, StatusCode::CREATED))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    step: u32,
    value: f64,
}

async fn report(ctx: Ctx, id: String, number: u64, body: Result<Bytes, ApiError>) -> ApiResult {
    let body = body?;
    let req: ReportRequest = parse_json(&body)?;
    let prune = service::report(&ctx.platform, exp_id(&id)?, number, req.step, req.value).await?;
    Ok(json_reply(&json!({"should_prune": prune}), StatusCode::OK))
}

async fn tell(ctx: Ctx, id: String, number: u64, body: Result<Bytes, ApiError>) -> ApiResult {
    let body = body?;
    let req: TellRequest = parse_json(&body)?;
    let trial = service::tell(&ctx.platform, exp_id(&id)?, number, req, Utc::now()).await?;
    Ok(json_reply(&trial, StatusCode::OK))
}

async fn cancel(ctx: Ctx, id: String) -> ApiResult {
    let exp = service::cancel(&ctx.platform, exp_id(&id)?, Utc::now()).await?;
    ctx.wake.notify_one();
    Ok(json_reply(
        &summary::summary(&ctx.platform, exp).await?,
        StatusCode::OK,
    ))
}
