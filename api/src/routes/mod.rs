//! Route table: each submodule owns one resource.

mod datasets;
mod experiments;
mod jobs;
mod models;
mod predict;

use crate::problem::respond;
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
    health
        .or(openapi)
        .unify()
        .or(datasets::routes(ctx.clone()))
        .unify()
        .or(experiments::routes(ctx.clone()))
        .unify()
        .or(jobs::routes(ctx.clone()))
        .unify()
        .or(models::routes(ctx.clone()))
        .unify()
        .or(predict::routes(ctx))
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

/// A body of at most the configured size.
pub(crate) fn body(ctx: &Ctx) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::body::content_length_limit(ctx.api.max_body_bytes).and(warp::body::bytes())
}

/// The query string as a map; absent means empty.
pub(crate) fn query() -> impl Filter<Extract = (HashMap<String, String>,), Error = Rejection> + Clone
{
    warp::query::<HashMap<String, String>>()
}

/// Runs a handler future and renders its error, if any, as a problem.
pub(crate) async fn run<F: std::future::Future<Output = crate::problem::ApiResult>>(
    f: F,
) -> Response {
    respond(f.await)
}
