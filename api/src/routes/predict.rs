//! `/predict` and `/batch_predict`: serving registered model versions.

use super::{body, json_reply, run, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::serving::{cache, LoadedModel, Pick};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracseq_core::ids::RequestId;
use tracseq_core::predictions::{validate_entity_id, PredictionRecord, PRIMARY};
use tracseq_core::security::Caller;
use tracseq_core::DatasetId;
use tracseq_learn::lab::{self, Assessment};
use tracseq_learn::predict::Prediction;
use tracseq_scheduler::jobs;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let predict = warp::path!("predict")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(predict(ctx, who, b)));
    let batch = warp::path!("batch_predict")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(batch_predict(ctx, who, b)));
    predict.or(batch).unify()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    model: String,
    version: Option<u32>,
    alias: Option<String>,
    /// What the prediction is about (a sample id): logged, and the key
    /// outcomes can be reported under.
    entity_id: Option<String>,
    features: Map<String, Value>,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    /// The key of this answer in the prediction log and for its outcome.
    request_id: RequestId,
    model: &'a str,
    version: u32,
    /// Which arm of the deployment's traffic answered.
    variant: &'a str,
    #[serde(flatten)]
    prediction: &'a Prediction,
    /// The laboratory reading of a sample-quality prediction.
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<Assessment>,
}

/// The longest text a feature value may be: categories and labels, not
/// documents (and nothing longer is ever echoed back).
pub const MAX_FEATURE_TEXT: usize = 1024;
/// The longest feature name.
pub const MAX_FEATURE_NAME: usize = 256;

