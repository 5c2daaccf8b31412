//! Route table: each submodule owns one resource.

pub(crate) mod alerts;
mod analysis;
mod artifacts;
mod audit;
mod datasets;
mod deployments;
pub(crate) mod drift;
mod experiments;
mod feedback;
mod jobs;
mod models;
mod paging;
pub(crate) mod predict;
mod predictions;
mod promotions;
mod tokens;
mod workers;

pub(crate) use artifacts::MAX_LIST as MAX_ARTIFACT_LIST;
pub(crate) use audit::MAX_VALUE as MAX_AUDIT_FILTER;
pub(crate) use predict::MAX_FEATURE_TEXT;

use crate::problem::{respond, ApiError};
use crate::Ctx;
use bytes::Bytes;
use serde::Serialize;
use std::collections::HashMap;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub fn all(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let health = warp::path!("health").and(warp::get()).map(|| {
        json_reply(
            &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
            StatusCode::OK,
        )
    });
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(|| json_reply(&crate::openapi(), StatusCode::OK));
    // `/predict` first: it is the hot path, and every filter before it
    // would be tried and rejected on each prediction.
    predict::routes(ctx.clone())
        .or(health)
        .unify()
        .or(openapi)
        .unify()
        .or(datasets::routes(ctx.clone()))
        .unify()
        .or(experiments::routes(ctx.clone()))
        .unify()
        .or(jobs::routes(ctx.clone()))
        .unify()
        .or(promotions::routes(ctx.clone()))
        .unify()
        .or(deployments::routes(ctx.clone()))
        .unify()
        .or(analysis::routes(ctx.clone()))
        .unify()
        .or(models::routes(ctx.clone()))
        .unify()
        .or(predictions::routes(ctx.clone()))
        .unify()
        .or(feedback::routes(ctx.clone()))
        .unify()
        .or(drift::routes(ctx.clone()))
        .unify()
        .or(alerts::routes(ctx.clone()))
        .unify()
        .or(artifacts::routes(ctx.clone()))
        .unify()
        .or(workers::routes(ctx.clone()))
        .unify()
        .or(tokens::routes(ctx.clone()))
        .unify()
        .or(audit::routes(ctx))
        .unify()
        .boxed()
}

pub(crate) fn json_reply<T: Serialize>(v: &T, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(v), status).into_response()
}

pub(crate) fn with_ctx(
    ctx: Ctx,
) -> impl Filter<Extract = (Ctx,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}

/// The whole request body, at most `api.max_body_bytes`. A declared length
/// over the limit is refused before reading; a chunked body is cut off as
/// soon as it passes the limit, so no upload can exhaust memory.
///
/// An oversize body is an `Ok(Err(..))` rather than a rejection, so it is
/// answered as 413 by the matched route instead of being mixed with other
/// routes' rejections.
pub(crate) fn body(
    ctx: &Ctx,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = Rejection> + Clone {
    body_limited(ctx.api.max_body_bytes)
}

/// The request body, refused past `limit` bytes before more is read.
pub(crate) fn body_limited(
    limit: u64,
) -> impl Filter<Extract = (Result<Bytes, ApiError>,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |declared: Option<u64>, stream| async move {
            let mut stream = Box::pin(stream);
            if declared.is_some_and(|n| n > limit) {
                return Ok(Err(too_large(limit)));
            }
            let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                let chunk: Result<_, warp::Error> = chunk;
                let mut chunk = chunk.map_err(|_| warp::reject::reject())?;
                while bytes::Buf::has_remaining(&chunk) {
                    let piece = bytes::Buf::chunk(&chunk);
                    if (buf.len() + piece.len()) as u64 > limit {
                        return Ok(Err(too_large(limit)));
                    }
                    buf.extend_from_slice(piece);
                    let n = piece.len();
                    bytes::Buf::advance(&mut chunk, n);
                }
            }
            Ok::<_, Rejection>(Ok(buf.freeze()))
        })
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("request body exceeds the limit of {limit} bytes (config api.max_body_bytes)"),
    )
}

/// The query string as a map; absent means empty.
pub(crate) fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone
{
    warp::query::<HashMap<String, String>>()
}

/// The caller's identity; the guard has put one on every route that needs it.
pub(crate) fn who(
    c: Option<tracseq_core::security::Caller>,
) -> Result<tracseq_core::security::Caller, ApiError> {
    c.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no caller"))
}

/// Runs a handler future and renders its error, if any, as a problem.
pub(crate) async fn run<F: std::future::Future<Output = crate::problem::ApiResult>>(
    f: F,
) -> Response {
    respond(f.await)
}
