//! `/predict` and `/batch_predict`: serving registered model versions.

use super::{body, json_reply, run, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::serving::shadow::{Copy, Shadows};
use crate::serving::{cache, Answerer, LoadedModel, Pick};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracseq_core::ids::{DeploymentId, RequestId};
use tracseq_core::predictions::{validate_entity_id, LoggedFeatures, PredictionRecord};
use tracseq_core::security::Caller;
use tracseq_core::DatasetId;
use tracseq_learn::lab::{self, Assessment};
use tracseq_learn::predict::{Explain, Prediction};
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
struct PredictRequest<'a> {
    model: String,
    version: Option<u32>,
    alias: Option<String>,
    /// What the prediction is about (a sample id): logged, and the key
    /// outcomes can be reported under.
    entity_id: Option<String>,
    /// The text as sent: parsed for the model, logged as it is.
    #[serde(borrow)]
    features: &'a RawValue,
    /// Per-feature contributions with the answer (the default); `false`
    /// answers with the output alone, at a fraction of the cost.
    explain: Option<bool>,
}

/// A request's `features`, which must be an object of names to values.
fn features_of(raw: &RawValue) -> Result<Map<String, Value>, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid JSON body: features must be an object of feature names to values ({e})"
        ))
    })
}

/// What a request's `explain` asks for (explained unless it says false).
pub(crate) fn explain_of(explain: Option<bool>) -> Explain {
    if explain.unwrap_or(true) {
        Explain::Yes
    } else {
        Explain::No
    }
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
pub(crate) fn log_output(p: &Prediction) -> Value {
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

/// Who answered one record: the version, as which traffic variant, routed
/// by which deployment.
struct Arm<'a> {
    loaded: &'a LoadedModel,
    variant: &'a str,
    deployment: Option<DeploymentId>,
}

impl<'a> Arm<'a> {
    fn of(a: &'a Answerer) -> Arm<'a> {
        Arm {
            loaded: &a.model,
            variant: a.variant(),
            deployment: a.deployment(),
        }
    }
}

/// Queues one answer (or failure) for the prediction log (never waits).
#[allow(clippy::too_many_arguments)]
fn log_prediction(
    ctx: &Ctx,
    request_id: RequestId,
    arm: &Arm<'_>,
    entity_id: Option<String>,
    features: LoggedFeatures,
    prediction: Result<&Prediction, &ApiError>,
    latency: Duration,
    caller: &Option<Caller>,
) {
    if !ctx.prediction_log.enabled() {
        return;
    }
    let (output, error) = match prediction {
        Ok(p) => (log_output(p), None),
        Err(e) => (Value::Null, Some(e.message.clone())),
    };
    ctx.prediction_log.record(PredictionRecord {
        request_id,
        at: Utc::now(),
        model: arm.loaded.version.name.clone(),
        version: arm.loaded.version.version,
        variant: arm.variant.to_string(),
        entity_id,
        features,
        output,
        latency_us: latency.as_micros().min(u128::from(u64::MAX)) as u64,
        caller: caller.as_ref().map(|c| c.actor.name.clone()),
        deployment_id: arm.deployment,
        shadow_of: None,
        error,
    });
}

/// The model's answer to one record: from the prediction cache when it
/// holds it, else computed (and cached). Explained and plain answers are
/// cached apart, so each request gets exactly what it asked for.
pub(crate) async fn answer(
    ctx: &Ctx,
    loaded: &LoadedModel,
    features: &Map<String, Value>,
    explain: Explain,
) -> Result<Arc<Prediction>, ApiError> {
    let version = &loaded.version;
    let key = ctx.cache.enabled().then(|| {
        cache::key(
            &version.name,
            version.version,
            &version.sha256,
            features,
            explain,
        )
    });
    if let Some(key) = &key {
        if let Some(hit) = ctx.cache.get(&version.name, key).await {
            return Ok(hit);
        }
    }
    let prediction = loaded
        .artifact
        .predict_with(std::slice::from_ref(features), explain)?
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
    let features = features_of(req.features)?;
    check_record(&features)?;
    if let Some(id) = &req.entity_id {
        validate_entity_id(id)?;
    }
    let pick = Pick::from_request(req.version, req.alias.as_deref())?;
    let routed = ctx
        .models
        .route(&ctx.platform, &req.model, pick, req.entity_id.as_deref())
        .await?;
    let arm = Arm::of(&routed);
    let prediction = answer(&ctx, arm.loaded, &features, explain_of(req.explain)).await;
    let latency = started.elapsed();
    arm.loaded.record(arm.variant, latency, prediction.is_ok());
    let request_id = RequestId::new();
    let prediction = match prediction {
        Ok(p) => p,
        Err(e) => {
            log_prediction(
                &ctx,
                request_id,
                &arm,
                req.entity_id,
                LoggedFeatures::verbatim(req.features),
                Err(&e),
                latency,
                &who,
            );
            return Err(e);
        }
    };
    let quality = (arm.loaded.artifact.target == lab::TARGET).then(|| lab::assess(&prediction));
    let resp = PredictResponse {
        request_id,
        model: &req.model,
        version: arm.loaded.version.version,
        variant: arm.variant,
        prediction: &prediction,
        quality,
    };
    let reply = json_reply(&resp, StatusCode::OK);
    if let Some(shadow) = routed.shadow() {
        Shadows::spawn(
            &ctx,
            Copy {
                model: req.model.clone(),
                shadow: shadow.clone(),
                shadow_of: request_id,
                deployment: arm.deployment,
                entity_id: req.entity_id.clone(),
                features: LoggedFeatures::verbatim(req.features),
                caller: who.as_ref().map(|c| c.actor.name.clone()),
            },
        );
    }
    log_prediction(
        &ctx,
        request_id,
        &arm,
        req.entity_id,
        LoggedFeatures::verbatim(req.features),
        Ok(&prediction),
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
    /// As for `/predict`: `false` answers the records without contributions.
    explain: Option<bool>,
}

/// One answer of an inline batch: its log key and who answered, beside
/// the prediction.
#[derive(Serialize)]
struct BatchAnswer<'a> {
    request_id: RequestId,
    version: u32,
    variant: &'a str,
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
    let first = ctx
        .models
        .route(&ctx.platform, &req.model, pick, None)
        .await?;
    match (req.records, req.dataset_id) {
        (None, Some(_)) if req.entity_ids.is_some() => Err(ApiError::bad_request(
            "entity_ids go with records; a data set's rows are predicted by a job",
        )),
        (None, Some(_)) if req.explain.is_some() => Err(ApiError::bad_request(
            "explain goes with records; a data set's job always writes the contributions",
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
            // Each record takes its own arm of the traffic policy (sticky
            // by its entity id), as if it had come alone.
            let arms: Vec<Answerer> = match first.routed() {
                Some(r) => entity_ids.iter().map(|e| r.pick(e.as_deref())).collect(),
                None => (0..records.len())
                    .map(|_| Answerer::pinned(first.model.clone()))
                    .collect(),
            };
            let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
            for (i, a) in arms.iter().enumerate() {
                match groups
                    .iter_mut()
                    .find(|(g, _)| arms[*g].variant() == a.variant())
                {
                    Some((_, members)) => members.push(i),
                    None => groups.push((i, vec![i])),
                }
            }
            let mut predictions: Vec<Option<Prediction>> = std::iter::repeat_with(|| None)
                .take(records.len())
                .collect();
            for (lead, members) in &groups {
                let arm = Arm::of(&arms[*lead]);
                let batch: Vec<Map<String, Value>> =
                    members.iter().map(|&i| records[i].clone()).collect();
                let answered = arm
                    .loaded
                    .artifact
                    .predict_with(&batch, explain_of(req.explain));
                let latency = started.elapsed();
                arm.loaded.record(arm.variant, latency, answered.is_ok());
                for (&i, p) in members.iter().zip(answered?) {
                    predictions[i] = Some(p);
                }
            }
            let predictions: Vec<Prediction> = predictions
                .into_iter()
                .map(|p| p.ok_or_else(|| ApiError::bad_request("no prediction produced")))
                .collect::<Result<_, _>>()?;
            let latency = started.elapsed();
            let ids: Vec<RequestId> = predictions.iter().map(|_| RequestId::new()).collect();
            let answers: Vec<BatchAnswer> = ids
                .iter()
                .zip(&predictions)
                .zip(&arms)
                .map(|((&request_id, prediction), a)| BatchAnswer {
                    request_id,
                    version: a.model.version.version,
                    variant: a.variant(),
                    prediction,
                })
                .collect();
            let uniform = groups.len() == 1;
            let mut out = json!({"model": req.model, "predictions": answers});
            if uniform {
                out["version"] = json!(arms[0].model.version.version);
                out["variant"] = json!(arms[0].variant());
            }
            let reply = json_reply(&out, StatusCode::OK);
            // Each record is charged its share of the batch's time.
            let share = latency / records.len().max(1) as u32;
            for ((((request_id, features), entity_id), prediction), a) in ids
                .into_iter()
                .zip(records)
                .zip(entity_ids)
                .zip(&predictions)
                .zip(&arms)
            {
                log_prediction(
                    &ctx,
                    request_id,
                    &Arm::of(a),
                    entity_id,
                    LoggedFeatures::of(&features),
                    Ok(prediction),
                    share,
                    &who,
                );
            }
            Ok(reply)
        }
        (None, Some(dataset_id)) => {
            // A data set job runs on the deployment's own version.
            let version = first
                .routed()
                .map_or(first.model.version.version, |r| r.version);
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
