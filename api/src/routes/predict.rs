//! `/predict` and `/batch_predict`: serving registered model versions.

use super::{body, json_reply, run, with_ctx};
use crate::guard::record_targets;
use crate::problem::{ApiError, ApiResult};
use crate::serving::Pick;
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Instant;
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
        .and(body(&ctx))
        .then(|ctx, b| run(predict(ctx, b)));
    let batch = warp::path!("batch_predict")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(body(&ctx))
        .then(|ctx, b| run(batch_predict(ctx, b)));
    predict.or(batch).unify()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    model: String,
    version: Option<u32>,
    alias: Option<String>,
    features: Map<String, Value>,
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    model: &'a str,
    version: u32,
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

async fn predict(ctx: Ctx, body: Result<Bytes, ApiError>) -> ApiResult {
    let started = Instant::now();
    let body = body?;
    let req: PredictRequest = parse_json(&body)?;
    check_record(&req.features)?;
    let pick = Pick::from_request(req.version, req.alias.as_deref())?;
    let loaded = ctx.models.get(&ctx.platform, &req.model, pick).await?;
    let predictions = loaded.artifact.predict(std::slice::from_ref(&req.features));
    loaded.stats.record(started.elapsed(), predictions.is_ok());
    let predictions = predictions?;
    let prediction = predictions
        .first()
        .ok_or_else(|| ApiError::bad_request("no prediction produced"))?;
    let quality = (loaded.artifact.target == lab::TARGET).then(|| lab::assess(prediction));
    let resp = PredictResponse {
        model: &req.model,
        version: loaded.version.version,
        prediction,
        quality,
    };
    Ok(json_reply(&resp, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchPredictRequest {
    model: String,
    version: Option<u32>,
    alias: Option<String>,
    records: Option<Vec<Map<String, Value>>>,
    dataset_id: Option<DatasetId>,
}

/// Records in the body are answered at once; a data set becomes a
/// `batch_predict` job whose predictions land in an artifact.
async fn batch_predict(ctx: Ctx, body: Result<Bytes, ApiError>) -> ApiResult {
    let started = Instant::now();
    let body = body?;
    let req: BatchPredictRequest = parse_json(&body)?;
    let pick = Pick::from_request(req.version, req.alias.as_deref())?;
    let loaded = ctx.models.get(&ctx.platform, &req.model, pick).await?;
    let version = loaded.version.version;
    match (req.records, req.dataset_id) {
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
            let predictions = loaded.artifact.predict(&records);
            loaded.stats.record(started.elapsed(), predictions.is_ok());
            let predictions = predictions?;
            Ok(json_reply(
                &json!({"model": req.model, "version": version, "predictions": predictions}),
                StatusCode::OK,
            ))
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