/// Checks one record's features: names and texts of bounded length, values
/// that are numbers, texts, booleans or null. The message names the feature
/// (cut short) and never quotes its value.
pub(crate) fn check_record(record: &Map<String, Value>) -> Result<(), ApiError> {
    for (name, value) in record {
        let shown = || -> String { name.chars().take(64).collect() };
        if name.len() > MAX_FEATURE_NAME {
            return Err(ApiError::bad_request(format!(
                "feature name '{}…' is {} bytes; at most {MAX_FEATURE_NAME}",
                shown(),
                name.len()
            )));
        }
        match value {
            Value::String(text) if text.len() > MAX_FEATURE_TEXT => {
                return Err(ApiError::bad_request(format!(
                    "feature '{}' is a text of {} bytes; at most {MAX_FEATURE_TEXT}",
                    shown(),
                    text.len()
                )))
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::bad_request(format!(
                    "feature '{}' must be a number, a text, a boolean or null",
                    shown()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The log's copy of an answer: the output without its explanation.
fn log_output(p: &Prediction) -> Value {
    let mut out = Map::with_capacity(3);
    out.insert("value".into(), json!(p.value));
    if let Some(label) = &p.label {
        out.insert("label".into(), json!(label));
    }
    if let Some(probabilities) = &p.probabilities {
        out.insert("probabilities".into(), json!(probabilities));
    }
    Value::Object(out)
}

/// Queues one answer for the prediction log (never waits).
#[allow(clippy::too_many_arguments)]
fn log_prediction(
    ctx: &Ctx,
    request_id: RequestId,
    loaded: &LoadedModel,
    entity_id: Option<String>,
    features: Map<String, Value>,
    prediction: &Prediction,
    latency: Duration,
    caller: &Option<Caller>,
) {
    if !ctx.prediction_log.enabled() {
        return;
    }
    ctx.prediction_log.record(PredictionRecord {
        request_id,
        at: Utc::now(),
        model: loaded.version.name.clone(),
        version: loaded.version.version,
        variant: PRIMARY.into(),
        entity_id,
        features,
        output: log_output(prediction),
        latency_us: latency.as_micros().min(u128::from(u64::MAX)) as u64,
        caller: caller.as_ref().map(|c| c.actor.name.clone()),
    });
}

/// The model's answer to one record: from the prediction cache when it
/// holds it, else computed (and cached).
async fn answer(
    ctx: &Ctx,
    loaded: &LoadedModel,
    features: &Map<String, Value>,
) -> Result<Arc<Prediction>, ApiError> {
    let version = &loaded.version;
    let key = ctx
        .cache
        .enabled()
        .then(|| cache::key(&version.name, version.version, &version.sha256, features));
    if let Some(key) = &key {
        if let Some(hit) = ctx.cache.get(&version.name, key).await {
            return Ok(hit);
        }
    }
    let prediction = loaded
        .artifact
        .predict(std::slice::from_ref(features))?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::bad_request("no prediction produced"))?;
    let prediction = Arc::new(prediction);
    if let Some(key) = key {
        ctx.cache.put(&version.name, key, prediction.clone());
    }
    Ok(prediction)
}

async fn predict(ctx: Ctx, who: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let started = Instant::now();
    let body = body?;
    let req: PredictRequest = parse_json(&body)?;
    check_record(&req.features)?;
    if let Some(id) = &req.entity_id {
        validate_entity_id(id)?;
    }
    let pick = Pick::from_request(req.version, req.alias.as_deref())?;
    let loaded = ctx.models.get(&ctx.platform, &req.model, pick).await?;
    let prediction = answer(&ctx, &loaded, &req.features).await;
    let latency = started.elapsed();
    loaded.stats.record(latency, prediction.is_ok());
    let prediction = &prediction?;
    let quality = (loaded.artifact.target == lab::TARGET).then(|| lab::assess(prediction));
    let request_id = RequestId::new();
    let resp = PredictResponse {
        request_id,
        model: &req.model,
        version: loaded.version.version,
        variant: PRIMARY,
        prediction,
        quality,
    };
    let reply = json_reply(&resp, StatusCode::OK);
    log_prediction(
        &ctx,
        request_id,
        &loaded,
        req.entity_id,
        req.features,
        prediction,
        latency,
        &who,
    );
    Ok(reply)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchPredictRequest {
    model: String,
    version: Option<u32>,
    alias: Option<String>,
    records: Option<Vec<Map<String, Value>>>,
    /// One per record, in order (logged with each prediction).
    entity_ids: Option<Vec<String>>,
    dataset_id: Option<DatasetId>,
}

/// One answer of an inline batch: its log key beside the prediction.
#[derive(Serialize)]
struct BatchAnswer<'a> {
    request_id: RequestId,
    #[serde(flatten)]
    prediction: &'a Prediction,
}

/// Records in the body are answered at once; a data set becomes a
/// `batch_predict` job whose predictions land in an artifact.
async fn batch_predict(ctx: Ctx, who: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let started = Instant::now();
    let body = body?;
    let req: BatchPredictRequest = parse_json(&body)?;
    let pick = Pick::from_request(req.version, req.alias.as_deref())?;
    let loaded = ctx.models.get(&ctx.platform, &req.model, pick).await?;
    let version = loaded.version.version;
    match (req.records, req.dataset_id) {
        (None, Some(_)) if req.entity_ids.is_some() => Err(ApiError::bad_request(
            "entity_ids go with records; a data set's rows are predicted by a job",
        )),
        (Some(records), None) => {
            if records.is_empty() {
                return Err(ApiError::bad_request("records must not be empty"));
            }
            if records.len() > ctx.api.max_predict_records {
                return Err(ApiError::bad_request(format!(
                    "{} records exceed the limit of {} (api.max_predict_records); use dataset_id for large batches",
                    records.len(),
                    ctx.api.max_predict_records
                )));
            }
            for (i, record) in records.iter().enumerate() {
                check_record(record)
                    .map_err(|e| ApiError::bad_request(format!("records[{i}]: {}", e.message)))?;
            }
            let entity_ids = match req.entity_ids {
                Some(ids) if ids.len() != records.len() => {
                    return Err(ApiError::bad_request(format!(
                        "entity_ids has {} entries for {} records; give one per record",
                        ids.len(),
                        records.len()
                    )))
                }
                Some(ids) => {
                    for (i, id) in ids.iter().enumerate() {
                        validate_entity_id(id)
                            .map_err(|e| ApiError::bad_request(format!("entity_ids[{i}]: {e}")))?;
                    }
                    ids.into_iter().map(Some).collect()
                }
                None => vec![None; records.len()],
            };
            let predictions = loaded.artifact.predict(&records);
            let latency = started.elapsed();
            loaded.stats.record(latency, predictions.is_ok());
            let predictions = predictions?;
            let ids: Vec<RequestId> = predictions.iter().map(|_| RequestId::new()).collect();
            let answers: Vec<BatchAnswer> = ids
                .iter()
                .zip(&predictions)
                .map(|(&request_id, prediction)| BatchAnswer {
                    request_id,
                    prediction,
                })
                .collect();
            let reply = json_reply(
                &json!({"model": req.model, "version": version, "variant": PRIMARY, "predictions": answers}),
                StatusCode::OK,
            );
            // Each record is charged its share of the batch's time.
            let share = latency / records.len().max(1) as u32;
            for (((request_id, features), entity_id), prediction) in ids
                .into_iter()
                .zip(records)
                .zip(entity_ids)
                .zip(&predictions)
            {
                log_prediction(
                    &ctx, request_id, &loaded, entity_id, features, prediction, share, &who,
                );
            }
            Ok(reply)
        }
        (None, Some(dataset_id)) => {
            let job = jobs::submit_batch_predict(
                &ctx.platform,
                &req.model,
                version,
                dataset_id,
                Utc::now(),
            )
            .await?;
            let mut resp = json_reply(
                &json!({"job_id": job.id, "state": job.state}),
                StatusCode::ACCEPTED,
            );
            record_targets(
                &mut resp,
                [job.id.to_string(), format!("{}@{version}", req.model)],
            );
            Ok(resp)
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of records or dataset_id",
        )),
    }
}
