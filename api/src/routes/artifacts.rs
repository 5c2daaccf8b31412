//! `/artifacts`: browse and download what jobs stored (data sets, trial
//! results, models, predictions), from S3 or the local directory alike.

use super::{json_reply, query, run, with_ctx};
use crate::problem::{ApiError, ApiResult};
use crate::Ctx;
use futures::StreamExt;
use std::collections::HashMap;
use tracseq_core::ports::ArtifactPath;
use tracseq_core::Error;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// Most entries one listing returns.
pub(crate) const MAX_LIST: usize = 10_000;

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("artifacts")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx, q| run(list(ctx, q)));
    let download = warp::path("artifacts")
        .and(warp::path::tail())
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|tail: warp::path::Tail, ctx| run(download(ctx, tail.as_str().to_string())));
    list.or(download).unify()
}

async fn list(ctx: Ctx, q: HashMap<String, String>) -> ApiResult {
    if let Some(k) = q
        .keys()
        .find(|k| !["prefix", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter '{k}'; expected prefix or limit"
        )));
    }
    if q.get("prefix")
        .is_some_and(|p| p.len() > ArtifactPath::MAX_LEN)
    {
        return Err(ApiError::bad_request(format!(
            "prefix must be at most {} bytes",
            ArtifactPath::MAX_LEN
        )));
    }
    let prefix = match q.get("prefix").map(|p| p.trim_end_matches('/')) {
        Some(p) if !p.is_empty() => Some(ArtifactPath::parse(p)?),
        _ => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIST).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit must be 1..={MAX_LIST} (got '{l}')"))
            })?,
        None => 1_000,
    };
    let mut items = ctx.platform.artifacts.list(prefix.as_ref()).await?;
    let truncated = items.len() > limit;
    items.truncate(limit);
    Ok(json_reply(
        &serde_json::json!({"items": items, "truncated": truncated}),
        StatusCode::OK,
    ))
}

async fn download(ctx: Ctx, tail: String) -> ApiResult {
    let decoded = percent_decode(&tail)
        .ok_or_else(|| ApiError::bad_request("artifact path is not valid UTF-8"))?;
    let path = ArtifactPath::parse(&decoded)?;
    let meta = ctx
        .platform
        .artifacts
        .head(&path)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("artifact '{path}'")),
            other => other,
        })?;
    let stream = ctx.platform.artifacts.get_stream(&path).await?;
    // Bridged through a channel: warp wants a Sync stream, object stores give Send ones.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = item.is_err();
            if futures::SinkExt::send(&mut tx, item).await.is_err() || failed {
                break;
            }
        }
    });
    let mut resp = warp::reply::stream(rx).into_response();
    let content_type = match decoded.rsplit('.').next() {
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    };
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    if let Some(sha) = meta
        .sha256
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        headers.insert("x-checksum-sha256", sha);
    }
    Ok(resp)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
