//! The registry's lifecycle routes: promotion requests and their decisions,
//! aliases, and a model's history. Each parses, calls
//! [`tracseq_scheduler::registry`] with the caller's identity, and renders.

use super::{body, json_reply, query, run, who, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use tracseq_core::ids::PromotionId;
use tracseq_core::lifecycle::promotion::{NewPromotion, PromotionState, MAX_REASON_CHARS};
use tracseq_core::ports::PromotionFilter;
use tracseq_core::registry::{Gate, Goal, Stage};
use tracseq_core::security::{Caller, Role};
use tracseq_core::types::validate_name;
use tracseq_scheduler::registry::{self as service, Decision};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let promote = warp::path!("models" / "promote")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(promote(ctx, who, b)));
    let list = warp::path!("promotions")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)));
    let get = warp::path!("promotions" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let p = ctx
                    .platform
                    .registry
                    .get_promotion(promotion_id(&id)?)
                    .await?;
                Ok(json_reply(&p, StatusCode::OK))
            })
        });
    let decide = warp::path!("promotions" / String / String)
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|id, verb, ctx, who, b| run(decide(ctx, who, id, verb, b)));
    let set_alias = warp::path!("models" / String / "aliases" / String)
        .and(warp::put())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|name, alias, ctx, who, b| run(move_alias(ctx, who, name, alias, Some(b))));
    let delete_alias = warp::path!("models" / String / "aliases" / String)
        .and(warp::delete())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .then(|name, alias, ctx, who| run(move_alias(ctx, who, name, alias, None)));
    let history = warp::path!("models" / String / "history")
        .and(warp::get())
        .and(with_ctx(ctx))
        .and(query())
        .then(|name, ctx, q| run(history(ctx, name, q)));
    promote
        .or(list)
        .unify()
        .or(get)
        .unify()
        .or(decide)
        .unify()
        .or(set_alias)
        .unify()
        .or(delete_alias)
        .unify()
        .or(history)
        .unify()
}

fn promotion_id(s: &str) -> Result<PromotionId, ApiError> {
    Ok(s.parse::<PromotionId>()?)
}

fn check_reason(field: &str, reason: &Option<String>) -> Result<(), ApiError> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::bad_request(format!(
            "{field} is longer than {MAX_REASON_CHARS} characters"
        ))),
        Some(r) if r.chars().any(|c| c.is_control() && c != '\n') => Err(ApiError::bad_request(
            format!("{field} contains a control character"),
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateRequest {
    #[serde(rename = "type")]
    kind: String,
    metric: String,
    value: Option<f64>,
    goal: Option<Goal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    name: String,
    version: u32,
    stage: String,
    reason: String,
    #[serde(default = "yes")]
    archive_previous: bool,
    #[serde(default)]
    gates: Vec<GateRequest>,
}

fn yes() -> bool {
    true
}

/// Most gates on one request.
const MAX_GATES: usize = 16;

/// A gate as the rules take it; the goal of a known metric is its own
/// (AUC higher, RMSE lower), another metric must say which way is better.
fn gate(i: usize, g: GateRequest) -> Result<Gate, ApiError> {
    let field = |f: &str| format!("gates[{i}].{f}");
    if g.metric.is_empty() || g.metric.len() > 64 {
        return Err(ApiError::bad_request(format!(
            "{} must be 1 to 64 characters",
            field("metric")
        )));
    }
    let known = g
        .metric
        .parse::<tracseq_learn::metrics::Metric>()
        .ok()
        .map(|m| match m.direction() {
            tracseq_hpo::Direction::Maximize => Goal::Higher,
            tracseq_hpo::Direction::Minimize => Goal::Lower,
        });
    let goal = match (g.goal, known) {
        (Some(goal), Some(k)) if goal != k => {
            return Err(ApiError::bad_request(format!(
                "{}: {} is better {k}, not {goal}",
                field("goal"),
                g.metric
            )))
        }
        (Some(goal), _) => goal,
        (None, Some(k)) => k,
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "{}: say whether a higher or lower {} is better",
                field("goal"),
                g.metric
            )))
        }
    };
    match g.kind.as_str() {
        "threshold" => {
            let value = g.value.filter(|v| v.is_finite()).ok_or_else(|| {
                ApiError::bad_request(format!("{} must be a finite number", field("value")))
            })?;
            Ok(Gate::Threshold {
                metric: g.metric,
                value,
                goal,
            })
        }
        "better_than_production" => {
            if g.value.is_some() {
                return Err(ApiError::bad_request(format!(
                    "{}: a better_than_production gate takes no value",
                    field("value")
                )));
            }
            Ok(Gate::BetterThanProduction {
                metric: g.metric,
                goal,
            })
        }
        other => Err(ApiError::bad_request(format!(
            "{}: unknown gate '{other}'; expected threshold or better_than_production",
            field("type")
        ))),
    }
}

