//! `/datasets`: CSV uploads, validated before anything is stored.

use super::{body, json_reply, paging, query, run, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::Ctx;
use bytes::Bytes;
use chrono::Utc;
use std::collections::HashMap;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::security::Caller;
use tracseq_core::types::{check_label, validate_name, DatasetRecord};
use tracseq_core::{DatasetId, Error};
use tracseq_learn::dataset::Dataset;
use tracseq_scheduler::spec::dataset_limits;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let upload = warp::path!("datasets")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, q, who, b| run(upload(ctx, q, who, b)));
    let list = warp::path!("datasets")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx: Ctx, q: HashMap<String, String>| {
            run(async move {
                let page = paging::page(&q, |a| a.parse::<DatasetId>().map(drop))?;
                let items = ctx.platform.state.page_datasets(&page).await?;
                let mut resp = json_reply(&items, StatusCode::OK);
                let last = items.last().map(|d| d.id.to_string());
                paging::link_next(&mut resp, "/datasets", &page, items.len(), last);
                Ok(resp)
            })
        });
    let get = warp::path!("datasets" / String)
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let id: DatasetId = id.parse()?;
                Ok(json_reply(
                    &ctx.platform.state.get_dataset(id).await?,
                    StatusCode::OK,
                ))
            })
        });
    upload.or(list).unify().or(get).unify()
}

async fn upload(
    ctx: Ctx,
    q: HashMap<String, String>,
    who: Option<Caller>,
    body: Result<Bytes, ApiError>,
) -> ApiResult {
    let body = body?;
    let name = q.get("name").cloned().unwrap_or_else(|| "dataset".into());
    validate_name("dataset name", &name)?;
    let limits = dataset_limits(&ctx.limits);
    let parse_body = body.clone();
    let data = tokio::task::spawn_blocking(move || Dataset::from_csv(&parse_body, &limits))
        .await
        .map_err(|e| Error::Internal(format!("csv parser panicked: {e}")))?
        .map_err(|e| ApiError::bad_request(format!("invalid CSV: {e}")))?;
    let schema = data.schema();
    for column in &schema.columns {
        check_label("CSV column", &column.name)?;
    }
    let id = DatasetId::new();
    let path = ArtifactPath::dataset(id, "data.csv")?;
    let size = body.len() as u64;
    let meta = ctx.platform.artifacts.put(&path, body).await?;
    let record = DatasetRecord {
        id,
        name,
        artifact_path: path.to_string(),
        sha256: meta.sha256.unwrap_or_default(),
        size_bytes: size,
        rows: data.n_rows() as u64,
        schema: serde_json::to_value(&schema)?,
        created_at: Utc::now(),
        owner: who.map(|c| c.actor),
    };
    if let Err(e) = ctx.platform.state.insert_dataset(&record).await {
        // No record points at the object: remove it rather than leak it.
        let _ = ctx.platform.artifacts.delete(&path).await;
        return Err(e.into());
    }
    let mut resp = json_reply(&record, StatusCode::CREATED);
    record_targets(&mut resp, [record.id.to_string()]);
    Ok(resp)
}
