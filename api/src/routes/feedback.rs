//! `POST /feedback`: the lab reports what really happened to a predicted
//! sample, joined to the logged prediction; `GET /models/{name}/live`: the
//! live metrics those outcomes give, per version and variant.

use super::{body, json_reply, query, run, who, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::routes::predict::MAX_FEATURE_TEXT;
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use tracseq_core::ids::RequestId;
use tracseq_core::paging::Page;
use tracseq_core::predictions::{
    validate_entity_id, Labelled, LiveFilter, Outcome, PredictionFilter, PredictionRecord,
};
use tracseq_core::security::Caller;
use tracseq_core::types::validate_name;
use tracseq_learn::live::{check_actual, live_metrics, LiveMetric};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

/// The most outcomes one live figure is computed over (the newest).
pub const MAX_LIVE_OUTCOMES: u32 = 100_000;

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let feedback = warp::path!("feedback")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(feedback(ctx, who, b)));
    let live = warp::path!("models" / String / "live")
        .and(warp::get())
        .and(with_ctx(ctx))
        .and(query())
        .then(|name, ctx, q| run(live(ctx, name, q)));
    feedback.or(live).unify()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    /// The prediction, by the `request_id` its answer gave (parsed here,
    /// so a bad one is refused by name).
    request_id: Option<String>,
    /// Or the entity: its latest logged prediction (of `model`, if given).
    entity_id: Option<String>,
    model: Option<String>,
    actual: Value,
}

/// The prediction a report is about.
async fn reported_prediction(
    ctx: &Ctx,
    req: &FeedbackRequest,
) -> Result<PredictionRecord, ApiError> {
    if let Some(m) = &req.model {
        validate_name("model", m)?;
    }
    let found = match (&req.request_id, &req.entity_id) {
        (Some(id), None) => {
            let id: RequestId = id.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "request_id '{}' is not a request id (the UUID an answer gave)",
                    tracseq_core::error::excerpt(id, 64)
                ))
            })?;
            ctx.platform.predictions.get_prediction(id).await?
        }
        (None, Some(entity)) => {
            validate_entity_id(entity)?;
            let filter = PredictionFilter {
                model: req.model.clone(),
                entity_id: Some(entity.clone()),
                since: None,
                answered_only: true,
            };
            let latest = Page {
                limit: 1,
                after: None,
            };
            let found = ctx
                .platform
                .predictions
                .list_predictions(&filter, &latest)
                .await?;
            found.into_iter().next().ok_or_else(|| {
                ApiError::from(tracseq_core::Error::not_found(format!(
                    "logged prediction for entity '{entity}'{}",
                    req.model
                        .as_ref()
                        .map(|m| format!(" of model '{m}'"))
                        .unwrap_or_default()
                )))
            })?
        }
        _ => {
            return Err(ApiError::bad_request(
                "name the prediction with exactly one of request_id or entity_id",
            ))
        }
    };
    if let Some(m) = req.model.as_ref().filter(|m| **m != found.model) {
        return Err(ApiError::bad_request(format!(
            "model '{m}' does not match: request {} is a prediction of '{}'",
            found.request_id, found.model
        )));
    }
    Ok(found)
}

async fn feedback(ctx: Ctx, who_: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let caller = who(who_)?;
    let req: FeedbackRequest = parse_json(&body?)?;
    match &req.actual {
        Value::String(s) if s.len() > MAX_FEATURE_TEXT => {
            return Err(ApiError::bad_request(format!(
                "actual is a text of {} bytes; at most {MAX_FEATURE_TEXT}",
                s.len()
            )))
        }
        Value::Array(_) | Value::Object(_) | Value::Null => {
            return Err(ApiError::bad_request(
                "actual must be a number, a class label or a boolean",
            ))
        }
        _ => {}
    }
    let prediction = reported_prediction(&ctx, &req).await?;
    check_actual(&prediction.output, &req.actual).map_err(ApiError::bad_request)?;
    let outcome = Outcome {
        request_id: prediction.request_id,
        model: prediction.model,
        version: prediction.version,
        variant: prediction.variant,
        actual: req.actual,
        reported_at: Utc::now(),
        reported_by: Some(caller.actor.name),
    };
    ctx.platform.predictions.record_outcome(&outcome).await?;
    let mut resp = json_reply(&outcome, StatusCode::CREATED);
    record_targets(
        &mut resp,
        [
            outcome.request_id.to_string(),
            format!("{}@{}", outcome.model, outcome.version),
        ],
    );
    Ok(resp)
}

/// One version and variant's live figures.
#[derive(Serialize)]
struct VariantLive {
    version: u32,
    variant: String,
    /// Predictions logged in the window.
    predictions: u64,
    /// Of them, with a reported outcome (among the newest
    /// [`MAX_LIVE_OUTCOMES`] of the model).
    outcomes: usize,
    metrics: Vec<LiveMetric>,
}

async fn live(ctx: Ctx, name: String, q: HashMap<String, String>) -> ApiResult {
    validate_name("model", &name)?;
    super::paging::only(&q, &["since"])?;
    let since = q.get("since").map(|s| parse_since(s)).transpose()?;
    // A model without versions is a 404, not an empty answer.
    ctx.platform.registry.model_slots(&name).await?;
    let counts = ctx
        .platform
        .predictions
        .prediction_counts(&LiveFilter::model(&name, since))
        .await?;
    let labelled = ctx
        .platform
        .predictions
        .labelled_predictions(&LiveFilter::model(&name, since), MAX_LIVE_OUTCOMES)
        .await?;
    let mut by_arm: BTreeMap<(u32, String), Vec<&Labelled>> = BTreeMap::new();
    for l in &labelled {
        by_arm
            .entry((l.prediction.version, l.prediction.variant.clone()))
            .or_default()
            .push(l);
    }
    let variants: Vec<VariantLive> = counts
        .into_iter()
        .map(|c| {
            let arm = by_arm
                .remove(&(c.version, c.variant.clone()))
                .unwrap_or_default();
            let pairs: Vec<(&Value, &Value)> = arm
                .iter()
                .map(|l| (&l.prediction.output, &l.outcome.actual))
                .collect();
            VariantLive {
                version: c.version,
                variant: c.variant,
                predictions: c.predictions,
                outcomes: pairs.len(),
                metrics: live_metrics(&pairs),
            }
        })
        .collect();
    Ok(json_reply(
        &serde_json::json!({
            "model": name,
            "since": since,
            "outcomes_considered": labelled.len(),
            "outcomes_limit": MAX_LIVE_OUTCOMES,
            "variants": variants,
        }),
        StatusCode::OK,
    ))
}

/// An RFC 3339 `since`; the problem names the parameter.
pub(crate) fn parse_since(s: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::bad_request(format!(
                "since '{}' must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
                tracseq_core::error::excerpt(s, 40)
            ))
        })
}