async fn promote(ctx: Ctx, who_: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let caller = who(who_)?;
    let req: PromoteRequest = parse_json(&body?)?;
    validate_name("name", &req.name)?;
    check_reason("reason", &Some(req.reason.clone()))?;
    if req.gates.len() > MAX_GATES {
        return Err(ApiError::bad_request(format!("gates: at most {MAX_GATES}")));
    }
    let gates = req
        .gates
        .into_iter()
        .enumerate()
        .map(|(i, g)| gate(i, g))
        .collect::<Result<Vec<_>, _>>()?;
    let stage = req
        .stage
        .parse::<Stage>()
        .map_err(|e| ApiError::bad_request(format!("stage: {e}")))?;
    let new = NewPromotion {
        model: req.name.clone(),
        version: req.version,
        stage,
        archive_previous: req.archive_previous,
        gates,
        reason: req.reason,
    };
    let p = &ctx.platform;
    let promotion = service::request_promotion(
        p.state.as_ref(),
        p.registry.as_ref(),
        new,
        &caller.actor,
        Utc::now(),
    )
    .await?;
    let mut resp = json_reply(&promotion, StatusCode::CREATED);
    record_targets(
        &mut resp,
        [
            promotion.id.to_string(),
            format!("{}@{}", req.name, req.version),
        ],
    );
    Ok(resp)
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    super::paging::only(&q, &["model", "state", "limit"])?;
    let model = q.get("model").cloned();
    if let Some(m) = &model {
        validate_name("model", m)?;
    }
    let state = q
        .get("state")
        .map(|s| s.parse::<PromotionState>())
        .transpose()?;
    let limit = super::paging::limit(&q)?;
    let filter = PromotionFilter {
        model,
        state,
        limit: Some(limit),
    };
    let out = ctx.platform.registry.list_promotions(&filter).await?;
    Ok(json_reply(&out, StatusCode::OK))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    reason: Option<String>,
}

async fn decide(
    ctx: Ctx,
    who_: Option<Caller>,
    id: String,
    verb: String,
    body: Result<Bytes, ApiError>,
) -> ApiResult {
    let caller = who(who_)?;
    let id = promotion_id(&id)?;
    let body = body?;
    let req: DecisionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DecisionRequest::default()
    } else {
        parse_json(&body)?
    };
    check_reason("reason", &req.reason)?;
    let decision = match verb.as_str() {
        "approve" => Decision::Approve { reason: req.reason },
        "reject" => Decision::Reject {
            reason: req.reason.unwrap_or_default(),
        },
        "cancel" => Decision::Cancel {
            by_admin: caller.role == Role::Admin,
        },
        // The guard answers 404 for any other verb before this runs.
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action '{other}'"),
            ))
        }
    };
    let p = &ctx.platform;
    let promotion = service::decide(
        p.state.as_ref(),
        p.registry.as_ref(),
        id,
        decision,
        &caller.actor,
        Utc::now(),
    )
    .await?;
    let mut resp = json_reply(&promotion, StatusCode::OK);
    record_targets(
        &mut resp,
        [
            id.to_string(),
            format!("{}@{}", promotion.model, promotion.version),
        ],
    );
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    version: u32,
    reason: Option<String>,
}

async fn move_alias(
    ctx: Ctx,
    who_: Option<Caller>,
    name: String,
    alias: String,
    body: Option<Result<Bytes, ApiError>>,
) -> ApiResult {
    let caller = who(who_)?;
    validate_name("model", &name)?;
    let (version, reason) = match body {
        Some(b) => {
            let req: AliasRequest = parse_json(&b?)?;
            check_reason("reason", &req.reason)?;
            (Some(req.version), req.reason)
        }
        None => (None, None),
    };
    let slots = service::set_alias(
        ctx.platform.registry.as_ref(),
        &name,
        &alias,
        version,
        &caller.actor,
        reason,
        Utc::now(),
    )
    .await?;
    let mut resp = json_reply(
        &json!({"name": name, "aliases": slots.aliases}),
        StatusCode::OK,
    );
    record_targets(&mut resp, [format!("{name}@{alias}")]);
    Ok(resp)
}

/// Most history rows one page holds.
const MAX_HISTORY_PAGE: u32 = 1000;

async fn history(ctx: Ctx, name: String, q: HashMap<String, String>) -> ApiResult {
    validate_name("model", &name)?;
    super::paging::only(&q, &["after", "limit"])?;
    let after = match q.get("after") {
        Some(a) => a
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("after must be a history seq (a whole number)"))?,
        None => 0,
    };
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_HISTORY_PAGE).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1 to {MAX_HISTORY_PAGE}"))
            })?,
        None => 100,
    };
    // A model with no version is unknown, not merely without history.
    let slots = ctx.platform.registry.model_slots(&name).await?;
    let entries = ctx
        .platform
        .registry
        .model_history(&name, after, limit)
        .await?;
    Ok(json_reply(
        &json!({"name": name, "stages": slots.stages, "aliases": slots.aliases, "entries": entries}),
        StatusCode::OK,
    ))
}
