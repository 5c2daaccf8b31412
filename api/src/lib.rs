//! The HTTP API (warp): data sets, experiments and ask/tell, jobs, the model
//! registry, serving, and the OpenAPI description of all of it.

// The OpenAPI schema table is one `json!` literal, deeper than the default
// macro recursion limit of 128 allows.
#![recursion_limit = "256"]

mod openapi;
pub mod problem;
mod routes;
pub mod serving;

use problem::{recover, ApiError};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::Notify;
use tracseq_core::config::{ApiConfig, LimitsConfig};
use tracseq_core::Platform;
use warp::Filter;

pub use openapi::openapi;

/// Everything a handler needs, shared by all requests.
pub struct ApiState {
    pub platform: Platform,
    pub api: ApiConfig,
    pub limits: LimitsConfig,
    pub models: serving::ModelCache,
    /// Wakes the scheduler when a request created work.
    pub wake: Arc<Notify>,
}

pub type Ctx = Arc<ApiState>;

impl ApiState {
    pub fn new(platform: Platform, api: ApiConfig, limits: LimitsConfig, wake: Arc<Notify>) -> Ctx {
        Arc::new(ApiState {
            platform,
            api,
            limits,
            models: Default::default(),
            wake,
        })
    }
}

/// Every route, with errors turned into JSON problems.
pub fn routes(
    ctx: Ctx,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    routes::all(ctx)
        .recover(recover)
        .unify()
        .with(warp::trace::request())
}

/// Binds `addr` (port 0 picks a free port) and serves until `shutdown`
/// resolves, then finishes in-flight requests. Returns the bound address
/// through `bound` as soon as the listener is up.
pub async fn serve(
    ctx: Ctx,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "api listening");
    let _ = bound.send(local);
    warp::serve(routes(ctx))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    Ok(())
}

/// Parses a JSON body with serde's precise messages (unknown fields, wrong
/// types, with line and column) instead of a generic rejection.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
